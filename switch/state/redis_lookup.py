"""The routing reads of the Redis StateBackend (a mixin of `RedisState`, kept apart to keep
redis.py readable): the bindings of the IDs a call may ring and the tenant's channels in
use, and with them a device's outbound usage (one MULTI/EXEC). Semantics:
switch/state/base.py; keys: redis.py."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import redis_codec as codec
from .base import Binding, UsageQuery

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LookupOps"]

log = logging.getLogger("switch.state.redis")


class LookupOps:
    """Mixed into RedisState, which provides the attributes declared here and wraps each
    public method with its error translation (`_redis_op`)."""

    node_id: str
    _redis: Redis

    def _binding_keys(self, device_id: str) -> list[str]:
        raise NotImplementedError  # RedisState's

    def _lease_key(self, tenant_id: str) -> str:
        raise NotImplementedError  # RedisState's

    async def _execute(self, pipe: Any) -> list[Any]:
        raise NotImplementedError  # RedisState's: a MULTI/EXEC carrying queued refreshes

    def _queue_usage(
        self, pipe: Any, day: str, keys: Sequence[str], leases: str, now: float
    ) -> None:
        raise NotImplementedError  # GuardOps'

    def _usage_read(self, replies: list[Any], keys: Sequence[str]) -> tuple[list[int], int]:
        raise NotImplementedError  # GuardOps'

    async def _outbound_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float, usage: UsageQuery
    ) -> tuple[dict[str, list[Binding]], int | None, tuple[list[int], int]]:
        """routing_lookup's and usage_lookup's commands in one MULTI/EXEC round trip."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_routing(pipe, device_ids, tenant_id, now)
            split = len(pipe)
            leases = self._lease_key(usage.lease_key)
            self._queue_usage(pipe, usage.day, usage.keys, leases, now)
            replies = await self._execute(pipe)
        bindings, in_use = self._routing_read(replies[:split], device_ids, tenant_id, now)
        return bindings, in_use, self._usage_read(replies[split:], usage.keys)

    def _queue_routing(
        self, pipe: Any, device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> None:
        for device_id in device_ids:
            b_key, o_key, _ = self._binding_keys(device_id)
            pipe.hgetall(b_key)
            pipe.zrange(o_key, 0, -1)
        if tenant_id is not None:
            key = self._lease_key(tenant_id)
            pipe.zremrangebyscore(key, "-inf", codec.num(now))
            pipe.zcard(key)

    def _routing_read(
        self, replies: list[Any], device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> tuple[dict[str, list[Binding]], int | None]:
        bindings = {
            d: self._live(replies[2 * i], replies[2 * i + 1], now) for i, d in enumerate(device_ids)
        }
        return bindings, None if tenant_id is None else int(replies[-1])

    def _live(self, stored: dict[str, str], order: list[str], now: float) -> list[Binding]:
        rank = {contact: i for i, contact in enumerate(order)}
        found = []
        for contact in sorted(stored, key=lambda c: rank.get(c, len(rank))):
            binding = self._read(stored[contact])
            if binding is not None and binding.expires_at > now:
                found.append(binding)
        return found

    def _read(self, text: str) -> Binding | None:
        try:
            binding = codec.decode_binding(text)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable binding in redis skipped: %.200r", text)
            return None
        if binding.node in (None, self.node_id):
            # Ours: reached directly, not through our own path (base.py, Flows).
            return binding if binding.path is None else replace(binding, path=None)
        if binding.source.conn_id is not None:
            # Another node's connection number means nothing here (base.py, Flows).
            binding = replace(binding, source=replace(binding.source, conn_id=None))
        return binding
