"""Channel leases (switch/proxy/leases.py) against the memory backend with a failing wrapper
(our own seam): releases findable from the Call-ID alone, idempotent, retried; a failed
acquire undone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switch.metrics import Metrics
from switch.proxy import leases
from switch.proxy.leases import ActiveCalls
from switch.state.base import StateUnavailable
from switch.state.memory import MemoryState

WALL = 1_800_000_000.0


class FlakyState(MemoryState):
    """Fails the next `failures[op]` calls of an operation; `apply_then_fail` applies an
    acquire and then raises (a reply lost on the way back)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, int] = {}
        self.apply_then_fail = False

    def _maybe_fail(self, op: str) -> None:
        if self.failures.get(op, 0) > 0:
            self.failures[op] -= 1
            raise StateUnavailable(f"{op}: down")

    async def release_channel(self, tenant_id: str, call_id: str) -> bool:
        self._maybe_fail("release")
        return await super().release_channel(tenant_id, call_id)

    async def acquire_channel(
        self, tenant_id: str, call_id: str, limit: int, ttl: float, now: float
    ) -> bool:
        done = await super().acquire_channel(tenant_id, call_id, limit, ttl, now)
        if self.apply_then_fail:
            raise StateUnavailable("reply lost")
        return done


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "RETRY_FIRST", 0.01)


def calls_on(state: MemoryState, **kw: float) -> ActiveCalls:
    return ActiveCalls(Metrics(), state, lambda: WALL, **kw)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.02)


async def test_a_bye_on_a_process_without_the_lease_releases_it_by_its_record() -> None:
    state = MemoryState()
    before_crash = calls_on(state)
    assert await before_crash.acquire("t", "c1", 2, caller="0312345678", called="0355500100")
    assert await before_crash.acquire("t", "c2", 2)
    before_crash.answered("c1")
    await settle()
    (record, _) = await state.calls("t", WALL)
    assert record.caller == "0312345678" and record.answered == WALL
    after_restart = calls_on(state)  # knows nothing of c1
    after_restart.ended("c1")
    await settle()
    assert await state.channels_in_use("t", WALL) == 1  # c2 untouched
    assert [r.call_id for r in await state.calls("t", WALL)] == ["c2"]
    after_restart.ended("c1")  # a retransmitted BYE: nothing more
    await settle()
    assert await state.channels_in_use("t", WALL) == 1


async def test_a_release_is_retried_until_the_backend_takes_it() -> None:
    state = FlakyState()
    metrics = Metrics()
    calls = ActiveCalls(metrics, state, lambda: WALL)
    assert await calls.acquire("t", "c1", 1)
    state.failures["release"] = 3
    calls.ended("c1")
    await settle()
    assert await state.channels_in_use("t", WALL) == 0
    assert metrics.value("sip_lease_writes_retried_total", {"outcome": "retry"}) == 3
    assert metrics.value("sip_lease_writes_retried_total", {"outcome": "done"}) == 1


async def test_retries_are_bounded() -> None:
    state = FlakyState()
    metrics = Metrics()
    calls = ActiveCalls(metrics, state, lambda: WALL, retry_for=0.1)
    assert await calls.acquire("t", "c1", 1)
    state.failures["release"] = 1000
    calls.ended("c1")
    await settle()
    assert metrics.value("sip_lease_writes_retried_total", {"outcome": "given_up"}) == 1
    assert await state.channels_in_use("t", WALL) == 1  # left to the TTL


