"""Toll-fraud caps on a device's calls to the carrier (README "Toll fraud").

A stolen ID password is worth money only through calls that cost money: the carrier's
numbers, above all the premium and per-call charged ones, many at once and all day long.
Four caps bound what one stolen ID, or a tenant's stolen IDs together, can run up before an
operator notices (the alert `SoftswitchOutboundCapHit` fires on the first refusal):

  cap (rule)                        counts                                       default
  outbound-concurrent-cap           the ID's outbound calls in progress          3
  outbound-daily-cap                the ID's outbound calls started today        300
  outbound-tenant-daily-cap         the tenant's outbound calls started today    2000
  outbound-expensive-cap            the ID's calls today to an expensive class   20

"Today" is the tenant's local calendar day (`usage_day`, the tenant's timezone, as the
after-hours schedule reads it). A call that reaches the cap is refused 403 with a Warning
naming the cap; calls already up are never cut. 0 turns a cap off. Internal calls are free
and never counted. The limits come from the `[security]` configuration (no provisioning
field yet): one `OutboundLimits` for every tenant.

Counts come in through the LiveView (`LiveView.outbound_usage`), loaded by the proxy from
its state backend when `routing.needs` asks for them; the proxy adds to them when it starts
an outbound call. Routing stays pure. The counts are read before and written after the
decision, so calls started at the same instant from one ID can pass a cap together: by at
most the calls in flight at once (one, for a phone), never by more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from provisioning.model import Tenant

from .decisions import DestinationKind, Reject
from .schedule import DEFAULT_TIMEZONE, zone

__all__ = [
    "CAP_RULES",
    "DEFAULT_LIMITS",
    "OutboundLimits",
    "OutboundUsage",
    "cap_refusal",
    "device_lease_key",
    "usage_day",
    "usage_keys",
]

CAP_RULES = (
    "outbound-concurrent-cap",
    "outbound-daily-cap",
    "outbound-tenant-daily-cap",
    "outbound-expensive-cap",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundLimits:
    """The caps (module docstring); 0 = no cap."""

    concurrent_per_id: int = 3
    per_id_per_day: int = 300
    per_tenant_per_day: int = 2000
    expensive_per_id_per_day: int = 20
    expensive: frozenset[DestinationKind] = frozenset(
        {DestinationKind.NAVI_DIAL, DestinationKind.DIRECTORY, DestinationKind.OTHER}
    )

    def __post_init__(self) -> None:
        caps = (
            self.concurrent_per_id,
            self.per_id_per_day,
            self.per_tenant_per_day,
            self.expensive_per_id_per_day,
        )
        if any(n < 0 for n in caps):
            raise ValueError("outbound caps must be >= 0 (0: no cap)")

    @classmethod
    def from_classes(
        cls,
        *,
        concurrent_per_id: int,
        per_id_per_day: int,
        per_tenant_per_day: int,
        expensive_per_id_per_day: int,
        expensive_classes: Iterable[str],
    ) -> OutboundLimits:
        """With the expensive classes named by their DestinationKind values ("mobile",
        "navi-dial", "directory", "other" …); ValueError for an unknown one."""
        known = {k.value: k for k in DestinationKind}
        names = list(expensive_classes)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown destination classes {unknown}; known: {sorted(known)}")
        return cls(
            concurrent_per_id=concurrent_per_id,
            per_id_per_day=per_id_per_day,
            per_tenant_per_day=per_tenant_per_day,
            expensive_per_id_per_day=expensive_per_id_per_day,
            expensive=frozenset(known[n] for n in names),
        )


DEFAULT_LIMITS = OutboundLimits()


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundUsage:
    """What an ID (and its tenant) used so far: outbound calls in progress, started today,
    the tenant's started today, the ID's expensive ones started today."""

    active_id: int = 0
    today_id: int = 0
    today_tenant: int = 0
    expensive_today_id: int = 0

    def __post_init__(self) -> None:
        counts = (self.active_id, self.today_id, self.today_tenant, self.expensive_today_id)
        if any(n < 0 for n in counts):
            raise ValueError("usage counts cannot be negative")


NO_USAGE = OutboundUsage()


def usage_day(tenant: Tenant, now: datetime) -> str:
    """The tenant's local date (YYYY-MM-DD) at `now` (aware): the day the caps count."""
    tz = zone(tenant.timezone) or zone(DEFAULT_TIMEZONE)
    return now.astimezone(tz).date().isoformat()


def usage_keys(tenant_id: str, device_id: str) -> tuple[str, str, str]:
    """The daily counter names: the ID's calls, the tenant's calls, the ID's expensive ones."""
    return f"out:id:{device_id}", f"out:tenant:{tenant_id}", f"out-expensive:id:{device_id}"


def device_lease_key(device_id: str) -> str:
    """The lease key counting an ID's outbound calls in progress, beside the tenants'
    channel leases ("@" never starts a tenant id's lease key of the proxy)."""
    return f"@id:{device_id}"


def cap_refusal(
    limits: OutboundLimits,
    usage: OutboundUsage,
    kind: DestinationKind,
    tenant_id: str,
) -> Reject | None:
    """The first cap the call would pass (module docstring), as a 403; None: within caps."""
    checks = (
        (limits.concurrent_per_id, usage.active_id, 0,
         "too many calls from this ID at once (limit {n})"),
        (limits.per_id_per_day, usage.today_id, 1,
         "this ID reached its limit of {n} outgoing calls today"),
        (limits.per_tenant_per_day, usage.today_tenant, 2,
         "your company reached its limit of {n} outgoing calls today"),
    )  # fmt: skip
    for cap, used, rule, text in checks:
        if cap and used >= cap:
            return _refuse(CAP_RULES[rule], text.format(n=cap), tenant_id)
    cap = limits.expensive_per_id_per_day
    if cap and kind in limits.expensive and usage.expensive_today_id >= cap:
        text = f"this ID reached its limit of {cap} calls to charged numbers ({kind}) today"
        return _refuse(CAP_RULES[3], text, tenant_id)
    return None


def _refuse(rule: str, warning: str, tenant_id: str) -> Reject:
    return Reject(status=403, reason="Forbidden", warning=warning, rule=rule, tenant_id=tenant_id)
