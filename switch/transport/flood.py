"""Per-source flood limiting, before anything is parsed (sans-IO: time is an argument).

The idea is Kamailio's `pike` module: count what each source IP address sends; a source that
sends more than `limit` messages within `window` seconds is blocked, and everything it sends
is dropped unparsed until it has stayed under the limit for `block` seconds. Other sources
are not affected. Exempt sources (the carrier gateways, configured networks) are never
blocked.

Counting (a sliding window at a quarter-window resolution)
---------------------------------------------------------
Time is cut into ticks of `window / 4`. Per source, `_counts[source]` holds the messages of
the last three finished ticks plus those of the current tick, so a packet costs one dict
lookup, one integer update and one comparison (`admit`). `tick(now)`, called by the glue
every tick, shifts each source's history by one tick (the per-tick counts live in
`_history`, touched only there) and forgets sources that sent nothing for a whole window.

So the counted span is between 3/4 of a window and a whole window long: a source that never
sends more than `limit` messages in any `window` seconds is never blocked, and one that sends
more than `limit` within three quarters of a window always is. (Pike's estimate is coarser:
its threshold lies between 1x and 3x `reqs_density_per_unit` for IPv4.)

Blocking
--------
A blocked source keeps being counted (its counter carries `_OFFSET`, which keeps every
packet on the slow path that drops it). At each tick, a blocked source whose window still
exceeds the limit has its block extended to `block` seconds from that tick; the block ends at
the first tick after that. Each block is reported twice through `notify` (`Blocked`,
`Unblocked`): the glue logs and counts blocks, never single packets.

Memory: a source stays in the tables for at most one window after its last packet (or until
its block ends). Should a flood of spoofed source addresses still fill more than
`max_sources` entries, the tick forgets every unblocked source (per-source limiting cannot
help against spoofed sources; the global limits of the process take over).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "SUB_WINDOWS",
    "Blocked",
    "FloodEvent",
    "FloodGuard",
    "FloodSettings",
    "Unblocked",
    "parse_exempt",
]

SUB_WINDOWS = 4  # ticks per window: the resolution of the sliding window
_KEPT = SUB_WINDOWS - 1  # finished ticks remembered per source
_OFFSET = 1 << 40  # added to a blocked source's counter: above any limit, never reached
_UNLIMITED = 1 << 62  # the limit when the guard is off (limit 0): never exceeded
_NO_HISTORY: tuple[int, ...] = (0,) * _KEPT

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class FloodSettings:
    limit: int = 600  # messages per source within `window`; 0 turns the guard off
    window: float = 2.0  # seconds
    block: float = 10.0  # seconds a source stays blocked after it last exceeded the limit
    exempt: tuple[str, ...] = ()  # addresses or networks never blocked
    max_sources: int = 65_536  # tracked sources before the table is flushed (spoofing)

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError("flood limit must be >= 0 (0: off)")
        if not self.window > 0 or not self.block > 0:
            raise ValueError("flood window and block must be > 0 seconds")
        if self.max_sources < 1:
            raise ValueError("max_sources must be >= 1")
        for entry in self.exempt:
            parse_exempt(entry)


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """A source went over the limit: from now on everything it sends is dropped."""

    source: str
    limit: int
    window: float
    block: float

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("Blocked needs a source")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unblocked:
    """A block ended: the source stayed under the limit for the block time."""

    source: str
    dropped: int  # messages (and connection attempts) dropped during the block
    seconds: float  # how long the block lasted

    def __post_init__(self) -> None:
        if self.dropped < 0 or self.seconds < 0:
            raise ValueError("Unblocked: dropped and seconds must be >= 0")


FloodEvent = Blocked | Unblocked


def parse_exempt(entry: str) -> Network:
    """An exempt entry: an address ("192.0.2.10", "2001:db8::1"), a network
    ("192.0.2.0/24"), or an address with a port as gateways list them ("192.0.2.10:5060",
    "[2001:db8::1]:5060"; the port is ignored: flood limits are per address). ValueError
    for anything else (host names are not resolved here)."""
    text = entry.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {entry!r}") from None


class _Block:
    __slots__ = ("dropped", "since", "until")

    def __init__(self, since: int, until: int) -> None:
        self.since = since
        self.until = until
        self.dropped = 0


class FloodGuard:
    """Admission of packets by source address. `admit(source)` on every datagram, stream
    message and connection attempt; `tick(now)` every `tick_interval` seconds."""

    def __init__(
        self, settings: FloodSettings, notify: Callable[[FloodEvent], None], now: float
    ) -> None:
        self.settings = settings
        self.notify = notify
        self.dropped = 0  # everything dropped while blocked, all sources, since start
        self.blocks = 0  # blocks started since start
        self._limit = settings.limit or _UNLIMITED
        self._tick_len = settings.window / SUB_WINDOWS
        self._block_ticks = max(1, round(settings.block / self._tick_len))
        self._tick = self._tick_of(now)
        self._counts: dict[str, int] = {}
        self._history: dict[str, tuple[int, ...]] = {}
        self._blocked: dict[str, _Block] = {}
        self._static = [parse_exempt(e) for e in settings.exempt]
        self._exempt: list[Network] = list(self._static)

    @property
    def tick_interval(self) -> float:
        return self._tick_len

    # ------------------------------------------------------------------ hot path
    def admit(self, source: str) -> bool:
        """Count one packet from `source`; False: drop it (the source is blocked)."""
        counts = self._counts
        n = counts.get(source, 0) + 1
        counts[source] = n
        return n <= self._limit or self._over(source)

    def _over(self, source: str) -> bool:
        block = self._blocked.get(source)
        if block is not None:
            block.dropped += 1
            self.dropped += 1
            return False
        if self.is_exempt(source):
            self._forget(source)  # counted afresh: the slow path once per `limit` packets
            return True
        self._start_block(source)
        return False

    def _start_block(self, source: str) -> None:
        block = self._blocked[source] = _Block(self._tick, self._tick + self._block_ticks)
        block.dropped = 1
        self.dropped += 1
        self.blocks += 1
        self._counts[source] += _OFFSET
        s = self.settings
        self.notify(Blocked(source=source, limit=s.limit, window=s.window, block=s.block))

    # ------------------------------------------------------------------ queries
    def is_blocked(self, source: str) -> bool:
        return source in self._blocked

    def blocked_sources(self) -> int:
        return len(self._blocked)

    def tracked_sources(self) -> int:
        return len(self._counts)

    def is_exempt(self, source: str) -> bool:
        if not self._exempt:
            return False
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in net for net in self._exempt)

    def set_exempt(self, sources: Iterable[str]) -> None:
        """Replace the run-time exempt set (e.g. the carrier gateways' addresses); the
        configured `exempt` entries always stay. A blocked source that becomes exempt is
        released at once. ValueError (nothing changed) for an entry that is no address."""
        extra = [parse_exempt(s) for s in sources]
        self._exempt = self._static + extra
        for source in [s for s in self._blocked if self.is_exempt(s)]:
            self._unblock(source)
            self._forget(source)

    # ------------------------------------------------------------------ time
    def _tick_of(self, now: float) -> int:
        return int(now // self._tick_len)

    def tick(self, now: float) -> None:
        """Shift every source's window to `now`; extend or end blocks."""
        target = self._tick_of(now)
        if target <= self._tick:
            return
        steps = min(target - self._tick, SUB_WINDOWS)
        self._tick = target
        for source, n in list(self._counts.items()):
            self._shift(source, n, steps)
        if len(self._counts) > self.settings.max_sources:
            for source in [s for s in self._counts if s not in self._blocked]:
                self._forget(source)

    def _shift(self, source: str, n: int, steps: int) -> None:
        block = self._blocked.get(source)
        total = n - _OFFSET if block is not None else n  # this window, current tick included
        history = self._history.get(source, _NO_HISTORY)
        current = total - sum(history)
        history = (*history, current, *((0,) * (steps - 1)))[-_KEPT:]
        if block is not None:
            if total > self._limit:
                block.until = self._tick + self._block_ticks
            elif self._tick >= block.until:
                self._unblock(source)
                block = None
        base = sum(history)
        if base == 0 and block is None:
            self._forget(source)
            return
        self._history[source] = history
        self._counts[source] = base + (_OFFSET if block is not None else 0)

    def _unblock(self, source: str) -> None:
        block = self._blocked.pop(source)
        if source in self._counts:
            self._counts[source] -= _OFFSET
        seconds = (self._tick - block.since) * self._tick_len
        self.notify(Unblocked(source=source, dropped=block.dropped, seconds=seconds))

    def _forget(self, source: str) -> None:
        self._counts.pop(source, None)
        self._history.pop(source, None)
