"""Channel leases and answered calls (service rule: a tenant's simultaneous calls, in and out,
never exceed its number of IDs).

Lifecycle of a lease (one per Call-ID, in the `switch/state` seam so that nodes sharing a
Redis backend share the count):

1. **acquire** — atomically, before the proxy forks (inbound Ring), forwards (Forward) or
   sends a device's call to the carrier (Outbound); internal calls and media hand-offs take
   none. TTL: `default_ttl` (ProxyConfig.channel_ttl, 2 h by default).
2. **answered** — the 2xx of the initial INVITE. When it carries Session-Expires (RFC 4028
   §9: the UAS's 2xx states the negotiated interval) the lease TTL becomes that interval plus
   `session_margin` (32 s: §10 has the side without the refresher send its BYE at the latest
   32 s — or a third of the interval — before expiry); else it stays `default_ttl`.
3. **refresh** — every in-dialog request we proxy (re-INVITE, UPDATE, INFO, …: all but BYE)
   extends the lease by its TTL; a Session-Expires in a refresh request or in its 2xx
   replaces the interval (a session-timer refresh is exactly such a re-INVITE/UPDATE).
4. **release** — the initial INVITE fails (any final non-2xx, CANCEL/487 included), or a BYE
   passes through us.
5. **expiry** — nothing refreshed it within its TTL (both ends vanished without BYE: a
   killed phone and a dead carrier leg, a crashed node). The backend no longer counts it
   (deadlines are wall-clock, so another node or a restarted one agrees); the proxy's own
   bookkeeping (the `sip_calls_active` gauge) forgets it at the next `sweep`.

With session timers a dead call holds its channel at most interval + 32 s; without them, at
most `default_ttl` after the last in-dialog request — the price of not being dialog-stateful
towards both ends (a call longer than `default_ttl` with no in-dialog request at all loses its
lease while it lasts; endpoints that want long calls counted should use session timers).
A refresh that finds the lease already gone (it expired: the TTL was shorter than a silence
in the call) takes it again if a channel is free: the call is evidently up, so it should be
counted; if none is free the call goes on uncounted (never cut by us).

Findable from the dialog alone: with the lease goes a `CallRecord` in the same state backend
(switch/state/base.py: tenant, second lease key, caller, number, since, answered, node). A
BYE for a Call-ID this process holds no lease for (it was restarted after `kill -9`, or the
call was set up through another node) looks the record up and releases what it names, so
leases survive the loss of the process that took them. The record is also what operators
list (the API's active calls, from every node).

Round trips: the lease and the record change together, each change in one call of the
state backend (base.py, Calls; one Lua script on Redis): `acquire_call` at the INVITE,
`release_call` at the end (both leases and the record), and in between a refresh at the
answer (the record's `answered` and the negotiated TTL go with it) and at each in-dialog
request. Nobody waits for those refreshes, so they go by `refresh_call_later`: on Redis
they ride along the process's next round trip (the next call's routing read, the
housekeeping's poll each second; switch/state/redis_batch.py) instead of costing one each.
An answered inbound call thus costs 3 round trips (routing read, acquire, release), and the
operator view shows its answer about a second late at most (2 s at worst). A call released
before its refresh was sent drops it (nothing is written, nothing released twice). A
device's outbound call names its `also` key at the acquire (the same write). Only rare paths
cost more: a refresh that finds the lease expired; `also_count` for a call acquired without
its key (one refresh at once: `refresh_call` takes the `also` lease and rewrites the record).

Releases are idempotent and retried: a release removes the Call-ID's own lease (never
"one of the tenant's"), so doing it twice is a no-op; a backend that fails (Redis blip) gets
the release again with backoff (`RETRY_FIRST`, doubling up to `RETRY_CAP`, for at most
`retry_for` seconds, 300 s by default; then the TTL is the net), counted in
`sip_lease_writes_retried_total`. Retries wake up as soon as the backend answers any operation
of this process again (a long outage would otherwise leave releases waiting out a backoff of
up to `RETRY_CAP` after it), and until a release has gone through, the channel count read for
the tenant (routing's view and the limit of an acquire) does not count that lease
(`releasing`): a call that is over never makes another caller hear "busy" because the
backend was away when it ended.
An `acquire` that raised may still have been applied: the lease is released then too (at
once, and again once `LATE_WRITE_BOUND` has passed, after which no delayed copy of the
acquire can land - so a call answered 503 during an outage never holds a channel
afterwards, and the tenant never sees "busy" from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from switch.eager import run_eager
from switch.state.base import LATE_WRITE_BOUND, CallRecord, StateUnavailable

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.message import Headers
    from switch.state.base import DailyCount, StateBackend

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHANNEL_TTL", "SESSION_MARGIN", "ActiveCalls", "session_interval"]

DEFAULT_CHANNEL_TTL = 2 * 3600.0
SESSION_MARGIN = 32.0
RETRY_FIRST = 0.25  # seconds before a failed lease write is tried again (then doubled)
RETRY_CAP = 15.0
RETRY_FOR = 300.0


def session_interval(headers: Headers) -> float | None:
    """The delta-seconds of Session-Expires (RFC 4028 §4: `x` in compact form), or None."""
    value = headers.get("Session-Expires")
    if not value:
        return None
    try:
        seconds = int(value.split(";", 1)[0].strip())
    except ValueError:
        return None
    return float(seconds) if seconds > 0 else None


@dataclass(slots=True)
class _Lease:
    tenant_id: str
    limit: int
    ttl: float
    deadline: float
    record: CallRecord  # the shared record (state backend), as last written
    also: str | None = None  # a second lease key counting the call (`also_count`)


_UNCOUNTED = 2**31  # the limit of an `also_count` lease: it counts, it never refuses


class ActiveCalls:
    """Answered calls by Call-ID (the `sip_calls_active` gauge) and channel leases (see the
    module docstring). Bounded: past `limit` the oldest answered entry is dropped."""

    def __init__(
        self,
        metrics: Metrics,
        state: StateBackend,
        wall_clock: Callable[[], float],
        limit: int = 200_000,
        *,
        default_ttl: float = DEFAULT_CHANNEL_TTL,
        session_margin: float = SESSION_MARGIN,
        retry_for: float = RETRY_FOR,
        late_write_bound: float = LATE_WRITE_BOUND,
    ) -> None:
        self._metrics = metrics
        self._state = state
        self._wall = wall_clock
        self._limit = limit
        self.default_ttl = default_ttl
        self.session_margin = session_margin
        self.retry_for = retry_for
        self.late_write_bound = late_write_bound
        self._retries = metrics.lease_writes_retried_total
        self._answered: dict[str, None] = {}  # insertion order = age
        self._leases: dict[str, _Lease] = {}
        # leases of calls that ended here whose release has not reached the backend yet
        # (tenant -> Call-IDs): not counted as in use (`releasing`)
        self._releasing: dict[str, set[str]] = {}
        self._wake = asyncio.Event()  # set when the backend answers again (`backend_answered`)
        self._waiting = 0  # retries sleeping on it
        # [recording] told the Call-ID of every call that ends here: failed, BYE, expired
        # (anchor.MediaAnchors.ended deletes the call at the relay)
        self.on_end: Callable[[str], None] | None = None
        # the name the call records carry as their node (None: the state backend's node id);
        # a worker of `serve --workers N` names itself, so that an operator's request to end
        # one of its calls (switch/live.py) reaches the process holding the dialog
        self.owner: str | None = None

    def __len__(self) -> int:
        return len(self._answered)

    def lease(self, call_id: str) -> tuple[str, float, float] | None:
        """(tenant, ttl, deadline) of the call's lease as this node knows it (for tests)."""
        lease = self._leases.get(call_id)
        return None if lease is None else (lease.tenant_id, lease.ttl, lease.deadline)

    def record(self, call_id: str) -> CallRecord | None:
        """The call's record as this node last wrote it (None: no lease held here)."""
        lease = self._leases.get(call_id)
        return None if lease is None else lease.record

    async def acquire(
        self,
        tenant_id: str,
        call_id: str,
        limit: int,
        ttl: float | None = None,
        *,
        caller: str | None = None,
        called: str | None = None,
        also: str | None = None,
        daily: DailyCount | None = None,
    ) -> bool:
        """Take one of the tenant's channels for the call and write its record; with
        `also`, count the call under that key too in the same write (`also_count`), with
        `daily` add it to the day's counters when the channel was taken. A backend failure
        raises StateUnavailable, and whatever it may have applied is released (but counters
        it may have added to: a call counted that did not happen errs on the caps' side)."""
        ttl = self.default_ttl if ttl is None else ttl
        now = self._wall()
        record = CallRecord(
            call_id=call_id, tenant_id=tenant_id, until=now + ttl, started=now,
            caller=caller, called=called, also=also, node=self.owner,
        )  # fmt: skip
        counted = limit + self.releasing(tenant_id)  # those are over: not in use
        try:
            ok = await self._state.acquire_call(record, counted, ttl, now, daily)
        except StateUnavailable:
            self._undo_acquire(tenant_id, call_id, also)
            raise
        self.backend_answered()
        if ok:
            self._leases[call_id] = _Lease(tenant_id, limit, ttl, now + ttl, record, also)
        return ok

    def _undo_acquire(self, tenant_id: str, call_id: str, also: str | None = None) -> None:
        """The acquire failed but may have reached the backend, or still may (a command
        held by the network): release now, and again once no late copy can land."""
        if call_id in self._leases:  # a refresh's re-acquire: the lease is ours anyway
            return

        async def undo() -> None:
            await self._state.release_call(tenant_id, call_id, also)  # the record too

        async def undo_late() -> None:
            await asyncio.sleep(self.late_write_bound)
            if call_id not in self._leases:
                await self._retrying(call_id, undo)

        self._spawn(self._retrying(call_id, undo))
        self._spawn(undo_late())

    async def also_count(self, call_id: str, key: str) -> None:
        """Count the call under `key` too (the calling ID's outbound calls in progress,
        routing.caps): a lease that never refuses, refreshed and released with the call's
        channel lease. Nothing when the call holds no lease (or lost it meanwhile)."""
        lease = self._leases.get(call_id)
        if lease is None or lease.also == key:  # none, or counted by the acquire already
            return
        lease.also = key  # a release from now on drops that lease too
        lease.record = dataclasses.replace(lease.record, also=key)
        # One write: the refresh takes the `also` lease with the call's (both to now + ttl)
        # and rewrites the record naming it - only while the call's lease is live, so a
        # release that overtakes it leaves nothing to undo.
        await self.refresh(call_id)

    def session(self, call_id: str, interval: float | None) -> None:
        """A 2xx or refresh negotiated Session-Expires (None: keep the TTL): the lease TTL
        becomes interval + margin, applied at once."""
        if interval is not None and call_id in self._leases:
            self.touch(call_id, interval)

    def touch(self, call_id: str, interval: float | None = None) -> None:
        """In-dialog traffic: refresh the lease (with a new session interval when given)
        without holding the request up for the backend's round trip."""
        lease = self._leases.get(call_id)
        if lease is None:
            return
        if interval is not None:
            lease.ttl = interval + self.session_margin
        self._spawn(self.refresh(call_id, later=True))

    async def refresh(self, call_id: str, ttl: float | None = None, *, later: bool = False) -> None:
        """In-dialog traffic of a call holding a lease: keep the lease alive. `later`: nobody
        waits for it (`touch`), the backend may send it along other round trips
        (`refresh_call_later`)."""
        lease = self._leases.get(call_id)
        if lease is None:
            return
        if ttl is not None:
            lease.ttl = ttl
        now = self._wall()
        lease.deadline = now + lease.ttl
        lease.record = dataclasses.replace(lease.record, until=lease.deadline)
        # One write (at most one round trip; none of its own with `later` on Redis): the
        # lease, the `also` lease and the record, only if the lease is live (the backend
        # never takes a lease again in a refresh, so a release landing first stays released).
        write = self._state.refresh_call_later if later else self._state.refresh_call
        ok = await write(lease.record, lease.ttl, now)
        # A BYE may release the lease while we wait: never take it again then (a re-acquire
        # racing with the release would hold the channel for the whole TTL).
        if ok or self._leases.get(call_id) is not lease:
            return  # refreshed, or released (and nothing here took it again): done
        # it expired meanwhile: the call is evidently alive, count it again
        if not await self._state.acquire_call(lease.record, lease.limit, lease.ttl, now):
            await self._state.put_call(lease.record)  # uncounted, still findable
        if lease.also is not None and self._leases.get(call_id) is lease:
            await self._state.acquire_channel(lease.also, call_id, _UNCOUNTED, lease.ttl, now)
        if self._leases.get(call_id) is not lease:  # released meanwhile: release again
            tenant_id, also = lease.tenant_id, lease.also
            await self._retrying(call_id, lambda: self._release_lease(call_id, tenant_id, also))

    def answered(self, call_id: str, interval: float | None = None) -> None:
        if call_id not in self._answered:
            if len(self._answered) >= self._limit:
                self.ended(next(iter(self._answered)))
            self._answered[call_id] = None
            self._metrics.calls_active.inc()
            lease = self._leases.get(call_id)
            if lease is not None and lease.record.answered is None:
                lease.record = dataclasses.replace(lease.record, answered=self._wall())
        # the dialog's TTL counts from the answer; the refresh writes the record with it
        self.touch(call_id, interval)

    def failed(self, call_id: str) -> None:
        """The initial INVITE ended without a 2xx: give the channel back."""
        if call_id not in self._answered:
            self._release(call_id)
            self._ended(call_id)

    def ended(self, call_id: str) -> None:
        """A BYE passed (or the entry aged out, or the switch ended the call). A Call-ID
        with no lease here may hold one taken by another process: its record says which."""
        if self._answered.pop(call_id, 0) is None:
            self._metrics.calls_active.dec()
        if call_id in self._leases:
            self._release(call_id)
        else:
            self._spawn(self._retrying(call_id, lambda: self._release_recorded(call_id)))
        self._ended(call_id)

    async def _release_recorded(self, call_id: str) -> None:
        record = await self._state.call(call_id, self._wall())
        if record is not None and call_id not in self._leases:
            log.info("call %s: lease of %s (node %s) released by its record",
                     call_id, record.tenant_id, record.node)  # fmt: skip
            await self._release_lease(call_id, record.tenant_id, record.also)

    def _ended(self, call_id: str) -> None:
        if self.on_end is not None:
            self.on_end(call_id)

    def sweep(self) -> list[str]:
        """Forget leases whose deadline passed (the backend already ignores them) and their
        answered entries; return their Call-IDs (the call records end those calls). Called
        periodically by the proxy."""
        now = self._wall()
        gone = [c for c, lease in self._leases.items() if lease.deadline <= now]
        for call_id in gone:
            del self._leases[call_id]
            if self._answered.pop(call_id, 0) is None:
                self._metrics.calls_active.dec()
            self._ended(call_id)
        return gone

    @property
    def leases(self) -> int:
        return len(self._leases)

    def releasing(self, tenant_id: str) -> int:
        """The tenant's leases still in the backend although their call ended here (the
        release is being retried): a channel count read from the backend subtracts them, so
        callers never hear "busy" from calls that are over while the backend was away."""
        pending = self._releasing.get(tenant_id)
        return len(pending) if pending else 0

    def backend_answered(self) -> None:
        """The backend answered an operation: the releases waiting to be retried go now,
        not at the end of their backoff (which is long after a long outage)."""
        if self._waiting:
            self._wake.set()
            self._wake = asyncio.Event()

    def _release(self, call_id: str) -> None:
        lease = self._leases.pop(call_id, None)
        if lease is not None:
            tenant_id, also = lease.tenant_id, lease.also
            self._releasing.setdefault(tenant_id, set()).add(call_id)
            self._spawn(self._release_retried(call_id, tenant_id, also))

    async def _release_retried(self, call_id: str, tenant_id: str, also: str | None) -> None:
        try:
            await self._retrying(call_id, lambda: self._release_lease(call_id, tenant_id, also))
        finally:
            self._released(tenant_id, call_id)

    def _released(self, tenant_id: str, call_id: str) -> None:
        pending = self._releasing.get(tenant_id)
        if pending is not None:
            pending.discard(call_id)
            if not pending:
                del self._releasing[tenant_id]

    async def _release_lease(self, call_id: str, tenant_id: str, also: str | None) -> None:
        """Both leases and the record at once; idempotent (keyed by the Call-ID): safe to
        run again after a failure."""
        await self._state.release_call(tenant_id, call_id, also)
        self._released(tenant_id, call_id)  # no longer counted by the backend

    async def _retrying(self, call_id: str, op: Callable[[], Awaitable[object]]) -> None:
        """Run `op` until it gets through the backend: backoff from RETRY_FIRST doubling to
        RETRY_CAP, for at most `retry_for` seconds (then the lease's TTL ends it)."""
        delay, started = RETRY_FIRST, time.monotonic()
        failed = False
        while True:
            try:
                await op()
            except StateUnavailable as exc:
                if time.monotonic() - started + delay > self.retry_for:
                    self._retries.labels("given_up").inc()
                    log.error("call %s: lease write given up (%s); its TTL will end it",
                              call_id, exc)  # fmt: skip
                    return
                if not failed:
                    log.warning("call %s: lease write failed (%s); retrying", call_id, exc)
                failed = True
                self._retries.labels("retry").inc()
                await self._pause(delay)
                delay = min(delay * 2, RETRY_CAP)
                continue
            if failed:
                self.backend_answered()
                self._retries.labels("done").inc()
                log.info("call %s: lease write done after retrying", call_id)
            return

    async def _pause(self, delay: float) -> None:
        """Sleep `delay`, or less if the backend answers someone meanwhile."""
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._waiting -= 1

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        # Eager: the memory backend finishes at once and costs no task; a network backend
        # becomes a task at its first real suspension.
        run_eager(_quietly(coro))


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    """A lease write in the background: an unreachable backend is logged, not raised (the
    lease then expires by itself, which is the safe side)."""
    try:
        await coro
    except StateUnavailable as exc:
        log.warning("channel lease update failed: %s", exc)
