"""Typed errors of the media building blocks.

Every refusal in `media` is a `MediaError` with a stable kebab-case `error_id` that callers may
switch on (never reworded) and a human-readable message. Subclasses say where the error came
from so the glue can count and map it: a malformed RTP/RTCP datagram is dropped and counted, a
bad SDP offer becomes a SIP 4xx (`status_hint`), a refused upload becomes an API error.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AudioError",
    "DtmfError",
    "G711Error",
    "MediaError",
    "PromptError",
    "RtcpError",
    "RtpError",
    "SdpError",
]


class MediaError(Exception):
    """Base of every media error: a stable `error_id` plus a message."""

    default_id: ClassVar[str] = "media-error"

    def __init__(self, message: str, *, error_id: str | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id or self.default_id
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_id!r}, {self.message!r})"


class G711Error(MediaError):
    """PCM input that is not whole 16-bit samples."""

    default_id = "g711-bad-frame"


class RtpError(MediaError):
    """A datagram that is not a well-formed RTP packet (RFC 3550 §5.1): drop and count it."""

    default_id = "rtp-malformed"


class RtcpError(MediaError):
    """A datagram that is not a well-formed RTCP SR/RR (RFC 3550 §6.4)."""

    default_id = "rtcp-malformed"


class DtmfError(MediaError):
    """A telephone-event payload (RFC 4733) or a SIP INFO DTMF body that cannot be read."""

    default_id = "dtmf-malformed"


class SdpError(MediaError):
    """A session description that cannot be parsed or negotiated.

    `status_hint` is the SIP status the user agent answers with: 400 for a body that is not
    SDP, 488 (Not Acceptable Here, RFC 3261 §21.4.26) when no media stream can be accepted.
    """

    default_id = "sdp-malformed"

    def __init__(
        self, message: str, *, error_id: str | None = None, status_hint: int = 400
    ) -> None:
        super().__init__(message, error_id=error_id)
        self.status_hint = status_hint


class AudioError(MediaError):
    """An audio file refused (upload conversion, WAV reading). Ids: `audio-*`."""

    default_id = "audio-unsupported-format"


class PromptError(MediaError):
    """An unknown prompt name, or a value the spoken-number builder cannot say."""

    default_id = "prompt-unknown"
