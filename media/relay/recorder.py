"""Two-channel call recording from the RTP of both parties: caller left, callee right.
No asyncio; time is an argument (the relay passes its monotonic clock, the pcap converter the
capture timestamps).

Theory of operation
- Each direction goes through its own `media.jitter.RecordingBuffer`, both started at the same
  origin (`start`), so sample n of either channel is the sound of instant start + n/8000 s: the
  buffers fill gaps (loss, DTX, hold) with silence measured on the RTP clock and pad a
  stream's late start or restart from the wall clock (arrival times).
- Payloads are decoded as they are pushed, with the codec of their payload type (PCMU/PCMA,
  static or by a=rtpmap); the buffers thus hold 16-bit PCM. A payload of any other type is
  pushed without audio (it fills its sequence number, so nobody waits for it) and becomes
  silence; it is counted in `unsupported` (RFC 4733 events and comfort noise are expected and
  not counted). RTCP arriving on the RTP port (rtcp-mux) is skipped.
- Interleaving: a channel's output is kept in `pending` from the committed position on. A
  stereo frame can be written once both channels reached it (numpy interleaves, ten times
  faster than `media.wav.interleave`'s audioop path, which showed in the relay's profile).
  A channel that says nothing
  (one side muted, on hold, or never sending) would stall the other, so when one channel runs
  more than `lead` seconds ahead, the lagging one is written as silence up to there; its audio
  that later turns up for an instant already written is dropped and counted (`overtaken`).
  Memory is thus bounded by `lead` plus the tick interval per channel.
- `tick(now)` (every ~0.5 s) releases packets the buffers gave up waiting for, writes what is
  complete, and every `sync_every` seconds patches the WAV header (`WavWriter.sync()`) so a
  crash leaves a playable file. `finish(now)` flushes both buffers, pads both channels to
  `now` and truncates to it: the file lasts exactly `now - start`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import RtpError
from ..g711 import Codec, decode
from ..jitter import Audio, Chunk, RecordingBuffer
from ..rtp import is_rtcp, parse_rtp

__all__ = [
    "CALLEE",
    "CALLER",
    "STATIC_CODECS",
    "ChannelStats",
    "PcmWriter",
    "StereoRecorder",
    "codecs_from_sdp",
]

RATE = 8000
CALLER = 0  # left
CALLEE = 1  # right
STATIC_CODECS: Mapping[int, Codec] = {0: Codec.PCMU, 8: Codec.PCMA}  # RFC 3551 §6
_HEADER = struct.Struct("!BBHII")
_SILENT_TYPES = frozenset({13})  # comfort noise (RFC 3389): expected, not "unsupported"


class PcmWriter(Protocol):
    """What the recorder writes to: `media.wav.WavWriter` (two channels) satisfies it."""

    def write(self, pcm: bytes) -> None: ...

    def sync(self) -> None: ...

    @property
    def data_size(self) -> int: ...


@dataclass(slots=True)
class ChannelStats:
    """Per-channel counters (the JSON sidecar reports them)."""

    packets: int = 0
    octets: int = 0
    malformed: int = 0
    unsupported: int = 0  # payload types that are not G.711: written as silence
    overtaken: int = 0  # samples that arrived for an instant already written
    codecs: set[str] = field(default_factory=set)


def codecs_from_sdp(rtpmaps: Mapping[int, str]) -> dict[int, Codec]:
    """Payload type -> G.711 law, from `{pt: encoding name}` (a=rtpmap), over the static ones."""
    out = dict(STATIC_CODECS)
    for pt, name in rtpmaps.items():
        law = name.upper()
        if law in ("PCMU", "PCMA"):
            out[pt] = Codec[law]
    return out


def _split(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(payload type, sequence, timestamp, SSRC, payload), or None if not RTP.

    The common packet — version 2, no padding, no extension, no CSRC (RFC 3550 §5.1) — is
    read with one struct call: this runs for every recorded packet, and `parse_rtp` (which
    builds a validated RtpPacket) costs several times more. Anything else goes through it.
    """
    if len(data) >= 12 and data[0] == 0x80:
        _, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        return second & 0x7F, sequence, timestamp, ssrc, data[12:]
    try:
        pkt = parse_rtp(data)
    except RtpError:
        return None
    return pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.ssrc, pkt.payload


def _pcm_samples(pcm: bytes) -> int:
    return len(pcm) // 2


class _Channel:
    __slots__ = ("buffer", "pending", "pos", "stats")

    def __init__(self, start: float, latency: float) -> None:
        self.buffer = RecordingBuffer(start=start, latency=latency, samples_of=_pcm_samples)
        self.pending = bytearray()  # PCM from the committed position on
        self.pos = 0  # samples the buffer has put out so far
        self.stats = ChannelStats()


