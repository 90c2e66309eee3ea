"""G.711 µ-law (PCMU) and A-law (PCMA) for 16-bit linear PCM frames.

PCM here is always signed 16-bit little-endian samples, the layout of a WAV file's data chunk.
The work is done by `audioop` (C, about a microsecond per 20 ms frame); see `_audioop` for how
it is imported on each Python version. Its tables are those of the ITU-T G.711 reference
(G.191 `g711.c`): µ-law keeps the top 14 bits of a sample, A-law the top 13; decoding yields
the segment mid-points scaled back to 16 bits (µ-law ±32124 at full scale, A-law ±32256).

RTP payload types are the static ones of RFC 3551 §6 (PCMU = 0, PCMA = 8), 8000 Hz, one octet
per sample, so a 20 ms frame is 160 samples = 320 PCM bytes = 160 payload bytes.
"""

from __future__ import annotations

import enum
import sys
from typing import assert_never

from ._audioop import audioop
from .errors import G711Error

__all__ = [
    "ALAW_SILENCE",
    "CLOCK_RATE",
    "SAMPLE_WIDTH",
    "ULAW_SILENCE",
    "Codec",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "silence_payload",
    "ulaw_decode",
    "ulaw_encode",
]

CLOCK_RATE = 8000  # RFC 3551 §4.5.14: both G.711 laws are sampled at 8 kHz
SAMPLE_WIDTH = 2  # bytes per linear sample
ULAW_SILENCE = 0xFF  # µ-law code of linear 0 (positive zero)
ALAW_SILENCE = 0xD5  # A-law code of linear 0 (even bits inverted, RFC 3551 §4.5.14)

_SWAP = sys.byteorder == "big"  # audioop works in native order; our PCM is little-endian


class Codec(enum.IntEnum):
    """The two G.711 laws, valued by their static RTP payload type (RFC 3551 §6)."""

    PCMU = 0
    PCMA = 8

    @property
    def encoding_name(self) -> str:
        """The SDP `a=rtpmap` encoding name (RFC 3551 §6 table 4)."""
        return self.name


def _check(pcm: bytes) -> None:
    if len(pcm) % SAMPLE_WIDTH:
        raise G711Error(f"PCM length {len(pcm)} is not a whole number of 16-bit samples")


def _native(pcm: bytes) -> bytes:
    return audioop.byteswap(pcm, SAMPLE_WIDTH) if _SWAP else pcm


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear PCM -> µ-law, one octet per sample."""
    _check(pcm)
    return audioop.lin2ulaw(_native(pcm), SAMPLE_WIDTH)


def ulaw_decode(payload: bytes) -> bytes:
    """µ-law octets -> 16-bit little-endian linear PCM."""
    return _native(audioop.ulaw2lin(payload, SAMPLE_WIDTH))


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear PCM -> A-law, one octet per sample."""
    _check(pcm)
    return audioop.lin2alaw(_native(pcm), SAMPLE_WIDTH)


def alaw_decode(payload: bytes) -> bytes:
    """A-law octets -> 16-bit little-endian linear PCM."""
    return _native(audioop.alaw2lin(payload, SAMPLE_WIDTH))


def encode(codec: Codec, pcm: bytes) -> bytes:
    """Encode linear PCM with the given law."""
    match codec:
        case Codec.PCMU:
            return ulaw_encode(pcm)
        case Codec.PCMA:
            return alaw_encode(pcm)
        case _ as unreachable:
            assert_never(unreachable)


def decode(codec: Codec, payload: bytes) -> bytes:
    """Decode a G.711 payload to linear PCM."""
    match codec:
        case Codec.PCMU:
            return ulaw_decode(payload)
        case Codec.PCMA:
            return alaw_decode(payload)
        case _ as unreachable:
            assert_never(unreachable)


def silence_payload(codec: Codec, samples: int) -> bytes:
    """`samples` octets of encoded silence (the code of linear 0)."""
    if samples < 0:
        raise G711Error(f"negative sample count {samples}")
    code = ULAW_SILENCE if codec is Codec.PCMU else ALAW_SILENCE
    return bytes((code,)) * samples
