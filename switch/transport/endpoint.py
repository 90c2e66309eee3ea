"""The asyncio endpoint of the SIP stack: transports, the transaction layer and the
transaction users, glued together.

`SipEndpoint` is the `Receiver` of the TransportManager and the `Sender` of the TUs
(switch/tu.py). It feeds every received message to the sans-IO TransactionLayer with the loop
time, carries out the events that come back (send, dispatch to a TU) and keeps exactly one
`loop.call_at` timer armed at `layer.get_timer()`.

Dispatch: requests by `users` (a switch.tu.TuTable: REGISTER -> registrar, SUBSCRIBE for
message-summary -> the MWI notifier, the rest -> the proxy in the switch; everything -> the
media user agent in a media process). Responses and timeouts go to the TU that sent the
request, stray responses and ACKs for 2xx to the default TU.

Containment: nothing raised while handling one message or one timer escapes (the event loop
would close the UDP socket, or the timer would stay unarmed): it is counted in
`sip_internal_errors_total{where}` and logged once a minute per place.

Trusted connections: a TCP/TLS connection that carried a request the switch accepted gets
the long keep-alive idle timeout (switch.transport.admission). The endpoint sees every
response it sends, so it marks the connection itself: a 2xx to REGISTER (the registrar only
sends one after digest authentication) or a 101-299 to INVITE (the call was authenticated
or came from a carrier, and is being put through). `mark_trusted(source)` is the same call
for a TU that accepts a connection by other means.

Hot path: TU coroutines are stepped synchronously (`run_eager`); only a coroutine that
actually suspends (a network state backend) becomes an asyncio task. With the memory state
nothing suspends, so a REGISTER costs no task at all.

Backlog: a new INVITE whose TU suspended (waiting on Redis) is remembered with the time it
arrived until its TU coroutine ends; `routing_delay(now)` is the age of the oldest one while
at least `ROUTING_BACKLOG` (4) wait (fewer: a backend outage, not load). On a
network state backend the work that does not fit waits there, not in the UDP queue, so the
overload control (switch.transport.overload) samples it with the loop lag and the queue.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from switch.eager import FaultLog, run_eager
from switch.metrics import Metrics
from switch.sip.events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
)
from switch.sip.message import Request, Response, SipURI, make_response
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction, TransactionLayer
from switch.tu import Cancellable, Sender, TransactionUser, TuTable, Unavailable

from .manager import TransportManager
from .rules import DEFAULT_PORTS, response_fallback

__all__ = ["SipEndpoint"]

log = logging.getLogger(__name__)

ROUTING_BACKLOG = 4  # INVITEs waiting in suspended TUs before their age counts as load

_FAULT_LOG_INTERVAL = 60.0  # seconds between tracebacks logged for one kind of fault


class SipEndpoint:
    """Receiver (for the TransportManager) and Sender (for the TUs)."""

    def __init__(
        self,
        layer: TransactionLayer,
        metrics: Metrics,
        *,
        advertised_host: str | None = None,
    ) -> None:
        self.layer = layer
        self.metrics = metrics
        self.advertised_host = advertised_host
        self.transports: TransportManager | None = None
        self.users = TuTable()
        self._owners: dict[ClientTransaction, TransactionUser] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._local_hosts: set[str] = set()
        self._local_ports: set[int] = set()
        self._local_via: dict[str, tuple[str, int]] = {}
        self._faults = FaultLog(log, _FAULT_LOG_INTERVAL, self._loop.time)
        self._routing: dict[asyncio.Task[None], float] = {}  # INVITE TU tasks -> arrival

    def attach(self, transports: TransportManager) -> None:
        """Called once the transports are bound: learn our own addresses."""
        self.transports = transports
        transports.set_transaction_view(
            self.layer.find_server, lambda: self.layer.pending_invites, self.routing_delay
        )
        self._local_via.clear()
        for name, (host, port) in transports.bound.items():
            self._local_ports.add(port)
            private = transports.via_port(name)
            if private is not None:  # a worker's private port (siblings.py)
                self._local_ports.add(private)
            self._local_hosts |= _host_aliases(host)
        if self.advertised_host:
            self._local_hosts.add(self.advertised_host.lower())

    # ------------------------------------------------------------------ Receiver
    def on_message(self, message: Request | Response, source: Target) -> None:
        try:
            events = self.layer.receive(message, source, self._loop.time())
        except Exception:
            self._fault("receive")
            events = []
        self._process(events)

    def on_send_error(self, target: Target) -> None:
        self.metrics.messages_dropped_total.labels("send_error").inc()
        try:
            events = self.layer.transport_error(target, self._loop.time())
        except Exception:
            self._fault("transport-error")
            events = []
        self._process(events)

    # ------------------------------------------------------------------ events
    def _process(self, events: list[Event]) -> None:
        """Carry out the layer's events. Nothing raised while handling one event may stop
        the others or leave the single timer unarmed: a timer that is not re-armed freezes
        every transaction's retransmissions and timeouts until the next packet arrives."""
        try:
            for event in events:
                try:
                    self._handle(event)
                except Exception:
                    self._fault(type(event).__name__)
        finally:
            self._rearm()

    def _handle(self, event: Event) -> None:
        if isinstance(event, SendMessage):
            self._transmit(event.message, event.target)
        elif isinstance(event, RequestReceived):
            self._dispatch_request(event)
        elif isinstance(event, ResponseReceived):
            tu = self._owner(event.txn)
            if tu is not None:
                tu.on_response(event.txn, event.response, event.source)
        elif isinstance(event, AckReceived):
            if self.users.default is not None:
                run_eager(self.users.default.on_ack(event.request, event.source))
        elif isinstance(event, StrayResponse):
            tu = self._owner(event.txn) if event.txn is not None else self.users.default
            if tu is not None:
                tu.on_stray_response(event.response, event.source, event.txn)
        elif isinstance(event, TransactionTimeout):
            tu = self._owner(event.txn)
            if tu is not None:
                tu.on_timeout(event.txn)
        elif (
            isinstance(event, TransactionTerminated)
            and self._owners
            and isinstance(event.txn, ClientTransaction)
        ):
            self._owners.pop(event.txn, None)

    def _owner(self, txn: ClientTransaction) -> TransactionUser | None:
        """The TU that sent the request of a client transaction (the default TU unless it
        was sent through another TU's `sender_for` handle)."""
        return self._owners.get(txn, self.users.default) if self._owners else self.users.default

    def _fault(self, where: str) -> None:
        """A bug or an unexpected input while handling one message or timer: counted in
        `sip_internal_errors_total{where}`, logged with its traceback at most once a minute
        per place (switch.eager.FaultLog), and contained: the caller goes on."""
        self.metrics.internal_errors_total.labels(where).inc()
        self._faults.record(where)

    def _dispatch_request(self, ev: RequestReceived) -> None:
        req = ev.request
        event = req.headers.get("Event") if req.method in ("SUBSCRIBE", "NOTIFY") else None
        tu = self.users.for_request(req.method, event)
        if tu is None:
            self.send_response(ev.txn, make_response(req, 503))
            return
        now = self._loop.time()
        task = run_eager(self._guarded(tu, ev))
        if task is not None and req.method == "INVITE":
            self._routing[task] = now
            task.add_done_callback(self._routing_done)

    def _routing_done(self, task: asyncio.Task[None]) -> None:
        self._routing.pop(task, None)

    def routing_delay(self, now: float) -> float:
        """How long the oldest INVITE still in its TU's hands (suspended) has waited, once
        `ROUTING_BACKLOG` of them wait: a backlog is load; one or two INVITEs waiting long
        are a slow or unreachable backend, which its own timeout and breaker answer (503
        with Retry-After) and which must not make the switch shed calls after it recovers."""
        if len(self._routing) < ROUTING_BACKLOG:
            return 0.0
        return now - next(iter(self._routing.values()))  # insertion order: oldest first

    async def _guarded(self, tu: TransactionUser, ev: RequestReceived) -> None:
        """A TU that fails must not leave the transaction unanswered: 500 (§8.2.6), or 503
        with Retry-After when what it depends on is unreachable for now (its shared state,
        a peer service) — a temporary condition the phone should retry (§21.5.4), not a bug."""
        try:
            await tu.on_request(ev.txn, ev.request, ev.source, ev.cancelled)
        except Unavailable as exc:
            log.warning("%s: unavailable on %s: %s", type(tu).__name__, ev.request.method, exc)
            self.metrics.messages_dropped_total.labels(reason="state-unavailable").inc()
            self._answer_failure(ev, exc.status_hint, [("Retry-After", str(exc.retry_after))])
        except Exception:
            self._fault(f"{type(tu).__name__}.on_request")
            self._answer_failure(ev, 500, [])

    def _answer_failure(
        self, ev: RequestReceived, status: int, headers: list[tuple[str, str]]
    ) -> None:
        last = ev.txn.last_response
        if last is None or last.status < 200:
            self.send_response(ev.txn, make_response(ev.request, status, headers=headers))

    def _transmit(self, message: Request | Response, target: Target) -> None:
        assert self.transports is not None
        if isinstance(message, Response) and target.conn_id is not None:
            if self.transports.connection_for(target) is None:
                # §18.2.2: the connection is gone; open one to received/sent-by instead.
                target = response_fallback(message.top_via, target.transport)
            elif _accepts(message):
                self.transports.mark_trusted(target)
        self.transports.send(message, target)

    def mark_trusted(self, source: Target) -> bool:
        """The connection `source` (a request's source Target) carried a request the
        switch accepted: it keeps the long keep-alive idle timeout from now on (see
        TransportManager.mark_trusted). False for UDP or a connection that is gone."""
        assert self.transports is not None
        return self.transports.mark_trusted(source)

    # ------------------------------------------------------------------ the one timer
    def _rearm(self) -> None:
        deadline = self.layer.get_timer()
        armed = self._timer_at
        if deadline == armed:
            return
        if armed is not None and (deadline is None or armed < deadline):
            # The earliest timer was cancelled (a response stopped a retransmission timer):
            # the armed wake-up is early, not late. Keep it rather than cancel and arm a loop
            # timer for nearly every message; when it fires nothing is due, and _on_timer
            # arms the real deadline.
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            events = self.layer.handle_timer(self._loop.time())
        except Exception:
            self._fault("timer")
            events = []
        self._process(events)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ Sender
    def now(self) -> float:
        return self._loop.time()

    def send_response(self, txn: ServerTransaction, response: Response) -> None:
        self._process(self.layer.send_response(txn, response, self._loop.time()))

    def send_request(
        self, request: Request, target: Target, user_data: object = None
    ) -> ClientTransaction:
        txn, events = self.layer.send_request(request, target, self._loop.time(), user_data)
        self._process(events)
        return txn

    def sender_for(self, tu: TransactionUser) -> Sender:
        """The Sender a TU other than the default one uses, so that the responses to its
        requests come back to it rather than to the default TU."""
        if tu is self.users.default:
            return self
        return _OwnedSender(self, tu)

    def _send_owned(
        self, tu: TransactionUser, request: Request, target: Target, user_data: object
    ) -> ClientTransaction:
        txn, events = self.layer.send_request(request, target, self._loop.time(), user_data)
        self._owners[txn] = tu
        self._process(events)
        return txn

    def send_stateless(self, message: Request | Response, target: Target) -> None:
        self._transmit(message, target)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self._loop.call_later(delay, _logged, callback)

    def local_via(self, transport: str) -> tuple[str, int]:
        # Called for every request the proxy forwards: the answer only depends on the bound
        # addresses (fixed once attached), so it is worked out once per transport name.
        hit = self._local_via.get(transport)
        if hit is not None:
            return hit
        host, port = self._bound(transport)
        assert self.transports is not None
        port = self.transports.via_port(transport) or port  # a worker's private port
        hit = self._public_host(host), port
        if len(self._local_via) < 16:  # transport names are few; never let junk grow it
            self._local_via[transport] = hit
        return hit

    def _bound(self, transport: str) -> tuple[str, int]:
        assert self.transports is not None
        name = transport.lower()
        return self.transports.bound.get(name) or self.transports.bound["udp"]

    def local_uri(self, transport: str) -> SipURI:
        """Our Record-Route URI: the Via's address, so that a worker's dialogs come back to
        it (switch/transport/siblings.py)."""
        host, port = self.local_via(transport)
        params: dict[str, str | None] = {"lr": None}
        if transport.lower() != "udp":
            params = {"transport": transport.lower(), "lr": None}
        return SipURI(host=_uri_host(host), port=port, params=params)

    def is_local(self, host: str, port: int | None) -> bool:
        bare = host[1:-1] if host.startswith("[") else host
        if bare.lower() not in self._local_hosts:
            return False
        if port is None:
            return bool(self._local_ports & {DEFAULT_PORTS["udp"], DEFAULT_PORTS["tls"]})
        return port in self._local_ports

    def _public_host(self, bound: str) -> str:
        if self.advertised_host:
            return self.advertised_host
        if _unspecified(bound):
            return _primary_address(bound)
        return bound


