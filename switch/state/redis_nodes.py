"""Which processes of the switch are alive, and where the other nodes reach them: the Redis
part of `StateBackend.announce` (a mixin of `RedisState`, like redis_guard.py; semantics in
switch/state/base.py, Processes).

Key (P = the prefix)
--------------------
  P procs   hash   process name -> "<until> <host:port>"; an entry whose `until` is an hour
                   past is deleted by the next announce; the key's TTL (an hour) ends it
                   when no process announces any more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ProcessOps"]

_FORGET_AFTER = 3600.0  # seconds past its deadline an entry is deleted


class ProcessOps:
    """Mixed into RedisState, which wraps the public method (`_redis_op`)."""

    prefix: str
    _redis: Redis

    async def _announce(
        self, process: str, address: str, until: float, now: float
    ) -> dict[str, str]:
        key = f"{self.prefix}procs"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, process, f"{until!r} {address}")
            pipe.expire(key, int(_FORGET_AFTER))
            pipe.hgetall(key)
            *_, entries = await pipe.execute()
        alive: dict[str, str] = {}
        stale = []
        for name, value in entries.items():
            deadline, _, where = str(value).partition(" ")
            try:
                left = float(deadline) - now
            except ValueError:
                left = -_FORGET_AFTER - 1
            if left > 0:
                alive[str(name)] = where
            elif left < -_FORGET_AFTER:
                stale.append(name)
        if stale:
            await self._redis.hdel(key, *stale)
        return alive
