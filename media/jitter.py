"""A reorder buffer for RECORDING one RTP stream (voicemail, call recording), sans-IO.

Playout buffers trade delay for smoothness; a recorder has no listener waiting, so this one
only has to put packets back in order and make the recording as long as the call was:

- Packets come in with their RTP sequence number, timestamp and arrival time; chunks come out
  in sequence order: `Audio(payload)` and `Silence(samples)`.
- A gap in RTP timestamps (lost packets, silence suppression / DTX, a telephone event) becomes
  `Silence` of exactly that many samples, so the output length follows the media clock, which
  follows the wall clock.
- A missing packet is waited for `latency` seconds after the first later packet arrived, then
  given up (counted as lost). At most `capacity` packets are held (bounded memory). A stream's
  first `latency` seconds are collected before anything is written, so it starts at its lowest
  sequence number even when the first packet was overtaken.
- Sequence numbers (16 bits) and timestamps (32 bits) are extended across wrap-around.
- Duplicates and packets older than what was already written are dropped and counted.
- A new SSRC, a sequence jump of more than 3000 (RFC 3550 A.1's MAX_DROPOUT) or a timestamp
  that disagrees with the arrival time by more than `max_jump` seconds starts the stream over
  (`resyncs`); the gap is filled with silence measured on the wall clock (arrival times), so a
  re-INVITE, a transfer or a sender restart does not shift the rest of the recording.
- With `start` given, leading silence covers the time before the first packet, and
  `flush(now)` pads to `now`: both channels of a call recording then line up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Audio", "BufferStats", "Chunk", "RecordingBuffer", "Silence"]

MAX_DROPOUT = 3000
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Audio:
    """A payload to decode and write, in order."""

    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """`samples` samples of silence to write."""

    samples: int


Chunk = Audio | Silence


@dataclass(slots=True, kw_only=True)
class BufferStats:
    """Counters of one buffer (all cumulative)."""

    packets: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    resyncs: int = 0
    overflows: int = 0
    silence_samples: int = 0
    audio_samples: int = 0


@dataclass(frozen=True, slots=True)
class _Held:
    timestamp: int  # extended
    payload: bytes | None
    arrival: float


def _near(value: int, reference: int, modulus: int) -> int:
    """Extend a wrapped counter `value` to the unwrapped number nearest `reference`."""
    half = modulus // 2
    return reference + (value - reference + half) % modulus - half


@dataclass(slots=True)
class _Stream:
    """Per-SSRC position: next sequence number and timestamp to write (both extended)."""

    ssrc: int
    next_seq: int
    next_ts: int
    ref_seq: int
    ref_ts: int
    ref_arrival: float
    held: dict[int, _Held] = field(default_factory=dict)
    started: float = 0.0  # arrival of the stream's first packet
    primed: bool = False  # False while the first `latency` seconds are collected


class RecordingBuffer:
    """Reorders one direction of a call's RTP into gap-free chunks for a WAV writer."""

    __slots__ = (
        "_origin",
        "_stream",
        "capacity",
        "clock_rate",
        "latency",
        "max_jump",
        "samples_of",
        "stats",
        "written",
    )

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        latency: float = 0.2,
        capacity: int = 50,
        max_jump: float = 1.0,
        start: float | None = None,
        samples_of: Callable[[bytes], int] = len,
    ) -> None:
        self.clock_rate = clock_rate
        self.latency = latency
        self.capacity = capacity
        self.max_jump = max_jump
        self.samples_of = samples_of  # G.711: one octet per sample
        self._origin = start
        self._stream: _Stream | None = None
        self.stats = BufferStats()
        self.written = 0  # samples written (audio and silence)

    # ------------------------------------------------------------------ input
    def push(
        self, *, ssrc: int, sequence: int, timestamp: int, payload: bytes | None, arrival: float
    ) -> list[Chunk]:
        """Take one packet; returns the chunks that are now ready, in order.

        `payload=None` marks a packet of the stream that carries no audio (an RFC 4733 event,
        comfort noise): it fills its sequence number so nobody waits for it.
        """
        self.stats.packets += 1
        out: list[Chunk] = []
        stream = self._stream
        if stream is None or stream.ssrc != ssrc:
            stream = self._resync(ssrc, sequence, timestamp, arrival, out)
        seq = _near(sequence, stream.ref_seq, _SEQ_MOD)
        ts = _near(timestamp, stream.ref_ts, _TS_MOD)
        if self._jumped(stream, seq, ts, arrival):
            stream = self._resync(ssrc, sequence, timestamp, arrival, out)
            seq, ts = stream.next_seq, stream.next_ts
        self._hold(stream, seq, ts, payload, arrival)
        if len(stream.held) > self.capacity:
            self._overflow(stream, out)
        if stream.primed:
            self._release(stream, out)
        out += self.poll(arrival)
        return out

    def poll(self, now: float) -> list[Chunk]:
        """Give up on missing packets that were waited for `latency` seconds."""
        out: list[Chunk] = []
        stream = self._stream
        if stream is not None and not stream.primed and now - stream.started >= self.latency:
            self._prime(stream, out)
        while stream is not None and stream.primed and stream.held and self._overdue(stream, now):
            self._skip_gap(stream)
            self._release(stream, out)
        return out

    def flush(self, now: float | None = None) -> list[Chunk]:
        """Write out everything held (the call ended); with `now`, pad with silence to it."""
        out: list[Chunk] = []
        stream = self._stream
        if stream is not None and not stream.primed:
            self._prime(stream, out)
        while stream is not None and stream.held:
            self._skip_gap(stream)
            self._release(stream, out)
        if now is not None:
            self._pad_to(now, out)
        return out

    # ------------------------------------------------------------------ internals
    def _resync(self, ssrc: int, seq: int, ts: int, arrival: float, out: list[Chunk]) -> _Stream:
        """Start a stream (first packet, new SSRC, or a jump): drain, then pad to wall clock."""
        if self._stream is not None:
            self.stats.resyncs += 1
            out += self.flush()
        if self._origin is None:
            self._origin = arrival
        self._pad_to(arrival, out)
        base_seq = seq + _SEQ_MOD  # extended numbers start one cycle up: no negatives after
        self._stream = _Stream(
            ssrc=ssrc,
            next_seq=base_seq,
            next_ts=ts,
            ref_seq=base_seq,
            ref_ts=ts,
            ref_arrival=arrival,
            started=arrival,
        )
        return self._stream

    def _prime(self, stream: _Stream, out: list[Chunk]) -> None:
        """End of the start-up wait: the stream begins at the lowest sequence number held, so
        a first packet overtaken by the second is not lost."""
        stream.primed = True
        if stream.held:
            first = min(stream.held)
            stream.next_seq, stream.next_ts = first, stream.held[first].timestamp
        self._release(stream, out)

    def _jumped(self, stream: _Stream, seq: int, ts: int, arrival: float) -> bool:
        if abs(seq - stream.ref_seq) > MAX_DROPOUT:
            return True
        expected = stream.ref_ts + (arrival - stream.ref_arrival) * self.clock_rate
        return abs(ts - expected) > self.max_jump * self.clock_rate

    def _hold(
        self, stream: _Stream, seq: int, ts: int, payload: bytes | None, arrival: float
    ) -> None:
        if seq < stream.next_seq and stream.primed:
            self.stats.late += 1
            return
        if seq in stream.held:
            self.stats.duplicates += 1
            return
        stream.held[seq] = _Held(timestamp=ts, payload=payload, arrival=arrival)
        if seq > stream.ref_seq:
            stream.ref_seq, stream.ref_ts, stream.ref_arrival = seq, ts, arrival

    def _overflow(self, stream: _Stream, out: list[Chunk]) -> None:
        """Too much held: stop waiting for the oldest gap now (bounded memory)."""
        self.stats.overflows += 1
        if not stream.primed:
            self._prime(stream, out)
        if stream.held:
            self._skip_gap(stream)

    def _overdue(self, stream: _Stream, now: float) -> bool:
        oldest = min(held.arrival for held in stream.held.values())
        return now - oldest >= self.latency

    def _skip_gap(self, stream: _Stream) -> None:
        """Stop waiting for the missing packets before the oldest one held."""
        first = min(stream.held)
        self.stats.lost += first - stream.next_seq
        stream.next_seq = first

    def _release(self, stream: _Stream, out: list[Chunk]) -> None:
        while stream.next_seq in stream.held:
            held = stream.held.pop(stream.next_seq)
            stream.next_seq += 1
            if held.payload is not None:
                self._write(stream, held, out)

    def _write(self, stream: _Stream, held: _Held, out: list[Chunk]) -> None:
        samples = self.samples_of(held.payload or b"")
        if held.timestamp + samples <= stream.next_ts:
            self.stats.late += 1  # wholly inside what was already written
            return
        if held.timestamp > stream.next_ts:
            self._silence(held.timestamp - stream.next_ts, out)
        out.append(Audio(payload=held.payload or b""))
        self.stats.audio_samples += samples
        self.written += samples
        stream.next_ts = max(stream.next_ts, held.timestamp) + samples

    def _silence(self, samples: int, out: list[Chunk]) -> None:
        out.append(Silence(samples=samples))
        self.stats.silence_samples += samples
        self.written += samples

    def _pad_to(self, now: float, out: list[Chunk]) -> None:
        if self._origin is None:
            return
        target = round((now - self._origin) * self.clock_rate)
        if target > self.written:
            self._silence(target - self.written, out)
