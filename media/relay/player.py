"""`play media` for the embedded relay: an audio file sent to one party as paced RTP. Sans-IO.

A subset of rtpengine's command (README, "play media"): `file` (a path, resolved inside the
relay's configured media directory) or `blob` (the file's bytes), `repeat-times`, and a
`from-tag` naming the party who HEARS it; the reply carries `duration` in milliseconds.
Files must be what `media.wav.read_wav` reads (8 kHz 16-bit mono WAV, the format of the
project's prompts).

Unlike rtpengine, which mixes the file into the forwarded stream, the embedded relay
REPLACES: while a file plays to a party, the other side's media to that party is held back
(counted as `blocked`), so a recording notice is heard clearly; the other direction is not
touched. The file goes out with its own SSRC in the party's preferred G.711 law (the first
PCMU/PCMA format of its SDP), 20 ms per packet, paced by `media.pacer.Pacer` (deadlines from
the start, no drift). Played audio is not part of the call recording (as with rtpengine's
pcap), which records what the parties sent.
"""

from __future__ import annotations

from ..g711 import Codec, encode
from ..pacer import Pacer
from ..rtp import RtpStream
from .legs import PartySdp
from .recorder import codecs_from_sdp

__all__ = ["Player", "choose_codec"]

FRAME = 160  # samples per 20 ms packet at 8 kHz


def choose_codec(sdp: PartySdp | None) -> tuple[int, Codec]:
    """(payload type, law) the party prefers; PCMU/0 when its SDP names no G.711."""
    if sdp is not None:
        codecs = codecs_from_sdp(sdp.rtpmaps)
        for pt in sdp.formats:
            if pt in codecs:
                return pt, codecs[pt]
    return 0, Codec.PCMU


class Player:
    """The packets of one playback, due by time."""

    __slots__ = ("_frames", "_index", "_pacer", "_stream", "blocked", "payload_type")

    def __init__(
        self, pcm: bytes, *, codec: Codec, payload_type: int, start: float, repeat: int = 1
    ) -> None:
        payload = encode(codec, pcm) * max(repeat, 1)
        self._frames = [payload[i : i + FRAME] for i in range(0, len(payload), FRAME)]
        self._index = 0
        self._pacer = Pacer(start=start, interval=FRAME / 8000)
        self._stream = RtpStream()
        self.payload_type = payload_type
        self.blocked = 0  # forwarded packets held back while playing

    @property
    def duration_ms(self) -> int:
        return sum(len(f) for f in self._frames) // 8

    @property
    def done(self) -> bool:
        return self._index >= len(self._frames)

    def deadline(self) -> float | None:
        return None if self.done else self._pacer.deadline()

    def due(self, now: float) -> list[bytes]:
        """The datagrams to send at `now` (late slots are skipped, keeping the clock)."""
        due = self._pacer.due(now)
        for _ in range(due.skipped):
            if not self.done:
                self._stream.pause(len(self._frames[self._index]))
                self._index += 1
        out = []
        for _ in range(due.send):
            if self.done:
                break
            frame = self._frames[self._index]
            self._index += 1
            packet = self._stream.media(frame, payload_type=self.payload_type, samples=len(frame))
            out.append(packet.build())
        return out
