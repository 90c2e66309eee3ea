"""FloodGuard on a fake clock: the sliding window's bounds, blocking and its extension while
the flood goes on, the release after the block time, exemptions, the events (one per block,
never one per packet) and the memory bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.transport.flood import (
    SUB_WINDOWS,
    Blocked,
    FloodEvent,
    FloodGuard,
    FloodSettings,
    Unblocked,
    parse_exempt,
)

A, B, GW = "192.0.2.1", "192.0.2.2", "198.51.100.7"
LIMIT, WINDOW, BLOCK = 20, 2.0, 10.0
TICK = WINDOW / SUB_WINDOWS


class Clock:
    """Drives a guard the way the manager does: tick() at every tick boundary."""

    def __init__(self, **kw: object) -> None:
        self.now = 1000.0
        self.events: list[FloodEvent] = []
        s = FloodSettings(limit=LIMIT, window=WINDOW, block=BLOCK, **kw)  # type: ignore[arg-type]
        self.guard = FloodGuard(s, self.events.append, self.now)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now + TICK <= end + 1e-9:
            self.now += TICK
            self.guard.tick(self.now)
        self.now = end
        self.guard.tick(self.now)

    def send(self, source: str, n: int) -> int:
        """n packets from source now; how many were admitted."""
        return sum(self.guard.admit(source) for _ in range(n))


def test_a_burst_over_the_limit_is_cut_after_the_limit() -> None:
    c = Clock()
    assert c.send(A, 100) == LIMIT
    assert c.guard.is_blocked(A) and c.guard.dropped == 100 - LIMIT
    assert c.send(B, 5) == 5  # another source is not affected
    assert c.events == [Blocked(source=A, limit=LIMIT, window=WINDOW, block=BLOCK)]


def test_never_blocks_a_source_under_the_limit_in_every_window() -> None:
    # LIMIT packets per window, spread evenly over a long time: never blocked.
    c = Clock()
    per_tick = LIMIT // SUB_WINDOWS
    for _ in range(200):
        assert c.send(A, per_tick) == per_tick
        c.advance(TICK)
    assert c.events == [] and c.guard.dropped == 0


def test_the_window_slides_the_previous_ticks_count() -> None:
    # LIMIT packets in one tick, then one more within the next three ticks: blocked,
    # because the first burst is still in the window (no reset at a window boundary).
    c = Clock()
    assert c.send(A, LIMIT) == LIMIT
    c.advance(3 * TICK)
    assert c.send(A, 1) == 0
    assert c.guard.is_blocked(A)


def test_the_window_forgets_after_a_whole_window() -> None:
    c = Clock()
    assert c.send(A, LIMIT) == LIMIT
    c.advance(WINDOW)
    assert c.send(A, LIMIT) == LIMIT  # the first burst is out of the window
    assert not c.guard.is_blocked(A)


def test_block_lasts_while_the_flood_goes_on_then_block_time_after() -> None:
    c = Clock()
    c.send(A, LIMIT + 1)
    flood_for = 30.0
    t = 0.0
    while t < flood_for:  # keeps flooding at 4x the limit
        assert c.send(A, LIMIT) == 0
        c.advance(TICK)
        t += TICK
    assert c.guard.is_blocked(A)
    stopped = c.now
    while c.guard.is_blocked(A):
        c.advance(TICK)
        assert c.now - stopped < BLOCK + WINDOW + TICK
    # served again: block time after the window last exceeded the limit (<= a window later)
    assert BLOCK <= c.now - stopped <= BLOCK + WINDOW
    assert c.send(A, 1) == 1
    released = [e for e in c.events if isinstance(e, Unblocked)]
    assert len(released) == 1 and len(c.events) == 2  # one event each way, not per packet
    assert released[0].dropped == 1 + LIMIT * int(flood_for / TICK)
    assert released[0].seconds == pytest.approx(c.now - (stopped - flood_for), abs=TICK)


def test_a_quiet_blocked_source_is_released_after_the_block_time() -> None:
    # The burst stays in the sliding window for up to a window: the block ends between
    # BLOCK and BLOCK + WINDOW after it.
    c = Clock()
    c.send(A, LIMIT + 1)
    burst = c.now
    c.advance(BLOCK - TICK)
    assert c.guard.is_blocked(A) and c.send(A, 1) == 0
    while c.guard.is_blocked(A):
        c.advance(TICK)
    assert BLOCK <= c.now - burst <= BLOCK + WINDOW
    assert c.send(A, 1) == 1


def test_exempt_addresses_and_networks_are_never_blocked() -> None:
    c = Clock(exempt=("198.51.100.0/24",))
    assert c.send(GW, 50 * LIMIT) == 50 * LIMIT
    assert c.events == [] and c.guard.blocked_sources() == 0


def test_run_time_exempt_set_replaces_the_previous_and_releases_a_blocked_gateway() -> None:
    c = Clock(exempt=("203.0.113.9",))
    c.send(GW, LIMIT + 1)
    assert c.guard.is_blocked(GW)
    c.guard.set_exempt([f"{GW}:5060"])  # as gateways list their allowed sources
    assert not c.guard.is_blocked(GW) and c.send(GW, 10 * LIMIT) == 10 * LIMIT
    assert c.guard.is_exempt("203.0.113.9")  # the configured entry stays
    c.guard.set_exempt([])
    assert not c.guard.is_exempt(GW) and c.guard.is_exempt("203.0.113.9")
    with pytest.raises(ValueError):
        c.guard.set_exempt(["gw.example.net"])
    assert c.guard.is_exempt("203.0.113.9")


def test_limit_zero_is_off() -> None:
    events: list[FloodEvent] = []
    g = FloodGuard(FloodSettings(limit=0), events.append, 0.0)
    assert all(g.admit(A) for _ in range(10_000))
    assert events == []


def test_sources_are_forgotten_one_window_after_their_last_packet() -> None:
    c = Clock()
    for i in range(100):
        c.send(f"10.0.0.{i}", 1)
    assert c.guard.tracked_sources() == 100
    c.advance(WINDOW)
    assert c.guard.tracked_sources() == 0


def test_a_spoofed_source_flood_cannot_grow_the_table_without_bound() -> None:
    c = Clock(max_sources=50)
    c.send(A, LIMIT + 1)
    for i in range(500):
        c.send(f"10.0.{i // 250}.{i % 250}", 1)
    c.advance(TICK)
    assert c.guard.tracked_sources() <= 50
    assert c.guard.is_blocked(A)  # blocks survive the flush


@pytest.mark.parametrize(
    ("entry", "network"),
    [
        ("192.0.2.10", "192.0.2.10/32"),
        ("192.0.2.10:5060", "192.0.2.10/32"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("[2001:db8::1]:5060", "2001:db8::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_parse_exempt(entry: str, network: str) -> None:
    assert str(parse_exempt(entry)) == network


@pytest.mark.parametrize("entry", ["", "gw.example.net", "192.0.2.300", "1.2.3.4:x:y"])
def test_parse_exempt_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_exempt(entry)


@pytest.mark.parametrize(
    "kw", [{"limit": -1}, {"window": 0}, {"block": -1}, {"exempt": ("x",)}, {"max_sources": 0}]
)
def test_settings_validate(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FloodSettings(**kw)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=LIMIT), min_size=1, max_size=60))
def test_property_blocked_exactly_when_a_counted_span_exceeds_the_limit(
    per_tick: list[int],
) -> None:
    """Send per_tick[i] packets in tick i. Never blocked while every span of 4 consecutive
    ticks (<= one window) holds <= LIMIT; always blocked once a span of 3 ticks (< 3/4 of a
    window, always inside the counted span) holds more."""
    c = Clock()
    for i, n in enumerate(per_tick):
        c.send(A, n)
        last4 = sum(per_tick[max(0, i - 3) : i + 1])
        last3 = sum(per_tick[max(0, i - 2) : i + 1])
        if last3 > LIMIT:
            assert c.guard.is_blocked(A)
        if not c.guard.is_blocked(A):
            assert last4 <= LIMIT
        if c.guard.is_blocked(A):
            break
        c.advance(TICK)
