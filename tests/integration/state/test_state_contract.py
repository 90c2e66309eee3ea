"""The StateBackend contract (switch/state/base.py), run against MemoryState and against
RedisState on the real Redis at 127.0.0.1:6379. Every Redis test uses its own key prefix and
deletes it afterwards (never FLUSHDB: other runs share the server).

Times are a fake wall clock passed in, like the registrar and the proxy do; the Redis
backend must never consult its own clock for a live/expired decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from switch.eager import run_eager
from switch.sip.target import Target
from switch.state.base import Ban, Binding, CallRecord, StateBackend, StateUnavailable
from switch.state.memory import MemoryState
from switch.state.redis import RedisState

# another DB for a run that must keep off DB 0 (the keys are under a fresh prefix anyway)
REDIS_URL = os.environ.get("SOFTSWITCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SRC = Target("udp", "192.0.2.1", 5060)
FLOW = Target("tcp", "198.51.100.7", 40123, conn_id=7)
PATH = "sip:f-token@10.0.0.1:5161;lr"

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=[pytest.mark.redis, pytest.mark.integration]),
]


def redis_only(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Two-node and Redis-specific tests (no memory twin)."""
    marked: Callable[..., Awaitable[None]] = pytest.mark.integration(pytest.mark.redis(test))
    return marked


def b(
    contact: str,
    expires_at: float,
    device: str = "d1",
    cseq: int = 1,
    source: Target = SRC,
) -> Binding:
    return Binding(
        device_id=device,
        contact=contact,
        instance_id=None,
        expires_at=expires_at,
        source=source,
        call_id="c",
        cseq=cseq,
    )


# --------------------------------------------------------------------------- fixtures
class RedisNodes:
    """RedisState instances ("nodes") sharing one fresh prefix; everything under it is
    deleted at teardown."""

    def __init__(self) -> None:
        self.prefix = f"softswitch-test:{secrets.token_hex(8)}:"
        self.raw = Redis.from_url(REDIS_URL, decode_responses=True)
        self.nodes: list[RedisState] = []

    def node(self, node_id: str, **options: Any) -> RedisState:
        state = RedisState(REDIS_URL, prefix=self.prefix, node_id=node_id, **options)
        self.nodes.append(state)
        return state

    async def keys(self) -> list[str]:
        return [k async for k in self.raw.scan_iter(match=self.prefix + "*", count=1000)]

    async def close(self) -> None:
        left = await self.keys()
        if left:
            await self.raw.delete(*left)
        for state in self.nodes:
            await state.close()
        await self.raw.aclose()


async def open_nodes() -> RedisNodes:
    nodes = RedisNodes()
    try:
        await nodes.raw.ping()
    except Exception as exc:
        await nodes.raw.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return nodes


@pytest.fixture
async def redis_nodes() -> AsyncIterator[RedisNodes]:
    nodes = await open_nodes()
    yield nodes
    await nodes.close()


@pytest.fixture(params=BACKENDS)
async def state(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        yield MemoryState()
        return
    nodes = await open_nodes()
    yield nodes.node("node-a")
    await nodes.close()


def own_node(state: StateBackend) -> str | None:
    """What a backend stamps on the bindings it stores (None: single node)."""
    return state.node_id if isinstance(state, RedisState) else None


# --------------------------------------------------------------------------- bindings
async def test_put_replace_remove_and_count(state: StateBackend) -> None:
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 100))
    await state.put_binding(b("sip:a@h", 200, cseq=2))  # replaces, same contact
    assert await state.count() == 2
    got = await state.bindings("d1", now=0)
    assert [(x.contact, x.cseq, x.expires_at) for x in got] == [
        ("sip:a@h", 2, 200),
        ("sip:b@h", 1, 100),
    ]
    assert await state.remove_binding("d1", "sip:b@h") is True
    assert await state.remove_binding("d1", "sip:b@h") is False
    assert await state.remove_binding("nobody", "sip:b@h") is False
    assert await state.count() == 1
    assert await state.remove_all("d1") == 1
    assert await state.remove_all("d1") == 0
    assert await state.count() == 0
    assert await state.bindings("d1", now=0) == []


async def test_bindings_keep_registration_order(state: StateBackend) -> None:
    for contact in ("sip:c@h", "sip:a@h", "sip:b@h", "sip:d@h"):
        await state.put_binding(b(contact, 100))
    await state.put_binding(b("sip:a@h", 300, cseq=2))  # a refresh keeps its place
    await state.remove_binding("d1", "sip:c@h")
    await state.put_binding(b("sip:c@h", 100))  # removed and added again: now the last
    got = [x.contact for x in await state.bindings("d1", now=0)]
    assert got == ["sip:a@h", "sip:b@h", "sip:d@h", "sip:c@h"]


