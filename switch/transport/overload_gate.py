"""The I/O side of the overload control: the delay probe and the early 503 gate.

`OverloadControl` (switch.transport.overload) decides, sans-IO, how much new work to refuse.
This module feeds it and applies its answer; the `TransportManager` holds one `OverloadGate`.

- **The probe**: every `interval` (50 ms) `OverloadGate` measures the event-loop lag (how
  late its timer fired), the UDP queue delay (`UdpDelayProbe`: a CRLF datagram sent from a
  socket of our own to the SIP socket, timed until the manager reads it) and the routing
  delay the transaction view reports, and samples the control with the largest, plus the
  fill of the receive queue (SO_MEMINFO) for the dashboard.
- **The gate**: while the control refuses, the manager hands a datagram that starts with
  "INVITE " (or "ACK " carrying our refusal tag) to `screened` before parsing it; only its
  start line and header fields are read (`parse_head`). A new out-of-dialog INVITE that
  matches no server transaction (`set_transaction_view`) may then be answered 503 +
  Retry-After right here, statelessly (§8.2.7), and the ACK of that 503 is dropped as
  unparsed as it came. Stream messages arrive parsed and go through `screened_stream`.
  Everything else takes the normal path.

The hot path stays one attribute test per datagram: the manager keeps its own `screen`
flag and reads nothing of the gate while it is False; the gate tells it (`on_screen`) when
screening starts (the control is armed, or a 503 was sent and its ACK may come within
`_ACK_WINDOW`) and when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
import zlib
from collections.abc import Callable

from switch.metrics import Metrics, OverloadSample
from switch.sip.message import ParseError, Request, Response, make_response
from switch.sip.parser import parse_head

from .overload import OverloadControl, OverloadSettings
from .stream import Connection

__all__ = ["OverloadGate", "UdpDelayProbe"]

log = logging.getLogger(__name__)

_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 4.6; Python does not name it
_MEMINFO = struct.Struct("9I")  # sk_meminfo: [0] rmem_alloc (queued bytes), [1] rcvbuf
_ACK_WINDOW = 32.0  # s (64*T1): how long the ACKs of the 503s refused are looked for
_ECHO_SLOTS = 32  # delay probes told apart (by their length: 2 + slot CRLFs) on their way


class UdpDelayProbe:
    """How long a datagram waits in the SIP socket's receive queue: probes sent from a
    socket of our own, told apart by their length, timed from send to `received`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None  # where the probes come from
        self._times = [0.0] * _ECHO_SLOTS  # send time of probe n at n % _ECHO_SLOTS
        self._next = 0  # sequence number of the next probe
        self._oldest = 0  # the oldest probe still on its way (== next: none)
        self._delay = 0.0  # the longest a probe took since the last sample

    def open(self, host: str, port: int) -> None:
        """The socket the probes are sent from: the SIP socket's address family, bound to
        its host (loopback when it listens on the wildcard address)."""
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
        self._sock = echo
        self.address = echo.getsockname()[:2]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def received(self, size: int) -> None:
        """Probe number n is 2 + n % _ECHO_SLOTS CRLFs long. The queue keeps the order, so
        the probes sent before the one that arrived and still missing were lost (dropped by
        a full queue): they are forgotten."""
        slot = size // 2 - 2
        if not 0 <= slot < _ECHO_SLOTS:
            return
        oldest = self._oldest
        seq = oldest + (slot - oldest) % _ECHO_SLOTS
        if seq >= self._next:
            return  # not on its way (a duplicate)
        delay = self._loop.time() - self._times[slot]
        self._delay = max(self._delay, delay)
        self._oldest = seq + 1

    def sample(self, now: float) -> float:
        """The UDP queue delay since the last sample: the longest a probe took to arrive, or
        how long the oldest one still on its way has been; then send the next probe."""
        delay = self._delay
        if self._oldest < self._next:
            delay = max(delay, now - self._times[self._oldest % _ECHO_SLOTS])
        self._delay = 0.0
        if self._sock is None:
            return delay
        if self._next - self._oldest >= _ECHO_SLOTS:
            self._oldest += 1  # its slot is reused: count it lost
        slot = self._next % _ECHO_SLOTS
        try:
            self._sock.send(b"\r\n" * (2 + slot))
        except OSError:
            return delay  # not sent; the next one goes at the next sample
        self._times[slot] = now
        self._next += 1
        return delay


