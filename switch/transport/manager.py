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
  connection is trusted, then the long keep-alive `idle_timeout` (switch.transport.admission).
  Refusals and closes are counted by reason (`sip_connections_refused_total`,
  `sip_connections_closed_total`).

Overload (switch.transport.overload): a probe every 50 ms measures the event-loop lag and
the UDP queue delay (a CRLF datagram sent from a socket of our own to the SIP socket, timed
until it is read) and feeds the `OverloadControl`. While it refuses, a datagram that
starts with "INVITE " has only its start line and header fields read (`parse_head`); a new
out-of-dialog INVITE that matches no server transaction (`set_transaction_view`) may then be
answered 503 + Retry-After right here, statelessly, and the ACK of that 503 is dropped as
unparsed as it came. Everything else takes the normal path. In normal operation the cost per
datagram is one attribute test (`_screen`).

Workers (`softswitch serve --workers N`): given `Siblings` and the `PreBound` sockets the
supervisor bound, the manager adopts them, receives on its private port too, relays what goes
on another worker's connection and forwards responses that belong to another worker
(switch/transport/siblings.py has the design).

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
import secrets
import socket
import ssl
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Protocol, assert_never

from prometheus_client import Counter

from switch.eager import FaultLog
from switch.metrics import Metrics, OverloadSample
from switch.sip.message import ParseError, Request, Response, make_response
from switch.sip.parser import is_keepalive, parse_head, parse_message, partial_of
from switch.sip.target import Target

