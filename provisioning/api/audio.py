"""Audio answers of the API: a WAV file around stored PCM, raw-bytes schemas, and single byte
ranges (RFC 9110 §14), so that players that fetch media by ranges (Safari's <audio>) work.

Pure helpers; provisioning does not import `media` (its layer test forbids it), so the
44-byte canonical RIFF/WAVE header is written here.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from .errors import ApiError
from .schema import Schema

__all__ = ["PCM_RATE", "Binary", "byte_range", "range_not_satisfiable", "wav_bytes"]

PCM_RATE = 8000  # voicemail messages: 8 kHz, 16-bit little-endian, mono


def wav_bytes(pcm: bytes, *, rate: int = PCM_RATE, channels: int = 1, width: int = 2) -> bytes:
    """A complete WAV file (PCM format 1) holding `pcm` as it is."""
    block = channels * width
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),  # RIFF chunk size: everything after these 8 octets
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size for PCM
        1,  # WAVE_FORMAT_PCM
        channels,
        rate,
        rate * block,  # byte rate
        block,  # block align
        width * 8,  # bits per sample
        b"data",
        len(pcm),
    )
    return header + pcm


class Binary(Schema):
    """Raw bytes (documented only: the body is passed on as it is)."""

    def __init__(self, max_length: int | None = None, description: str | None = None) -> None:
        self.max_length = max_length
        self.description = description

    def validate(self, value: Any, path: str = "") -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "string", "format": "binary"}
        if self.max_length is not None:
            d["maxLength"] = self.max_length
        return self._doc(d)


_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range `header` asks of a `size`-octet body, as (first, last) inclusive; None for
    the whole body. Several ranges or an invalid ranges-specifier are ignored (RFC 9110 §14.2
    lets a server do so); a valid range that starts past the end is 416 (§15.5.17)."""
    m = _RANGE.fullmatch((header or "").replace(" ", ""))
    if m is None or not (m[1] or m[2]):
        return None
    if not m[1]:  # suffix-range "-N": the last N octets (§14.1.1)
        if int(m[2]) == 0:
            raise range_not_satisfiable(size)
        return (max(size - int(m[2]), 0), size - 1) if size else None
    first = int(m[1])
    if m[2] and int(m[2]) < first:
        return None  # invalid (last before first): ignored
    if first >= size:
        raise range_not_satisfiable(size)
    return first, min(int(m[2]) if m[2] else size - 1, size - 1)


def range_not_satisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range-not-satisfiable",
        f"the range starts past the end of the {size}-octet body",
        {"size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )
