"""Paced sending of media packets, sans-IO.

The glue asks when the next packet is due (`deadline`), sleeps until then (one timer), and
asks how many packets are due at the time it woke (`due(now)`). Deadlines are computed as
`start + n * interval` from the stream's start, never by adding up sleeps, so a late wake-up
does not shift every later packet (a loop of `sleep(0.02)` drifts by the loop's own run time).

After a stall (a blocked event loop, a suspended VM) the pacer sends a few packets back to back
to catch up and skips the rest: a receiver's jitter buffer absorbs a short burst but a burst of
seconds of audio would be played late or dropped by it anyway. Skipped packets are reported so
the glue can advance its audio source and the RTP timestamp (`RtpStream.pause`) and the stream
stays in step with the wall clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Due", "Pacer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """Packets to send now, and packet slots given up because they were too late."""

    send: int
    skipped: int = 0


class Pacer:
    """Deadlines of a constant-rate packet stream: one packet every `interval` seconds."""

    __slots__ = ("_next", "interval", "max_burst", "skipped_total", "start")

    def __init__(self, *, start: float, interval: float = 0.020, max_burst: int = 3) -> None:
        if interval <= 0 or max_burst < 1:
            raise ValueError("interval must be positive and max_burst at least 1")
        self.start = start
        self.interval = interval
        self.max_burst = max_burst
        self._next = 0  # index of the next packet to send
        self.skipped_total = 0

    @property
    def sent(self) -> int:
        """Packet slots consumed so far (sent or skipped)."""
        return self._next

    def deadline(self) -> float:
        """When the next packet is due (same clock as `start`)."""
        return self.start + self._next * self.interval

    def due(self, now: float) -> Due:
        """Packets due at `now`; consumes them. At most `max_burst`, the older ones skipped."""
        # a tiny tolerance so a timer that fires on the deadline counts it as due
        ready = math.floor((now - self.start) / self.interval + 1e-9) + 1
        behind = ready - self._next
        if behind <= 0:
            return Due(send=0)
        skipped = max(0, behind - self.max_burst)
        self._next = ready
        self.skipped_total += skipped
        return Due(send=behind - skipped, skipped=skipped)

    def restart(self, start: float) -> None:
        """Start counting again from `start` (after a pause the stream chose to make)."""
        self.start = start
        self._next = 0