from .admission import CloseReason, Refusal, SourceBook, close_reason
from .flood import Blocked, FloodEvent, FloodGuard, Unblocked
from .overload import OverloadControl
from .rules import error_response, fix_request_via
from .settings import TransportSettings, server_tls_context
from .siblings import RELAY, RELAY_FAILED, PreBound, Siblings
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
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 4.6; Python does not name it
_MEMINFO = struct.Struct("9I")  # sk_meminfo: [0] rmem_alloc (queued bytes), [1] rcvbuf
_ACK_WINDOW = 32.0  # s (64*T1): how long the ACKs of the 503s refused are looked for
_ECHO_SLOTS = 32  # delay probes told apart (by their length: 2 + slot CRLFs) on their way
_MAX_RELAY = 65_000  # one loopback datagram


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
        self._siblings = siblings
        self._private_udp: asyncio.DatagramTransport | None = None
        self._handovers = _handover_counter(metrics) if siblings is not None else None
        self.udp_buffers: tuple[int, int] = (0, 0)  # (SO_RCVBUF, SO_SNDBUF) granted
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, Connection] = {}
        self._by_addr: dict[tuple[str, str, int], dict[int, Connection]] = {}
        self._pending: dict[tuple[str, str, int], list[tuple[bytes, Target]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count((siblings.conn_base if siblings is not None else 0) + 1)
        self._sweep: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._counts = metrics.messages
        self._req_counts = metrics.messages.requests
        self._resp_counts = metrics.messages.responses
        self._udp_sources: dict[tuple[str, int], Target] = {}
        self._faults = FaultLog(log)
        self._limits = settings.limits
        self._book = SourceBook(self._limits)
        self._untrusted: dict[int, Connection] = {}  # swept often; the rest every 30 s
        self._untrusted_sweep: asyncio.TimerHandle | None = None
        self._guard = FloodGuard(settings.flood, self._on_flood_event, self._loop.time())
        self._admit = self._guard.admit if settings.flood_limit else _admit_all
        self._exempt_flows: frozenset[tuple[str, int]] = frozenset()
        self._flood_tick: asyncio.TimerHandle | None = None
        metrics.watch_flood(self._flood_stats)
        self._overload = OverloadControl(settings.overload)
        self._udp_sock: socket.socket | None = None
        self._probe: asyncio.TimerHandle | None = None
        self._probe_due = 0.0
        self._echo: socket.socket | None = None  # sends the UDP delay probes
        self._echo_addr: tuple[str, int] | None = None
        self._echo_times = [0.0] * _ECHO_SLOTS  # send time of probe n at n % _ECHO_SLOTS
        self._echo_next = 0  # sequence number of the next probe
        self._echo_oldest = 0  # the oldest probe still on its way (== next: none)
        self._echo_delay = 0.0  # the longest a probe took since the last sample
        self._screen = self._overload.armed  # look at INVITEs/ACKs before parsing them
        self._refusal_tag = "ovl" + secrets.token_hex(3)  # To tag prefix of our 503s
        self._refusal_tag_b = self._refusal_tag.encode()
        self._acks_until = 0.0  # ACKs of our 503s are looked for until then
        self._find_server: Callable[[Request], object] = _nothing
        self._pending_invites: Callable[[], int] = _zero
        self._routing_delay: Callable[[float], float] = lambda now: 0.0
        metrics.watch_overload(self._overload_stats)

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
        self._arm_sweep()
        self._arm_untrusted_sweep()
        self._open_echo()
        self._arm_probe()
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
        self._private_udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_private_datagram), sock=pb.private_udp
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
        for timer in (self._sweep, self._untrusted_sweep, self._flood_tick, self._probe):
            if timer is not None:
                timer.cancel()
        if self._echo is not None:
            self._echo.close()
        for server in self._servers:
            server.close()
        conns = list(self._conns.values())
        for conn in conns:
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        for udp in (self._udp, self._private_udp):
            if udp is not None:
                udp.close()
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

    def _on_private_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """The worker's private port: responses to what it sent, and relays from the other
        workers (switch/transport/siblings.py)."""
        if data[:5] in (RELAY, RELAY_FAILED):
            try:
                self._relayed(data, addr)
            except Exception:
                self._fault("relay-receive")
            return
        if self._siblings is not None and self._siblings.is_sibling(addr):
            try:  # a response forwarded by another worker: not a flood from our own address
                self._datagram(data, addr)
            except Exception:
                self._fault("udp-receive")
            return
        self._on_datagram(data, addr)

    def _relayed(self, data: bytes, addr: tuple[str, int]) -> None:
        opened = self._siblings.open(data, addr) if self._siblings is not None else None
        if opened is None:
            self.metrics.messages_dropped_total.labels("relay_refused").inc()
            return
        target, body = opened
        if data.startswith(RELAY_FAILED):
            self._handed_over("relay_failed")
            self.receiver.on_send_error(target)
            return
        conn = self._conns.get(target.conn_id) if target.conn_id is not None else None
        if conn is None or not conn.open or not conn.write(body):
            assert self._siblings is not None and self._private_udp is not None
            failed = self._siblings.envelope(RELAY_FAILED, target)
            with contextlib.suppress(OSError, ValueError):
                self._private_udp.sendto(failed, addr)
            return
        self._handed_over("relay_written")

    def _handed_over(self, kind: str) -> None:
        if self._handovers is not None:
            self._handovers.labels(kind).inc()

    def _fault(self, where: str) -> None:
        self.metrics.internal_errors_total.labels(where).inc()
        self._faults.record(where)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_keepalive(data):
            if addr[:2] == self._echo_addr:
                self._echo_received(len(data))
            return
        if self._screen and self._screened(data, addr):
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
        if self._siblings is not None and self._for_sibling(message, data):
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
        elif self._udp is not None:  # UDP: to the source address, rport style
            with contextlib.suppress(OSError, ValueError):
                self._udp.sendto(data, (source.host, source.port))

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
        refusal = refusal or self._book.refusal(
            host, trusted=conn.state.trusted, open_now=len(self._conns)
        )
        if refusal is not None:
            self._refuse(conn, refusal)
            return False
        self._conns[conn.conn_id] = conn
        key = (conn.name, host, conn.peer.port)
        self._by_addr.setdefault(key, {})[conn.conn_id] = conn
        self._book.opened(host, trusted=conn.state.trusted)
        if not conn.state.trusted:
            self._untrusted[conn.conn_id] = conn
        self.metrics.connections_active.labels(conn.name).inc()
        return True

    def _refuse(self, conn: Connection, refusal: Refusal) -> None:
        self.metrics.connections_refused_total.labels(conn.name, refusal.value).inc()
        if refusal is Refusal.GLOBAL_LIMIT:
            self.metrics.messages_dropped_total.labels("connection_limit").inc()
            log.warning("connection limit reached, refusing %s", conn.peer)
        else:
            log.debug("refusing %s: %s", conn.peer, refusal.value)

    def connection_lost(self, conn: Connection) -> None:
        if self._conns.pop(conn.conn_id, None) is None:
            return
        assert conn.peer is not None
        key = (conn.name, conn.peer.host, conn.peer.port)
        same = self._by_addr.get(key)
        if same is not None:
            same.pop(conn.conn_id, None)
            if not same:
                del self._by_addr[key]
        self._untrusted.pop(conn.conn_id, None)
        self._book.closed(conn.peer.host, trusted=conn.state.trusted)
        self.metrics.connections_active.labels(conn.name).dec()

    def stream_message(self, message: Request | Response, conn: Connection) -> None:
        assert conn.peer is not None
        try:
            if not self._admit(conn.peer.host):
                return
            if self._siblings is not None and self._for_sibling(message, None):
                return
            if self._screen and self._screened_stream(message, conn):
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
        conn = self._conns.get(source.conn_id) if source.conn_id is not None else None
        if conn is None:
            return False
        if not conn.state.trusted:
            assert conn.peer is not None
            conn.state.trusted = True
            self._untrusted.pop(conn.conn_id, None)
            self._book.trusted(conn.peer.host)
        return True

    def is_trusted(self, source: Target) -> bool:
        conn = self._conns.get(source.conn_id) if source.conn_id is not None else None
        return conn is not None and conn.state.trusted

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

    # ------------------------------------------------------------------ floods
    def _on_flood_event(self, event: FloodEvent) -> None:
        match event:
            case Blocked(source=source):
                log.warning(
                    "SIP flood from %s: more than %d messages within %g s; dropping all it "
                    "sends until it stays under that for %g s",
                    source, event.limit, event.window, event.block,
                )  # fmt: skip
                self._close_untrusted_from(source)
            case Unblocked(source=source):
                log.warning(
                    "SIP flood from %s is over: served again after %.1f s blocked, "
                    "%d messages dropped",
                    source, event.seconds, event.dropped,
                )  # fmt: skip
            case _:
                assert_never(event)

    def _close_untrusted_from(self, source: str) -> None:
        doomed = [c for c in self._untrusted.values() if c.peer and c.peer.host == source]
        for conn in doomed:
            self._close(conn, CloseReason.FLOOD_BLOCKED)

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

    # ------------------------------------------------------------------ overload
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
        self._find_server = find_server
        self._pending_invites = pending_invites
        self._routing_delay = routing_delay

    def _open_echo(self) -> None:
        """The socket the UDP delay probes are sent from: the SIP socket's address family,
        bound to its host (loopback when it listens on the wildcard address)."""
        if self._udp_sock is None:
            return
        host, port = self.bound["udp"]
        if _unspecified(host):
            host = "::1" if ":" in host else "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        echo = socket.socket(family, socket.SOCK_DGRAM)
        try:
            echo.bind((host, 0))
            echo.setblocking(False)
            echo.connect((host, port))
        except OSError as exc:
            echo.close()
            log.warning("no UDP delay probe (the overload control sees loop lag only): %s", exc)
            return
        self._echo = echo
        self._echo_addr = echo.getsockname()[:2]

    def _echo_received(self, size: int) -> None:
        """Probe number n is 2 + n % _ECHO_SLOTS CRLFs long. The queue keeps the order, so
        the probes sent before the one that arrived and still missing were lost (dropped by
        a full queue): they are forgotten."""
        slot = size // 2 - 2
        if not 0 <= slot < _ECHO_SLOTS:
            return
        oldest = self._echo_oldest
        seq = oldest + (slot - oldest) % _ECHO_SLOTS
        if seq >= self._echo_next:
            return  # not on its way (a duplicate)
        delay = self._loop.time() - self._echo_times[slot]
        self._echo_delay = max(self._echo_delay, delay)
        self._echo_oldest = seq + 1

    def _send_echo(self, now: float) -> float:
        """The UDP queue delay since the last sample: the longest a probe took to arrive, or
        how long the oldest one still on its way has been; then send the next probe."""
        delay = self._echo_delay
        if self._echo_oldest < self._echo_next:
            delay = max(delay, now - self._echo_times[self._echo_oldest % _ECHO_SLOTS])
        self._echo_delay = 0.0
        if self._echo is None:
            return delay
        if self._echo_next - self._echo_oldest >= _ECHO_SLOTS:
            self._echo_oldest += 1  # its slot is reused: count it lost
        slot = self._echo_next % _ECHO_SLOTS
        try:
            self._echo.send(b"\r\n" * (2 + slot))
        except OSError:
            return delay  # not sent; the next one goes at the next sample
        self._echo_times[slot] = now
        self._echo_next += 1
        return delay

    def _arm_probe(self) -> None:
        self._probe_due = self._loop.time() + self._overload.settings.interval
        self._probe = self._loop.call_at(self._probe_due, self._on_probe)

    def _on_probe(self) -> None:
        try:
            now = self._loop.time()
            lag = max(0.0, now - self._probe_due)
            self.metrics.loop_lag.observe(lag)
            delay = max(lag, self._send_echo(now), self._routing_delay(now))
            self._overload.sample(delay, self._udp_queue())
            self._screen = self._overload.armed or now < self._acks_until
        except Exception:
            self._fault("overload-probe")
        self._arm_probe()

    def _udp_queue(self) -> float:
        """The fill of the UDP socket's receive queue (0..1); 0 where SO_MEMINFO is not
        available."""
        if self._udp_sock is None:
            return 0.0
        try:
            info = self._udp_sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
        except OSError:
            return 0.0
        queued, size = _MEMINFO.unpack(info)[:2]
        return queued / size if size else 0.0

    def _screened(self, data: bytes, addr: tuple[str, int]) -> bool:
        """A datagram the overload gate consumed: a new INVITE answered 503 here, or the
        ACK of such a 503. Only the head of an INVITE/ACK is read; anything that cannot be
        read that cheaply goes the normal way (which answers 400 where due)."""
        if data.startswith(b"INVITE "):
            if not self._overload.due(self._pending_invites):
                return False  # the usual case, even while refusing: nothing parsed twice
        elif not (data.startswith(b"ACK ") and self._refusal_tag_b in data):
            return False
        try:
            head = parse_head(data)
        except ParseError:
            return False
        if not isinstance(head, Request):
            return False
        return self._gate(head, lambda reply: self._sendto(reply, addr))

    def _screened_stream(self, message: Request | Response, conn: Connection) -> bool:
        if not isinstance(message, Request):
            return False
        if message.method == "INVITE":
            if not self._overload.due(self._pending_invites):
                return False
        elif message.method != "ACK":
            return False
        return self._gate(message, lambda reply: bool(conn.write(reply)))

    def _gate(self, head: Request, send: Callable[[bytes], object]) -> bool:
        """True if the gate consumed `head`: refused it (503 sent with `send`) or it is the
        ACK of a 503 the gate sent."""
        try:
            tag = head.to_tag
            if head.method == "ACK":
                return tag is not None and tag.startswith(self._refusal_tag)
            if tag is not None or self._find_server(head) is not None:
                return False  # in-dialog, or a retransmission of an INVITE accepted
        except ParseError:
            return False
        if self._overload.refuse(self._pending_invites) is None:
            return False
        self._count_request("INVITE")
        send(self._refusal(head))
        self._acks_until = self._loop.time() + _ACK_WINDOW
        self._screen = True
        return True

    def _refusal(self, head: Request) -> bytes:
        """The stateless 503 (§8.2.7): the same To tag for the retransmissions of one
        request (derived from its top Via), under this process's refusal prefix."""
        via = head.headers.get("Via") or ""
        tag = f"{self._refusal_tag}{zlib.crc32(via.encode()):08x}"
        retry = [("Retry-After", str(self._overload.settings.retry_after))]
        reply = make_response(head, 503, to_tag=tag, headers=retry)
        self._count_response(503, "sent")
        return reply.to_bytes()

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._udp is not None:  # to the source address, rport style (as a 400 is)
            with contextlib.suppress(OSError, ValueError):
                self._udp.sendto(data, addr)

    def _overload_stats(self) -> OverloadSample:
        c = self._overload
        counts = {reason.value: n for reason, n in c.refused.items()}
        return counts, (float(c.active), c.fraction, c.queue, float(self._pending_invites()))

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
        if target.conn_id is not None:
            conn = self._conns.get(target.conn_id)
            return conn if conn is not None and conn.open else None
        for conn in self._by_addr.get((target.transport, target.host, target.port), {}).values():
            if conn.open:
                return conn
        return None

    def _for_sibling(self, message: Request | Response, data: bytes | None) -> bool:
        """A response to a request another worker sent (its private port is the top Via's):
        a device that answers from where it received (not to the Via), or over a connection
        of ours. Forwarded as received to that worker's private port."""
        if not isinstance(message, Response):
            return False
        assert self._siblings is not None
        owner = self._siblings.sibling_of_port(message.top_via.port)
        if owner is None:
            return False
        self._to_sibling(owner, data if data is not None else message.to_bytes())
        self._handed_over("response")
        return True

    def _to_sibling(self, owner: int, data: bytes) -> None:
        assert self._siblings is not None
        if self._private_udp is None or self._private_udp.is_closing():
            return
        with contextlib.suppress(OSError, ValueError):
            self._private_udp.sendto(data, self._siblings.relay_address(owner))

    def _relay(self, owner: int, data: bytes, target: Target) -> None:
        """Hand a message for another worker's connection to that worker."""
        assert self._siblings is not None
        envelope = self._siblings.envelope(RELAY, target)
        too_big = len(envelope) + len(data) > _MAX_RELAY
        if self._private_udp is None or too_big or owner >= len(self._siblings.private):
            self._loop.call_soon(self.receiver.on_send_error, target)
            return
        self._to_sibling(owner, envelope + data)
        self._handed_over("relay_sent")

    def _send_stream(self, data: bytes, target: Target) -> None:
        if target.conn_id is not None and self._siblings is not None:
            owner = self._siblings.owner(target.conn_id)
            if owner != self._siblings.index:
                self._relay(owner, data, target)
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

    # ------------------------------------------------------------------ idle connections
    # Two sweeps: untrusted connections (few, short timeouts) every `sweep_interval` (<= 1
    # s), every connection at a quarter of the long idle timeout (<= 30 s).
    def _arm_sweep(self) -> None:
        interval = max(1.0, min(30.0, self.settings.idle_timeout / 4))
        self._sweep = self._loop.call_later(interval, self._sweep_idle)

    def _sweep_idle(self) -> None:
        try:
            self._sweep_some([c for c in self._conns.values() if c.state.trusted])
        except Exception:
            self._fault("idle-sweep")
        self._arm_sweep()

    def _arm_untrusted_sweep(self) -> None:
        interval = self._limits.sweep_interval
        self._untrusted_sweep = self._loop.call_later(interval, self._sweep_untrusted)

    def _sweep_untrusted(self) -> None:
        try:
            self._sweep_some(list(self._untrusted.values()))
        except Exception:
            self._fault("idle-sweep")
        self._arm_untrusted_sweep()

    def _sweep_some(self, conns: list[Connection]) -> None:
        now = self._loop.time()
        for conn in conns:
            reason = close_reason(self._limits, conn.state, now)
            if reason is not None and conn.open:
                self._close(conn, reason)

    def _close(self, conn: Connection, reason: CloseReason) -> None:
        self._untrusted.pop(conn.conn_id, None)  # closed once, counted once
        self.metrics.connections_closed_total.labels(conn.name, reason.value).inc()
        log.debug("closing connection %s: %s", conn.peer, reason.value)
        conn.close()

    def connection_count(self) -> int:
        return len(self._conns)


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _handover_counter(metrics: Metrics) -> Counter:
    """Messages a worker handed to another (switch/transport/siblings.py)."""
    return Counter(
        "sip_worker_handovers_total",
        "Between workers: responses forwarded to the worker that sent the request (response),"
        " messages for another worker's connection (relay_sent), written here for another"
        " (relay_written), or failed there (relay_failed)",
        ["kind"],
        registry=metrics.registry,
    )


def _admit_all(source: str) -> bool:
    return True


def _nothing(request: Request) -> object:
    return None


def _zero() -> int:
    return 0


def _is_response(exc: ParseError, looks_like_response: bool) -> bool:
    return looks_like_response or isinstance(partial_of(exc), Response)
