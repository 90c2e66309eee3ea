"""The sans-IO pacer: deadlines without drift, bounded catch-up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.pacer import Due, Pacer


def test_first_packet_is_due_at_start() -> None:
    pacer = Pacer(start=100.0)
    assert pacer.deadline() == 100.0
    assert pacer.due(99.99) == Due(send=0)
    assert pacer.due(100.0) == Due(send=1)
    assert pacer.deadline() == pytest.approx(100.02)


def test_late_wakeups_do_not_accumulate_drift() -> None:
    # A timer that always wakes 3 ms late: deadlines stay on the 20 ms grid.
    pacer = Pacer(start=0.0)
    sent = 0
    for _ in range(1000):
        wake = pacer.deadline() + 0.003
        sent += pacer.due(wake).send
    assert sent == 1000
    assert pacer.deadline() == pytest.approx(1000 * 0.020)


def test_early_wakeup_sends_nothing() -> None:
    pacer = Pacer(start=0.0)
    pacer.due(0.0)
    assert pacer.due(0.0199) == Due(send=0)
    assert pacer.due(0.02) == Due(send=1)


def test_small_stall_is_caught_up_in_a_burst() -> None:
    pacer = Pacer(start=0.0, max_burst=3)
    pacer.due(0.0)
    assert pacer.due(0.061) == Due(send=3)


def test_long_stall_skips_and_bounds_the_burst() -> None:
    pacer = Pacer(start=0.0, max_burst=3)
    pacer.due(0.0)
    due = pacer.due(1.0)  # slots 1..50 are due
    assert due == Due(send=3, skipped=47)
    assert pacer.skipped_total == 47 and pacer.sent == 51
    assert pacer.deadline() == pytest.approx(1.02)


def test_restart() -> None:
    pacer = Pacer(start=0.0)
    pacer.due(5.0)
    pacer.restart(10.0)
    assert pacer.deadline() == 10.0 and pacer.due(10.0) == Due(send=1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Pacer(start=0.0, interval=0)
    with pytest.raises(ValueError):
        Pacer(start=0.0, max_burst=0)


@given(st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200), st.integers(1, 5))
def test_slots_are_consumed_exactly_once(steps: list[float], burst: int) -> None:
    pacer = Pacer(start=0.0, interval=0.02, max_burst=burst)
    now, total = 0.0, 0
    for step in steps:
        now += step
        due = pacer.due(now)
        assert 0 <= due.send <= burst
        total += due.send + due.skipped
        assert pacer.deadline() > now
    assert total == pacer.sent == int(now / 0.02 + 1e-9) + 1
