"""Who may hold a TCP/TLS connection, and for how long (sans-IO: time is an argument).

A stream connection costs the switch a file descriptor, a buffer of up to
`max_message_bytes` and a slot among `max_connections`; a host that opens thousands of idle
or half-header connections must not be able to take those slots from the phones. So:

* **Per-source limits.** At most `max_per_source` connections from one IP address, of which
  at most `max_untrusted_per_source` untrusted (see below). An office behind one NAT address
  has one connection per phone, so the total is generous; untrusted connections only exist
  for the moment between a phone's connect and its first accepted REGISTER.
* **Trust.** A connection is *trusted* once it carried a request the switch accepted (an
  authenticated REGISTER answered 2xx, a call the switch put through: the transport user
  says so through `TransportManager.mark_trusted`), when the switch opened it itself, or
  when it comes from an exempt address (the carrier gateways).
* **Timeouts.** An untrusted connection that has not delivered one complete SIP message
  within `first_message_timeout` of its opening is closed (idle or half-header: CRLF
  keep-alives and partial messages do not count), and so is one whose last complete message
  is `untrusted_idle_timeout` old. Only a trusted connection gets the long keep-alive
  `idle_timeout` (3,900 s: NATed phones keep their registration flow open on it, RFC 5626),
  measured from its last octet in either direction. `idle_timeout` also caps the other two.

The state per connection lives on the connection (`StreamState`); `SourceBook` counts
connections per source address.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CloseReason", "Refusal", "SourceBook", "StreamLimits", "StreamState", "close_reason"]


class Refusal(enum.StrEnum):
    """Why an inbound connection was refused (the `reason` label of the metric)."""

    GLOBAL_LIMIT = "global_limit"
    SOURCE_LIMIT = "source_limit"
    SOURCE_UNTRUSTED_LIMIT = "source_untrusted_limit"
    FLOOD_BLOCKED = "flood_blocked"


class CloseReason(enum.StrEnum):
    """Why the switch closed a connection (the `reason` label of the metric)."""

    FIRST_MESSAGE_TIMEOUT = "first_message_timeout"
    UNTRUSTED_IDLE = "untrusted_idle"
    IDLE = "idle"
    FLOOD_BLOCKED = "flood_blocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimits:
    max_connections: int = 10_000
    max_per_source: int = 1_000
    max_untrusted_per_source: int = 100
    first_message_timeout: float = 5.0
    untrusted_idle_timeout: float = 30.0
    idle_timeout: float = 3900.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_untrusted_per_source <= self.max_per_source:
            raise ValueError("1 <= max_untrusted_per_source <= max_per_source required")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        timeouts = (self.first_message_timeout, self.untrusted_idle_timeout, self.idle_timeout)
        if min(timeouts) <= 0:
            raise ValueError("connection timeouts must be > 0")

    @property
    def sweep_interval(self) -> float:
        """How often untrusted connections are checked: a fifth of the shortest timeout,
        between 0.1 and 1 s (a connection is closed at most that late)."""
        shortest = min(self.first_message_timeout, self.untrusted_idle_timeout, self.idle_timeout)
        return max(0.1, min(1.0, shortest / 5))


@dataclass(slots=True, kw_only=True)
class StreamState:
    """What the policy needs to know about one connection (loop-clock seconds)."""

    opened: float
    last_activity: float  # last octet received or sent
    last_message: float | None = None  # last complete SIP message received
    trusted: bool = False


def close_reason(limits: StreamLimits, state: StreamState, now: float) -> CloseReason | None:
    """Whether a connection must be closed now, and why."""
    idle = limits.idle_timeout
    if state.trusted:
        return CloseReason.IDLE if now - state.last_activity >= idle else None
    if state.last_message is None:
        timeout = min(limits.first_message_timeout, idle)
        return CloseReason.FIRST_MESSAGE_TIMEOUT if now - state.opened >= timeout else None
    timeout = min(limits.untrusted_idle_timeout, idle)
    return CloseReason.UNTRUSTED_IDLE if now - state.last_message >= timeout else None


class SourceBook:
    """Open inbound connections per source address: total and untrusted."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._total: dict[str, int] = {}
        self._untrusted: dict[str, int] = {}

    def refusal(self, source: str, *, trusted: bool, open_now: int) -> Refusal | None:
        """Why a new connection from `source` must be refused (None: admit it).
        `open_now` is the number of connections open in the whole process."""
        if open_now >= self.limits.max_connections:
            return Refusal.GLOBAL_LIMIT
        if trusted:
            return None  # exempt sources and our own outbound connections
        if self._total.get(source, 0) >= self.limits.max_per_source:
            return Refusal.SOURCE_LIMIT
        if self._untrusted.get(source, 0) >= self.limits.max_untrusted_per_source:
            return Refusal.SOURCE_UNTRUSTED_LIMIT
        return None

    def opened(self, source: str, *, trusted: bool) -> None:
        self._total[source] = self._total.get(source, 0) + 1
        if not trusted:
            self._untrusted[source] = self._untrusted.get(source, 0) + 1

    def trusted(self, source: str) -> None:
        """One of the source's untrusted connections became trusted."""
        _decrement(self._untrusted, source)

    def closed(self, source: str, *, trusted: bool) -> None:
        _decrement(self._total, source)
        if not trusted:
            _decrement(self._untrusted, source)

    def count(self, source: str) -> tuple[int, int]:
        """(open connections, of which untrusted) from `source`."""
        return self._total.get(source, 0), self._untrusted.get(source, 0)

    def sources(self) -> int:
        return len(self._total)


def _decrement(counts: dict[str, int], key: str) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
