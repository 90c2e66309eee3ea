"""The overload control (switch/transport/overload.py): the refusal fraction follows the
measured signals, the decision per new INVITE, and the pending-INVITE cap."""

from __future__ import annotations

import pytest

from switch.transport.overload import (
    STEP_DOWN,
    WINDOW,
    OverloadControl,
    OverloadSettings,
    Refused,
)

LAG = 0.1


def control(**kw: float) -> OverloadControl:
    return OverloadControl(OverloadSettings(max_delay=LAG, **kw))  # type: ignore[arg-type]


def refusals(c: OverloadControl, n: int, pending: int = 0) -> int:
    return sum(c.due(lambda: pending) and c.refuse(lambda: pending) is not None for _ in range(n))


def test_idle_switch_refuses_nothing_and_is_not_armed() -> None:
    c = control()
    for _ in range(100):
        c.sample(0.001, 0.9)  # a full queue that drains fast is no overload
    assert not c.armed and not c.active
    assert refusals(c, 1000) == 0


@pytest.mark.parametrize("delay", [0.5, LAG * 1.01, 30.0])
def test_a_delay_over_the_threshold_raises_the_fraction(delay: float) -> None:
    c = control()
    for _ in range(WINDOW):
        c.sample(delay)
    assert c.active and c.fraction == pytest.approx(0.1)
    for _ in range(20):
        c.sample(delay)
    assert c.fraction == 1.0  # capped
    assert refusals(c, 50) == 50
    assert c.refused[Refused.LOAD] == 50


def test_at_the_threshold_is_not_overload() -> None:
    c = control()
    for _ in range(10):
        c.sample(LAG)
    assert not c.active


def test_a_burst_is_not_overload_a_standing_delay_is() -> None:
    """Only when every sample of the window is over the threshold (CoDel's standing queue):
    a GC pause or a burst delays a sample or two and passes."""
    c = control()
    for delay in [0.5, 0.5, 0.5, 0.01] * 5:
        c.sample(delay)
    assert not c.active
    for _ in range(WINDOW):
        c.sample(0.5)
    assert c.active


def test_refusals_follow_the_fraction_deterministically() -> None:
    c = control()
    for _ in range(WINDOW + 2):
        c.sample(1.0)
    assert c.fraction == pytest.approx(0.3)
    assert refusals(c, 1000) == pytest.approx(300, abs=1)


def test_recovery_within_seconds_after_the_overload_ends() -> None:
    """From full refusal back to none in 1/STEP_DOWN samples (2.5 s at 50 ms)."""
    c = control()
    for _ in range(20):
        c.sample(1.0)
    samples = 0
    while c.active:
        c.sample(0.0)
        samples += 1
    assert samples == pytest.approx(1 / STEP_DOWN, abs=1)
    assert samples * c.settings.interval <= 3.0
    assert refusals(c, 100) == 0


def test_zero_max_delay_never_refuses_for_load() -> None:
    c = OverloadControl(OverloadSettings(max_delay=0))
    c.sample(10.0, 1.0)
    assert not c.active


def test_pending_cap_refuses_every_new_invite_at_or_over_it() -> None:
    c = control(max_pending_invites=3)
    assert c.armed and not c.active  # looked at, but nothing measured
    assert not c.due(lambda: 2) and c.refuse(lambda: 2) is None
    assert c.due(lambda: 3) and c.refuse(lambda: 3) is Refused.PENDING
    assert c.refuse(lambda: 10) is Refused.PENDING
    assert c.refused == {Refused.LOAD: 0, Refused.PENDING: 2}


@pytest.mark.parametrize(
    "kw",
    [
        {"max_delay": -1.0},
        {"max_pending_invites": -1},
        {"retry_after": -1},
        {"interval": 0.0},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="overload"):
        OverloadSettings(**kw)  # type: ignore[arg-type]


def test_an_invite_that_is_not_refused_after_all_leaves_the_refusal_due() -> None:
    """A retransmission or a re-INVITE drew the refusal (`due`) but is let through: the next
    new INVITE is refused instead, so the share refused stays the fraction."""
    c = control()
    for _ in range(WINDOW + 4):
        c.sample(1.0)
    assert c.fraction == pytest.approx(0.5)
    assert not c.due(lambda: 0)
    assert c.due(lambda: 0)  # a retransmission: not refused (refuse() not called)
    assert c.due(lambda: 0) and c.refuse(lambda: 0) is Refused.LOAD