class OverloadGate:
    """The probe timer, the sampled `OverloadControl` and the stateless 503 gate (see the
    module docstring). `sendto` answers a datagram's source; `count_request` and
    `count_response` are the manager's message counters; `on_screen` sets its flag."""

    def __init__(
        self,
        settings: OverloadSettings,
        metrics: Metrics,
        *,
        sendto: Callable[[bytes, tuple[str, int]], None],
        count_request: Callable[[str], None],
        count_response: Callable[[int, str], None],
        on_screen: Callable[[bool], None],
        fault: Callable[[str], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.control = OverloadControl(settings)
        self.probe = UdpDelayProbe(self._loop)
        self._metrics = metrics
        self._sendto = sendto
        self._count_request = count_request
        self._count_response = count_response
        self._on_screen = on_screen
        self._fault = fault
        self._udp_sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._refusal_tag = "ovl" + secrets.token_hex(3)  # To tag prefix of our 503s
        self._refusal_tag_b = self._refusal_tag.encode()
        self._acks_until = 0.0  # ACKs of our 503s are looked for until then
        self._find_server: Callable[[Request], object] = _nothing
        self._pending_invites: Callable[[], int] = _zero
        self._routing_delay: Callable[[float], float] = _no_delay
        metrics.watch_overload(self._stats)
        on_screen(self.control.armed)

    def set_transaction_view(
        self,
        find_server: Callable[[Request], object],
        pending_invites: Callable[[], int],
        routing_delay: Callable[[float], float],
    ) -> None:
        """See TransportManager.set_transaction_view."""
        self._find_server = find_server
        self._pending_invites = pending_invites
        self._routing_delay = routing_delay

    def start(self, udp_sock: socket.socket | None, udp_bound: tuple[str, int] | None) -> None:
        """Open the delay probe towards the SIP UDP socket (if any) and arm the timer."""
        self._udp_sock = udp_sock
        if udp_sock is not None and udp_bound is not None:
            self.probe.open(*udp_bound)
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.probe.close()

    # ------------------------------------------------------------------ the probe
    def _arm(self) -> None:
        self._due = self._loop.time() + self.control.settings.interval
        self._timer = self._loop.call_at(self._due, self._on_probe)

    def _on_probe(self) -> None:
        try:
            now = self._loop.time()
            lag = max(0.0, now - self._due)
            self._metrics.loop_lag.observe(lag)
            delay = max(lag, self.probe.sample(now), self._routing_delay(now))
            self.control.sample(delay, self._udp_queue())
            self._on_screen(self.control.armed or now < self._acks_until)
        except Exception:
            self._fault("overload-probe")
        self._arm()

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

    # ------------------------------------------------------------------ the gate
    def screened(self, data: bytes, addr: tuple[str, int]) -> bool:
        """A datagram the gate consumed: a new INVITE answered 503 here, or the ACK of such
        a 503. Only the head of an INVITE/ACK is read; anything that cannot be read that
        cheaply goes the normal way (which answers 400 where due)."""
        if data.startswith(b"INVITE "):
            if not self.control.due(self._pending_invites):
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

    def screened_stream(self, message: Request | Response, conn: Connection) -> bool:
        if not isinstance(message, Request):
            return False
        if message.method == "INVITE":
            if not self.control.due(self._pending_invites):
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
        if self.control.refuse(self._pending_invites) is None:
            return False
        self._count_request("INVITE")
        send(self._refusal(head))
        self._acks_until = self._loop.time() + _ACK_WINDOW
        self._on_screen(True)
        return True

    def _refusal(self, head: Request) -> bytes:
        """The stateless 503 (§8.2.7): the same To tag for the retransmissions of one
        request (derived from its top Via), under this process's refusal prefix."""
        via = head.headers.get("Via") or ""
        tag = f"{self._refusal_tag}{zlib.crc32(via.encode()):08x}"
        retry = [("Retry-After", str(self.control.settings.retry_after))]
        reply = make_response(head, 503, to_tag=tag, headers=retry)
        self._count_response(503, "sent")
        return reply.to_bytes()

    def _stats(self) -> OverloadSample:
        c = self.control
        counts = {reason.value: n for reason, n in c.refused.items()}
        return counts, (float(c.active), c.fraction, c.queue, float(self._pending_invites()))


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _nothing(request: Request) -> object:
    return None


def _zero() -> int:
    return 0


def _no_delay(now: float) -> float:
    return 0.0
