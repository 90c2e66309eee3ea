"""The proxy's side of the toll-fraud caps (routing.caps): load the calling ID's outbound
usage for routing, count the outbound calls the proxy starts, count the refusals.

Where the numbers live (the state seam, shared by nodes):
- calls in progress per ID: a lease per call under `routing.caps.device_lease_key(id)`,
  taken with the tenant's channel lease (in the same write: execute.py names it to the
  acquire; `started` makes sure of it, leases.ActiveCalls.also_count) and released,
  refreshed and expired with it;
- calls started per day: `StateBackend.add_daily` counters of the tenant's local day
  (`routing.caps.usage_day`, `usage_keys`), kept two days, added to by the write that takes
  the call's channel (`daily`, `StateBackend.acquire_call`);
- both read with routing's own read (`query`, `StateBackend.outbound_lookup`): a device's
  outbound call costs Redis three round trips (that read, the acquire, the release).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from routing.caps import (
    CAP_RULES,
    OutboundLimits,
    OutboundUsage,
    device_lease_key,
    usage_day,
    usage_keys,
)
from routing.decisions import Decision, Outbound
from switch.state.base import DailyCount, UsageQuery

if TYPE_CHECKING:
    from provisioning.model import Snapshot
    from switch.metrics import Metrics
    from switch.state.base import StateBackend

    from .leases import ActiveCalls

__all__ = ["OutboundBook"]

log = logging.getLogger(__name__)

_KEEP_DAYS = 2 * 86400.0  # daily counters outlive their day (time zones, late readers)


class OutboundBook:
    """See the module docstring. `limits` says which destination classes are expensive."""

    def __init__(
        self, state: StateBackend, calls: ActiveCalls, limits: OutboundLimits, metrics: Metrics
    ) -> None:
        self._state = state
        self._calls = calls
        self._limits = limits
        self._capped = metrics.outbound_capped_total
        for rule in CAP_RULES:  # present from the start (the alert compares increases)
            self._capped.labels(rule)

    def query(self, snapshot: Snapshot, tenant_id: str, device_id: str, wall: float) -> UsageQuery:
        """What to read for the ID's usage (`StateBackend.outbound_lookup`, with routing's
        read: one round trip on Redis)."""
        day = _day(snapshot, tenant_id, wall)
        return UsageQuery(day, usage_keys(tenant_id, device_id), device_lease_key(device_id))

    @staticmethod
    def usage(found: tuple[list[int], int]) -> OutboundUsage:
        """The ID's usage as routing.caps reads it, from what `query` read."""
        (today_id, today_tenant, expensive), active = found
        return OutboundUsage(
            active_id=active,
            today_id=today_id,
            today_tenant=today_tenant,
            expensive_today_id=expensive,
        )

    def daily(self, decision: Outbound, snapshot: Snapshot, wall: float) -> DailyCount:
        """The counters an outbound call adds to: the ID's and the tenant's calls of the
        tenant's day, and the ID's expensive ones when the destination is (caps)."""
        day = _day(snapshot, decision.tenant_id, wall)
        per_id, per_tenant, expensive = usage_keys(decision.tenant_id, decision.device_id)
        keys: tuple[str, ...] = (per_id, per_tenant)
        if decision.destination_kind in self._limits.expensive:
            keys += (expensive,)
        return DailyCount(day, keys, wall + _KEEP_DAYS)

    async def started(
        self, decision: Outbound, call_id: str, snapshot: Snapshot, wall: float
    ) -> None:
        """An outbound call went to the carrier without its acquire counting it (`daily`):
        count it."""
        count = self.daily(decision, snapshot, wall)
        await self._state.add_daily(count.day, count.keys, count.expires_at)
        await self._calls.also_count(call_id, device_lease_key(decision.device_id))

    def observe(self, decision: Decision, device_id: str | None) -> None:
        """Count a cap refusal in `sip_outbound_capped_total{cap}`, and log it with the ID
        (the alert SoftswitchOutboundCapHit sends operators here)."""
        if decision.rule in CAP_RULES:
            self._capped.labels(decision.rule).inc()
            log.warning("outbound cap %s: a call from ID %s refused", decision.rule, device_id)


def _day(snapshot: Snapshot, tenant_id: str, wall: float) -> str:
    """The tenant's local day the counters of a call at `wall` belong to."""
    return usage_day(snapshot.tenants[tenant_id], datetime.fromtimestamp(wall, UTC))
