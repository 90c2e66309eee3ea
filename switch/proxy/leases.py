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

Several nodes: the lease itself is shared (Redis), but which tenant a Call-ID's lease
belongs to is known only to the node that took it, so in-dialog traffic proxied by another
node does not refresh it; with session timers on the same node, or the default TTL, the
lease still ends correctly (released by BYE on any node would need that mapping shared
too - left for when dialogs are shared between nodes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from switch.eager import run_eager
from switch.state.base import StateUnavailable

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.message import Headers
    from switch.state.base import StateBackend

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHANNEL_TTL", "SESSION_MARGIN", "ActiveCalls", "session_interval"]

DEFAULT_CHANNEL_TTL = 2 * 3600.0
SESSION_MARGIN = 32.0


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
    ) -> None:
        self._metrics = metrics
        self._state = state
        self._wall = wall_clock
        self._limit = limit
        self.default_ttl = default_ttl
        self.session_margin = session_margin
        self._answered: dict[str, None] = {}  # insertion order = age
        self._leases: dict[str, _Lease] = {}
        # [recording] told the Call-ID of every call that ends here: failed, BYE, expired
        # (anchor.MediaAnchors.ended deletes the call at the relay)
        self.on_end: Callable[[str], None] | None = None

    def __len__(self) -> int:
        return len(self._answered)

    def lease(self, call_id: str) -> tuple[str, float, float] | None:
        """(tenant, ttl, deadline) of the call's lease as this node knows it (for tests)."""
        lease = self._leases.get(call_id)
        return None if lease is None else (lease.tenant_id, lease.ttl, lease.deadline)

    async def acquire(
        self, tenant_id: str, call_id: str, limit: int, ttl: float | None = None
    ) -> bool:
        ttl = self.default_ttl if ttl is None else ttl
        now = self._wall()
        ok = await self._state.acquire_channel(tenant_id, call_id, limit, ttl, now)
        if ok:
            self._leases[call_id] = _Lease(tenant_id, limit, ttl, now + ttl)
        return ok

    async def also_count(self, call_id: str, key: str) -> None:
        """Count the call under `key` too (the calling ID's outbound calls in progress,
        routing.caps): a lease that never refuses, refreshed and released with the call's
        channel lease. Nothing when the call holds no lease (or lost it meanwhile)."""
        lease = self._leases.get(call_id)
        if lease is None:
            return
        lease.also = key
        await self._state.acquire_channel(key, call_id, _UNCOUNTED, lease.ttl, self._wall())
        if self._leases.get(call_id) is not lease:  # released while we waited: undo
            await self._state.release_channel(key, call_id)

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
        self._spawn(self.refresh(call_id))

    async def refresh(self, call_id: str, ttl: float | None = None) -> None:
        """In-dialog traffic of a call holding a lease: keep the lease alive."""
        lease = self._leases.get(call_id)
        if lease is None:
            return
        if ttl is not None:
            lease.ttl = ttl
        now = self._wall()
        lease.deadline = now + lease.ttl
        ok = await self._state.refresh_channel(lease.tenant_id, call_id, lease.ttl, now)
        if not ok:  # it expired meanwhile: the call is evidently alive, count it again
            await self._state.acquire_channel(lease.tenant_id, call_id, lease.limit, lease.ttl, now)
        if lease.also is not None:
            await self._state.acquire_channel(lease.also, call_id, _UNCOUNTED, lease.ttl, now)

    def answered(self, call_id: str, interval: float | None = None) -> None:
        if call_id not in self._answered:
            if len(self._answered) >= self._limit:
                self.ended(next(iter(self._answered)))
            self._answered[call_id] = None
            self._metrics.calls_active.inc()
        self.touch(call_id, interval)  # the dialog's TTL counts from the answer

    def failed(self, call_id: str) -> None:
        """The initial INVITE ended without a 2xx: give the channel back."""
        if call_id not in self._answered:
            self._release(call_id)
            self._ended(call_id)

    def ended(self, call_id: str) -> None:
        """A BYE passed (or the entry aged out)."""
        if self._answered.pop(call_id, 0) is None:
            self._metrics.calls_active.dec()
        self._release(call_id)
        self._ended(call_id)

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

    def _release(self, call_id: str) -> None:
        lease = self._leases.pop(call_id, None)
        if lease is not None:
            self._spawn(self._state.release_channel(lease.tenant_id, call_id))
            if lease.also is not None:
                self._spawn(self._state.release_channel(lease.also, call_id))

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
