"""The asyncio side of one media call's RTP: a UDP socket pair (RTP, and RTCP on the next port,
received and dropped), paced sending of prompts, DTMF and recording on the receiving side.

Everything protocol-shaped is sans-IO and lives elsewhere (media/rtp.py packets and stream
state, media/dtmf.py RFC 4733, media/pacer.py deadlines, media/jitter.py the recording
buffer, media/negotiate.py the plan); this module only moves bytes and keeps time.

Symmetric RTP (RFC 4961, "comedia"): we send to the address the SDP names until the caller's
first RTP packet arrives, then to where that packet came from, so that a caller behind NAT
hears us. Packets from any other address are dropped and counted; if the latched source has
been silent for `RELATCH_AFTER` seconds, a new source takes over (a NAT binding changed).

Sending is paced by one loop timer shared by every session of the process (`MediaClock`):
each session has a `Pacer` (deadlines from its start, no drift) and the clock wakes at the
earliest deadline and sends what is due, so 500 streams cost one timer, not 500. A wake-up also
sends what falls due within the next `EARLY` seconds: streams started at random moments have
deadlines spread over the whole 20 ms, and waking for each one would mean 25,000 wake-ups a
second for 500 streams. It also keeps the clock from spinning on uvloop, whose `time()` and
timers have millisecond resolution: a deadline less than half a millisecond away was a
`call_soon`, and the tick found it not yet due, again and again until the millisecond turned
(measured: 100 streams took 0.8 of a core and sent packets up to 140 ms late on a loaded
machine; tests/bench/media_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import math
import socket
from dataclasses import dataclass

from ..dtmf import DtmfReceiver
from ..errors import RtpError
from ..g711 import Codec, decode, encode
from ..jitter import Audio, Chunk, RecordingBuffer
from ..negotiate import MediaPlan
from ..pacer import Pacer
from ..rtp import RtpStream, parse_rtp

__all__ = ["MediaClock", "PortRange", "RtpSession", "RtpStats"]

log = logging.getLogger(__name__)

RELATCH_AFTER = 2.0  # seconds of silence from the latched source before another may take over
RATE = 8000
# A packet may leave this long before its deadline (see the module docstring); a tenth of a
# 20 ms packet time, well inside any receiver's jitter buffer, and above uvloop's 1 ms tick.
EARLY = 0.002


@dataclass(frozen=True, slots=True)
class PortRange:
    """Even RTP ports in [first, last] (RTCP takes the odd one above, RFC 3550 §11)."""

    first: int = 20000
    last: int = 29999

    def __post_init__(self) -> None:
        if not (1024 <= self.first < self.last <= 65535):
            raise ValueError(f"bad RTP port range {self.first}-{self.last}")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        lo, _, hi = text.partition("-")
        try:
            return cls(int(lo), int(hi))
        except ValueError as exc:
            raise ValueError(f"RTP port range must be FIRST-LAST, got {text!r}") from exc


@dataclass(slots=True)
class RtpStats:
    """Counters of one session (also summed into the process metrics by the agent)."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    lost: int = 0
    late: int = 0
    foreign: int = 0  # from an address other than the latched one
    malformed: int = 0
    late_sends: int = 0  # packets sent more than 20 ms after their deadline


@functools.lru_cache(maxsize=16)
def _frames(pcm: bytes, codec: Codec, samples: int) -> tuple[bytes, ...]:
    """The payloads of `pcm`, one per packet, encoded once for every session that plays it:
    500 callers hearing the same 45 s announcement share one copy (not 500: 225 MB), and a
    call no longer spends a millisecond encoding it. Bounded: 16 x 60 s of audio at most."""
    payload = encode(codec, pcm)
    return tuple(payload[i : i + samples] for i in range(0, len(payload), samples))


class _Sockets:
    """Bind an RTP/RTCP pair from the range, rotating where the search starts."""

    _next: dict[tuple[str, int, int], itertools.count[int]] = {}

    @classmethod
    def bind(cls, host: str, ports: PortRange) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        span = (ports.last - ports.first) // 2
        counter = cls._next.setdefault((host, ports.first, ports.last), itertools.count())
        start = next(counter)
        for i in range(span):
            port = ports.first + 2 * ((start + i) % span)
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            return rtp, rtcp
        raise OSError(f"no free RTP port pair in {ports.first}-{ports.last} on {host}")


