"""Redis round trips per call (issue 11 §2: at most 3 per answered call) and the contract of
`refresh_call_later` (switch/state/base.py, redis_batch.py).

Round trips are counted on the real Redis at 127.0.0.1:6379 as the writes the node's
connections send (our seam: the pool's connection class): redis-py sends a command, or a
whole MULTI/EXEC pipeline, in one write and reads its reply before the next, so a write is a
round trip. A new connection's set-up is a write too: each test warms the node up first (one
connection, its scripts loaded) and counts from there. The operator's view is read through
another node (its own connections, not counted)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switch.metrics import Metrics
from switch.proxy.leases import ActiveCalls
from switch.state.base import DailyCount, StateBackend, UsageQuery
from switch.state.memory import MemoryState
from switch.state.redis import RedisState

from .test_state_contract import BACKENDS, RedisNodes, open_nodes, rec

redis_test = [pytest.mark.redis, pytest.mark.integration]


@pytest.fixture
async def nodes() -> AsyncIterator[RedisNodes]:
    n = await open_nodes()
    yield n
    await n.close()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        yield MemoryState()
        return
    n = await open_nodes()
    yield n.node("node-a", batch_delay=0.05)
    await n.close()


def count_round_trips(state: RedisState) -> list[int]:
    """From now on, count the writes of the connections `state` opens (box[0])."""
    sent = [0]
    pool = state._redis.connection_pool
    base: Any = pool.connection_class

    class Counting(base):  # type: ignore[misc,valid-type]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent[0] += 1
            await super().send_packed_command(command, check_health)

    pool.connection_class = Counting
    return sent


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


async def inbound_call(state: RedisState, calls: ActiveCalls, call_id: str, **kw: Any) -> None:
    """What the proxy does for an inbound call up to its answer: the routing read, the
    channel lease (acquire), the answer (`ActiveCalls.answered`)."""
    await state.routing_lookup(["d1"], "t", time.time())
    assert await calls.acquire("t", call_id, 10, caller="0312345678", called="0355500100")
    calls.answered(call_id, kw.get("interval"))


async def warm_up(state: RedisState, calls: ActiveCalls, sent: list[int]) -> None:
    """One call answered, its refresh sent on its own, ended: the connection is open and
    every script of a call loaded (a first EVALSHA costs NOSCRIPT + SCRIPT LOAD)."""
    await inbound_call(state, calls, "warm-up")
    await asyncio.sleep(state._batch.delay + 0.2)
    calls.ended("warm-up")
    await settle()
    sent[0] = 0


@pytest.mark.parametrize("carrier", ["next call's routing read", "housekeeping poll"])
@pytest.mark.redis
@pytest.mark.integration
async def test_an_answered_inbound_call_costs_three_round_trips(
    nodes: RedisNodes, carrier: str
) -> None:
    a, operator = nodes.node("node-a", batch_delay=0.3), nodes.node("node-op")
    sent = count_round_trips(a)
    calls = ActiveCalls(Metrics(), a, time.time)
    await warm_up(a, calls, sent)
    await inbound_call(a, calls, "c1", interval=90.0)  # 2xx with Session-Expires: 90
    await settle()
    assert sent[0] == 2  # the routing read, the acquire; the answer waits for a ride
    (listed,) = await operator.calls("t", time.time())
    assert listed.answered is None  # the operator view is that much late
    if carrier == "housekeeping poll":
        assert await a.ends_requested("node-a") == []
    else:
        await a.routing_lookup(["d2"], "t", time.time())
    await settle()
    assert sent[0] == 3  # no round trip of its own: it rode on that one
    (listed,) = await operator.calls("t", time.time())
    assert listed.answered is not None
    assert listed.until <= time.time() + 90 + 32  # the negotiated TTL, not the 2 h default
    await asyncio.sleep(a._batch.delay + 0.1)
    assert sent[0] == 3  # and nothing went on its own later
    calls.ended("c1")  # BYE
    await settle()
    # c1: its routing read, its acquire, its release (the 4th write was the carrier's)
    assert sent[0] == 4
    assert await operator.calls("t", time.time()) == []
    assert await operator.channels_in_use("t", time.time()) == 0


@pytest.mark.redis
@pytest.mark.integration
async def test_with_nothing_to_ride_on_the_queued_refreshes_go_in_one_round_trip(
    nodes: RedisNodes,
) -> None:
    a, operator = nodes.node("node-a", batch_delay=0.3), nodes.node("node-op")
    sent = count_round_trips(a)
    calls = ActiveCalls(Metrics(), a, time.time)
    await warm_up(a, calls, sent)
    for call_id in ("c1", "c2", "c3"):
        assert await calls.acquire("t", call_id, 10)
        calls.answered(call_id)
    await settle()
    assert sent[0] == 3
    await asyncio.sleep(a._batch.delay + 0.1)
    assert sent[0] == 4  # the three answers together
    listed = await operator.calls("t", time.time())
    assert [r.call_id for r in listed if r.answered is not None] == ["c1", "c2", "c3"]
    for call_id in ("c1", "c2", "c3"):
        calls.ended(call_id)
        await settle()  # one after the other: concurrent ones would open connections
    assert sent[0] == 7 and await operator.channels_in_use("t", time.time()) == 0


@pytest.mark.redis
@pytest.mark.integration
async def test_a_call_ended_before_its_refresh_left_is_released_once_and_nothing_else(
    nodes: RedisNodes,
) -> None:
    a, operator = nodes.node("node-a", batch_delay=0.3), nodes.node("node-op")
    sent = count_round_trips(a)
    calls = ActiveCalls(Metrics(), a, time.time)
    await warm_up(a, calls, sent)
    assert await calls.acquire("t", "c1", 10)
    calls.answered("c1")
    calls.answered("c1")  # a retransmitted 2xx: the same queued refresh, replaced
    calls.ended("c1")  # a BYE at once
    await asyncio.sleep(a._batch.delay + 0.2)
    assert sent[0] == 2  # the acquire and the one release: no refresh, no second release
    assert await operator.calls("t", time.time()) == []
    assert await operator.channels_in_use("t", time.time()) == 0


async def test_refresh_call_later_is_refresh_call(backend: StateBackend) -> None:
    """The same effect and result as refresh_call (test_state_contract), once it is sent."""
    assert await backend.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    answered = dataclasses.replace(rec("c1", until=150.0), answered=5.0, also="id:d1")
    assert await backend.refresh_call_later(answered, ttl=100, now=50)
    assert await backend.channels_in_use("t", now=149) == 1  # moved from 100 to 150
    assert await backend.channels_in_use("id:d1", now=149) == 1
    got = await backend.call("c1", now=120)
    assert got is not None and got.answered == 5.0 and got.until == 150.0
    # released: a later refresh takes nothing and writes nothing
    assert await backend.release_call("t", "c1", "id:d1")
    assert not await backend.refresh_call_later(dataclasses.replace(answered, until=300.0), 100, 60)
    assert await backend.channels_in_use("t", now=149) == 0
    assert await backend.channels_in_use("id:d1", now=149) == 0
    assert await backend.call("c1", now=120) is None


async def test_refreshes_of_several_calls_each_get_their_own_result(backend: StateBackend) -> None:
    assert await backend.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    assert await backend.acquire_call(rec("c3", tenant="u"), limit=5, ttl=100, now=0)
    results = await asyncio.gather(
        backend.refresh_call_later(rec("c1", until=150.0), ttl=100, now=50),
        backend.refresh_call_later(rec("c2", until=150.0), ttl=100, now=50),  # holds none
        backend.refresh_call_later(rec("c3", tenant="u", until=160.0), ttl=100, now=60),
    )
    assert results == [True, False, True]
    assert await backend.channels_in_use("t", now=149) == 1
    assert await backend.channels_in_use("u", now=159) == 1
    assert await backend.call("c2", now=60) is None


async def test_a_release_overtaking_a_queued_refresh_leaves_nothing(backend: StateBackend) -> None:
    assert await backend.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    refresh = asyncio.ensure_future(backend.refresh_call_later(rec("c1", 150.0), 100, now=50))
    await asyncio.sleep(0)  # queued on Redis; done at once on memory
    assert await backend.release_call("t", "c1", None)
    assert isinstance(await refresh, bool)  # False on Redis (dropped), True on memory
    assert await backend.channels_in_use("t", now=149) == 0
    assert await backend.call("c1", now=60) is None
    assert await backend.calls("t", now=60) == []


async def test_usage_lookup_is_daily_and_channels_in_use(backend: StateBackend) -> None:
    day = "2026-12-03"
    await backend.add_daily(day, ["id:d1", "t:t"], expires_at=time.time() + 3600)
    await backend.add_daily(day, ["id:d1"], expires_at=time.time() + 3600)
    assert await backend.acquire_channel("id:d1", "c1", 2**31, ttl=100, now=0)
    assert await backend.acquire_channel("id:d1", "c2", 2**31, ttl=10, now=0)  # expired at 50
    found = await backend.usage_lookup(day, ["id:d1", "t:t", "never"], "id:d1", now=50)
    assert found == ([2, 1, 0], 1)
    assert found == (await backend.daily(day, ["id:d1", "t:t", "never"]), 1)
    assert await backend.usage_lookup(day, [], "nobody", now=50) == ([], 0)


@pytest.mark.redis
@pytest.mark.integration
async def test_an_outbound_call_costs_three_round_trips(nodes: RedisNodes) -> None:
    """A device's call to the carrier, as the proxy does it (proxy.py `_inputs`, usage.py,
    execute.py `_take_channel`): the routing read with the caps' usage read, the acquire
    with the ID's own lease and the day's counters, the answer (rides along), the
    release."""
    a, operator = nodes.node("node-a", batch_delay=0.3), nodes.node("node-op")
    sent = count_round_trips(a)
    calls = ActiveCalls(Metrics(), a, time.time)
    await warm_up(a, calls, sent)
    day, keys = "2026-12-03", ("id:d1", "t:t")
    query = UsageQuery(day, keys, "id:d1")
    count = DailyCount(day, keys, time.time() + 3600)
    for n, call_id in enumerate(("warm-up-2", "c1")):  # the first loads the outbound scripts
        sent[0] = 0
        bindings, in_use, (counters, active) = await a.outbound_lookup([], "t", time.time(), query)
        assert (bindings, in_use, counters, active) == ({}, 0, [n, n], 0)
        assert await calls.acquire("t", call_id, 10, also="id:d1", daily=count)
        assert await operator.channels_in_use("id:d1", time.time()) == 1
        assert await operator.daily(day, list(keys)) == [n + 1, n + 1]
        await calls.also_count(call_id, "id:d1")  # counted by the acquire: nothing to do
        calls.answered(call_id)
        await a.routing_lookup([], "t", time.time())  # the next call's: the answer rides on it
        calls.ended(call_id)
        await settle()
    assert sent[0] == 3 + 1  # + the next call's routing read
    assert await operator.channels_in_use("id:d1", time.time()) == 0
    assert await operator.channels_in_use("t", time.time()) == 0


async def test_outbound_lookup_reads_what_the_two_lookups_read(backend: StateBackend) -> None:
    day = "2026-12-03"
    await backend.add_daily(day, ["id:d1", "t:t"], expires_at=time.time() + 3600)
    assert await backend.acquire_channel("id:d1", "c1", 2**31, ttl=100, now=0)
    assert await backend.acquire_channel("t", "c1", 5, ttl=100, now=0)
    query = UsageQuery(day, ("id:d1", "t:t", "never"), "id:d1")
    got = await backend.outbound_lookup(["d1"], "t", 50, query)
    assert got == ({"d1": []}, 1, ([1, 1, 0], 1))
    assert got[:2] == await backend.routing_lookup(["d1"], "t", 50)
    assert got[2] == await backend.usage_lookup(day, ["id:d1", "t:t", "never"], "id:d1", 50)
    assert await backend.outbound_lookup([], None, 150, query) == ({}, None, ([1, 1, 0], 0))


async def test_acquire_call_counts_the_day_only_when_it_takes_the_lease(
    backend: StateBackend,
) -> None:
    day, keys = "2026-12-03", ("id:d1", "t:t", "x:d1")
    count = DailyCount(day, keys, time.time() + 3600)
    record = dataclasses.replace(rec("c1"), also="id:d1")
    assert await backend.acquire_call(record, limit=1, ttl=100, now=0, daily=count)
    assert await backend.daily(day, list(keys)) == [1, 1, 1]
    assert await backend.channels_in_use("id:d1", now=10) == 1  # the also lease too
    refused = dataclasses.replace(rec("c2"), also="id:d1")
    assert not await backend.acquire_call(refused, limit=1, ttl=100, now=10, daily=count)
    assert await backend.daily(day, list(keys)) == [1, 1, 1]  # refused: not counted
    assert await backend.channels_in_use("id:d1", now=10) == 1
    plain = rec("c3", tenant="u")  # no also lease: the counters are the only extra keys
    assert await backend.acquire_call(plain, limit=1, ttl=100, now=10, daily=count)
    assert await backend.daily(day, list(keys)) == [2, 2, 2]
    assert await backend.channels_in_use("id:d1", now=10) == 1
    assert await backend.channels_in_use("u", now=10) == 1


@pytest.mark.redis
@pytest.mark.integration
async def test_closing_sends_the_queued_refreshes(nodes: RedisNodes) -> None:
    a, operator = nodes.node("node-a", batch_delay=60), nodes.node("node-op")
    calls = ActiveCalls(Metrics(), a, time.time)
    assert await calls.acquire("t", "c1", 10)
    calls.answered("c1")
    await settle()
    (listed,) = await operator.calls("t", time.time())
    assert listed.answered is None
    await a.close()  # a node stopping: its answered calls still show as answered
    (listed,) = await operator.calls("t", time.time())
    assert listed.answered is not None


@pytest.mark.redis
@pytest.mark.integration
async def test_a_refresh_sent_at_once_replaces_the_queued_older_one(nodes: RedisNodes) -> None:
    """A device's outbound call answered before `also_count` ran: the answer's refresh is
    queued with the record as it was (no `also`); also_count's, sent at once, is newer and
    the queued one must never land after it."""
    a, operator = nodes.node("node-a", batch_delay=0.3), nodes.node("node-op")
    calls = ActiveCalls(Metrics(), a, time.time)
    assert await calls.acquire("t", "c1", 10)
    calls.answered("c1")  # queued
    await calls.also_count("c1", "id:d1")  # at once
    await asyncio.sleep(a._batch.delay + 0.2)
    got = await operator.call("c1", time.time())
    assert got is not None and got.also == "id:d1" and got.answered is not None
    assert await operator.channels_in_use("id:d1", time.time()) == 1
    calls.ended("c1")
    await settle()
    assert await operator.channels_in_use("id:d1", time.time()) == 0
    assert await operator.channels_in_use("t", time.time()) == 0


async def test_acquire_call_takes_the_also_lease_with_the_call(backend: StateBackend) -> None:
    record = dataclasses.replace(rec("c1"), also="id:d1")
    assert await backend.acquire_call(record, limit=1, ttl=100, now=0)
    assert await backend.channels_in_use("id:d1", now=99) == 1  # the same deadline
    got = await backend.call("c1", now=10)
    assert got is not None and got.also == "id:d1"
    refused = dataclasses.replace(rec("c2"), also="id:d1")
    assert not await backend.acquire_call(refused, limit=1, ttl=100, now=10)  # busy
    assert await backend.channels_in_use("id:d1", now=50) == 1  # refused: not counted
    assert await backend.acquire_call(
        dataclasses.replace(rec("c3", tenant="u"), also="id:d1"), 1, 100, 0
    )
    assert await backend.channels_in_use("id:d1", now=50) == 2
    assert await backend.release_call("t", "c1", "id:d1")
    assert await backend.channels_in_use("id:d1", now=50) == 1
    assert await backend.channels_in_use("id:d1", now=100) == 0  # c3's: the deadline of its call


@pytest.mark.redis
@pytest.mark.integration
async def test_the_timer_never_sends_a_refresh_younger_than_the_delay(nodes: RedisNodes) -> None:
    """Under steady traffic the carriers take every refresh: the timer armed by the first
    one must not send the later ones on its own when it wakes up."""
    a = nodes.node("node-a", batch_delay=0.4)
    sent = count_round_trips(a)
    calls = ActiveCalls(Metrics(), a, time.time)
    await warm_up(a, calls, sent)
    for call_id in ("c1", "c2"):
        assert await calls.acquire("t", call_id, 10)
    sent[0] = 0
    calls.answered("c1")  # arms the timer
    await asyncio.sleep(0.2)
    await a.routing_lookup([], "t", time.time())  # carries c1
    calls.answered("c2")
    await asyncio.sleep(0.3)  # c1 would have been due by now; c2 is not
    assert sent[0] == 1
    await a.routing_lookup([], "t", time.time())  # carries c2
    await asyncio.sleep(0.5)
    assert sent[0] == 2
    assert all(r.answered for r in await a.calls("t", time.time()))
