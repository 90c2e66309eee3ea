"""DTMF: RFC 4733 telephone events in RTP, and SIP INFO bodies, as one digit event.

RFC 4733 §2.3 payload (4 octets):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |     event     |E|R| volume    |          duration             |

An event keeps one RTP timestamp (its start) for all of its packets; the first carries the
marker bit (§2.5.1.2), updates grow `duration`, and the final packet with the E bit is sent
three times (§2.5.1.4). A receiver therefore names an event by its (SSRC, timestamp) and must
report it once however many of its packets arrive, in whatever order, or are lost (§2.5.2).

SIP INFO DTMF is not standardised but two bodies are common: `application/dtmf-relay`
(`Signal=5\\r\\nDuration=160`, duration in ms) and `application/dtmf` (the bare digit).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from .errors import DtmfError

__all__ = [
    "DIGITS",
    "DtmfDigit",
    "DtmfPacket",
    "DtmfReceiver",
    "TelephoneEvent",
    "digit_packets",
    "parse_info_body",
    "parse_telephone_event",
]

# RFC 4733 §3.2 table 7: events 0-15 are the DTMF digits 0-9, *, #, A-D.
DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")
MAX_DURATION = 0xFFFF  # timestamp units (§2.5.1.3: longer events are split into segments)
_SEGMENT_SLACK = 1600  # units a segment boundary may be off by (lost last update, rounding)


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One RFC 4733 payload. `duration` is in RTP timestamp units (1/8000 s for G.711)."""

    event: int
    end: bool = False
    volume: int = 10  # -dBm0, 0..63 (§2.3.4); 10 is a typical DTMF level
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise DtmfError(f"event code {self.event} out of range 0..255")
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume {self.volume} out of range 0..63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfError(f"duration {self.duration} out of range 0..65535")

    @property
    def digit(self) -> str | None:
        """The DTMF digit of this event, or None for a non-DTMF event (flash, tones …)."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None

    def build(self) -> bytes:
        flags = (0x80 if self.end else 0) | self.volume  # R bit (0x40) is sent as zero
        return _EVENT.pack(self.event, flags, self.duration)


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Read a 4-octet RFC 4733 payload (the R bit is ignored, §2.3.3), or raise DtmfError."""
    if len(payload) != _EVENT.size:
        raise DtmfError(f"telephone-event payload of {len(payload)} octets, expected 4")
    event, flags, duration = _EVENT.unpack(payload)
    return TelephoneEvent(
        event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A key press, from RTP or from SIP INFO. `duration_ms` is what was known when reported."""

    digit: str
    duration_ms: int = 0

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DIGITS:
            raise DtmfError(f"{self.digit!r} is not a DTMF digit")
        if self.duration_ms < 0:
            raise DtmfError(f"negative duration {self.duration_ms}")


# --------------------------------------------------------------------------- receiving
class DtmfReceiver:
    """Turns telephone-event packets into one `DtmfDigit` per event.

    A digit is reported on the first packet of an event that arrives, whether that is the
    marker packet, an update or (when the others were lost) an end packet: an IVR wants the
    key as soon as it is pressed. Later packets of the same event (same SSRC and timestamp),
    including the three end packets, are swallowed. The last `memory` events are remembered,
    so a late retransmission cannot produce the digit twice.

    A long key press is sent as segments with new timestamps and no marker bit (§2.5.1.3);
    a segment that starts where an open event of the same code ran out of its 16-bit duration
    is not a new digit. Any other unmarked packet with a new timestamp is a new event whose
    marker packet was lost.
    """

    __slots__ = ("_open", "_seen", "clock_rate", "ignored")

    def __init__(self, *, clock_rate: int = 8000, memory: int = 32) -> None:
        self.clock_rate = clock_rate
        self._seen: deque[tuple[int, int]] = deque(maxlen=memory)
        # (ssrc, timestamp, event code) of the last event whose end has not been seen
        self._open: tuple[int, int, int] | None = None
        self.ignored = 0  # non-DTMF events and malformed payloads

    def receive(
        self, *, ssrc: int, timestamp: int, marker: bool, payload: bytes
    ) -> DtmfDigit | None:
        """Feed one packet of the telephone-event payload type; malformed ones are counted."""
        try:
            event = parse_telephone_event(payload)
        except DtmfError:
            self.ignored += 1
            return None
        return self._account(ssrc, timestamp, marker, event)

    def _account(
        self, ssrc: int, timestamp: int, marker: bool, event: TelephoneEvent
    ) -> DtmfDigit | None:
        key = (ssrc, timestamp)
        if key in self._seen:
            if event.end and self._open is not None and self._open[:2] == key:
                self._open = None
            return None
        self._seen.append(key)
        continuation = not marker and self._continues(ssrc, timestamp, event.event)
        self._open = None if event.end else (ssrc, timestamp, event.event)
        if continuation:
            return None
        if event.digit is None:
            self.ignored += 1
            return None
        return DtmfDigit(digit=event.digit, duration_ms=event.duration * 1000 // self.clock_rate)

    def _continues(self, ssrc: int, timestamp: int, code: int) -> bool:
        """§2.5.1.3: a new segment starts where the open one's 0xFFFF units ran out."""
        if self._open is None or (self._open[0], self._open[2]) != (ssrc, code):
            return False
        gap = (timestamp - self._open[1]) % (1 << 32)
        return MAX_DURATION - _SEGMENT_SLACK <= gap <= MAX_DURATION + _SEGMENT_SLACK


# --------------------------------------------------------------------------- sending
@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfPacket:
    """One packet of an event to send `offset` timestamp units after the event starts.

    Every packet of the series carries the event's start timestamp (§2.5.1.1); the glue
    stamps it with `RtpStream.event(payload, payload_type=…, timestamp=start, marker=…)`.
    """

    offset: int
    marker: bool
    payload: bytes


def digit_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    interval: int = 160,
    volume: int = 10,
    clock_rate: int = 8000,
    end_repeats: int = 3,
) -> tuple[DtmfPacket, ...]:
    """The packet series of one key press (§2.5.1): marker start, updates every `interval`
    timestamp units, and the final duration with the E bit sent `end_repeats` times, one
    interval apart (so one lost packet does not lose the end).

    After the series the audio stream's timestamp must move past the event (`RtpStream.pause`
    with the event's total duration) so audio does not overlap it.
    """
    if len(digit) != 1 or digit not in DIGITS:
        raise DtmfError(f"{digit!r} is not a DTMF digit")
    total = duration_ms * clock_rate // 1000
    if not interval <= total <= MAX_DURATION or interval <= 0:
        raise DtmfError(
            f"duration {duration_ms} ms does not fit one event of {interval}-unit packets"
        )
    code = DIGITS.index(digit)
    updates = [
        DtmfPacket(
            offset=elapsed - interval,
            marker=elapsed == interval,
            payload=TelephoneEvent(event=code, volume=volume, duration=elapsed).build(),
        )
        for elapsed in range(interval, total, interval)
    ]
    final = TelephoneEvent(event=code, end=True, volume=volume, duration=total).build()
    last = total - interval
    ends = [
        DtmfPacket(offset=last + i * interval, marker=not updates and i == 0, payload=final)
        for i in range(end_repeats)
    ]
    return (*updates, *ends)