async def test_binding_round_trips_every_field(state: StateBackend) -> None:
    original = Binding(
        device_id="dév:1",
        contact="sip:alice@[2001:db8::1]:5062;transport=tcp;ob",
        instance_id='"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
        expires_at=1_763_790_000.123456,  # microseconds survive (no 14-digit rounding)
        source=FLOW,
        call_id="a84b4c76e66710@pc33.example.com",
        cseq=2**31 - 1,
        user_agent='Désk/1.0 "quoted" \\ ünïcode',
        q=0.7,
    )
    await state.put_binding(original)
    [got] = await state.bindings("dév:1", now=1_763_790_000.123455)
    assert got == dataclasses.replace(original, node=own_node(state))
    assert await state.bindings("dév:1", now=1_763_790_000.123456) == []  # live: > now
    assert await state.remove_all("dév:1") == 1
    assert await state.count() == 0


async def test_bindings_are_filtered_by_now_before_expire(state: StateBackend) -> None:
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 200))
    assert [x.contact for x in await state.bindings("d1", now=100)] == ["sip:b@h"]
    assert await state.count() == 2  # stored until expire() runs


async def test_expire_skips_refreshed_bindings(state: StateBackend) -> None:
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 100))
    await state.put_binding(b("sip:x@h", 120, device="d2"))
    await state.put_binding(b("sip:a@h", 300))  # refreshed
    assert [x.contact for x in await state.bindings("d1", now=150)] == ["sip:a@h"]
    assert await state.expire(150) == 2  # d1's b and d2's x
    assert await state.count() == 1
    assert await state.bindings("d2", now=0) == []
    assert await state.expire(299) == 0
    assert await state.expire(300) == 1
    assert await state.count() == 0
    assert await state.bindings("d1", now=0) == []


async def test_expire_many_in_batches(state: StateBackend) -> None:
    for i in range(1_200):  # more than one sweep batch of the Redis backend
        await state.put_binding(b(f"sip:{i}@h", 100 + (i % 2) * 100, device=f"d{i % 7}"))
    assert await state.count() == 1_200
    assert await state.expire(150) == 600
    assert await state.count() == 600
    assert await state.expire(200) == 600
    assert await state.count() == 0


async def test_device_and_contact_boundaries_do_not_collide(state: StateBackend) -> None:
    # Naive joins of (device, contact) would collide: "a"+"bc" / "ab"+"c", and with a ":"
    # separator "a"+"b:c" / "a:b"+"c".
    pairs = [("a", "bc", 100), ("ab", "c", 200), ("a", "b:c", 300), ("a:b", "c", 400)]
    for device, contact, expires_at in pairs:
        await state.put_binding(b(contact, expires_at, device=device))
    assert await state.count() == 4
    for i, (device, contact, expires_at) in enumerate(pairs):
        assert await state.expire(expires_at) == 1
        assert contact not in [x.contact for x in await state.bindings(device, now=0)]
        assert await state.count() == 3 - i
    for device, contact, expires_at in pairs:
        await state.put_binding(b(contact, expires_at, device=device))
    assert await state.remove_all("a") == 2
    assert await state.count() == 2
    assert await state.expire(400) == 2


async def test_remove_all_leaves_the_lock_and_other_devices(state: StateBackend) -> None:
    await state.claim_device("d1", "phone-A", until=100, now=0)
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 100))
    await state.put_binding(b("sip:x@h", 100, device="d2"))
    assert await state.remove_all("d1") == 2
    assert await state.device_owner("d1", now=1) == "phone-A"
    assert await state.count() == 1
    assert await state.expire(100) == 1  # d1's entries are gone from the deadline index too
    assert await state.count() == 0


# --------------------------------------------------------------------------- device lock
async def test_device_lock_one_owner_until_deadline(state: StateBackend) -> None:
    assert await state.device_owner("d1", now=0) is None
    assert await state.claim_device("d1", "phone-A", until=100, now=0)
    assert not await state.claim_device("d1", "phone-B", until=100, now=50)
    assert await state.device_owner("d1", now=50) == "phone-A"
    assert await state.claim_device("d1", "phone-A", until=80, now=50)  # may shrink
    assert await state.device_owner("d1", now=79.5) == "phone-A"
    assert await state.device_owner("d1", now=80) is None  # deadline passed: free
    assert await state.claim_device("d1", "phone-B", until=200, now=80)
    assert not await state.unclaim_device("d1", "phone-A")
    assert await state.device_owner("d1", now=90) == "phone-B"
    assert await state.unclaim_device("d1", "phone-B")
    assert not await state.unclaim_device("d1", "phone-B")
    assert await state.device_owner("d1", now=90) is None


