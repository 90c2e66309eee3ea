"""The seam between the app (transports + transaction layer) and the transaction users
(registrar, proxy).

The app owns the sockets and the TransactionLayer; a transaction user (TU) never touches
either. The app calls a TU through `TransactionUser`; the TU acts through `Sender`.

Dispatch (switch/app.py): REGISTER -> registrar; every other request, ACK for non-2xx aside
(absorbed by the transaction layer), -> the proxy. ACK for 2xx (end-to-end, no transaction)
arrives at `on_ack`. Responses to client transactions arrive at `on_response`/`on_timeout`;
responses that match no transaction (forwarded 2xx retransmissions) at `on_stray_response`.

Hot path: `on_request`/`on_ack` are coroutines, but the app runs them as tasks only when the
coroutine actually suspends: it steps the coroutine once synchronously (`coro.send(None)`
style via `switch.app.run_tu`) so a TU that answers without awaiting costs no task.

Clocks: `Sender.now()` is the loop's monotonic clock, for protocol timers. State that may be
shared between nodes (bindings, leases) uses wall-clock epoch seconds — see
switch/state/base.py.

CONTRACT — methods may be added; none may be renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from switch.sip.message import Request, Response, SipURI
    from switch.sip.transaction import ClientTransaction, ServerTransaction, Target

__all__ = ["Cancellable", "Sender", "TransactionUser"]


class Cancellable(Protocol):
    """What `call_later` returns (an asyncio.TimerHandle fits)."""

    def cancel(self) -> None: ...


class Sender(Protocol):
    def now(self) -> float:
        """Monotonic seconds (loop.time())."""
        ...

    def send_response(self, txn: ServerTransaction, response: Response) -> None:
        """Send a response on a server transaction (routed per RFC 3261 §18.2.2 / RFC 3581)."""
        ...

    def send_request(
        self, request: Request, target: Target, user_data: object = None
    ) -> ClientTransaction:
        """Start a client transaction towards `target` (the TU has already added its Via)."""
        ...

    def send_stateless(self, message: Request | Response, target: Target) -> None:
        """Send without a transaction: ACK for 2xx, forwarded stray 2xx. Errors are counted
        and dropped (there is no transaction to tell)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """TU timers (Timer C, timed forking). Exceptions in `callback` are logged."""
        ...

    def local_via(self, transport: str) -> tuple[str, int]:
        """Our sent-by (host, port) for a Via over `transport` ("udp"/"tcp"/"tls")."""
        ...

    def local_uri(self, transport: str) -> SipURI:
        """Our own URI for Record-Route: sip:host:port;lr (+ ;transport=tcp/tls when not
        udp; sips: is not used, TLS is a transport param)."""
        ...

    def is_local(self, host: str, port: int | None) -> bool:
        """Is host:port one of our listening addresses? A None port matches the default
        port of any of our transports (5060 for udp/tcp, 5061 for tls)."""
        ...


class TransactionUser(Protocol):
    async def on_request(
        self,
        txn: ServerTransaction,
        request: Request,
        source: Target,
        cancelled: ServerTransaction | None,
    ) -> None:
        """A new server transaction. For CANCEL, `cancelled` is the INVITE transaction it
        matches (None if none: the TU answers 481)."""
        ...

    async def on_ack(self, request: Request, source: Target) -> None:
        """An ACK outside any transaction (ACK for a 2xx)."""
        ...

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        """A response on one of our client transactions."""
        ...

    def on_timeout(self, txn: ClientTransaction) -> None:
        """Timer B/F fired, or the transport failed, on one of our client transactions."""
        ...

    def on_stray_response(self, response: Response, source: Target) -> None:
        """A response matching no client transaction (e.g. 2xx retransmission)."""
        ...