_timer_faults = FaultLog(log)


def _logged(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        _timer_faults.record("TU timer callback")


def _accepts(response: Response) -> bool:
    """Does sending this response mean the switch accepted the request: a 2xx to REGISTER,
    or a 101-299 to INVITE (not 100 Trying, which is sent before authentication)?"""
    status = response.status
    if not 101 <= status < 300:
        return False
    method = response.cseq.method
    return method == "INVITE" or (method == "REGISTER" and status >= 200)


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_aliases(bound: str) -> set[str]:
    hosts = {bound.lower()}
    if _unspecified(bound):
        hosts |= {"127.0.0.1", "::1", "localhost", _primary_address(bound)}
    elif bound in ("127.0.0.1", "::1"):
        hosts.add("localhost")
    return hosts


def _primary_address(bound: str) -> str:
    """The address this host would use towards the outside (no packet is sent: a UDP
    connect only selects a route). Falls back to loopback."""
    family = socket.AF_INET6 if ":" in bound else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class _OwnedSender:
    """A SipCore seen by a non-default TU: every call goes to the core, but the client
    transactions it starts remember their owner."""

    __slots__ = ("_core", "_tu")

    def __init__(self, core: SipEndpoint, tu: TransactionUser) -> None:
        self._core = core
        self._tu = tu

    def send_request(
        self, request: Request, target: Target, user_data: object = None
    ) -> ClientTransaction:
        return self._core._send_owned(self._tu, request, target, user_data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)