class StereoRecorder:
    """Caller and callee RTP in, a stereo 8 kHz 16-bit stream out (module docstring)."""

    def __init__(
        self,
        writer: PcmWriter,
        *,
        start: float,
        latency: float = 0.2,
        lead: float = 1.0,
        sync_every: float = 5.0,
        codecs: Mapping[int, Codec] = STATIC_CODECS,
        events: frozenset[int] = frozenset({101}),
    ) -> None:
        self.writer = writer
        self.start = start
        self.lead = round(lead * RATE)
        self.sync_every = sync_every
        self.codecs = dict(codecs)
        self.events = events | _SILENT_TYPES
        self.channels = (_Channel(start, latency), _Channel(start, latency))
        self.committed = 0
        self._synced = start
        self.finished = False

    # ------------------------------------------------------------------ input
    def set_payload_types(self, codecs: Mapping[int, Codec], events: frozenset[int]) -> None:
        """The negotiated payload types (from the SDPs); replaces the previous map."""
        self.codecs = dict(codecs)
        self.events = events | _SILENT_TYPES

    def packet(self, channel: int, data: bytes, arrival: float) -> None:
        """One datagram received from the caller (0) or the callee (1)."""
        if self.finished or is_rtcp(data):
            return
        ch = self.channels[channel]
        header = _split(data)
        if header is None:
            ch.stats.malformed += 1
            return
        payload_type, sequence, timestamp, ssrc, payload = header
        ch.stats.packets += 1
        ch.stats.octets += len(data)
        pcm = self._decode(ch, payload_type, payload)
        chunks = ch.buffer.push(
            ssrc=ssrc, sequence=sequence, timestamp=timestamp, payload=pcm, arrival=arrival
        )
        self._take(ch, chunks)

    def _decode(self, ch: _Channel, payload_type: int, payload: bytes) -> bytes | None:
        codec = self.codecs.get(payload_type)
        if codec is None:
            if payload_type not in self.events:
                ch.stats.unsupported += 1
            return None
        ch.stats.codecs.add(codec.name)
        return decode(codec, payload)

    def _take(self, ch: _Channel, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            if isinstance(chunk, Audio):
                samples, pcm = len(chunk.payload) // 2, chunk.payload
            else:
                samples, pcm = chunk.samples, b""
            begin, ch.pos = ch.pos, ch.pos + samples
            skip = self.committed - begin
            if skip >= samples:
                ch.stats.overtaken += samples if pcm else 0
                continue
            skip = max(skip, 0)
            ch.stats.overtaken += skip if pcm else 0
            ch.pending += pcm[2 * skip :] if pcm else bytes(2 * (samples - skip))

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        """Release overdue packets, write complete frames, sync the file now and then."""
        if self.finished:
            return
        for ch in self.channels:
            self._take(ch, ch.buffer.poll(now))
        left, right = self.channels
        ahead = max(left.pos, right.pos) - self.lead
        self._commit(max(min(left.pos, right.pos), ahead))
        if now - self._synced >= self.sync_every:
            self._synced = now
            self.writer.sync()

    def finish(self, now: float) -> float:
        """Write everything up to `now` (padding with silence); the duration in seconds."""
        if self.finished:
            return self.committed / RATE
        end = max(round((now - self.start) * RATE), self.committed)
        for ch in self.channels:
            self._take(ch, ch.buffer.flush(now))
        self._commit(end, limit=end)
        self.finished = True
        self.writer.sync()
        return self.committed / RATE

    def _commit(self, target: int, *, limit: int | None = None) -> None:
        """Write stereo frames up to sample `target`; a short channel is padded with silence."""
        if target <= self.committed:
            return
        frames = target - self.committed
        stereo = np.zeros(2 * frames, dtype="<i2")
        for index, ch in enumerate(self.channels):
            mono = np.frombuffer(ch.pending, dtype="<i2", count=min(frames, len(ch.pending) // 2))
            stereo[index : 2 * len(mono) : 2] = mono  # a short channel stays silent (zeros)
            del mono
            del ch.pending[: 2 * frames]
        self.writer.write(stereo.tobytes())
        self.committed = target
        if limit is not None:
            for ch in self.channels:
                ch.pending.clear()

    # ------------------------------------------------------------------ reporting
    @property
    def seconds(self) -> float:
        return self.committed / RATE

    def stats(self, channel: int) -> ChannelStats:
        return self.channels[channel].stats

    def buffer_stats(self, channel: int) -> dict[str, int]:
        s = self.channels[channel].buffer.stats
        return {"lost": s.lost, "late": s.late, "duplicates": s.duplicates, "resyncs": s.resyncs}
