"""Toll-fraud caps (routing.caps) on calls from a device to the carrier: each cap at its
boundary (the call that reaches the cap passes, the next one is refused), the expensive
classes, 0 = off, what the caps never touch (internal calls, emergency refusal first), the
tenant's local day, and the configuration's class names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provisioning.model import TenantStatus
from routing import (
    Call,
    Decision,
    DestinationKind,
    Internal,
    LiveState,
    Outbound,
    OutboundLimits,
    OutboundUsage,
    Reject,
    decide,
)
from routing.caps import cap_refusal, usage_day
from routing.testing import office, tenant

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ALL = frozenset("ABCDE")
LIMITS = OutboundLimits(
    concurrent_per_id=2,
    per_id_per_day=5,
    per_tenant_per_day=8,
    expensive_per_id_per_day=1,
)
LANDLINE, MOBILE, NAVI, DIRECTORY = "0355550000", "09011112222", "0570012345", "104"


def dial(
    dialled: str,
    usage: OutboundUsage,
    limits: OutboundLimits = LIMITS,
    caller: str = "D",
    **tenant_fields: object,
) -> Decision:
    snap = office(tenant_fields=dict(tenant_fields) or None)
    live = LiveState(registered=ALL, usage={caller: usage})
    call = Call.from_device(call_id="c1", device_id=caller, dialled=dialled)
    return decide(call, snap, live, NOW, limits=limits)


@pytest.mark.parametrize(
    ("field", "below", "rule", "text"),
    [
        ("active_id", 1, "outbound-concurrent-cap", "too many calls from this ID at once"),
        ("today_id", 4, "outbound-daily-cap", "this ID reached its limit of 5"),
        ("today_tenant", 7, "outbound-tenant-daily-cap", "your company reached its limit of 8"),
    ],
)
def test_each_cap_at_its_boundary(field: str, below: int, rule: str, text: str) -> None:
    assert isinstance(dial(LANDLINE, OutboundUsage(**{field: below})), Outbound)
    refused = dial(LANDLINE, OutboundUsage(**{field: below + 1}))
    assert isinstance(refused, Reject)
    assert (refused.status, refused.rule, refused.tenant_id) == (403, rule, "t1")
    assert refused.warning is not None and text in refused.warning
    assert dial(LANDLINE, OutboundUsage(**{field: below + 50})).rule == rule  # and beyond


@pytest.mark.parametrize("dialled", [NAVI, DIRECTORY, "0990123456"])
def test_expensive_classes_have_their_own_daily_cap(dialled: str) -> None:
    assert isinstance(dial(dialled, OutboundUsage(expensive_today_id=0)), Outbound)
    refused = dial(dialled, OutboundUsage(expensive_today_id=1))
    assert isinstance(refused, Reject) and refused.rule == "outbound-expensive-cap"
    assert refused.warning is not None and "charged numbers" in refused.warning


@pytest.mark.parametrize("dialled", [LANDLINE, MOBILE, "0501234567", "0800123456"])
def test_ordinary_classes_ignore_the_expensive_cap(dialled: str) -> None:
    assert isinstance(dial(dialled, OutboundUsage(expensive_today_id=99)), Outbound)


def test_mobile_can_be_made_expensive_by_configuration() -> None:
    limits = OutboundLimits.from_classes(
        concurrent_per_id=0, per_id_per_day=0, per_tenant_per_day=0,
        expensive_per_id_per_day=3, expensive_classes=["mobile"],
    )  # fmt: skip
    assert limits.expensive == frozenset({DestinationKind.MOBILE})
    assert dial(MOBILE, OutboundUsage(expensive_today_id=3), limits).rule == (
        "outbound-expensive-cap"
    )
    assert isinstance(dial(NAVI, OutboundUsage(expensive_today_id=3), limits), Outbound)


def test_zero_turns_every_cap_off() -> None:
    off = OutboundLimits(
        concurrent_per_id=0, per_id_per_day=0, per_tenant_per_day=0, expensive_per_id_per_day=0
    )
    huge = OutboundUsage(active_id=99, today_id=10**6, today_tenant=10**6, expensive_today_id=99)
    assert isinstance(dial(NAVI, huge, off), Outbound)


def test_the_first_cap_reached_is_named_in_a_fixed_order() -> None:
    everything = OutboundUsage(active_id=9, today_id=9, today_tenant=9, expensive_today_id=9)
    assert dial(NAVI, everything).rule == "outbound-concurrent-cap"
    assert dial(NAVI, OutboundUsage(today_id=9, today_tenant=9)).rule == "outbound-daily-cap"


def test_internal_calls_and_refusals_before_the_caps_are_untouched() -> None:
    capped = OutboundUsage(active_id=9, today_id=9, today_tenant=9, expensive_today_id=9)
    assert isinstance(dial("user-C", capped), Internal)  # free, never capped
    assert dial("110", capped).rule == "outbound-emergency"
    assert dial("+12125551234", capped).rule == "outbound-international"
    assert dial(LANDLINE, capped, status=TenantStatus.SUSPENDED).rule == (
        "outbound-tenant-suspended"
    )


def test_channels_full_is_told_before_a_cap() -> None:
    snap = office()
    live = LiveState(registered=ALL, channels={"t1": 99}, usage={"D": OutboundUsage(today_id=9)})
    call = Call.from_device(call_id="c1", device_id="D", dialled=LANDLINE)
    assert decide(call, snap, live, NOW, limits=LIMITS).rule == "outbound-channels-full"


def test_the_default_limits_apply_without_an_argument() -> None:
    snap = office()
    call = Call.from_device(call_id="c1", device_id="D", dialled=LANDLINE)
    at_300 = LiveState(registered=ALL, usage={"D": OutboundUsage(today_id=300)})
    at_299 = LiveState(registered=ALL, usage={"D": OutboundUsage(today_id=299)})
    assert decide(call, snap, at_300, NOW).rule == "outbound-daily-cap"
    assert isinstance(decide(call, snap, at_299, NOW), Outbound)


def test_another_ids_usage_does_not_count() -> None:
    assert isinstance(dial(LANDLINE, OutboundUsage(today_id=99), caller="D"), Reject)
    snap = office()
    live = LiveState(registered=ALL, usage={"E": OutboundUsage(today_id=99)})
    call = Call.from_device(call_id="c1", device_id="D", dialled=LANDLINE)
    assert isinstance(decide(call, snap, live, NOW, limits=LIMITS), Outbound)


def test_usage_day_is_the_tenants_local_date() -> None:
    late_utc = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # 00:30 on the 21st in Tokyo
    assert usage_day(tenant(), late_utc) == "2026-11-21"
    assert usage_day(tenant(timezone="UTC"), late_utc) == "2026-11-20"
    assert usage_day(tenant(timezone="Not/AZone"), late_utc) == "2026-11-21"  # Tokyo


def test_bad_limits_and_class_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown destination classes"):
        OutboundLimits.from_classes(
            concurrent_per_id=1, per_id_per_day=1, per_tenant_per_day=1,
            expensive_per_id_per_day=1, expensive_classes=["premium"],
        )  # fmt: skip
    with pytest.raises(ValueError):
        OutboundLimits(per_id_per_day=-1)
    with pytest.raises(ValueError):
        OutboundUsage(today_id=-1)


def test_cap_refusal_is_none_within_every_cap() -> None:
    usage = OutboundUsage(active_id=1, today_id=4, today_tenant=7, expensive_today_id=0)
    assert cap_refusal(LIMITS, usage, DestinationKind.NAVI_DIAL, "t1") is None
