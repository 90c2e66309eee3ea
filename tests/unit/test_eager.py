"""switch.eager.FaultLog: one traceback per place per interval, the rest only counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

import switch.eager as eager_module
from switch.eager import FaultLog, run_eager


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


# ---------------------------------------------------------------- run_eager
# run_eager is called from protocol callbacks, outside any task: the tests call it so too.
@pytest.fixture(autouse=True)
def own_fault_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's rate-limited log is process-wide: these tests use one of their own."""
    monkeypatch.setattr(eager_module, "_faults", FaultLog(logging.getLogger("switch.eager")))


async def eager(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[asyncio.Task[None] | None] = loop.create_future()
    loop.call_soon(lambda: got.set_result(run_eager(coro)))
    return await got


async def test_a_coroutine_that_never_suspends_runs_at_once_and_costs_no_task() -> None:
    done = []

    async def tu() -> None:
        done.append(asyncio.current_task())

    assert await eager(tu()) is None
    assert done == [None]  # ran synchronously, outside any task


async def test_after_its_first_suspension_the_coroutine_goes_on_in_a_task() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[str] = loop.create_future()
    seen: list[object] = []

    async def tu() -> None:
        seen.append(asyncio.current_task())
        seen.append(await first)
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)  # a bare yield
        seen.append(await second)

    task = await eager(tu())
    assert task is not None and seen == [None]
    loop.call_soon(first.set_result, 1)
    loop.call_later(0.01, second.set_result, "two")
    await task
    assert seen == [None, 1, task, "two"]


async def test_a_first_suspension_on_a_bare_yield_is_resumed() -> None:
    seen = []

    async def tu() -> None:
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    task = await eager(tu())
    assert task is not None
    await task
    assert seen == [task]


@pytest.mark.parametrize("at", ["first await", "later await"])
async def test_a_cancelled_task_delivers_the_cancellation_to_the_coroutine(at: str) -> None:
    loop = asyncio.get_running_loop()
    before: asyncio.Future[None] = loop.create_future()
    never: asyncio.Future[None] = loop.create_future()
    cleanup: asyncio.Future[str] = loop.create_future()
    seen = []

    async def tu() -> None:
        if at == "later await":
            await before
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            seen.append(await cleanup)  # it may still await during its clean-up
            raise

    task = await eager(tu())
    assert task is not None
    if at == "later await":
        before.set_result(None)
    for _ in range(3):  # the task steps (and waits)
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    cleanup.set_result("cleaned")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned"]


async def test_a_coroutine_that_handles_its_cancellation_ends_normally() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = []

    async def tu() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("handled")

    task = await eager(tu())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await task  # the coroutine swallowed it: the task ends without an error
    assert seen == ["handled"]


async def test_a_task_cancelled_before_its_first_step_closes_the_coroutine() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = []

    async def tu() -> None:
        try:
            await never
        finally:
            seen.append("finally")

    task = await eager(tu())
    assert task is not None
    task.cancel()  # before the loop ran its first step
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["finally"]


async def test_failures_are_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def sync_failure() -> None:
        raise ValueError("at once")

    async def later_failure() -> None:
        await fut
        raise ValueError("after a suspension")

    with caplog.at_level(logging.ERROR, logger="switch.eager"):
        assert await eager(sync_failure()) is None
        task = await eager(later_failure())
        assert task is not None
        fut.set_result(None)
        await task  # no exception escapes
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [str(e) for e in errors][:1] == ["at once"]  # the second: rate-limited (same place)
