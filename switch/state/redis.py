"""Redis StateBackend: several switch nodes share one tenant base (bindings, the device lock,
channel leases). Same semantics as `memory.py`; see switch/state/base.py for the contract.

Keys (P = the prefix, "softswitch:" by default; <dev> a device id, <t> a tenant id)
----------------------------------------------------------------------------------
  P b:<dev>    hash   contact -> binding JSON (`_encode`)
  P o:<dev>    zset   contact -> registration order 1, 2, … (hash order is not guaranteed;
                      `bindings()` must return registration order, a refresh keeps its place)
  P bx         zset   binding member -> expires_at; ZCARD is `count()`, a range up to `now`
                      is what `expire(now)` drops. member = "<bytes of dev>:<dev><contact>"
                      (length-prefixed, so device "a" + contact "bc" and device "ab" +
                      contact "c" differ, and Lua can build it without a JSON encoder)
  P l:<dev>    hash   owner, until: the one-device-per-ID lock
  P lx         zset   dev -> until, for sweeping dead locks in `expire(now)`
  P ch:<t>     zset   call_id -> lease deadline: the tenant's channel leases

Every write that touches several keys is one Lua script (atomic, no interleaving with other
nodes); `claim_device` and `acquire_channel` are the check-and-set ones. Scripts run by
EVALSHA with a transparent reload on NOSCRIPT (redis-py `register_script`).

Numbers: deadlines are computed in Python and passed as `repr(float)` strings; Lua only
compares them (`tonumber` is exact) and hands the caller's strings to ZADD/HSET. Lua must
never turn a computed number into a string: it formats with "%.14g", which would round an
epoch time with microseconds.

Safety net: every key gets a Redis TTL of (its longest deadline - now) + `safety_margin`
(only ever extended, except the lock which may shrink), so a cluster that crashed and never
ran `expire` again leaves nothing forever. Normal expiry is the caller's clock via
`expire(now)`; the TTL only cleans up afterwards.

Flows: `put_binding` stamps `node=node_id` on a binding without one; `bindings()` returns a
binding held by another node with `source.conn_id=None` (base.py, Flows). The default node id
is unique per process run: conn_ids are per-process counters, so a restarted process must
not believe the flows of its previous life are its own.

Connections: one `BlockingConnectionPool` of at most `POOL_SIZE` (64) connections. Under
load a command waits for a free connection (up to `timeout`) instead of failing: redis-py's
default pool caps at 100 and raises "Too many connections" at once, which at 500 calls/s
failed most calls (issue 11). A `?max_connections=N` in the URL overrides the size.

Failures: every redis-py error (connection refused, timeout, a server error) is raised as
`StateUnavailable`. Commands time out after `timeout` seconds and are retried once at once
(a pooled connection that died with a Redis restart), never with a long backoff: a caller
is waiting on the call path. Retrying is safe: every script is idempotent.

Redis Cluster is not supported: `bx`/`lx` are global keys next to per-device keys. A single
primary (with replicas / Sentinel) is the intended deployment.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from switch.sip.target import Target

from .base import Ban, Binding, StateUnavailable
from .redis_guard import GuardOps

__all__ = ["RedisState", "default_node_id"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_SWEEP_BATCH = 500  # expired entries handled per round trip in expire()
POOL_SIZE = 64  # connections per process; more commands in flight wait for one

# KEYS: b, o, bx   ARGV: contact, json, expires_at, member, ttl
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local last = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local n = 1
  if last[2] then n = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], n, ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
local ttl = tonumber(ARGV[5])
for i = 1, 3 do
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: b, o, bx   ARGV: contact, member
_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""

# KEYS: b, o, bx [, l, lx]   ARGV: dev
# Drops every binding of the device; with the two lock keys, the lock too (release_device).
_REMOVE_ALL = """
local contacts = redis.call('HKEYS', KEYS[1])
local head = string.len(ARGV[1]) .. ':' .. ARGV[1]
for _, contact in ipairs(contacts) do redis.call('ZREM', KEYS[3], head .. contact) end
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[5] then
  redis.call('DEL', KEYS[4])
  redis.call('ZREM', KEYS[5], ARGV[1])