# --------------------------------------------------------------------------- SIP INFO
_INFO_SIGNALS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def parse_info_body(content_type: str, body: bytes | str) -> DtmfDigit:
    """A SIP INFO DTMF body as a digit, or DtmfError (the UA answers 415/400 accordingly)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/dtmf-relay":
        return _parse_dtmf_relay(text)
    if media_type == "application/dtmf":
        return DtmfDigit(digit=_signal(text.strip()))
    raise DtmfError(
        f"INFO body of type {media_type!r} is not DTMF", error_id="dtmf-unsupported-type"
    )


def _parse_dtmf_relay(text: str) -> DtmfDigit:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise DtmfError("dtmf-relay body without a Signal= line")
    duration = fields.get("duration", "0")
    if not duration.isdigit() or len(duration) > 6:
        raise DtmfError(f"dtmf-relay Duration={duration!r} is not a number of milliseconds")
    return DtmfDigit(digit=_signal(fields["signal"]), duration_ms=int(duration))


def _signal(value: str) -> str:
    """A signal as written by phones: the digit itself, or 10/11 for * and # (some UAs)."""
    digit = _INFO_SIGNALS.get(value, value.upper())
    if len(digit) != 1 or digit not in DIGITS:
        raise DtmfError(f"Signal {value!r} is not a DTMF digit")
    return digit
