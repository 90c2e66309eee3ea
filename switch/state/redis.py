"""Redis StateBackend: several switch nodes share one tenant base (bindings, the device lock,
channel leases). Same semantics as `memory.py`; see switch/state/base.py for the contract.

Keys (P = the prefix, "softswitch:" by default; <dev> a device id, <t> a tenant id)
----------------------------------------------------------------------------------
  P b:<dev>    hash   contact -> binding JSON (`codec.encode_binding`)
  P o:<dev>    zset   contact -> registration order 1, 2, … (hash order is not guaranteed;
                      `bindings()` must return registration order, a refresh keeps its place)
  P bx         zset   binding member -> expires_at; ZCARD is `count()`, a range up to `now`
                      is what `expire(now)` drops. member = "<bytes of dev>:<dev><contact>"
                      (length-prefixed, so device "a" + contact "bc" and device "ab" +
                      contact "c" differ, and Lua can build it without a JSON encoder)
  P l:<dev>    hash   owner, until: the one-device-per-ID lock
  P lx         zset   dev -> until, for sweeping dead locks in `expire(now)`
  P ch:<t>     zset   call_id -> lease deadline: the tenant's channel leases
  P c:<call>   string CallRecord JSON (`codec.encode_call`), Redis TTL to its deadline + margin
  P cs:<t>     zset   call_id -> record deadline: the tenant's call records
  P end:<node> list   Call-IDs other nodes asked this node to end (Redis TTL 60 s)

Every write that touches several keys is one Lua script (atomic, no interleaving with other
nodes); `claim_device` and `acquire_channel` are the check-and-set ones. A call's lease and
its record change in one script each (`acquire_call`, `refresh_call`, `release_call`), so an
inbound call answered then hung up costs 3 round trips: `routing_lookup` (MULTI/EXEC), the
acquire, the release; the answer's refresh (`refresh_call_later`) rides in the next MULTI/EXEC
this process sends (redis_batch.py). tests/bench/redis_calls_bench.py counts them.
Scripts run by EVALSHA with a transparent reload on NOSCRIPT (redis-py `register_script`).

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

Connections: one blocking pool of at most `POOL_SIZE` (64) connections (redis_pool.py: one
server, or the master Redis Sentinel names). Under
load a command waits for a free connection (up to `timeout`) instead of failing: redis-py's
default pool caps at 100 and raises "Too many connections" at once, which at 500 calls/s
failed most calls (issue 11). A `?max_connections=N` in the URL overrides the size.

Failures: every redis-py error (connection refused, timeout, a server error) is raised as
`StateUnavailable`. Commands time out after `timeout` seconds (0.5 s by default) and are
retried once at once (a pooled connection that died with a Redis restart), never with a long
backoff: a caller is waiting on the call path. Retrying is safe: every script is idempotent.

Fail fast (`_Breaker`): after a connection error or a timeout, every operation raises
`StateUnavailable` at once for `cooldown` seconds (1 s); then one operation at a time is let
through as a probe until one succeeds. A black-holed Redis thus costs one caller at most
2 x `timeout` per cooldown instead of every caller the full wait, and the commands that pile
up in a dead connection are few.

Late writes: a command that timed out here may still reach Redis later (a network that
held it, a relay that resumes). `acquire_channel` compares Redis's clock with the time this
process sent it (its real wall clock, not the caller's `now`, which tests fake) and refuses
it (StateUnavailable) when it arrives more than `LATE_WRITE_BOUND` (base.py) late (clocks
are NTP-synchronised, as base.py assumes). So a call answered 503 during an outage cannot
take a channel afterwards (the "busy after recovery" failure); ActiveCalls also releases
such a lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import redis_codec as codec
from . import redis_scripts as lua
from .base import (
    LATE_WRITE_BOUND,
    Ban,
    Binding,
    CallRecord,
    DailyCount,
    StateUnavailable,
    UsageQuery,
)
from .redis_batch import RefreshBatch
from .redis_guard import GuardOps
from .redis_lookup import LookupOps
from .redis_nodes import ProcessOps
from .redis_pool import connection_pool

__all__ = ["RedisState", "default_node_id"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_SWEEP_BATCH = 500  # expired entries handled per round trip in expire()
POOL_SIZE = 64  # connections per process; more commands in flight wait for one


class _Breaker:
    """Fail fast while Redis is unreachable (module docstring): closed -> open on a
    connection error or timeout; after `cooldown` one probe at a time until one succeeds."""

    __slots__ = ("_clock", "_cooldown", "_probing", "_retry_at")

    def __init__(self, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._retry_at: float | None = None  # None: closed
        self._probing = False

    def admit(self) -> bool:
        if self._retry_at is None:
            return True
        if self._probing or self._clock() < self._retry_at:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._retry_at, self._probing = None, False

    def failed(self, exc: BaseException) -> None:
        if _pool_exhausted(exc):  # Redis is up, this process is busy: not an outage
            self._probing = False
        elif isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            self._retry_at, self._probing = self._clock() + self._cooldown, False
        else:
            self._probing = False  # the server answered (a script error): it is up

    @property
    def open(self) -> bool:
        return self._retry_at is not None


def _pool_exhausted(exc: BaseException) -> bool:
    """The waiting pool found no free connection within `timeout` (redis-py raises it as a
    ConnectionError from a TimeoutError): a load peak here, which must not open the breaker
    (that would refuse every call for `cooldown`, turning a peak into an outage)."""
    return (
        isinstance(exc, RedisConnectionError)
        and isinstance(exc.__cause__, TimeoutError)
        and "No connection available" in str(exc)
    )


def default_node_id() -> str:
    """host-pid-random: unique per process run (conn_ids die with the process)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _redis_op(
    method: Callable[Concatenate[RedisState, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[RedisState, P], Coroutine[Any, Any, R]]:
    """A public operation: refused at once while the breaker is open, redis-py errors become
    StateUnavailable (base.py, Failures), and a call from outside any asyncio task runs in a
    task of its own.

    The transport core steps a TU's coroutine by hand up to its first suspension, from a
    protocol callback (switch/eager.py, `run_eager`), and redis-py's socket
    timeouts (`asyncio.timeout`) refuse to run without a current task. A bare yield is a
    real suspension, after which the TU runs in run_eager's task like any other."""
    name = method.__name__

    async def operation(self: RedisState, /, *args: P.args, **kwargs: P.kwargs) -> R:
        breaker = self._breaker
        if not breaker.admit():
            raise StateUnavailable(f"redis: {name} refused: redis unreachable (failing fast)")
        try:
            if asyncio.current_task() is None:
                # Suspend once: run_eager goes on in a task of its own, where the operation
                # then runs (no second task per operation); anything else gets one.
                await asyncio.sleep(0)
                if asyncio.current_task() is None:
                    result = await asyncio.ensure_future(method(self, *args, **kwargs))
                else:
                    result = await method(self, *args, **kwargs)
            else:
                result = await method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            breaker.failed(exc)
            raise StateUnavailable(f"redis: {name} failed: {exc}") from exc
        except BaseException as exc:  # cancelled: a probe that never finished
            breaker.failed(exc)
            raise
        breaker.succeeded()
        return result

    operation.__name__ = operation.__qualname__ = name
    operation.__doc__ = method.__doc__
    return operation


class RedisState(GuardOps, LookupOps, ProcessOps):
    """StateBackend on one Redis server. `await close()` when done. The authentication
    guard's and the daily counters' operations are in redis_guard.py (keys listed there)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "softswitch:",
        node_id: str | None = None,
        timeout: float = 0.5,
        safety_margin: float = 300.0,
        cooldown: float = 1.0,
        batch_delay: float = 2.0,
    ) -> None:
        self.prefix = prefix
        self._breaker = _Breaker(cooldown)
        self.node_id = node_id or default_node_id()
        self.safety_margin = safety_margin
        # one server, or the master Redis Sentinel names (redis_pool.py)
        pool = connection_pool(url, size=POOL_SIZE, timeout=timeout)
        self._redis: Redis = Redis.from_pool(pool)
        script = self._redis.register_script
        self._put, self._remove, self._remove_all = (
            script(lua.PUT),
            script(lua.REMOVE),
            script(lua.REMOVE_ALL),
        )
        self._expire_binding, self._expire_lock = (
            script(lua.EXPIRE_BINDING),
            script(lua.EXPIRE_LOCK),
        )
        self._claim, self._unclaim = script(lua.CLAIM), script(lua.UNCLAIM)
        self._acquire, self._refresh, self._in_use = (
            script(lua.ACQUIRE),
            script(lua.REFRESH),
            script(lua.IN_USE),
        )
        self._put_call, self._list_calls = script(lua.PUT_CALL), script(lua.CALLS)
        self._remove_call = script(lua.REMOVE_CALL)
        self._acquire_call, self._refresh_call = script(lua.ACQUIRE_CALL), script(lua.REFRESH_CALL)
        self._acquire_call_counted = script(lua.ACQUIRE_CALL_COUNTED)
        self._release_call = script(lua.RELEASE_CALL)
        self._refresh_calls = script(lua.REFRESH_CALLS)
        self._batch = RefreshBatch(batch_delay, self._send_batch)
        self._bx, self._lx = prefix + "bx", prefix + "lx"
        self._init_guard()

    async def close(self) -> None:
        await self._batch.close()
        await self._redis.aclose()

    async def _execute(self, pipe: Any) -> list[Any]:
        """An operation's MULTI/EXEC, carrying the queued refreshes (redis_batch.py)."""
        return await self._batch.execute(pipe, lua.REFRESH_CALLS)

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

    @_redis_op
    async def routing_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> tuple[dict[str, list[Binding]], int | None]:
        """One MULTI/EXEC round trip: each ID's HGETALL + ZRANGE (as `bindings`), and the
        tenant's ZREMRANGEBYSCORE + ZCARD (what the lua.IN_USE script does, as atomically)."""
        if not device_ids and tenant_id is None:
            return {}, None
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_routing(pipe, device_ids, tenant_id, now)
            replies = await self._execute(pipe)
        return self._routing_read(replies, device_ids, tenant_id, now)

    @_redis_op
    async def outbound_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float, usage: UsageQuery
    ) -> tuple[dict[str, list[Binding]], int | None, tuple[list[int], int]]:
        return await self._outbound_lookup(device_ids, tenant_id, now, usage)

    @_redis_op
    async def put_binding(self, binding: Binding) -> None:
        if binding.node is None:
            binding = replace(binding, node=self.node_id)
        member = codec.member(binding.device_id, binding.contact)
        ttl = self._ttl(binding.expires_at - time.time())
        args = [
            binding.contact,
            codec.encode_binding(binding),
            codec.num(binding.expires_at),
            member,
            ttl,
        ]
        await self._put(keys=self._binding_keys(binding.device_id), args=args)

    @_redis_op
    async def remove_binding(self, device_id: str, contact: str) -> bool:
        args = [contact, codec.member(device_id, contact)]
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
                index, "-inf", codec.num(now), start=0, num=_SWEEP_BATCH
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
            device_id, contact = codec.split_member(member)
        except ValueError:
            pipe.zrem(self._bx, member)  # not ours to read; never block the sweep
            return
        args = [contact, member, codec.num(now)]
        await self._expire_binding(keys=self._binding_keys(device_id), args=args, client=pipe)

    async def _expire_one_lock(self, pipe: Any, device_id: str, now: float) -> None:
        args = [device_id, codec.num(now)]
        await self._expire_lock(keys=self._lock_keys(device_id), args=args, client=pipe)

    @_redis_op
    async def count(self) -> int:
        return int(await self._redis.zcard(self._bx))

    # ------------------------------------------------------------------ one device per ID
    @_redis_op
    async def claim_device(self, device_id: str, owner: str, until: float, now: float) -> bool:
        args = [device_id, owner, codec.num(until), codec.num(now), self._ttl(until - now)]
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
        args = [
            call_id, str(limit), codec.num(now + ttl), codec.num(now), self._ttl(ttl),
            codec.num(LATE_WRITE_BOUND), codec.num(time.time()),
        ]  # fmt: skip
        done = int(await self._acquire(keys=[self._lease_key(tenant_id)], args=args))
        if done < 0:
            raise StateUnavailable(f"redis: lease for {call_id} arrived too late, refused")
        return bool(done)

    @_redis_op
    async def refresh_channel(self, tenant_id: str, call_id: str, ttl: float, now: float) -> bool:
        args = [call_id, codec.num(now + ttl), codec.num(now), self._ttl(ttl)]
        return bool(await self._refresh(keys=[self._lease_key(tenant_id)], args=args))

    @_redis_op
    async def release_channel(self, tenant_id: str, call_id: str) -> bool:
        return bool(await self._redis.zrem(self._lease_key(tenant_id), call_id))

    @_redis_op
    async def channels_in_use(self, tenant_id: str, now: float) -> int:
        return int(await self._in_use(keys=[self._lease_key(tenant_id)], args=[codec.num(now)]))

    # ------------------------------------------------------------------ calls
    def _call_keys(self, record: CallRecord) -> list[str]:
        return [f"{self.prefix}c:{record.call_id}", f"{self.prefix}cs:{record.tenant_id}"]

    @_redis_op
    async def put_call(self, record: CallRecord) -> None:
        if record.node is None:
            record = replace(record, node=self.node_id)
        ttl = self._ttl(record.until - time.time())
        args = [record.call_id, codec.encode_call(record), codec.num(record.until), ttl]
        await self._put_call(keys=self._call_keys(record), args=args)

    def _record_args(self, record: CallRecord) -> list[str]:
        """json, until, key TTL of a record as `put_call` writes it."""
        if record.node is None:
            record = replace(record, node=self.node_id)
        ttl = self._ttl(record.until - time.time())
        return [codec.encode_call(record), codec.num(record.until), ttl]

    @_redis_op
    async def acquire_call(
        self,
        record: CallRecord,
        limit: int,
        ttl: float,
        now: float,
        daily: DailyCount | None = None,
    ) -> bool:
        call_id = record.call_id
        args = [
            call_id, str(limit), codec.num(now + ttl), codec.num(now), self._ttl(ttl),
            codec.num(LATE_WRITE_BOUND), codec.num(time.time()), *self._record_args(record),
        ]  # fmt: skip
        keys = [self._lease_key(record.tenant_id), *self._call_keys(record)]
        if record.also is not None:
            keys.append(self._lease_key(record.also))
        if daily is None:
            done = int(await self._acquire_call(keys=keys, args=args))
        else:
            args += [self._ttl(daily.expires_at - time.time()), str(len(keys) + 1)]
            keys += [self._daily_key(daily.day, key) for key in daily.keys]
            done = int(await self._acquire_call_counted(keys=keys, args=args))
        if done < 0:
            raise StateUnavailable(f"redis: lease for {call_id} arrived too late, refused")
        return bool(done)

    def _refresh_parts(
        self, record: CallRecord, ttl: float, now: float
    ) -> tuple[list[str], list[str]]:
        """REFRESH_CALL's keys and args."""
        args = [
            record.call_id,
            codec.num(now + ttl),
            codec.num(now),
            self._ttl(ttl),
            *self._record_args(record),
        ]
        keys = [self._lease_key(record.tenant_id), *self._call_keys(record)]
        if record.also is not None:
            keys.append(self._lease_key(record.also))
        return keys, args

    @_redis_op
    async def refresh_call(self, record: CallRecord, ttl: float, now: float) -> bool:
        keys, args = self._refresh_parts(record, ttl, now)
        # a refresh of the call still queued has an older record: this one replaces it
        return await self._batch.at_once(record.call_id, self._refresh_call(keys=keys, args=args))

    async def refresh_call_later(self, record: CallRecord, ttl: float, now: float) -> bool:
        """Queued and sent with other round trips (redis_batch.py); not an operation of its
        own (the round trip that carries it is: breaker, errors)."""
        keys, args = self._refresh_parts(record, ttl, now)
        return await self._batch.add(record.call_id, keys, args)

    @_redis_op
    async def _send_batch(self, keys: list[str], args: list[str]) -> Any:
        """The queued refreshes' own round trip, when nothing carried them in time."""
        return await self._refresh_calls(keys=keys, args=args)

    @_redis_op
    async def release_call(self, tenant_id: str, call_id: str, also: str | None) -> bool:
        self._batch.drop(call_id)  # the release covers a refresh still queued
        keys = [self._lease_key(tenant_id), f"{self.prefix}c:{call_id}"]
        if also is not None:
            keys.append(self._lease_key(also))
        return bool(await self._release_call(keys=keys, args=[call_id, f"{self.prefix}cs:"]))

    @_redis_op
    async def call(self, call_id: str, now: float) -> CallRecord | None:
        text = await self._redis.get(f"{self.prefix}c:{call_id}")
        record = None if text is None else codec.decode_call(str(text))
        return record if record is not None and record.until > now else None

    @_redis_op
    async def calls(self, tenant_id: str, now: float) -> list[CallRecord]:
        keys = [f"{self.prefix}cs:{tenant_id}", self._lease_key(tenant_id)]
        found: Any = await self._list_calls(keys=keys, args=[codec.num(now), f"{self.prefix}c:"])
        records = [r for r in map(codec.decode_call, found) if r is not None and r.until > now]
        return sorted(records, key=lambda r: r.started)

    @_redis_op
    async def remove_call(self, call_id: str) -> bool:
        keys = [f"{self.prefix}c:{call_id}"]
        return bool(await self._remove_call(keys=keys, args=[call_id, f"{self.prefix}cs:"]))

    @_redis_op
    async def request_end(self, node: str, call_id: str) -> None:
        key = f"{self.prefix}end:{node}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, call_id)
            pipe.expire(key, 60)
            await pipe.execute()

    @_redis_op
    async def ends_requested(self, node: str) -> list[str]:
        key = f"{self.prefix}end:{node}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            found, _ = await self._execute(pipe)
        return [str(c) for c in found]

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

    @_redis_op
    async def usage_lookup(
        self, day: str, keys: Sequence[str], lease_key: str, now: float
    ) -> tuple[list[int], int]:
        return await self._usage_lookup(day, keys, self._lease_key(lease_key), now)

    # ------------------------------------------------------------------ processes
    @_redis_op
    async def announce(
        self, process: str, address: str, until: float, now: float
    ) -> dict[str, str]:
        return await self._announce(process, address, until, now)
