"""The authentication guard's and the outbound caps' part of the Redis StateBackend (a mixin
of `RedisState`, kept apart to keep redis.py readable). Semantics: switch/state/base.py.

Keys (P = the prefix; <kind> a ban kind, <key> its key, <dev> a device id, <day> a date)
-------------------------------------------------------------------------------------
  P af:<kind>:<key>  zset   failure member -> time: the failures in the sliding window
                            (members are "<time>:<random>", unique per failure)
  P bans             zset   "<kind>:<key>" -> ban deadline; pruned up to `now` when listed
  P ks:<dev>         zset   host -> until: the addresses the ID registered from
  P dc:<day>:<key>   string the daily counter (INCR)

`auth_failure` is one Lua script (count, compare, ban: atomic across nodes). Every key gets a
Redis TTL as a safety net (its window / deadline + the backend's safety margin), like the
other keys of the backend.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Ban, check_kind

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["GuardOps"]

# KEYS: af, bans   ARGV: member, now, cutoff, threshold, until, pair, window ttl, ban ttl
# Returns the ban deadline (the caller's string, or the longer live one) or false.
_FAILURE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return false
end
redis.call('DEL', KEYS[1])
local cur = redis.call('ZSCORE', KEYS[2], ARGV[6])
if cur and tonumber(cur) > tonumber(ARGV[5]) then return cur end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[8]) then redis.call('EXPIRE', KEYS[2], ARGV[8]) end
return ARGV[5]
"""

# KEYS: ks   ARGV: host, until, now, ttl
_REMEMBER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS: bans   ARGV: now
_BANS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"""


def _num(x: float) -> str:
    return repr(float(x))


class GuardOps:
    """Mixed into RedisState, which provides the attributes declared here and wraps each
    public method with its error translation (`_redis_op`)."""

    prefix: str
    _redis: Redis

    def _ttl(self, seconds_left: float) -> str:
        raise NotImplementedError  # RedisState's

    async def _execute(self, pipe: Any) -> list[Any]:
        raise NotImplementedError  # RedisState's: a MULTI/EXEC carrying queued refreshes

    def _init_guard(self) -> None:
        script = self._redis.register_script
        self._failure: AsyncScript = script(_FAILURE)
        self._remember: AsyncScript = script(_REMEMBER)
        self._list_bans: AsyncScript = script(_BANS)

    def _guard_keys(self, kind: str, key: str) -> list[str]:
        return [f"{self.prefix}af:{kind}:{key}", f"{self.prefix}bans"]

    async def _auth_failure(
        self, kind: str, key: str, threshold: int, window: float, ban_for: float, now: float
    ) -> Ban | None:
        check_kind(kind)
        member = f"{_num(now)}:{secrets.token_hex(4)}"
        args = [
            member, _num(now), _num(now - window), str(threshold), _num(now + ban_for),
            f"{kind}:{key}", self._ttl(window), self._ttl(ban_for),
        ]  # fmt: skip
        until: Any = await self._failure(keys=self._guard_keys(kind, key), args=args)
        return None if until is None else Ban(kind=kind, key=key, until=float(until))

    async def _bans(self, now: float) -> list[Ban]:
        found: Any = await self._list_bans(keys=[f"{self.prefix}bans"], args=[_num(now)])
        bans = []
        for pair, until in zip(found[::2], found[1::2], strict=True):
            kind, _, key = str(pair).partition(":")
            bans.append(Ban(kind=kind, key=key, until=float(until)))
        return sorted(bans, key=lambda b: (b.kind, b.key))

    async def _expire_guard(self, now: float) -> None:
        """Lapsed bans leave the index (the other guard keys end by their Redis TTL)."""
        await self._redis.zremrangebyscore(f"{self.prefix}bans", "-inf", _num(now))

    async def _lift_ban(self, kind: str, key: str) -> bool:
        failures, index = self._guard_keys(kind, key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(index, f"{kind}:{key}")
            pipe.delete(failures)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def _remember_source(self, device_id: str, host: str, until: float, now: float) -> None:
        args = [host, _num(until), _num(now), self._ttl(until - now)]
        await self._remember(keys=[f"{self.prefix}ks:{device_id}"], args=args)

    async def _known_source(self, device_id: str, host: str, now: float) -> bool:
        until = await self._redis.zscore(f"{self.prefix}ks:{device_id}", host)
        return until is not None and float(until) > now

    def _daily_key(self, day: str, key: str) -> str:
        return f"{self.prefix}dc:{day}:{key}"

    async def _add_daily(self, day: str, keys: Sequence[str], expires_at: float) -> list[int]:
        ttl = int(self._ttl(expires_at - time.time()))
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(self._daily_key(day, key))
                pipe.expire(self._daily_key(day, key), ttl)
            done = await pipe.execute()
        return [int(n) for n in done[::2]]

    async def _usage_lookup(
        self, day: str, keys: Sequence[str], leases: str, now: float
    ) -> tuple[list[int], int]:
        """One MULTI/EXEC: the counters (MGET) and the live leases of the `leases` zset
        (ZREMRANGEBYSCORE + ZCARD, as routing_lookup reads a tenant's channels)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_usage(pipe, day, keys, leases, now)
            replies = await self._execute(pipe)
        return self._usage_read(replies, keys)

    def _queue_usage(
        self, pipe: Any, day: str, keys: Sequence[str], leases: str, now: float
    ) -> None:
        if keys:
            pipe.mget([self._daily_key(day, k) for k in keys])
        pipe.zremrangebyscore(leases, "-inf", _num(now))
        pipe.zcard(leases)

    @staticmethod
    def _usage_read(replies: list[Any], keys: Sequence[str]) -> tuple[list[int], int]:
        found = replies[0] if keys else []
        return [int(v) if v is not None else 0 for v in found], int(replies[-1])

    async def _daily(self, day: str, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        found = await self._redis.mget([self._daily_key(day, k) for k in keys])
        return [int(v) if v is not None else 0 for v in found]