async def test_expire_drops_dead_locks_only(state: StateBackend) -> None:
    await state.claim_device("d1", "phone-A", until=100, now=0)
    await state.claim_device("d2", "phone-B", until=300, now=0)
    await state.claim_device("d1", "phone-A", until=200, now=10)  # extended: not due at 150
    await state.claim_device("d3", "phone-C", until=120, now=0)
    assert await state.expire(150) == 0  # counts bindings, not locks
    # Asked about an earlier time, a dropped lock is gone, a kept one is still there.
    assert await state.device_owner("d3", now=0) is None
    assert await state.device_owner("d1", now=0) == "phone-A"
    assert await state.device_owner("d2", now=0) == "phone-B"
    assert not await state.unclaim_device("d3", "phone-C")


async def test_release_device_drops_bindings_and_lock(state: StateBackend) -> None:
    await state.claim_device("d1", "phone-A", until=100, now=0)
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 100))
    await state.put_binding(b("sip:x@h", 100, device="d2"))
    assert await state.release_device("d1") == 2
    assert await state.device_owner("d1", now=1) is None
    assert await state.bindings("d1", now=1) == []
    assert await state.count() == 1
    assert await state.claim_device("d1", "phone-B", until=100, now=1)
    assert await state.release_device("nobody") == 0


async def test_concurrent_claims_have_one_winner(state: StateBackend) -> None:
    results = await asyncio.gather(
        *(state.claim_device("d1", f"phone-{i}", until=100, now=0) for i in range(30))
    )
    assert sum(results) == 1
    winner = f"phone-{results.index(True)}"
    assert await state.device_owner("d1", now=0) == winner


# --------------------------------------------------------------------------- channel leases
async def test_channel_leases_limit_refresh_release_expiry(state: StateBackend) -> None:
    assert await state.acquire_channel("t", "c1", limit=2, ttl=10, now=0)
    assert await state.acquire_channel("t", "c2", limit=2, ttl=10, now=0)
    assert not await state.acquire_channel("t", "c3", limit=2, ttl=10, now=1)
    assert await state.acquire_channel("t", "c1", limit=2, ttl=10, now=1)  # re-acquire = refresh
    assert await state.channels_in_use("t", now=1) == 2
    assert await state.channels_in_use("other", now=1) == 0
    assert await state.refresh_channel("t", "c2", ttl=100, now=5)
    assert await state.channels_in_use("t", now=10.5) == 2
    assert await state.channels_in_use("t", now=11) == 1  # c1 expired at 11
    assert not await state.refresh_channel("t", "c1", ttl=10, now=11)
    assert await state.acquire_channel("t", "c3", limit=2, ttl=10, now=11)
    assert await state.release_channel("t", "c3")
    assert not await state.release_channel("t", "c3")
    assert not await state.release_channel("nobody", "c3")
    assert await state.channels_in_use("t", now=12) == 1


async def test_expired_leases_free_their_channel(state: StateBackend) -> None:
    assert await state.acquire_channel("t", "c1", limit=1, ttl=10, now=0)
    assert not await state.acquire_channel("t", "c2", limit=1, ttl=10, now=9.999)
    assert await state.acquire_channel("t", "c2", limit=1, ttl=10, now=10)  # c1 dead at 10
    assert not await state.refresh_channel("t", "c1", ttl=10, now=10)
    assert await state.channels_in_use("t", now=10) == 1


async def test_lease_deadline_is_exact(state: StateBackend) -> None:
    now, ttl = 1_763_790_000.123456, 0.000_002
    assert await state.acquire_channel("t", "c1", limit=5, ttl=ttl, now=now)
    assert await state.channels_in_use("t", now=now + 0.000_001) == 1
    assert await state.channels_in_use("t", now=now + ttl) == 0


async def test_limit_zero_and_tenants_apart(state: StateBackend) -> None:
    assert not await state.acquire_channel("t0", "c1", limit=0, ttl=10, now=0)
    assert await state.acquire_channel("t1", "c1", limit=1, ttl=10, now=0)
    assert await state.acquire_channel("t2", "c1", limit=1, ttl=10, now=0)  # same Call-ID
    assert await state.release_channel("t1", "c1")
    assert await state.channels_in_use("t2", now=0) == 1


async def test_concurrent_acquires_respect_the_limit(state: StateBackend) -> None:
    results = await asyncio.gather(
        *(state.acquire_channel("t", f"call-{i}", limit=3, ttl=60, now=0) for i in range(50))
    )
    assert sum(results) == 3
    assert await state.channels_in_use("t", now=0) == 3


