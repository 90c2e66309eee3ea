"""The after-hours schedule in the tenant's own wall-clock time.

A slot is a half hour of *local* wall-clock time: slot = (hour * 60 + minute) // 30, so 00:00 is
slot 0, 17:59:59 is slot 35, 18:00:00 is slot 36 and 23:59:59 is slot 47. Across a daylight
saving change the wall clock is what counts (a 02:30 that happens twice is slot 5 both times; a
skipped hour has no calls). The day kind is HOLIDAY when the local date is one of the tenant's
registered holidays, even when it is a Saturday or Sunday; otherwise the weekday decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioning.model import SLOTS_PER_DAY, AfterHours, DayKind, SlotAction, Tenant

DEFAULT_TIMEZONE = "Asia/Tokyo"
_SATURDAY, _SUNDAY = 5, 6


@dataclass(frozen=True, slots=True)
class Slot:
    day_kind: DayKind
    index: int
    local: datetime


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def slot_index(local: datetime) -> int:
    return (local.hour * 60 + local.minute) // 30


def day_kind(local_date: date, holidays: frozenset[date]) -> DayKind:
    if local_date in holidays:
        return DayKind.HOLIDAY
    weekday = local_date.weekday()
    if weekday == _SATURDAY:
        return DayKind.SATURDAY
    if weekday == _SUNDAY:
        return DayKind.SUNDAY
    return DayKind.WEEKDAY


def local_slot(tenant: Tenant, now: datetime, anomalies: list[str]) -> Slot:
    """`now` (aware) in the tenant's zone; an unknown zone falls back to Asia/Tokyo."""
    tz = zone(tenant.timezone)
    if tz is None:
        anomalies.append(f"unknown-timezone:{tenant.timezone}")
        tz = zone(DEFAULT_TIMEZONE)
    try:
        local = now.astimezone(tz)
    except OverflowError:  # within hours of datetime.min/max: no real call, but never raise
        anomalies.append("time-out-of-range")
        local = now
    return Slot(day_kind(local.date(), tenant.holidays), slot_index(local), local)


def slot_action(schedule: AfterHours, slot: Slot, anomalies: list[str]) -> SlotAction:
    """The action for the slot; a missing day kind or a short day rings (and is flagged)."""
    actions = schedule.slots.get(slot.day_kind)
    if actions is None or len(actions) != SLOTS_PER_DAY:
        anomalies.append(f"malformed-schedule:{slot.day_kind}")
        if actions is None or slot.index >= len(actions):
            return SlotAction.RING
    action = actions[slot.index]
    if not isinstance(action, SlotAction):
        anomalies.append(f"malformed-slot:{slot.day_kind}:{slot.index}")
        return SlotAction.RING
    return action