async def test_a_release_pending_is_not_in_use_and_goes_once_the_backend_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 §2 (found with two nodes and a Redis outage under load): a call that ended
    while the backend was away must not count as a channel in use, and its release must not
    wait out a long backoff once the backend is back."""
    monkeypatch.setattr(leases, "RETRY_FIRST", 30.0)  # without the wake-up: 30 s
    state = FlakyState()
    calls = calls_on(state)
    assert await calls.acquire("t", "c1", 2)
    assert await calls.acquire("t", "c2", 2)
    state.failures["release"] = 1
    calls.ended("c1")
    await settle()
    assert await state.channels_in_use("t", WALL) == 2  # still in the backend
    assert calls.releasing("t") == 1 and calls.releasing("other") == 0
    assert await calls.acquire("t", "c3", 2)  # c1 is over: the limit is not reached
    assert not await calls.acquire("t", "c4", 2)
    calls.backend_answered()  # e.g. the next call's routing lookup got through
    await settle()
    assert await state.channels_in_use("t", WALL) == 2  # c2, c3
    assert calls.releasing("t") == 0
    calls.backend_answered()  # nobody waiting: nothing happens


async def test_an_acquire_that_raised_after_applying_is_undone() -> None:
    state = FlakyState()
    calls = calls_on(state, late_write_bound=0.05)
    state.apply_then_fail = True
    with pytest.raises(StateUnavailable):
        await calls.acquire("t", "c1", 1)
    state.apply_then_fail = False
    await settle()
    assert await state.channels_in_use("t", WALL) == 0
    assert await calls.acquire("t", "c2", 1)  # not busy


class SlowRefresh(MemoryState):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def refresh_channel(self, tenant_id: str, call_id: str, ttl: float, now: float) -> bool:
        await self.gate.wait()
        return await super().refresh_channel(tenant_id, call_id, ttl, now)


async def test_a_refresh_racing_with_the_release_never_retakes_the_channel() -> None:
    state = SlowRefresh()
    calls = calls_on(state)
    assert await calls.acquire("t", "c1", 1)
    refresh = asyncio.ensure_future(calls.refresh("c1"))
    await asyncio.sleep(0)  # the refresh is on its way to the backend
    calls.ended("c1")  # the BYE's release lands first
    state.gate.set()
    await refresh  # it finds no lease: "expired meanwhile" must not take it again
    await settle()
    assert await state.channels_in_use("t", WALL) == 0


class SlowRefreshCountingReleases(SlowRefresh):
    def __init__(self) -> None:
        super().__init__()
        self.releases = 0

    async def release_call(self, tenant_id: str, call_id: str, also: str | None) -> bool:
        self.releases += 1
        return await super().release_call(tenant_id, call_id, also)


async def test_a_refresh_overtaken_by_the_release_releases_nothing_again() -> None:
    """The refresh never takes a lease (only its re-acquire after an expiry would), so the
    BYE's release is the only one: a lease is never released twice."""
    state = SlowRefreshCountingReleases()
    calls = calls_on(state)
    assert await calls.acquire("t", "c1", 1)
    calls.answered("c1")  # its refresh waits at the gate
    calls.ended("c1")  # the BYE's release lands first
    state.gate.set()
    await settle()
    assert state.releases == 1
    assert await state.channels_in_use("t", WALL) == 0 and await state.call("c1", WALL) is None


class CountingState(MemoryState):
    """Records the backend operations ActiveCalls calls (not those they call in turn)."""

    OPS = (
        "acquire_call", "refresh_call", "refresh_call_later", "release_call", "put_call",
        "remove_call",
        "acquire_channel", "refresh_channel", "release_channel", "call",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self._depth = 0
        for name in self.OPS:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(self, name: str, inner: Any) -> Any:
        async def op(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self.ops.append(name)
            self._depth += 1
            try:
                return await inner(*args, **kwargs)
            finally:
                self._depth -= 1

        return op


async def test_a_call_costs_one_backend_operation_per_change_of_its_lease() -> None:
    """Acquire (lease + record), answer (refresh + record's `answered`), BYE (leases +
    record): one operation each. The refreshes nobody waits for are `refresh_call_later`:
    on Redis no round trip of their own (test_redis_round_trips), so 3 per call."""
    state = CountingState()
    calls = calls_on(state)
    assert await calls.acquire("t", "c1", 1, caller="0312345678", called="0355500100")
    calls.answered("c1")
    await settle()
    assert state.ops == ["acquire_call", "refresh_call_later"]
    record = await state.call("c1", WALL)
    assert record is not None and record.answered == WALL and record.caller == "0312345678"
    state.ops.clear()
    calls.touch("c1")  # an in-dialog request
    await settle()
    assert state.ops == ["refresh_call_later"]
    calls.ended("c1")
    await settle()
    assert state.ops == ["refresh_call_later", "release_call"]
    assert await state.channels_in_use("t", WALL) == 0 and await state.call("c1", WALL) is None
