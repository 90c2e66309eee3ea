"""The seam between the SIP core glue (transports + transaction layer, switch/transport) and
the transaction users (registrar, proxy, media user agent, MWI notifier).

The glue owns the sockets and the TransactionLayer; a transaction user (TU) never touches
either. The glue calls a TU through `TransactionUser`; the TU acts through `Sender`. Neither
side imports the other: both import this module.

Dispatch (`TuTable`): each request goes to the TU registered for its method (for SUBSCRIBE
and NOTIFY, for its method and Event package), else to the default TU; the composition root
(switch/app.py, media/app.py) fills the table. ACK for non-2xx is absorbed by the
transaction layer; ACK for 2xx (end-to-end, no transaction) arrives at the default TU's
`on_ack`. Responses to client transactions arrive at the TU that sent the request
(`on_response`/`on_timeout`: the glue remembers it per client transaction); responses that
match no transaction at the default TU's `on_stray_response`, with the transaction (RFC 6026
Accepted state) when one matched.

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
    from switch.sip.target import Target
    from switch.sip.transaction import ClientTransaction, ServerTransaction

__all__ = ["Cancellable", "Sender", "TransactionUser", "TuTable", "Unavailable"]


class Unavailable(Exception):
    """A TU cannot serve now for a reason that will pass (its shared state or a peer service
    is unreachable): the glue answers 503 with Retry-After (RFC 3261 §21.5.4), never 500."""

    status_hint = 503
    retry_after = 5


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

    def on_stray_response(
        self, response: Response, source: Target, txn: ClientTransaction | None
    ) -> None:
        """A response the transaction layer hands over outside the normal flow: a further 2xx
        on an INVITE client transaction in the Accepted state (`txn` set: RFC 6026 §8.4, a
        2xx retransmission or another fork's 2xx), or a response matching no client
        transaction at all (`txn` None)."""
        ...


class TuTable:
    """Which TU gets a request: by method (and Event package for SUBSCRIBE/NOTIFY), else the
    default. Built once at start-up; lookups are one dict access per request."""

    __slots__ = ("_by_event", "_by_method", "default")

    def __init__(self, default: TransactionUser | None = None) -> None:
        self.default = default
        self._by_method: dict[str, TransactionUser] = {}
        self._by_event: dict[tuple[str, str], TransactionUser] = {}

    def add(self, method: str, tu: TransactionUser, *, event: str | None = None) -> None:
        if event is None:
            self._by_method[method.upper()] = tu
        else:
            self._by_event[(method.upper(), event.lower())] = tu

    def for_request(self, method: str, event: str | None) -> TransactionUser | None:
        if self._by_event and event is not None:
            tu = self._by_event.get((method, event.split(";", 1)[0].strip().lower()))
            if tu is not None:
                return tu
        return self._by_method.get(method, self.default)

    def users(self) -> list[TransactionUser]:
        """Every distinct TU in the table (the default first)."""
        seen: list[TransactionUser] = [] if self.default is None else [self.default]
        for tu in [*self._by_method.values(), *self._by_event.values()]:
            if all(tu is not s for s in seen):
                seen.append(tu)
        return seen