class MediaClock:
    """One timer for every sending session of the process (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, RtpSession]] = []
        self._ids = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def schedule(self, session: RtpSession, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._ids), session))
        if at < self._timer_at:  # never during a tick (-inf): the tick arms once at its end
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = -math.inf  # sessions re-scheduling below only queue
        now = self._loop.time()
        horizon = now + EARLY
        heap = self._heap
        while heap and heap[0][0] <= horizon:
            _, _, session = heapq.heappop(heap)
            try:
                session._send_due(now, horizon)
            except Exception:  # one broken session must not stop everyone's audio
                log.exception("RTP send failed")
                session.stop_playing()
        self._timer_at = math.inf
        if heap:
            self._arm(heap[0][0])


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.session._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error: %s", exc)


class _Rtcp(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pass  # RTCP is accepted and ignored: nothing here needs the peer's reports


class RtpSession:
    """The RTP of one call. `await RtpSession.open(...)`, `set_plan()` once negotiated, then
    `play()` / `digits` / `start_recording()`; `close()` at the end (idempotent)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: MediaClock, host: str) -> None:
        self._loop = loop
        self._clock = clock
        self.host = host
        self.port = 0
        self.stats = RtpStats()
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.digit_arrived = asyncio.Event()  # set with every digit; cleared by the reader
        self._plan: MediaPlan | None = None
        self._remote: tuple[str, int] | None = None
        self._latched: tuple[str, int] | None = None
        self._last_in = 0.0
        self._stream = RtpStream()
        self._dtmf = DtmfReceiver()
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._frames: tuple[bytes, ...] = ()  # encoded payloads (shared: see `_frames`)
        self._frame_index = 0
        self._pacer: Pacer | None = None
        self._played: asyncio.Future[bool] | None = None
        self._recorder: RecordingBuffer | None = None
        self._recorded = bytearray()
        self.closed = False

    @classmethod
    async def open(
        cls, loop: asyncio.AbstractEventLoop, clock: MediaClock, host: str, ports: PortRange
    ) -> RtpSession:
        session = cls(loop, clock, host)
        rtp, rtcp = _Sockets.bind(host, ports)
        session.port = rtp.getsockname()[1]
        session._transport, _ = await loop.create_datagram_endpoint(lambda: _Rtp(session), sock=rtp)
        session._rtcp, _ = await loop.create_datagram_endpoint(_Rtcp, sock=rtcp)
        return session

    # ------------------------------------------------------------------ negotiation
    def set_plan(self, plan: MediaPlan) -> None:
        """A (re-)negotiated plan: codec, payload types, where to send (None: on hold)."""
        self._plan = plan
        self._remote = plan.remote if plan.sends else None

    @property
    def plan(self) -> MediaPlan | None:
        return self._plan

    @property
    def destination(self) -> tuple[str, int] | None:
        """Where our RTP goes: the latched source, else what the SDP said (None on hold)."""
        if self._remote is None:
            return None
        return self._latched or self._remote

    # ------------------------------------------------------------------ sending
    def play(self, pcm: bytes, *, ptime_ms: int | None = None) -> asyncio.Future[bool]:
        """Send `pcm` (8 kHz 16-bit mono) as paced RTP. The future resolves True when all of
        it was sent, False when `stop_playing()` or `close()` cut it short. A new play()
        replaces one in progress (which resolves False)."""
        self.stop_playing()
        plan = self._plan
        codec = plan.codec if plan is not None else Codec.PCMU
        ptime = ptime_ms or (plan.ptime if plan is not None else 20)
        self._frames = _frames(pcm, codec, RATE * ptime // 1000)
        self._frame_index = 0
        fut: asyncio.Future[bool] = self._loop.create_future()
        self._played = fut
        if not self._frames or self.closed:
            fut.set_result(not self.closed)
            return fut
        self._pacer = Pacer(start=self._loop.time(), interval=ptime / 1000)
        self._clock.schedule(self, self._pacer.deadline())
        return fut

    def stop_playing(self) -> None:
        fut, self._played = self._played, None
        self._frames = ()
        self._pacer = None
        if fut is not None and not fut.done():
            fut.set_result(False)

    def _send_due(self, now: float, horizon: float) -> None:
        """Send the packets due by `horizon` (`now` plus what may leave early)."""
        pacer = self._pacer
        if pacer is None or self._played is None:
            return  # stopped since it was scheduled
        if now - pacer.deadline() > 0.020:
            self.stats.late_sends += 1
        due = pacer.due(horizon)
        for _ in range(due.skipped):
            self._skip_frame()
        frames, start = self._frames, self._frame_index
        if due.send:
            plan = self._plan
            pt = plan.payload_type if plan is not None else 0
            self._frame_index = min(start + due.send, len(frames))
            stamp = self._stream.media_bytes
            for frame in frames[start : self._frame_index]:
                self._send(stamp(frame, payload_type=pt, samples=len(frame)))
        if self._frame_index >= len(frames):
            fut, self._played = self._played, None
            self._pacer = None
            if fut is not None and not fut.done():
                fut.set_result(True)
            return
        self._clock.schedule(self, pacer.deadline())

    def _skip_frame(self) -> None:
        if self._frame_index < len(self._frames):
            self._stream.pause(len(self._frames[self._frame_index]))
            self._frame_index += 1

    def _send(self, data: bytes) -> None:
        dest = self.destination
        if dest is None or self._transport is None or self._transport.is_closing():
            return
        try:
            self._transport.sendto(data, dest)
        except (OSError, ValueError) as exc:
            log.debug("rtp send to %s failed: %s", dest, exc)
            return
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)

    # ------------------------------------------------------------------ receiving
    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self._loop.time()
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.malformed += 1
            return
        if not self._accept_source(addr, now):
            self.stats.foreign += 1
            return
        self.stats.packets_in += 1
        self.stats.bytes_in += len(data)
        plan = self._plan
        if plan is None:
            return
        if plan.telephone_event is not None and packet.payload_type == plan.telephone_event:
            self._event(packet.ssrc, packet.timestamp, packet.marker, packet.payload)
            if self._recorder is not None:
                self._record(packet.ssrc, packet.sequence, packet.timestamp, None, now)
        elif packet.payload_type == plan.payload_type and self._recorder is not None:
            self._record(packet.ssrc, packet.sequence, packet.timestamp, packet.payload, now)

    def _accept_source(self, addr: tuple[str, int], now: float) -> bool:
        latched = self._latched
        if latched is None or latched == addr or now - self._last_in > RELATCH_AFTER:
            self._latched = addr
            self._last_in = now
            return True
        return False

    def _event(self, ssrc: int, timestamp: int, marker: bool, payload: bytes) -> None:
        digit = self._dtmf.receive(ssrc=ssrc, timestamp=timestamp, marker=marker, payload=payload)
        if digit is not None:
            self.digit(digit.digit)

    def digit(self, digit: str) -> None:
        """A DTMF digit from RTP (RFC 4733) or from a SIP INFO (the agent calls this)."""
        self.digits.put_nowait(digit)
        self.digit_arrived.set()

    # ------------------------------------------------------------------ recording
    def start_recording(self) -> None:
        """Record what the caller sends from now on: from the first packet that arrives to
        the last, gaps (lost packets, silence suppression) filled with silence."""
        self._recorded = bytearray()
        self._recorder = RecordingBuffer()

    def stop_recording(self) -> bytes:
        """Stop and return the recording as 8 kHz 16-bit PCM."""
        rec, self._recorder = self._recorder, None
        if rec is None:
            return b""
        self._write(rec.flush())
        self.stats.lost += rec.stats.lost
        self.stats.late += rec.stats.late
        return bytes(self._recorded)

    def recorded_seconds(self) -> float:
        return len(self._recorded) / (2 * RATE)

    def _record(self, ssrc: int, seq: int, ts: int, payload: bytes | None, now: float) -> None:
        assert self._recorder is not None
        self._write(
            self._recorder.push(ssrc=ssrc, sequence=seq, timestamp=ts, payload=payload, arrival=now)
        )

    def _write(self, chunks: list[Chunk]) -> None:
        plan = self._plan
        codec = plan.codec if plan is not None else Codec.PCMU
        for chunk in chunks:
            if isinstance(chunk, Audio):
                self._recorded += decode(codec, chunk.payload)
            else:
                self._recorded += bytes(2 * chunk.samples)

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_playing()
        for transport in (self._transport, self._rtcp):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
