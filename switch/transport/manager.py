"""The asyncio side of SIP transport: sockets in, sockets out (RFC 3261 §18).

`TransportManager` owns the UDP socket, the TCP and TLS listeners and every stream
connection. It turns bytes into messages (parse, §18.2.1 Via fix-up, metrics), answers what
cannot be parsed, and hands the rest to one `Receiver` (the app's core). Sending takes a
message and a `Target`; it never blocks: a stream that must first be opened is connected in
a task and the message queued behind it. Failures come back as `Receiver.on_send_error`.

Connection reuse: every stream connection has a `conn_id`. A Target with a conn_id goes on
that connection (a device behind NAT is reached on the flow it registered from); without
one, any open connection to (transport, host, port) is reused, else one is opened.

Hardening (what one host can take from everyone else):
- Floods: every datagram, stream message and inbound connection is first counted per source
  address by a `FloodGuard` (switch.transport.flood); a source over `flood_limit` messages
  per `flood_window` is blocked and what it sends is dropped before parsing, counted in
  `sip_flood_dropped_total`, logged once per block. `set_exempt()` sets the run-time exempt
  addresses (the carrier gateways) on top of the configured ones.
- Connections: per-source limits, a first-message timeout and a short idle timeout until the
  connection is trusted, then the long keep-alive `idle_timeout` (the policy in
  switch.transport.admission, the registry and the sweeps in switch.transport.connections:
  the manager holds a `ConnectionTable`). Refusals and closes are counted by reason
  (`sip_connections_refused_total`, `sip_connections_closed_total`).

Overload: the manager holds an `OverloadGate` (switch.transport.overload_gate; the decision,
sans-IO, in switch.transport.overload). It probes the event-loop lag and the UDP queue delay
every 50 ms; while it refuses, a datagram that starts with "INVITE " (or the ACK of one of its
503s) is handed to it before parsing and may be answered 503 + Retry-After statelessly. The
manager keeps the gate's `_screen` flag itself: in normal operation the cost per datagram is
that one attribute test. `set_transaction_view` tells the gate what the layers above know.

Workers (`softswitch serve --workers N`): given `Siblings` and the `PreBound` sockets the
supervisor bound, the manager adopts them and holds a `SiblingRelay`
(switch.transport.sibling_relay) that receives on the worker's private port, relays what goes
on another worker's connection and forwards responses that belong to another worker
(switch/transport/siblings.py has the design). Without workers it is None: one attribute test.

The seam towards the transaction users: `mark_trusted(source)` — the Target a request came
from (its `conn_id` names the connection) carried a request the switch accepted (a REGISTER
answered 2xx, a call put through), so the connection gets the long keep-alive timeout. The
SipEndpoint calls it itself when it sends a 2xx to REGISTER or a 101-299 to INVITE on a
connection; a TU may call it (through SipEndpoint.mark_trusted) when it accepts a connection
by other means. It is a no-op for UDP, an unknown or closed connection, or one already
trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol, assert_never

from switch.eager import FaultLog
from switch.metrics import Metrics
from switch.sip.message import ParseError, Request, Response
from switch.sip.parser import is_keepalive, parse_message, partial_of
from switch.sip.target import Target

from .admission import Refusal
from .connections import ConnectionTable
from .flood import Blocked, FloodEvent, FloodGuard, Unblocked
from .overload_gate import OverloadGate
from .rules import error_response, fix_request_via
from .settings import TransportSettings, server_tls_context
from .sibling_relay import SiblingRelay
from .siblings import PreBound, Siblings
from .stream import Connection

__all__ = ["Receiver", "TransportManager", "TransportSettings", "server_tls_context"]

log = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)  # fmt: skip
_BIND_ATTEMPTS = 20  # ephemeral port: UDP port free but TCP taken -> try another (bounded)
_CONNECT_TIMEOUT = 10.0
_BACKLOG = 1024  # listen backlog: a burst of connects (an office rebooting) is not lost


class Receiver(Protocol):
    def on_message(self, message: Request | Response, source: Target) -> None: ...

    def on_send_error(self, target: Target) -> None: ...


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TransportManager:
    def __init__(
        self,
        receiver: Receiver,
        metrics: Metrics,
        settings: TransportSettings,
        siblings: Siblings | None = None,
    ) -> None:
        self.receiver = receiver
        self.metrics = metrics
        self.settings = settings
        self.bound: dict[str, tuple[str, int]] = {}  # "udp"/"tcp"/"tls" -> (host, port)
        # Workers (switch/transport/siblings.py): the private (host, port) of our Via
        self.private: tuple[str, int] | None = None
        self._private_tls_port: int | None = None
        self.udp_buffers: tuple[int, int] = (0, 0)  # (SO_RCVBUF, SO_SNDBUF) granted
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._pending: dict[tuple[str, str, int], list[tuple[bytes, Target]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count((siblings.conn_base if siblings is not None else 0) + 1)
        self._loop = asyncio.get_running_loop()
        self._counts = metrics.messages
        self._req_counts = metrics.messages.requests
        self._resp_counts = metrics.messages.responses
        self._udp_sources: dict[tuple[str, int], Target] = {}
        self._faults = FaultLog(log)
        self._limits = settings.limits
        self._conns = ConnectionTable(self._limits, settings.idle_timeout, metrics, self._fault)
        self._guard = FloodGuard(settings.flood, self._on_flood_event, self._loop.time())
        self._admit = self._guard.admit if settings.flood_limit else _admit_all
        self._exempt_flows: frozenset[tuple[str, int]] = frozenset()
        self._flood_tick: asyncio.TimerHandle | None = None
        metrics.watch_flood(self._flood_stats)
        self._udp_sock: socket.socket | None = None
        self._echo_addr: tuple[str, int] | None = None  # where the delay probes come from
        # The gate's own flag, kept here: the one attribute test per datagram (_datagram).
        self._screen = False  # look at INVITEs/ACKs before parsing them
        self._gate = OverloadGate(
            settings.overload, metrics, sendto=self._sendto,
            count_request=self._count_request, count_response=self._count_response,
            on_screen=self._set_screen, fault=self._fault,
        )  # fmt: skip
        self._relay = None if siblings is None else self._sibling_relay(siblings)

    def _sibling_relay(self, siblings: Siblings) -> SiblingRelay:
        return SiblingRelay(
            siblings, self.metrics, datagram=self._datagram, on_datagram=self._on_datagram,
            connection=self._conns.get, send_error=self.receiver.on_send_error,
            fault=self._fault,
        )  # fmt: skip

    # ------------------------------------------------------------------ start / stop
    async def start(
        self,
        sip: tuple[str, int],
        tls: tuple[str, int] | None,
        tls_ctx: ssl.SSLContext | None,
        prebound: PreBound | None = None,
    ) -> None:
        if prebound is not None:
            await self._adopt(prebound, tls_ctx)
        else:
            await self._bind_udp_tcp(*sip)
        if tls is not None and "tls" not in self.bound:
            assert tls_ctx is not None
            # The handshake happens before the connection is ours to count: bound it by
            # the first-message timeout (asyncio's default is 60 s).
            server = await self._loop.create_server(
                lambda: self._new_connection("tls"), tls[0], tls[1], ssl=tls_ctx,
                reuse_address=True, backlog=_BACKLOG,
                ssl_handshake_timeout=self._limits.first_message_timeout,
            )  # fmt: skip
            self._servers.append(server)
            self.bound["tls"] = server.sockets[0].getsockname()[:2]
        self._conns.start()
        self._gate.start(self._udp_sock, self.bound.get("udp"))
        self._echo_addr = self._gate.probe.address
        if self.settings.flood_limit:
            self._arm_flood_tick()

    async def _bind_udp_tcp(self, host: str, port: int) -> None:
        for _ in range(_BIND_ATTEMPTS):
            sock = self._udp_socket(host, port)
            udp_port = sock.getsockname()[1]
            try:
                server = await self._loop.create_server(
                    lambda: self._new_connection("tcp"),
                    host,
                    udp_port,
                    reuse_address=True,
                    backlog=_BACKLOG,
                )
            except OSError as exc:
                sock.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            self._udp, _ = await self._loop.create_datagram_endpoint(
                lambda: _Udp(self._on_datagram), sock=sock
            )
            self._servers.append(server)
            self._udp_sock = sock
            self.bound["udp"] = sock.getsockname()[:2]
            self.bound["tcp"] = server.sockets[0].getsockname()[:2]
            return
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")

    def via_port(self, transport: str) -> int | None:
        """A worker's private port for `transport` (its Via and Record-Route), else None."""
        if self.private is None:
            return None
        return self._private_tls_port if transport.lower() == "tls" else self.private[1]

    async def _adopt(self, pb: PreBound, tls_ctx: ssl.SSLContext | None) -> None:
        """A worker's sockets, bound by the parent (switch/transport/siblings.py)."""
        loop = self._loop
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_datagram), sock=pb.udp
        )
        relay = self._relay
        assert relay is not None, "a worker's sockets come with its siblings"
        relay.udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(relay.on_datagram), sock=pb.private_udp
        )
        streams: list[tuple[str, socket.socket, ssl.SSLContext | None]] = [
            ("tcp", pb.tcp, None),
            ("tcp", pb.private_tcp, None),
        ]
        if pb.tls is not None:
            assert tls_ctx is not None
            streams.append(("tls", pb.tls, tls_ctx))
        if pb.private_tls is not None:
            streams.append(("tls", pb.private_tls, tls_ctx))
            self._private_tls_port = int(pb.private_tls.getsockname()[1])
        for name, sock, ctx in streams:
            server = await loop.create_server(
                functools.partial(self._new_connection, name), sock=sock, ssl=ctx,
                backlog=_BACKLOG,
                ssl_handshake_timeout=self._limits.first_message_timeout if ctx else None,
            )  # fmt: skip
            self._servers.append(server)
        self.bound["udp"] = pb.udp.getsockname()[:2]
        self.bound["tcp"] = pb.tcp.getsockname()[:2]
        if pb.tls is not None:
            self.bound["tls"] = pb.tls.getsockname()[:2]
        self.private = pb.private_udp.getsockname()[:2]
        self.udp_buffers = (
            pb.udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            pb.udp.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )

    def _udp_socket(self, host: str, port: int) -> socket.socket:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(info[0], socket.SOCK_DGRAM)
        want = self.settings.udp_buffer_bytes
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            if want:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, want)
                except OSError as exc:  # pragma: no cover - kernel policy
                    log.warning("cannot set UDP buffer %s: %s", opt, exc)
        self.udp_buffers = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        sock.setblocking(False)
        try:
            sock.bind(info[4])
        except OSError:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        self._conns.stop()
        if self._flood_tick is not None:
            self._flood_tick.cancel()
        self._gate.close()
        for server in self._servers:
            server.close()
        conns = list(self._conns.by_id.values())
        for conn in conns:
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._relay is not None:
            self._relay.close()
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=2.0)
        for server in self._servers:
            await server.wait_closed()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    # ------------------------------------------------------------------ receiving
    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        # The receive boundary: whatever one datagram causes stays with that datagram (an
        # exception escaping datagram_received would make the loop close the UDP socket).
        # The flood guard comes first: a blocked source costs one dict update, no parsing.
        try:
            if addr == self._echo_addr or addr in self._exempt_flows or self._admit(addr[0]):
                self._datagram(data, addr)
        except Exception:
            self._fault("udp-receive")

    def _set_screen(self, on: bool) -> None:
        self._screen = on

    def _fault(self, where: str) -> None:
        self.metrics.internal_errors_total.labels(where).inc()
        self._faults.record(where)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_keepalive(data):
            if addr[:2] == self._echo_addr:
                self._gate.probe.received(len(data))
            return
        if self._screen and self._gate.screened(data, addr):
            return
        # Peers are few and send many datagrams: one (immutable) Target per address, not a
        # frozen-dataclass construction per datagram. Bounded against address churn.
        source = self._udp_sources.get(addr)
        if source is None:
            if len(self._udp_sources) >= 4096:
                self._udp_sources.clear()
            source = self._udp_sources[addr] = Target("udp", addr[0], addr[1])
        try:
            message = parse_message(data, max_size=self.settings.max_message_bytes)
        except ParseError as exc:
            self._parse_error(exc, source, None, data.startswith(b"SIP/"))
            return
        if self._relay is not None and self._relay.for_sibling(message, data):
            return
        self._deliver(message, source)

    def _deliver(self, message: Request | Response, source: Target) -> None:
        if isinstance(message, Request):
            try:
                fix_request_via(message, source)
            except ParseError as exc:
                self._parse_error(exc, source, None, False)
                return
            self._count_request(message.method)
        else:
            self._count_response(message.status, "received")
        self.receiver.on_message(message, source)

    # sip_requests_total / sip_responses_total are plain dict counters (switch.metrics
    # MessageCounts), exposed at scrape time: a prometheus Counter child's inc() takes a lock.
    def _count_request(self, method: str) -> None:
        label = method if method in KNOWN_METHODS else "other"
        try:
            self._req_counts[label] += 1
        except KeyError:
            self._counts.first_request(label)

    def _count_response(self, status: int, direction: str) -> None:
        try:
            self._resp_counts[(status, direction)] += 1
        except KeyError:
            self._counts.first_response((status, direction))

    def _parse_error(
        self, exc: ParseError, source: Target, conn: Connection | None, looks_like_response: bool
    ) -> None:
        transport = source.transport
        self.metrics.parse_errors_total.labels(transport, str(exc.status_hint)).inc()
        reply = None if looks_like_response else error_response(exc)
        if reply is None:
            reason = (
                "unparseable_response"
                if _is_response(exc, looks_like_response)
                else ("unparseable_request")
            )
            self.metrics.messages_dropped_total.labels(reason).inc()
            log.debug("dropped unparseable message from %s: %s", source, exc)
            return
        self._count_response(reply.status, "sent")
        data = reply.to_bytes()
        if conn is not None:
            conn.write(data)
        else:
            self._sendto(data, (source.host, source.port))

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._udp is not None:  # to the source address, rport style
            with contextlib.suppress(OSError, ValueError):
                self._udp.sendto(data, addr)

    # StreamOwner
    def connection_made(self, conn: Connection) -> bool:
        try:
            return self._admit_connection(conn)
        except Exception:
            self._fault(f"{conn.name}-accept")
            return False

    def _admit_connection(self, conn: Connection) -> bool:
        assert conn.peer is not None
        host = conn.peer.host
        if not conn.outbound and self._guard.is_exempt(host):
            conn.state.trusted = True  # a carrier gateway: no per-source limits, no timeouts
        refusal = None if conn.outbound or self._admit(host) else Refusal.FLOOD_BLOCKED
        return self._conns.admit(conn, refusal)

    def connection_lost(self, conn: Connection) -> None:
        self._conns.lost(conn)

    def stream_message(self, message: Request | Response, conn: Connection) -> None:
        assert conn.peer is not None
        try:
            if not self._admit(conn.peer.host):
                return
            if self._relay is not None and self._relay.for_sibling(message, None):
                return
            if self._screen and self._gate.screened_stream(message, conn):
                return
            self._deliver(message, conn.peer)
        except Exception:
            self._fault(f"{conn.name}-receive")

    def stream_error(self, error: ParseError, conn: Connection) -> None:
        assert conn.peer is not None
        self._parse_error(error, conn.peer, conn, False)

    # ------------------------------------------------------------------ trust (the TU seam)
    def mark_trusted(self, source: Target) -> bool:
        """The connection `source` came on carried a request the switch accepted: it gets
        the long keep-alive idle timeout from now on. True if `source` names an open
        connection (trusted now or before); False for UDP or a connection that is gone."""
        return self._conns.mark_trusted(source)

    def is_trusted(self, source: Target) -> bool:
        return self._conns.is_trusted(source)

    def set_exempt_flows(self, flows: Iterable[tuple[str, int]]) -> None:
        """UDP peers (address, port) never counted by the flood guard: our own media service
        sends a BYE per call from one port, at the service's own rate. An exact flow, not
        the address: phones on the same host (loopback in tests, a shared address) stay
        limited. Replaces the previous set."""
        self._exempt_flows = frozenset(flows)

    def set_exempt(self, sources: Iterable[str]) -> None:
        """The run-time exempt addresses (e.g. every carrier gateway's allowed_sources), on
        top of `[security] exempt`: never flood-blocked, their connections trusted from the
        start. Replaces the previous run-time set. Entries: addresses, networks, or
        "address:port" (the port is ignored). ValueError for anything else."""
        self._guard.set_exempt(sources)

    def set_transaction_view(
        self,
        find_server: Callable[[Request], object],
        pending_invites: Callable[[], int],
        routing_delay: Callable[[float], float] = lambda now: 0.0,
    ) -> None:
        """What the overload gate asks the layers above: the server transaction a request
        belongs to (an INVITE that has one is a retransmission: never refused), the INVITEs
        without a final response (for `max_pending_invites`), and how long the oldest new
        INVITE still being routed has waited (a measured delay, as the loop lag)."""
        self._gate.set_transaction_view(find_server, pending_invites, routing_delay)

    # ------------------------------------------------------------------ floods
    def _on_flood_event(self, event: FloodEvent) -> None:
        match event:
            case Blocked(source=source):
                log.warning(
                    "SIP flood from %s: more than %d messages within %g s; dropping all it "
                    "sends until it stays under that for %g s",
                    source, event.limit, event.window, event.block,
                )  # fmt: skip
                self._conns.close_untrusted_from(source)
            case Unblocked(source=source):
                log.warning(
                    "SIP flood from %s is over: served again after %.1f s blocked, "
                    "%d messages dropped",
                    source, event.seconds, event.dropped,
                )  # fmt: skip
            case _:
                assert_never(event)

    def _arm_flood_tick(self) -> None:
        self._flood_tick = self._loop.call_later(self._guard.tick_interval, self._on_flood_tick)

    def _on_flood_tick(self) -> None:
        try:
            self._guard.tick(self._loop.time())
        except Exception:
            self._fault("flood-tick")
        self._arm_flood_tick()

    def _flood_stats(self) -> tuple[int, int, int]:
        """(blocks started, messages dropped, sources blocked now) for /metrics."""
        g = self._guard
        return g.blocks, g.dropped, g.blocked_sources()

    def _new_connection(self, name: str, outbound: bool = False) -> Connection:
        size = self.settings.max_message_bytes
        return Connection(self, name, next(self._ids), size, outbound=outbound)

    # ------------------------------------------------------------------ sending
    def send(self, message: Request | Response, target: Target) -> None:
        """Send now (UDP, open stream) or after connecting. Errors -> on_send_error."""
        if isinstance(message, Response):
            self._count_response(message.status, "sent")
        data = message.to_bytes()
        if target.transport == "udp":
            self._send_udp(data, target)
        else:
            self._send_stream(data, target)

    def _send_udp(self, data: bytes, target: Target) -> None:
        if self._udp is None or self._udp.is_closing():
            self._loop.call_soon(self.receiver.on_send_error, target)
            return
        try:
            self._udp.sendto(data, (target.host, target.port))
        except (OSError, ValueError, TypeError) as exc:
            # uvloop raises ValueError (not OSError) for a destination it cannot use as is:
            # a host name, a bracketed or IPv6 literal on an IPv4 socket. Either way the
            # message is lost and its transaction must hear of it, like any send failure.
            log.debug("udp send to %s failed: %s", target, exc)
            self._loop.call_soon(self.receiver.on_send_error, target)

    def connection_for(self, target: Target) -> Connection | None:
        """The open connection a Target designates: its conn_id, else any to host:port."""
        return self._conns.find(target)

    def _send_stream(self, data: bytes, target: Target) -> None:
        if self._relay is not None and self._relay.relay_elsewhere(data, target):
            return
        conn = self.connection_for(target)
        if conn is not None:
            conn.write(data)
            return
        if target.conn_id is not None:
            # The flow is gone; the caller decides about fallbacks (§18.2.2 for responses).
            self._loop.call_soon(self.receiver.on_send_error, target)
            return
        key = (target.transport, target.host, target.port)
        queue = self._pending.get(key)
        if queue is not None:
            queue.append((data, target))
            return
        self._pending[key] = [(data, target)]
        task = self._loop.create_task(self._connect(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: tuple[str, str, int]) -> None:
        name, host, port = key
        ctx = None
        if name == "tls":
            ctx = self.settings.client_tls or ssl.create_default_context()
        conn: Connection | None = None
        try:
            if len(self._conns) >= self.settings.max_connections:
                raise OSError(errno.EMFILE, "connection limit reached")
            _, proto = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: self._new_connection(name, outbound=True), host, port, ssl=ctx
                ),
                _CONNECT_TIMEOUT,
            )
            conn = proto if proto.registered else None
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.info("connect to %s:%s over %s failed: %s", host, port, name, exc)
        queue = self._pending.pop(key, [])
        for data, target in queue:
            if conn is not None and conn.write(data):
                continue
            self.receiver.on_send_error(target)

    def connection_count(self) -> int:
        return len(self._conns)


def _admit_all(source: str) -> bool:
    return True


def _is_response(exc: ParseError, looks_like_response: bool) -> bool:
    return looks_like_response or isinstance(partial_of(exc), Response)
