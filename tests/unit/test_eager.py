"""switch.eager.FaultLog: one traceback per place per interval, the rest only counted."""

from __future__ import annotations

import logging

import pytest

from switch.eager import FaultLog


def _fail(faults: FaultLog, where: str) -> bool:
    try:
        raise ValueError("boom")
    except ValueError:
        return faults.record(where)


def test_one_traceback_per_place_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    faults = FaultLog(logging.getLogger("t"), interval=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="t"):
        assert [_fail(faults, "udp") for _ in range(1000)].count(True) == 1
        assert _fail(faults, "timer")  # another place logs on its own
        now[0] = 59.9
        assert not _fail(faults, "udp")
        now[0] = 60.0
        assert _fail(faults, "udp")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 3
