"""Builders for tests and benchmarks: snapshots in a few lines. Not used on the call path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date
from types import MappingProxyType
from typing import Any

from provisioning.model import (
    SLOTS_PER_DAY,
    AfterHours,
    DayKind,
    Device,
    DeviceKind,
    Number,
    NumberKind,
    SlotAction,
    Snapshot,
    Tenant,
)

TENANT = "t1"
CONTRACT = "+81312345678"
ADDITIONAL = "+81312345679"
TOLL_FREE = "+81120123456"


def device(
    id: str,
    *,
    kind: DeviceKind = DeviceKind.APP,
    tenant_id: str = TENANT,
    presented_number: str = CONTRACT,
    username: str | None = None,
) -> Device:
    return Device(
        id=id,
        tenant_id=tenant_id,
        username=username or f"user-{id}",
        kind=kind,
        ha1_md5="0" * 32,
        ha1_sha256="0" * 64,
        presented_number=presented_number,
    )


def schedule(
    *,
    enabled: bool = True,
    default: SlotAction = SlotAction.RING,
    slots: Mapping[DayKind, Mapping[int, SlotAction]] | None = None,
    announcement: str = "template-1",
) -> AfterHours:
    """A week of `default` with per-day overrides: {DayKind.WEEKDAY: {36: ANNOUNCE, …}}."""
    days: dict[DayKind, tuple[SlotAction, ...]] = {}
    for kind in DayKind:
        actions = [default] * SLOTS_PER_DAY
        for index, action in (slots or {}).get(kind, {}).items():
            actions[index] = action
        days[kind] = tuple(actions)
    return AfterHours(enabled=enabled, slots=MappingProxyType(days), announcement=announcement)


def business_hours(
    open_slot: int = 18, close_slot: int = 36, *, closed: SlotAction = SlotAction.ANNOUNCE
) -> AfterHours:
    """Weekdays ring from 09:00 to 18:00 (slots 18..35); everything else is `closed`."""
    weekday = {i: SlotAction.RING for i in range(open_slot, close_slot)}
    return schedule(default=closed, slots={DayKind.WEEKDAY: weekday})


def number(
    e164: str,
    ring_group: Iterable[str],
    *,
    tenant_id: str = TENANT,
    kind: NumberKind = NumberKind.CONTRACT,
    **fields: Any,
) -> Number:
    """A Number; `fields` are any other Number fields (options=, after_hours=, …)."""
    base = Number(e164=e164, tenant_id=tenant_id, kind=kind, ring_group=tuple(ring_group))
    return replace(base, **fields)


def tenant(
    id: str = TENANT,
    *,
    timezone: str = "Asia/Tokyo",
    holidays: Iterable[date] = (),
    **fields: Any,
) -> Tenant:
    base = Tenant(
        id=id,
        name=f"tenant {id}",
        timezone=timezone,
        identity_verified=True,
        holidays=frozenset(holidays),
    )
    return replace(base, **fields)


def snapshot(
    tenants: Iterable[Tenant], devices: Iterable[Device], numbers: Iterable[Number]
) -> Snapshot:
    return Snapshot.build(
        version=1,
        realm="test",
        tenants=list(tenants),
        devices=list(devices),
        numbers=list(numbers),
        gateways=[],
    )


def office(
    *,
    contract: Mapping[str, Any] | None = None,
    tenant_fields: Mapping[str, Any] | None = None,
) -> Snapshot:
    """The service-rules example: 5 IDs A-E (A desk phone, B ATA, C-E apps); the contract
    number rings A-E, the additional number A-C, the toll-free number D-E. `contract` overrides
    fields of the contract number."""
    devices = [
        device("A", kind=DeviceKind.DESK),
        device("B", kind=DeviceKind.ATA),
        device("C", presented_number=ADDITIONAL),
        device("D"),
        device("E"),
    ]
    numbers = [
        replace(number(CONTRACT, "ABCDE"), **dict(contract or {})),
        number(
            ADDITIONAL, "ABC", kind=NumberKind.ADDITIONAL, label="Sales", label_in_display_name=True
        ),
        number(TOLL_FREE, "DE", kind=NumberKind.TOLL_FREE),
    ]
    return snapshot([tenant(**dict(tenant_fields or {}))], devices, numbers)