# --------------------------------------------------------------------------- driven eagerly
async def test_usable_from_a_coroutine_stepped_outside_any_task(state: StateBackend) -> None:
    """The transport core steps a TU's coroutine by hand from a protocol callback up to its
    first suspension (`run_eager`), outside any asyncio task; every call must work there
    (redis-py's socket timeouts need a current task)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[object]] = loop.create_future()

    async def tu() -> None:
        assert asyncio.current_task() is None
        results: list[object] = [await state.acquire_channel("t", "c1", 2, 10, now=0)]
        results.append(await state.channels_in_use("t", now=0))  # now inside run_eager's task
        done.set_result(results)

    loop.call_soon(run_eager, tu())
    assert await asyncio.wait_for(done, 5) == [True, 1]


# --------------------------------------------------------------------------- Redis only
@redis_only
async def test_fifty_concurrent_acquires_on_two_nodes_exactly_three_win(
    redis_nodes: RedisNodes,
) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    calls = [
        (a if i % 2 else b_).acquire_channel("t", f"call-{i}", limit=3, ttl=60, now=0)
        for i in range(50)
    ]
    results = await asyncio.gather(*calls)
    assert sum(results) == 3
    assert await a.channels_in_use("t", now=0) == 3
    assert await b_.channels_in_use("t", now=0) == 3


@redis_only
async def test_two_nodes_share_leases(redis_nodes: RedisNodes) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    assert await a.acquire_channel("t", "c1", limit=2, ttl=10, now=0)
    assert await b_.acquire_channel("t", "c2", limit=2, ttl=10, now=0)
    assert not await b_.acquire_channel("t", "c3", limit=2, ttl=10, now=1)
    assert await b_.channels_in_use("t", now=1) == 2
    assert await b_.refresh_channel("t", "c1", ttl=100, now=5)  # A's lease, refreshed by B
    assert await a.channels_in_use("t", now=50) == 1  # c2 expired, c1 lives to 105
    assert await b_.release_channel("t", "c1")
    assert await a.channels_in_use("t", now=50) == 0


@redis_only
async def test_two_nodes_share_bindings_and_lock(redis_nodes: RedisNodes) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    assert await a.claim_device("d1", "phone-A", until=100, now=0)
    await a.put_binding(b("sip:a@h", 100, source=FLOW))
    await b_.put_binding(b("sip:b@h", 100, source=SRC))
    assert not await b_.claim_device("d1", "phone-B", until=100, now=1)
    assert await b_.device_owner("d1", now=1) == "phone-A"
    assert await a.count() == await b_.count() == 2

    seen_by_a = {x.contact: x for x in await a.bindings("d1", now=1)}
    seen_by_b = {x.contact: x for x in await b_.bindings("d1", now=1)}
    # The node that holds the TCP flow sees its conn_id; the other node must not use it.
    assert seen_by_a["sip:a@h"].source == FLOW and seen_by_a["sip:a@h"].node == "node-a"
    assert seen_by_b["sip:a@h"].source == dataclasses.replace(FLOW, conn_id=None)
    assert seen_by_b["sip:a@h"].node == "node-a"
    assert seen_by_a["sip:b@h"].node == seen_by_b["sip:b@h"].node == "node-b"
    assert seen_by_a["sip:b@h"].source == SRC
    # The path (how the others reach the flow through its holder) only for the others.
    await a.put_binding(dataclasses.replace(b("sip:a@h", 100, source=FLOW), path=PATH))
    assert [x.path for x in await a.bindings("d1", now=1) if x.contact == "sip:a@h"] == [None]
    assert [x.path for x in await b_.bindings("d1", now=1) if x.contact == "sip:a@h"] == [PATH]
    bindings, _ = await b_.routing_lookup(["d1"], None, now=1)
    assert {x.contact: x.path for x in bindings["d1"]} == {"sip:a@h": PATH, "sip:b@h": None}

    assert await b_.expire(100) == 2
    assert await a.count() == 0
    assert await a.device_owner("d1", now=0) is None  # B's sweep dropped A's dead lock


@redis_only
async def test_expire_spares_a_binding_refreshed_by_another_node_mid_sweep(
    redis_nodes: RedisNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    await a.put_binding(b("sip:a@h", 100))
    find_due = a._redis.zrangebyscore

    async def find_then_refresh(*args: Any, **kw: Any) -> Any:
        due = await find_due(*args, **kw)
        if due:  # node B re-registers between A's read of the index and A's removal
            await b_.put_binding(b("sip:a@h", 500, cseq=2))
        return due

    monkeypatch.setattr(a._redis, "zrangebyscore", find_then_refresh)
    assert await a.expire(150) == 0
    assert [x.cseq for x in await a.bindings("d1", now=150)] == [2]
    assert await a.count() == 1


@redis_only
async def test_every_key_has_a_safety_ttl(redis_nodes: RedisNodes) -> None:
    state = redis_nodes.node("node-a")
    # Fake clock far in the past: the TTL is the safety margin, never "no TTL".
    await state.put_binding(b("sip:a@h", 100))
    await state.claim_device("d1", "phone-A", until=100, now=0)
    await state.acquire_channel("t", "c1", limit=2, ttl=3600, now=0)
    keys = await redis_nodes.keys()
    assert len(keys) == 6  # b:d1, o:d1, bx, l:d1, lx, ch:t
    ttls = {k.removeprefix(redis_nodes.prefix): await redis_nodes.raw.ttl(k) for k in keys}
    slack = 5  # seconds the test may take
    assert all(300 - slack < ttls[k] <= 300 for k in ("b:d1", "o:d1", "bx")), ttls
    assert all(400 - slack < ttls[k] <= 400 for k in ("l:d1", "lx")), ttls  # until-now+margin
    assert 3900 - slack < ttls["ch:t"] <= 3900, ttls  # the lease's ttl plus the margin


@redis_only
async def test_nothing_is_left_after_everything_is_removed(
    redis_nodes: RedisNodes,
) -> None:
    state = redis_nodes.node("node-a")
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 200, device="d2"))
    await state.claim_device("d1", "phone-A", until=100, now=0)
    await state.claim_device("d2", "phone-B", until=50, now=0)
    await state.acquire_channel("t", "c1", limit=2, ttl=10, now=0)
    await state.release_device("d1")
    assert await state.remove_binding("d2", "sip:b@h")
    assert await state.expire(60) == 0
    assert await state.release_channel("t", "c1")
    assert await redis_nodes.keys() == []


# --------------------------------------------------------------------------- auth guard
async def fail(state: StateBackend, key: str, now: float, kind: str = "source") -> Ban | None:
    return await state.auth_failure(kind, key, threshold=3, window=60, ban_for=600, now=now)


async def test_failures_ban_at_the_threshold_within_the_window(state: StateBackend) -> None:
    assert await fail(state, "192.0.2.9", 1000) is None
    assert await fail(state, "192.0.2.9", 1010) is None
    ban = await fail(state, "192.0.2.9", 1020)
    assert ban == Ban(kind="source", key="192.0.2.9", until=1620.0)
    assert await state.bans(1020) == [ban]
    assert await state.bans(1619.5) == [ban]
    assert await state.bans(1620) == []  # until is exclusive: live while until > now


async def test_failures_outside_the_window_are_forgotten(state: StateBackend) -> None:
    assert await fail(state, "k", 1000) is None
    assert await fail(state, "k", 1030) is None
    assert await fail(state, "k", 1060) is None  # 1000 is at now - window: forgotten
    assert await fail(state, "k", 1089) is not None  # 1030, 1060, 1089 within 60 s
    assert await state.bans(1089) != []


async def test_a_ban_clears_the_count_and_a_new_ban_extends_it(state: StateBackend) -> None:
    for t in (1000, 1001):
        assert await fail(state, "k", t) is None
    first = await fail(state, "k", 1002)
    assert first is not None and first.until == 1602
    assert await fail(state, "k", 1100) is None  # counting starts afresh after a ban
    assert await fail(state, "k", 1101) is None
    second = await fail(state, "k", 1102)
    assert second is not None and second.until == 1702
    assert [b.until for b in await state.bans(1102)] == [1702]


async def test_a_live_ban_is_never_shortened(state: StateBackend) -> None:
    await state.auth_failure("id", "u", threshold=1, window=60, ban_for=3600, now=1000)
    ban = await state.auth_failure("id", "u", threshold=1, window=60, ban_for=10, now=1001)
    assert ban is not None and ban.until == 4600


async def test_kinds_and_keys_are_apart_and_listed_sorted(state: StateBackend) -> None:
    for kind, key in (("source", "b"), ("id", "b"), ("source", "a:1"), ("id", "x:y")):
        await state.auth_failure(kind, key, threshold=1, window=60, ban_for=100, now=1000)
    listed = [(b.kind, b.key) for b in await state.bans(1000)]
    assert listed == [("id", "b"), ("id", "x:y"), ("source", "a:1"), ("source", "b")]
    assert await fail(state, "c", 1000) is None  # another key: its own count


async def test_lift_ban_drops_the_ban_and_the_count(state: StateBackend) -> None:
    for t in (1000, 1001, 1002):
        await fail(state, "k", t)
    await fail(state, "other", 1002)
    assert await state.lift_ban("source", "k")
    assert not await state.lift_ban("source", "k")
    assert not await state.lift_ban("id", "k")  # the same key of another kind: no ban
    assert await state.bans(1003) == []
    assert await fail(state, "k", 1004) is None  # the count starts again


async def test_a_bad_kind_is_refused(state: StateBackend) -> None:
    with pytest.raises(ValueError):
        await state.auth_failure("a:b", "k", threshold=1, window=1, ban_for=1, now=0)


async def test_expire_forgets_lapsed_bans(state: StateBackend) -> None:
    await state.auth_failure("source", "k", threshold=1, window=60, ban_for=100, now=1000)
    await state.expire(1101)
    assert await state.bans(0) == []  # gone, not merely filtered by now


async def test_known_sources_until_their_deadline(state: StateBackend) -> None:
    await state.remember_source("d1", "192.0.2.1", until=2000, now=1000)
    assert await state.known_source("d1", "192.0.2.1", 1999)
    assert not await state.known_source("d1", "192.0.2.1", 2000)
    assert not await state.known_source("d1", "192.0.2.2", 1500)
    assert not await state.known_source("d2", "192.0.2.1", 1500)
    await state.remember_source("d1", "192.0.2.1", until=3000, now=1999)  # refreshed
    assert await state.known_source("d1", "192.0.2.1", 2500)


async def test_daily_counters_add_and_read(state: StateBackend) -> None:
    assert await state.daily("2026-01-02", ["id:d1", "tenant:t1"]) == [0, 0]
    assert await state.add_daily("2026-01-02", ["id:d1", "tenant:t1"], 2e9) == [1, 1]
    assert await state.add_daily("2026-01-02", ["id:d2", "tenant:t1"], 2e9) == [1, 2]
    assert await state.daily("2026-01-02", ["tenant:t1", "id:d1", "x"]) == [2, 1, 0]
    assert await state.daily("2026-01-03", ["tenant:t1"]) == [0]  # another day
    assert await state.daily("2026-01-02", []) == []


async def test_concurrent_failures_ban_exactly_once(state: StateBackend) -> None:
    results = await asyncio.gather(
        *(state.auth_failure("source", "k", threshold=5, window=60, ban_for=60, now=1000)
          for _ in range(12))
    )  # fmt: skip
    assert sum(r is not None for r in results) == 2  # the 5th and the 10th failure


@redis_only
async def test_two_nodes_share_failures_and_bans(redis_nodes: RedisNodes) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    assert await fail(a, "k", 1000) is None
    assert await fail(b_, "k", 1001) is None
    assert await fail(a, "k", 1002) is not None  # counted together
    assert [x.key for x in await b_.bans(1003)] == ["k"]
    assert await b_.lift_ban("source", "k")
    assert await a.bans(1003) == []
    await a.remember_source("d1", "h", until=2000, now=1000)
    assert await b_.known_source("d1", "h", 1500)
    await a.add_daily("d", ["k"], 2e9)
    assert await b_.add_daily("d", ["k"], 2e9) == [2]


@redis_only
async def test_guard_keys_have_a_safety_ttl(redis_nodes: RedisNodes) -> None:
    state = redis_nodes.node("node-a")
    await fail(state, "k", 0)
    await state.auth_failure("id", "u", threshold=1, window=60, ban_for=600, now=0)
    await state.remember_source("d1", "h", until=100, now=0)
    await state.add_daily("day", ["k"], 0)
    keys = await redis_nodes.keys()
    ttls = {k.removeprefix(redis_nodes.prefix): await redis_nodes.raw.ttl(k) for k in keys}
    assert set(ttls) == {"af:source:k", "bans", "ks:d1", "dc:day:k"}, ttls
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert 360 - 5 < ttls["af:source:k"] <= 360, ttls  # window + margin
    assert 900 - 5 < ttls["bans"] <= 900, ttls  # ban + margin


# --------------------------------------------------------------------------- failures
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CALLS: list[tuple[str, Callable[[StateBackend], Awaitable[object]]]] = [
    ("bindings", lambda s: s.bindings("d1", 0)),
    ("put_binding", lambda s: s.put_binding(b("sip:a@h", 100))),
    ("remove_binding", lambda s: s.remove_binding("d1", "sip:a@h")),
    ("remove_all", lambda s: s.remove_all("d1")),
    ("expire", lambda s: s.expire(0)),
    ("count", lambda s: s.count()),
    ("claim_device", lambda s: s.claim_device("d1", "o", 10, 0)),
    ("device_owner", lambda s: s.device_owner("d1", 0)),
    ("unclaim_device", lambda s: s.unclaim_device("d1", "o")),
    ("release_device", lambda s: s.release_device("d1")),
    ("acquire_channel", lambda s: s.acquire_channel("t", "c", 1, 10, 0)),
    ("refresh_channel", lambda s: s.refresh_channel("t", "c", 10, 0)),
    ("release_channel", lambda s: s.release_channel("t", "c")),
    ("channels_in_use", lambda s: s.channels_in_use("t", 0)),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
async def test_unreachable_redis_raises_state_unavailable(
    call: Callable[[StateBackend], Awaitable[object]],
) -> None:
    state = RedisState(f"redis://127.0.0.1:{_closed_port()}/0", timeout=1.0)
    try:
        with pytest.raises(StateUnavailable) as info:
            await call(state)
        assert info.value.status_hint == 503
    finally:
        await state.close()


@redis_only
async def test_a_server_error_is_state_unavailable(redis_nodes: RedisNodes) -> None:
    state = redis_nodes.node("node-a")
    await redis_nodes.raw.set(redis_nodes.prefix + "b:d1", "not a hash")  # WRONGTYPE
    with pytest.raises(StateUnavailable):
        await state.put_binding(b("sip:a@h", 100))
    with pytest.raises(StateUnavailable):
        await state.bindings("d1", now=0)


# --------------------------------------------------------------------------- call records
def rec(call_id: str, tenant: str = "t", until: float = 100.0, started: float = 1.0) -> CallRecord:
    return CallRecord(
        call_id=call_id, tenant_id=tenant, until=until, started=started, caller="0312345678",
        called="0355500100",
    )  # fmt: skip


async def test_call_records_live_with_their_lease(state: StateBackend) -> None:
    assert await state.acquire_channel("t", "c1", limit=5, ttl=100, now=0)
    assert await state.acquire_channel("t", "c2", limit=5, ttl=100, now=0)
    await state.put_call(rec("c2", started=2.0))
    await state.put_call(rec("c1", started=1.0))
    await state.put_call(dataclasses.replace(rec("c1"), answered=3.0, also="id:d1"))
    found = await state.calls("t", now=10)
    assert [r.call_id for r in found] == ["c1", "c2"]  # oldest first
    assert found[0].answered == 3.0 and found[0].also == "id:d1"
    assert found[0].node == own_node(state)
    got = await state.call("c1", now=10)
    assert got is not None and got.tenant_id == "t" and got.caller == "0312345678"
    assert await state.calls("other", now=10) == []
    # released lease: the record no longer lists, even if a late write put it back
    assert await state.release_channel("t", "c2")
    await state.put_call(rec("c2", started=2.0))
    assert [r.call_id for r in await state.calls("t", now=10)] == ["c1"]
    assert await state.remove_call("c1")
    assert not await state.remove_call("c1")  # idempotent
    assert await state.call("c1", now=10) is None


async def test_call_records_expire_with_their_deadline(state: StateBackend) -> None:
    assert await state.acquire_channel("t", "c1", limit=5, ttl=50, now=0)
    await state.put_call(rec("c1", until=50.0))
    assert await state.call("c1", now=49) is not None
    assert await state.call("c1", now=50) is None
    assert await state.calls("t", now=50) == []


@redis_only
async def test_a_record_written_by_one_node_is_found_and_released_by_another(
    redis_nodes: RedisNodes,
) -> None:
    a, b = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    assert await a.acquire_channel("t", "c1", limit=1, ttl=100, now=0)
    await a.put_call(rec("c1"))
    found = await b.call("c1", now=1)
    assert found is not None and found.node == "node-a"
    assert await b.release_channel(found.tenant_id, "c1") and await b.remove_call("c1")
    assert await a.calls("t", now=1) == []
    assert await a.acquire_channel("t", "c2", limit=1, ttl=100, now=1)  # the channel is free


async def test_acquire_call_takes_the_lease_and_writes_the_record_or_nothing(
    state: StateBackend,
) -> None:
    assert await state.acquire_call(rec("c1"), limit=1, ttl=100, now=0)
    got = await state.call("c1", now=10)
    assert got is not None and got.caller == "0312345678" and got.node == own_node(state)
    assert [r.call_id for r in await state.calls("t", now=10)] == ["c1"]
    assert await state.channels_in_use("t", now=99) == 1
    assert not await state.acquire_call(rec("c2"), limit=1, ttl=100, now=10)  # busy
    assert await state.call("c2", now=10) is None  # refused: no record either
    assert await state.acquire_call(rec("c1", until=110), limit=1, ttl=100, now=10)  # again
    assert await state.channels_in_use("t", now=109) == 1
    assert await state.channels_in_use("t", now=110) == 0  # deadline now + ttl


async def test_refresh_call_moves_leases_and_record_only_while_the_lease_is_live(
    state: StateBackend,
) -> None:
    assert await state.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    answered = dataclasses.replace(rec("c1", until=150.0), answered=5.0, also="id:d1")
    assert await state.refresh_call(answered, ttl=100, now=50)
    assert await state.channels_in_use("t", now=149) == 1  # moved from 100 to 150
    assert await state.channels_in_use("id:d1", now=149) == 1  # taken, same deadline
    got = await state.call("c1", now=120)
    assert got is not None and got.answered == 5.0 and got.until == 150.0
    # released (a BYE won the race): the refresh neither takes the lease nor writes
    assert await state.release_channel("t", "c1")
    assert not await state.refresh_call(dataclasses.replace(answered, until=300.0), 100, now=60)
    assert await state.channels_in_use("t", now=149) == 0
    got = await state.call("c1", now=120)
    assert got is not None and got.until == 150.0
    assert await state.channels_in_use("id:d1", now=150) == 0  # not moved to 160
    # expired: the same
    assert await state.acquire_call(rec("c2", until=210.0), limit=5, ttl=10, now=200)
    assert not await state.refresh_call(rec("c2", until=230.0), ttl=20, now=210)
    assert await state.channels_in_use("t", now=210) == 0
    got = await state.call("c2", now=209)
    assert got is not None and got.until == 210.0


async def test_release_call_drops_both_leases_and_the_record_idempotently(
    state: StateBackend,
) -> None:
    assert await state.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    assert await state.acquire_call(rec("c2"), limit=5, ttl=100, now=0)
    also = dataclasses.replace(rec("c1", until=110.0), also="id:d1")
    assert await state.refresh_call(also, ttl=100, now=10)
    assert await state.release_call("t", "c1", "id:d1")
    assert await state.channels_in_use("t", now=20) == 1  # c2 untouched
    assert await state.channels_in_use("id:d1", now=20) == 0
    assert await state.call("c1", now=20) is None
    assert [r.call_id for r in await state.calls("t", now=20)] == ["c2"]
    assert not await state.release_call("t", "c1", "id:d1")  # a second time: nothing
    assert await state.release_call("t", "c2", None)
    assert await state.calls("t", now=20) == []


@redis_only
async def test_a_late_acquire_call_writes_neither_lease_nor_record(
    redis_nodes: RedisNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("switch.state.redis.LATE_WRITE_BOUND", -1.0)  # every arrival is late
    a = redis_nodes.node("node-a")
    with pytest.raises(StateUnavailable):
        await a.acquire_call(rec("c1"), limit=5, ttl=100, now=0)
    assert await redis_nodes.keys() == []


async def test_end_requests_are_taken_once_per_node(state: StateBackend) -> None:
    await state.request_end("node-x", "c1")
    await state.request_end("node-x", "c2")
    await state.request_end("node-y", "c3")
    assert await state.ends_requested("node-x") == ["c1", "c2"]
    assert await state.ends_requested("node-x") == []
    assert await state.ends_requested("node-y") == ["c3"]


async def test_routing_lookup_reads_what_bindings_and_channels_in_use_read(
    state: StateBackend,
) -> None:
    """The batched read of the call path (one round trip on Redis) answers exactly what the
    separate calls answer, and prunes expired leases as channels_in_use does."""
    await state.put_binding(b("sip:a@h", 100))
    await state.put_binding(b("sip:b@h", 50))
    await state.put_binding(b("sip:c@h", 100, device="d2"))
    assert await state.acquire_channel("t", "c1", limit=5, ttl=10, now=0)
    assert await state.acquire_channel("t", "c2", limit=5, ttl=100, now=0)
    for now in (10, 60):
        found, in_use = await state.routing_lookup(["d1", "d2", "nobody"], "t", now)
        assert found == {
            "d1": await state.bindings("d1", now),
            "d2": await state.bindings("d2", now),
            "nobody": [],
        }
        assert in_use == await state.channels_in_use("t", now)
    assert [x.contact for x in found["d1"]] == ["sip:a@h"]  # b expired at 50
    assert in_use == 1  # c1 ended at 10 (a deadline is exclusive)
    assert await state.routing_lookup([], None, 60) == ({}, None)
    assert (await state.routing_lookup(["d2"], None, 60))[1] is None


# --------------------------------------------------------------------------- processes
async def test_announce_lists_the_live_processes_with_their_addresses(
    state: StateBackend,
) -> None:
    assert await state.announce("n1/w0", "10.0.0.1:5161,10.0.0.1:5162", until=10, now=0) == {
        "n1/w0": "10.0.0.1:5161,10.0.0.1:5162"
    }
    assert await state.announce("n1/w1", "10.0.0.1:5163", until=20, now=5) == {
        "n1/w0": "10.0.0.1:5161,10.0.0.1:5162",
        "n1/w1": "10.0.0.1:5163",
    }
    assert await state.announce("n1/w1", "10.0.0.1:5163", until=30, now=15) == {
        "n1/w1": "10.0.0.1:5163"  # w0 stopped announcing: dead at 10
    }


@redis_only
async def test_processes_of_two_nodes_see_each_other(redis_nodes: RedisNodes) -> None:
    a, b_ = redis_nodes.node("node-a"), redis_nodes.node("node-b")
    await a.announce("node-a", "10.0.0.1:5060", until=100, now=0)
    assert await b_.announce("node-b", "10.0.0.2:5060", until=100, now=1) == {
        "node-a": "10.0.0.1:5060",
        "node-b": "10.0.0.2:5060",
    }
    # a process dead for over an hour leaves the table (the others' next announce)
    await b_.announce("node-b", "10.0.0.2:5060", until=5000, now=3800)
    assert "node-a" not in await redis_nodes.raw.hgetall(f"{redis_nodes.prefix}procs")
