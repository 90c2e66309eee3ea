"""RedisState's connection pool on the real Redis: the default URL takes a burst of
concurrent operations (more than connections in the pool, far more than redis-py's default
cap of 100, which raised "Too many connections" at 500 calls/s) by making them wait for a
free connection; `?max_connections=N` in the URL sets the pool's size."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from switch.state.redis import POOL_SIZE, RedisState

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"


async def connected_clients(prefix_name: str) -> int:
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        clients = await raw.client_list()
    finally:
        await raw.aclose()
    return sum(1 for c in clients if c.get("name") == prefix_name)


async def test_a_burst_of_1000_concurrent_operations_waits_instead_of_failing() -> None:
    state = RedisState(REDIS_URL, prefix=f"softswitch-test:{secrets.token_hex(6)}:")
    try:
        results = await asyncio.gather(*[state.bindings(f"dev{i}", 0.0) for i in range(1000)])
        assert results == [[]] * 1000
        pool = state._redis.connection_pool
        assert pool.max_connections == POOL_SIZE
        assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
    finally:
        await state.close()


async def test_max_connections_in_the_url_sets_the_pool_size() -> None:
    name = f"pool-test-{secrets.token_hex(4)}"
    state = RedisState(
        f"{REDIS_URL}?max_connections=3&client_name={name}",
        prefix=f"softswitch-test:{secrets.token_hex(6)}:",
    )
    try:
        await asyncio.gather(*[state.bindings(f"dev{i}", 0.0) for i in range(200)])
        assert state._redis.connection_pool.max_connections == 3
        assert 1 <= await connected_clients(name) <= 3
    finally:
        await state.close()


async def test_an_idle_connection_is_reused_and_one_whose_reply_timed_out_is_not() -> None:
    """The pool's fast hand-out (redis_pool._Blocking) reuses an idle connection as is; a
    connection whose command timed out was dropped by redis-py, so its late reply is never
    read as the next command's: the next operation gets a fresh connection."""
    name = f"pool-test-{secrets.token_hex(4)}"
    state = RedisState(
        f"{REDIS_URL}?max_connections=1&client_name={name}",
        prefix=f"softswitch-test:{secrets.token_hex(6)}:",
        timeout=0.3,
    )
    try:
        pool = state._redis.connection_pool
        assert await state.bindings("dev", 0.0) == []
        (idle,) = pool._available_connections  # type: ignore[attr-defined]
        assert await state.bindings("dev", 0.0) == []
        assert pool._available_connections == [idle]  # type: ignore[attr-defined]
        with pytest.raises(RedisTimeoutError):  # its reply (nil) comes after 1 s
            await state._redis.blpop([f"{state.prefix}never"], timeout=1)
        await asyncio.sleep(1.0)  # the late reply has arrived by now, on the old socket
        assert await state.channels_in_use("t", now=0.0) == 0
        assert await state.bindings("dev", 0.0) == []
        assert await connected_clients(name) == 1
    finally:
        await state.close()