end
return #contacts
"""

# KEYS: b, o, bx   ARGV: contact, member, now
# Only if the deadline is still <= now: a binding refreshed meanwhile stays.
_EXPIRE_BINDING = """
local s = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not s or tonumber(s) > tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS: l, lx   ARGV: dev, now
_EXPIRE_LOCK = """
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: l, lx   ARGV: dev, owner, until, now, ttl
_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'until')
if cur[1] and cur[1] ~= ARGV[2] and tonumber(cur[2]) > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'until', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return 1
"""

# KEYS: l, lx   ARGV: dev, owner
_UNCLAIM = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: ch   ARGV: call_id, limit, deadline, now, ttl
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
"""

# KEYS: ch   ARGV: call_id, deadline, now, ttl
_REFRESH = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS: ch   ARGV: now
_IN_USE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


def default_node_id() -> str:
    """host-pid-random: unique per process run (conn_ids die with the process)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _num(x: float) -> str:
    """A float as Redis and Lua read it back exactly (repr round-trips)."""
    return repr(float(x))


def _member(device_id: str, contact: str) -> str:
    return f"{len(device_id.encode())}:{device_id}{contact}"


def _split_member(member: str) -> tuple[str, str]:
    head, _, rest = member.partition(":")
    raw = rest.encode()
    n = int(head)
    return raw[:n].decode(), raw[n:].decode()


def _encode(b: Binding) -> str:
    s = b.source
    return json.dumps(
        {
            "device_id": b.device_id,
            "contact": b.contact,
            "instance_id": b.instance_id,
            "expires_at": b.expires_at,
            "source": [s.transport, s.host, s.port, s.conn_id],
            "call_id": b.call_id,
            "cseq": b.cseq,
            "user_agent": b.user_agent,
            "q": b.q,
            "node": b.node,
        },
        separators=(",", ":"),
    )


def _decode(text: str) -> Binding:
    d = json.loads(text)
    transport, host, port, conn_id = d["source"]
    return Binding(
        device_id=d["device_id"],
        contact=d["contact"],
        instance_id=d["instance_id"],
        expires_at=float(d["expires_at"]),
        source=Target(transport, host, int(port), conn_id),
        call_id=d["call_id"],
        cseq=int(d["cseq"]),
        user_agent=d["user_agent"],
        q=d["q"],
        node=d["node"],
    )


