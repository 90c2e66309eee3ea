"""Overload control: past capacity, refuse new calls early instead of collapsing (sans-IO).

Why: one process serves SIP from one UDP socket. Offered more than it can handle, the
kernel's receive queue (SO_RCVBUF, 8 MB by default here: thousands of datagrams) fills, every
message waits behind the queue, the callers' INVITEs time out at T1 and are retransmitted,
which adds load: the classic SIP congestion collapse (issue 11 measured "no call completes
for 7 s" at 1,000 calls/s). The cure (RFC 7339's loss-based overload control, done locally
like Kamailio's ratelimit/pike) is to refuse part of the *new* work early and cheaply, so
that what is accepted still completes.

The measured signal is the *delay* a new message waits before the switch handles it,
sampled every `interval` seconds by the glue (switch.transport.overload_gate) as the larger of:

- **event-loop lag**: how late a periodic timer fires. Catches stalls (a long GC pause, a
  blocking call, a burst of timers) that delay every message;
- **UDP queue delay**: how long a probe datagram the process sends to its own SIP socket
  (a CRLF keep-alive, so nothing else ever parses it) waits in the receive queue behind the
  datagrams already there, and while it has not arrived, how long it has been on its way.
  Catches saturation: with one socket the loop reads datagram after datagram and its timers
  still fire on time, while the queue (SO_RCVBUF, 8 MB: thousands of datagrams) grows.
  Measured in time, not in bytes, it means the same on a machine that has a whole core to
  give and on one whose neighbours leave the switch half a core;
- **routing delay**: how long the oldest new INVITE whose transaction user is suspended
  (waiting on a network state backend: Redis) has waited, once a backlog of them waits
  (switch.transport.endpoint, ROUTING_BACKLOG). There
  the work that does not fit piles up in tasks awaiting replies, not in the UDP queue.

What counts is a *standing* delay, as in CoDel: the smallest of the last `WINDOW` samples
(200 ms) over `max_delay` (0.1 s). A burst or a short stall (a GC pause, a neighbour taking
the core for a moment) delays a few messages and passes; a queue that stays is overload. The
threshold is a fifth of T1: refusing starts well before the callers' INVITEs are
retransmitted, which is what turns overload into collapse, and the calls accepted during an
overload wait about that long. The fill of the receive queue (SO_MEMINFO) is sampled too, for
the dashboard only.

The controller keeps a *refusal fraction* `f`: each overloaded sample raises it
(+`STEP_UP`), each sample under both lowers it (-`STEP_DOWN`): it rises within a few
hundred milliseconds and falls back to 0 within `1 / STEP_DOWN * interval` (2.5 s) after the
overload ends, oscillating around the capacity in between. New INVITEs are refused
deterministically at that fraction (an accumulator, not a random draw).

A hard cap, off by default: `max_pending_invites`, the INVITE server transactions that have
no final response yet (calls being set up). Past it every new INVITE is refused. It is the
operator's knob for a known capacity (and what the integration test uses to force overload
on a noisy machine); note that ringing calls count, so size it as rate x ring time.

What is never refused: anything but an out-of-dialog INVITE. Retransmissions of an INVITE
the switch accepted (they match a server transaction), ACK, CANCEL, BYE, re-INVITEs (a To
tag) and REGISTER (a refused REGISTER is retried by the phone at once and costs as much as
an accepted one with its digest round; refusing it saves little and unregisters devices)
all go through. Refused: a stateless 503 with Retry-After (RFC 3261 §8.2.7, §21.5.4) and a
To tag the glue derives from the request, so that its retransmissions get the same answer,
and whose prefix lets the glue drop the ACK of that 503 unparsed.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OverloadControl", "OverloadSettings", "Refused"]

WINDOW = 4  # samples whose smallest delay must exceed max_delay (4 x 50 ms)
STEP_UP = 0.1  # refusal fraction added per overloaded sample
STEP_DOWN = 0.02  # removed per normal sample: from 1.0 to 0 in 50 samples


class Refused(enum.StrEnum):
    """Why a new INVITE was refused (the `reason` label of sip_overload_rejected_total)."""

    LOAD = "load"  # the measured delay: loop lag or UDP queue
    PENDING = "pending_invites"  # the max_pending_invites cap


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadSettings:
    max_delay: float = 0.1  # seconds a message waits (loop lag, UDP queue); 0: never refuse
    max_pending_invites: int = 0  # INVITEs without a final response; 0: no cap
    retry_after: int = 5  # seconds, in the 503's Retry-After
    interval: float = 0.05  # seconds between samples

    def __post_init__(self) -> None:
        if self.max_delay < 0:
            raise ValueError("overload: max_delay >= 0")
        if self.max_pending_invites < 0 or self.retry_after < 0:
            raise ValueError("overload: max_pending_invites >= 0 and retry_after >= 0")
        if not 0 < self.interval <= 1:
            raise ValueError("overload: 0 < interval <= 1")


class OverloadControl:
    """The refusal fraction and the decision per new INVITE. `sample()` every interval.
    For each INVITE while `armed`: `due(pending)`, cheap, before anything is parsed; only if
    it is due, the glue reads the head, and if it is a new out-of-dialog INVITE,
    `refuse(pending)` decides and counts. So refusing at a fraction f parses f of the INVITEs
    twice (head, then in full if let through after all), not all of them."""

    def __init__(self, settings: OverloadSettings) -> None:
        self.settings = settings
        self.fraction = 0.0  # of new INVITEs refused now
        self.delay = 0.0  # last sample (s)
        self.queue = 0.0  # last sample: UDP receive queue / SO_RCVBUF (shown, not used)
        self.refused = {reason: 0 for reason in Refused}
        self.overloaded_samples = 0
        self._recent: deque[float] = deque(maxlen=WINDOW)
        self._debt = 0.0

    @property
    def armed(self) -> bool:
        """Whether new INVITEs must be looked at at all (cheap: read per datagram)."""
        return self.fraction > 0 or self.settings.max_pending_invites > 0

    @property
    def active(self) -> bool:
        """Refusing because of the measured load (the sip_overload_active gauge)."""
        return self.fraction > 0

    def sample(self, delay: float, queue: float = 0.0) -> None:
        """One sample: the delay (s: the larger of loop lag and UDP queue delay) and the UDP
        receive-queue fill (0..1, for the gauge)."""
        limit = self.settings.max_delay
        self.delay, self.queue = delay, queue
        self._recent.append(delay)
        recent = self._recent
        if limit > 0 and len(recent) == WINDOW and min(recent) > limit:
            self.overloaded_samples += 1
            self.fraction = min(1.0, self.fraction + STEP_UP)
        else:
            self.fraction = max(0.0, self.fraction - STEP_DOWN)
            if self.fraction == 0.0:
                self._debt = 0.0

    def due(self, pending: Callable[[], int]) -> bool:
        """An INVITE arrived: is a refusal due (the cap reached, or the fraction's share)?
        Every INVITE counts towards the share, retransmissions and re-INVITEs too."""
        cap = self.settings.max_pending_invites
        if cap and pending() >= cap:
            return True
        if self.fraction <= 0:
            return False
        self._debt = min(self._debt + self.fraction, 2.0)
        return self._debt >= 1.0

    def refuse(self, pending: Callable[[], int]) -> Refused | None:
        """Refuse this new out-of-dialog INVITE, if due (counted), or None."""
        cap = self.settings.max_pending_invites
        if cap and pending() >= cap:
            self.refused[Refused.PENDING] += 1
            return Refused.PENDING
        if self._debt < 1.0:
            return None
        self._debt -= 1.0
        self.refused[Refused.LOAD] += 1
        return Refused.LOAD
