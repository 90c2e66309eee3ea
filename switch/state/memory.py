"""In-memory StateBackend for a single node (the embedded default).

Every operation is O(1) except `expire`, which pops a min-heap of deadlines (O(log n) per
expired entry, amortised; stale heap entries for refreshed bindings are skipped by comparing
the stored deadline). Channel leases of one tenant are swept when that tenant is asked
about, from a per-tenant min-heap of deadlines (lazy deletion like the bindings': an entry
counts only while it is the lease's current deadline), so a lease operation costs
O(log n) and never a scan of the tenant's live calls.

Nothing here awaits anything; the methods are coroutines only to satisfy the Protocol.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Ban, Binding, CallRecord, DailyCount, UsageQuery, check_kind

__all__ = ["MemoryState"]


@dataclass(slots=True)
class _Lock:
    owner: str
    until: float


@dataclass(slots=True)
class _Failures:
    window: float
    times: deque[float] = field(default_factory=deque)  # ascending

    def forget(self, now: float) -> None:
        times = self.times
        while times and times[0] <= now - self.window:
            times.popleft()


class MemoryState:
    """StateBackend in process memory. See switch/state/base.py for the semantics."""

    def __init__(self) -> None:
        self._processes: dict[str, tuple[float, str]] = {}  # announce: name -> (until, address)
        # device_id -> contact -> Binding (dicts keep insertion = registration order)
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._count = 0
        self._heap: list[tuple[float, str, str]] = []  # (expires_at, device_id, contact)
        self._locks: dict[str, _Lock] = {}
        self._leases: dict[str, dict[str, float]] = {}  # tenant -> call_id -> deadline
        # tenant -> heap of (deadline, call_id); stale entries are skipped when popped
        self._lease_heaps: dict[str, list[tuple[float, str]]] = {}
        # authentication guard: failure windows and bans by (kind, key); known sources
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._bans: dict[tuple[str, str], float] = {}
        self._sources: dict[str, dict[str, float]] = {}  # device_id -> host -> until
        self._daily: dict[str, dict[str, int]] = {}  # day -> key -> count
        self._daily_until: dict[str, float] = {}
        self._calls: dict[str, CallRecord] = {}  # call_id -> record
        self._tenant_calls: dict[str, dict[str, None]] = {}  # tenant -> call_ids, oldest first
        self._call_heap: list[tuple[float, str]] = []  # (until, call_id), stale ones skipped
        self._end_requests: dict[str, list[str]] = {}  # node -> Call-IDs to end

    # ------------------------------------------------------------------ registrations
    async def bindings(self, device_id: str, now: float) -> list[Binding]:
        found = self._bindings.get(device_id)
        if not found:
            return []
        return [b for b in found.values() if b.expires_at > now]

    async def routing_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> tuple[dict[str, list[Binding]], int | None]:
        bindings = {d: await self.bindings(d, now) for d in device_ids}
        in_use = None if tenant_id is None else await self.channels_in_use(tenant_id, now)
        return bindings, in_use

    async def put_binding(self, binding: Binding) -> None:
        per_device = self._bindings.setdefault(binding.device_id, {})
        if binding.contact not in per_device:
            self._count += 1
        per_device[binding.contact] = binding
        heapq.heappush(self._heap, (binding.expires_at, binding.device_id, binding.contact))

    async def remove_binding(self, device_id: str, contact: str) -> bool:
        per_device = self._bindings.get(device_id)
        if per_device is None or per_device.pop(contact, None) is None:
            return False
        self._count -= 1
        if not per_device:
            del self._bindings[device_id]
        return True

    async def remove_all(self, device_id: str) -> int:
        per_device = self._bindings.pop(device_id, None)
        dropped = len(per_device) if per_device else 0
        self._count -= dropped
        return dropped

    async def expire(self, now: float) -> int:
        dropped = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, device_id, contact = heapq.heappop(heap)
            current = self._bindings.get(device_id, {}).get(contact)
            # A refreshed binding has a later deadline and its own heap entry: skip this one.
            if current is not None and current.expires_at == deadline:
                await self.remove_binding(device_id, contact)
                dropped += 1
        for device_id in [d for d, lock in self._locks.items() if lock.until <= now]:
            del self._locks[device_id]
        self._expire_guard(now)
        calls = self._call_heap
        while calls and calls[0][0] <= now:
            until, call_id = heapq.heappop(calls)
            record = self._calls.get(call_id)
            if record is not None and record.until == until:  # not refreshed since
                self._forget_call(record)
        return dropped

    def _expire_guard(self, now: float) -> None:
        """Bans, failure windows, remembered sources and daily counters past their time.
        A scan: the guard's tables are small next to the bindings (one entry per attacking
        source or guessed ID, each gone after its window)."""
        for pair in [p for p, until in self._bans.items() if until <= now]:
            del self._bans[pair]
        for pair, failures in list(self._failures.items()):
            failures.forget(now)
            if not failures.times:
                del self._failures[pair]
        for device_id, hosts in list(self._sources.items()):
            for host in [h for h, until in hosts.items() if until <= now]:
                del hosts[host]
            if not hosts:
                del self._sources[device_id]
        for day in [d for d, until in self._daily_until.items() if until <= now]:
            del self._daily_until[day]
            self._daily.pop(day, None)

    async def count(self) -> int:
        return self._count

    # ------------------------------------------------------------------ one device per ID
    async def claim_device(self, device_id: str, owner: str, until: float, now: float) -> bool:
        lock = self._locks.get(device_id)
        if lock is not None and lock.until > now and lock.owner != owner:
            return False
        self._locks[device_id] = _Lock(owner, until)
        return True

    async def device_owner(self, device_id: str, now: float) -> str | None:
        lock = self._locks.get(device_id)
        return lock.owner if lock is not None and lock.until > now else None

    async def unclaim_device(self, device_id: str, owner: str) -> bool:
        lock = self._locks.get(device_id)
        if lock is None or lock.owner != owner:
            return False
        del self._locks[device_id]
        return True

    async def release_device(self, device_id: str) -> int:
        self._locks.pop(device_id, None)
        return await self.remove_all(device_id)

    # ------------------------------------------------------------------ channel leases
    def _live_leases(self, tenant_id: str, now: float) -> dict[str, float]:
        leases = self._leases.setdefault(tenant_id, {})
        heap = self._lease_heaps.get(tenant_id)
        if heap:
            while heap and heap[0][0] <= now:
                deadline, call_id = heapq.heappop(heap)
                if leases.get(call_id) == deadline:
                    del leases[call_id]
        return leases

    def _set_lease(
        self, tenant_id: str, leases: dict[str, float], call_id: str, deadline: float
    ) -> None:
        leases[call_id] = deadline
        heap = self._lease_heaps.setdefault(tenant_id, [])
        heapq.heappush(heap, (deadline, call_id))
        if len(heap) > 2 * len(leases) + 64:  # refreshed/released leases left stale entries
            heap[:] = [(d, c) for d, c in heap if leases.get(c) == d]
            heapq.heapify(heap)

    async def acquire_channel(
        self, tenant_id: str, call_id: str, limit: int, ttl: float, now: float
    ) -> bool:
        leases = self._live_leases(tenant_id, now)
        if call_id not in leases and len(leases) >= limit:
            return False
        self._set_lease(tenant_id, leases, call_id, now + ttl)
        return True

    async def refresh_channel(self, tenant_id: str, call_id: str, ttl: float, now: float) -> bool:
        leases = self._live_leases(tenant_id, now)
        if call_id not in leases:
            return False
        self._set_lease(tenant_id, leases, call_id, now + ttl)
        return True

    async def release_channel(self, tenant_id: str, call_id: str) -> bool:
        leases = self._leases.get(tenant_id)
        return leases is not None and leases.pop(call_id, None) is not None

    async def channels_in_use(self, tenant_id: str, now: float) -> int:
        leases = self._live_leases(tenant_id, now)
        if not leases:
            self._leases.pop(tenant_id, None)
            self._lease_heaps.pop(tenant_id, None)
        return len(leases)

    # ------------------------------------------------------------------ calls
    async def put_call(self, record: CallRecord) -> None:
        old = self._calls.get(record.call_id)
        if old is not None and old.tenant_id != record.tenant_id:
            self._forget_call(old)
        self._calls[record.call_id] = record
        heapq.heappush(self._call_heap, (record.until, record.call_id))
        self._tenant_calls.setdefault(record.tenant_id, {})[record.call_id] = None

    # The combined calls are the calls they name, in order (no round trip to save here);
    # a subclass overriding one of those (tests' failing wrappers) is thus obeyed.
    async def acquire_call(
        self,
        record: CallRecord,
        limit: int,
        ttl: float,
        now: float,
        daily: DailyCount | None = None,
    ) -> bool:
        if not await self.acquire_channel(record.tenant_id, record.call_id, limit, ttl, now):
            return False
        if record.also is not None:
            await self.acquire_channel(record.also, record.call_id, 2**31, ttl, now)
        await self.put_call(record)
        if daily is not None:
            await self.add_daily(daily.day, daily.keys, daily.expires_at)
        return True

    async def refresh_call(self, record: CallRecord, ttl: float, now: float) -> bool:
        if not await self.refresh_channel(record.tenant_id, record.call_id, ttl, now):
            return False
        if record.also is not None:
            await self.acquire_channel(record.also, record.call_id, 2**31, ttl, now)
        await self.put_call(record)
        return True

    async def refresh_call_later(self, record: CallRecord, ttl: float, now: float) -> bool:
        return await self.refresh_call(record, ttl, now)  # no round trip to save: at once

    async def release_call(self, tenant_id: str, call_id: str, also: str | None) -> bool:
        released = await self.release_channel(tenant_id, call_id)
        if also is not None:
            await self.release_channel(also, call_id)
        await self.remove_call(call_id)
        return released

    async def call(self, call_id: str, now: float) -> CallRecord | None:
        record = self._calls.get(call_id)
        return record if record is not None and record.until > now else None

    async def calls(self, tenant_id: str, now: float) -> list[CallRecord]:
        """Only calls whose lease is live: a record left by a write that raced with its
        release (or a lease that expired) is dropped here."""
        found = []
        for call_id in list(self._tenant_calls.get(tenant_id, ())):
            record = self._calls[call_id]
            if record.until > now and call_id in self._live_leases(tenant_id, now):
                found.append(record)
            else:
                self._forget_call(record)
        return sorted(found, key=lambda r: r.started)

    async def remove_call(self, call_id: str) -> bool:
        record = self._calls.get(call_id)
        if record is None:
            return False
        self._forget_call(record)
        return True

    async def request_end(self, node: str, call_id: str) -> None:
        self._end_requests.setdefault(node, []).append(call_id)

    async def ends_requested(self, node: str) -> list[str]:
        return self._end_requests.pop(node, [])

    def _forget_call(self, record: CallRecord) -> None:
        self._calls.pop(record.call_id, None)
        ids = self._tenant_calls.get(record.tenant_id)
        if ids is not None:
            ids.pop(record.call_id, None)
            if not ids:
                del self._tenant_calls[record.tenant_id]

    # ------------------------------------------------------------------ authentication guard
    async def auth_failure(
        self, kind: str, key: str, *, threshold: int, window: float, ban_for: float, now: float
    ) -> Ban | None:
        check_kind(kind)
        pair = (kind, key)
        failures = self._failures.get(pair)
        if failures is None:
            failures = self._failures[pair] = _Failures(window)
        failures.window = window
        failures.forget(now)
        failures.times.append(now)
        if len(failures.times) < threshold:
            return None
        del self._failures[pair]
        until = max(now + ban_for, self._bans.get(pair, 0.0))
        self._bans[pair] = until
        return Ban(kind=kind, key=key, until=until)

    async def bans(self, now: float) -> list[Ban]:
        live = [(k, u) for k, u in self._bans.items() if u > now]
        return [Ban(kind=kind, key=key, until=u) for (kind, key), u in sorted(live)]

    async def lift_ban(self, kind: str, key: str) -> bool:
        self._failures.pop((kind, key), None)
        return self._bans.pop((kind, key), None) is not None

    async def remember_source(self, device_id: str, host: str, until: float, now: float) -> None:
        self._sources.setdefault(device_id, {})[host] = until

    async def known_source(self, device_id: str, host: str, now: float) -> bool:
        return self._sources.get(device_id, {}).get(host, 0.0) > now

    # ------------------------------------------------------------------ outbound usage
    async def add_daily(self, day: str, keys: Sequence[str], expires_at: float) -> list[int]:
        counters = self._daily.setdefault(day, {})
        self._daily_until[day] = max(expires_at, self._daily_until.get(day, 0.0))
        values = []
        for key in keys:
            counters[key] = counters.get(key, 0) + 1
            values.append(counters[key])
        return values

    async def usage_lookup(
        self, day: str, keys: Sequence[str], lease_key: str, now: float
    ) -> tuple[list[int], int]:
        return await self.daily(day, keys), await self.channels_in_use(lease_key, now)

    async def outbound_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float, usage: UsageQuery
    ) -> tuple[dict[str, list[Binding]], int | None, tuple[list[int], int]]:
        bindings, in_use = await self.routing_lookup(device_ids, tenant_id, now)
        found = await self.usage_lookup(usage.day, usage.keys, usage.lease_key, now)
        return bindings, in_use, found

    async def daily(self, day: str, keys: Sequence[str]) -> list[int]:
        counters = self._daily.get(day, {})
        return [counters.get(key, 0) for key in keys]

    # ------------------------------------------------------------------ processes
    async def announce(
        self, process: str, address: str, until: float, now: float
    ) -> dict[str, str]:
        self._processes[process] = (until, address)
        return {name: a for name, (u, a) in self._processes.items() if u > now}