def _redis_op(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """A public operation: redis-py errors become StateUnavailable (base.py, Failures), and
    a call from outside any asyncio task runs in a task of its own.

    The transport core steps a TU's coroutine by hand up to its first suspension, from a
    protocol callback (switch/eager.py, `run_eager`), and redis-py's socket
    timeouts (`asyncio.timeout`) refuse to run without a current task. Awaiting the task
    is a real suspension, after which the TU runs in run_eager's task like any other."""
    name = method.__name__

    @functools.wraps(method)
    async def operation(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if asyncio.current_task() is None:
                return await asyncio.ensure_future(method(*args, **kwargs))
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"redis: {name} failed: {exc}") from exc

    return operation


class RedisState(GuardOps):
    """StateBackend on one Redis server. `await close()` when done. The authentication
    guard's and the daily counters' operations are in redis_guard.py (keys listed there)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "softswitch:",
        node_id: str | None = None,
        timeout: float = 2.0,
        safety_margin: float = 300.0,
    ) -> None:
        self.prefix = prefix
        self.node_id = node_id or default_node_id()
        self.safety_margin = safety_margin
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=timeout,  # the longest a command waits for a free connection
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis: Redis = Redis.from_pool(pool)
        script = self._redis.register_script
        self._put, self._remove, self._remove_all = (
            script(_PUT),
            script(_REMOVE),
            script(_REMOVE_ALL),
        )
        self._expire_binding, self._expire_lock = script(_EXPIRE_BINDING), script(_EXPIRE_LOCK)
        self._claim, self._unclaim = script(_CLAIM), script(_UNCLAIM)
        self._acquire, self._refresh, self._in_use = (
            script(_ACQUIRE),
            script(_REFRESH),
            script(_IN_USE),
        )
        self._bx, self._lx = prefix + "bx", prefix + "lx"
        self._init_guard()

    async def close(self) -> None:
        await self._redis.aclose()

    # ------------------------------------------------------------------ keys
    def _binding_keys(self, device_id: str) -> list[str]:
        return [f"{self.prefix}b:{device_id}", f"{self.prefix}o:{device_id}", self._bx]

    def _lock_keys(self, device_id: str) -> list[str]:
        return [f"{self.prefix}l:{device_id}", self._lx]

    def _lease_key(self, tenant_id: str) -> str:
        return f"{self.prefix}ch:{tenant_id}"

    def _ttl(self, seconds_left: float) -> str:
        """Safety-net key TTL (whole seconds) for state live `seconds_left` more seconds."""
        return str(max(0, math.ceil(seconds_left)) + math.ceil(self.safety_margin))

    # ------------------------------------------------------------------ registrations
    @_redis_op
    async def bindings(self, device_id: str, now: float) -> list[Binding]:
        b_key, o_key, _ = self._binding_keys(device_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(b_key)
            pipe.zrange(o_key, 0, -1)
            stored, order = await pipe.execute()
        return self._live(stored, order, now)

    def _live(self, stored: dict[str, str], order: list[str], now: float) -> list[Binding]:
        rank = {contact: i for i, contact in enumerate(order)}
        found = []
        for contact in sorted(stored, key=lambda c: rank.get(c, len(rank))):
            binding = self._read(stored[contact])
            if binding is not None and binding.expires_at > now:
                found.append(binding)
        return found

    @_redis_op
    async def routing_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> tuple[dict[str, list[Binding]], int | None]:
        """One MULTI/EXEC round trip: each ID's HGETALL + ZRANGE (as `bindings`), and the
        tenant's ZREMRANGEBYSCORE + ZCARD (what the _IN_USE script does, as atomically)."""
        if not device_ids and tenant_id is None:
            return {}, None
        async with self._redis.pipeline(transaction=True) as pipe:
            for device_id in device_ids:
                b_key, o_key, _ = self._binding_keys(device_id)
                pipe.hgetall(b_key)
                pipe.zrange(o_key, 0, -1)
            if tenant_id is not None:
                key = self._lease_key(tenant_id)
                pipe.zremrangebyscore(key, "-inf", _num(now))
                pipe.zcard(key)
            replies = await pipe.execute()
        bindings = {
            d: self._live(replies[2 * i], replies[2 * i + 1], now) for i, d in enumerate(device_ids)
        }
        return bindings, None if tenant_id is None else int(replies[-1])

    def _read(self, text: str) -> Binding | None:
        try:
            binding = _decode(text)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable binding in redis skipped: %.200r", text)
            return None
        if binding.node not in (None, self.node_id) and binding.source.conn_id is not None:
            # Another node's connection number means nothing here (base.py, Flows).
            binding = replace(binding, source=replace(binding.source, conn_id=None))
        return binding

    @_redis_op
    async def put_binding(self, binding: Binding) -> None:
        if binding.node is None:
            binding = replace(binding, node=self.node_id)
        member = _member(binding.device_id, binding.contact)
        ttl = self._ttl(binding.expires_at - time.time())
        args = [binding.contact, _encode(binding), _num(binding.expires_at), member, ttl]
        await self._put(keys=self._binding_keys(binding.device_id), args=args)

    @_redis_op
    async def remove_binding(self, device_id: str, contact: str) -> bool:
        args = [contact, _member(device_id, contact)]
        return bool(await self._remove(keys=self._binding_keys(device_id), args=args))

    @_redis_op
    async def remove_all(self, device_id: str) -> int:
        return int(await self._remove_all(keys=self._binding_keys(device_id), args=[device_id]))

    @_redis_op
    async def expire(self, now: float) -> int:
        dropped = await self._sweep(self._bx, now, self._expire_one_binding)
        await self._sweep(self._lx, now, self._expire_one_lock)
        await self._expire_guard(now)
        return dropped

    async def _sweep(
        self, index: str, now: float, each: Callable[[Any, str, float], Awaitable[None]]
    ) -> int:
        """Run `each(pipe, member, now)` for every member of the `index` zset with a score
        ≤ now, a batch per round trip. Each script removes its member from the index (if
        still due), so the loop always advances."""
        total = 0
        while True:
            found = await self._redis.zrangebyscore(
                index, "-inf", _num(now), start=0, num=_SWEEP_BATCH
            )
            due = cast(list[str], found)  # decode_responses=True: members are str
            if not due:
                return total
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in due:
                    await each(pipe, member, now)
                total += sum(int(r) for r in await pipe.execute())
            if len(due) < _SWEEP_BATCH:
                return total

    async def _expire_one_binding(self, pipe: Any, member: str, now: float) -> None:
        try:
            device_id, contact = _split_member(member)
        except ValueError:
            pipe.zrem(self._bx, member)  # not ours to read; never block the sweep
            return
        args = [contact, member, _num(now)]
        await self._expire_binding(keys=self._binding_keys(device_id), args=args, client=pipe)

    async def _expire_one_lock(self, pipe: Any, device_id: str, now: float) -> None:
        args = [device_id, _num(now)]
        await self._expire_lock(keys=self._lock_keys(device_id), args=args, client=pipe)

    @_redis_op
    async def count(self) -> int:
        return int(await self._redis.zcard(self._bx))

    # ------------------------------------------------------------------ one device per ID
    @_redis_op
    async def claim_device(self, device_id: str, owner: str, until: float, now: float) -> bool:
        args = [device_id, owner, _num(until), _num(now), self._ttl(until - now)]
        return bool(await self._claim(keys=self._lock_keys(device_id), args=args))

    @_redis_op
    async def device_owner(self, device_id: str, now: float) -> str | None:
        owner, until = await self._redis.hmget(self._lock_keys(device_id)[0], ["owner", "until"])
        if not isinstance(owner, str) or until is None or float(until) <= now:
            return None
        return owner

    @_redis_op
    async def unclaim_device(self, device_id: str, owner: str) -> bool:
        return bool(await self._unclaim(keys=self._lock_keys(device_id), args=[device_id, owner]))

    @_redis_op
    async def release_device(self, device_id: str) -> int:
        keys = self._binding_keys(device_id) + self._lock_keys(device_id)
        return int(await self._remove_all(keys=keys, args=[device_id]))

    # ------------------------------------------------------------------ channel leases
    @_redis_op
    async def acquire_channel(
        self, tenant_id: str, call_id: str, limit: int, ttl: float, now: float
    ) -> bool:
        args = [call_id, str(limit), _num(now + ttl), _num(now), self._ttl(ttl)]
        return bool(await self._acquire(keys=[self._lease_key(tenant_id)], args=args))

    @_redis_op
    async def refresh_channel(self, tenant_id: str, call_id: str, ttl: float, now: float) -> bool:
        args = [call_id, _num(now + ttl), _num(now), self._ttl(ttl)]
        return bool(await self._refresh(keys=[self._lease_key(tenant_id)], args=args))

    @_redis_op
    async def release_channel(self, tenant_id: str, call_id: str) -> bool:
        return bool(await self._redis.zrem(self._lease_key(tenant_id), call_id))

    @_redis_op
    async def channels_in_use(self, tenant_id: str, now: float) -> int:
        return int(await self._in_use(keys=[self._lease_key(tenant_id)], args=[_num(now)]))

    # ------------------------------------------------------------------ authentication guard
    @_redis_op
    async def auth_failure(
        self, kind: str, key: str, *, threshold: int, window: float, ban_for: float, now: float
    ) -> Ban | None:
        return await self._auth_failure(kind, key, threshold, window, ban_for, now)

    @_redis_op
    async def bans(self, now: float) -> list[Ban]:
        return await self._bans(now)

    @_redis_op
    async def lift_ban(self, kind: str, key: str) -> bool:
        return await self._lift_ban(kind, key)

    @_redis_op
    async def remember_source(self, device_id: str, host: str, until: float, now: float) -> None:
        await self._remember_source(device_id, host, until, now)

    @_redis_op
    async def known_source(self, device_id: str, host: str, now: float) -> bool:
        return await self._known_source(device_id, host, now)

    # ------------------------------------------------------------------ outbound usage
    @_redis_op
    async def add_daily(self, day: str, keys: Sequence[str], expires_at: float) -> list[int]:
        return await self._add_daily(day, keys, expires_at)

    @_redis_op
    async def daily(self, day: str, keys: Sequence[str]) -> list[int]:
        return await self._daily(day, keys)
