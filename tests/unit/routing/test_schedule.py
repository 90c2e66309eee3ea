from datetime import UTC, date, datetime, timedelta

import pytest

from provisioning.model import DayKind, NumberOptions, SlotAction
from routing import Announce, Call, LiveState, Ring, decide
from routing.schedule import day_kind, local_slot, slot_index
from routing.testing import CONTRACT, business_hours, office, schedule, tenant

JST = timedelta(hours=9)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def jst(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """Tokyo wall-clock time, given to decide() as UTC like the proxy does."""
    return utc(y, mo, d, h, mi, s) - JST


@pytest.mark.parametrize(
    ("now", "index"),
    [
        (jst(2026, 11, 20, 0, 0, 0), 0),
        (jst(2026, 11, 20, 0, 29, 59), 0),
        (jst(2026, 11, 20, 0, 30, 0), 1),
        (jst(2026, 11, 20, 17, 59, 59), 35),
        (jst(2026, 11, 20, 18, 0, 0), 36),
        (jst(2026, 11, 20, 23, 59, 59), 47),
        (jst(2026, 11, 21, 0, 0, 0), 0),
    ],
)
def test_slot_index_in_tokyo(now: datetime, index: int) -> None:
    slot = local_slot(tenant(), now, [])
    assert slot.index == index
    assert slot_index(slot.local) == index


@pytest.mark.parametrize(
    ("day", "holidays", "kind"),
    [
        (date(2026, 11, 20), (), DayKind.WEEKDAY),  # Friday
        (date(2026, 11, 21), (), DayKind.SATURDAY),
        (date(2026, 11, 22), (), DayKind.SUNDAY),
        (date(2026, 11, 23), (), DayKind.WEEKDAY),  # Monday; a holiday only if registered
        (date(2026, 11, 23), (date(2026, 11, 23),), DayKind.HOLIDAY),
        (date(2026, 11, 22), (date(2026, 11, 22),), DayKind.HOLIDAY),  # Sunday: holiday wins
        (date(2026, 11, 21), (date(2026, 11, 21),), DayKind.HOLIDAY),  # Saturday: holiday wins
        (date(2026, 11, 20), (date(2026, 11, 23),), DayKind.WEEKDAY),
    ],
)
def test_day_kind(day: date, holidays: tuple[date, ...], kind: DayKind) -> None:
    assert day_kind(day, frozenset(holidays)) is kind


def test_local_date_not_utc_date_decides_the_day_kind() -> None:
    # Friday 15:30 UTC is Saturday 00:30 in Tokyo.
    slot = local_slot(tenant(), utc(2026, 11, 20, 15, 30), [])
    assert (slot.day_kind, slot.index) == (DayKind.SATURDAY, 1)


@pytest.mark.parametrize(
    ("zone", "now", "local_hm"),
    [
        # Europe/Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC).
        ("Europe/Berlin", utc(2026, 3, 29, 0, 59, 59), (1, 59)),
        ("Europe/Berlin", utc(2026, 3, 29, 1, 0, 0), (3, 0)),
        # and falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC): 02:30 happens twice.
        ("Europe/Berlin", utc(2026, 10, 25, 0, 30), (2, 30)),
        ("Europe/Berlin", utc(2026, 10, 25, 1, 30), (2, 30)),
        # America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC).
        ("America/New_York", utc(2026, 3, 8, 6, 59), (1, 59)),
        ("America/New_York", utc(2026, 3, 8, 7, 0), (3, 0)),
        # 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC): 01:30 happens twice.
        ("America/New_York", utc(2026, 11, 1, 5, 30), (1, 30)),
        ("America/New_York", utc(2026, 11, 1, 6, 30), (1, 30)),
        ("America/New_York", utc(2026, 7, 1, 21, 59), (17, 59)),  # EDT, UTC-4
        ("America/New_York", utc(2026, 12, 1, 22, 59), (17, 59)),  # EST, UTC-5
    ],
)
def test_daylight_saving_uses_the_local_wall_clock(
    zone: str, now: datetime, local_hm: tuple[int, int]
) -> None:
    slot = local_slot(tenant(timezone=zone), now, [])
    hour, minute = local_hm
    assert (slot.local.hour, slot.local.minute) == local_hm
    assert slot.index == (hour * 60 + minute) // 30


def test_unknown_timezone_falls_back_to_tokyo_and_is_flagged() -> None:
    anomalies: list[str] = []
    slot = local_slot(tenant(timezone="Mars/Olympus"), jst(2026, 11, 20, 18, 0), anomalies)
    assert slot.index == 36
    assert anomalies == ["unknown-timezone:Mars/Olympus"]


# -- through decide(): business hours 09:00-18:00 on weekdays, announcement otherwise ---------

AFTER_HOURS = NumberOptions(after_hours=True)
ALL = LiveState(registered=frozenset("ABCDE"))


def route(now: datetime, **tenant_fields: object) -> object:
    snap = office(
        contract={"options": AFTER_HOURS, "after_hours": business_hours()},
        tenant_fields=tenant_fields,
    )
    return decide(Call.inbound(call_id="c1", dialled="0312345678"), snap, ALL, now)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (jst(2026, 11, 20, 8, 59, 59), Announce),
        (jst(2026, 11, 20, 9, 0, 0), Ring),
        (jst(2026, 11, 20, 17, 59, 59), Ring),
        (jst(2026, 11, 20, 18, 0, 0), Announce),
        (jst(2026, 11, 20, 23, 59, 59), Announce),
        (jst(2026, 11, 21, 12, 0, 0), Announce),  # Saturday
    ],
)
def test_business_hours_boundaries(now: datetime, expected: type) -> None:
    assert type(route(now)) is expected


def test_registered_holiday_on_a_weekday_closes_the_office() -> None:
    noon = jst(2026, 11, 23, 12, 0)
    assert isinstance(route(noon), Ring)
    assert isinstance(route(noon, holidays=frozenset({date(2026, 11, 23)})), Announce)


def test_holiday_schedule_applies_on_a_sunday_holiday() -> None:
    # Rings on holidays, announces on Sundays: a holiday that is a Sunday rings.
    hours = schedule(
        default=SlotAction.ANNOUNCE,
        slots={DayKind.HOLIDAY: dict.fromkeys(range(48), SlotAction.RING)},
    )
    sunday = date(2026, 11, 22)
    live = ALL
    call = Call.inbound(call_id="c1", dialled=CONTRACT)
    contract = {"options": AFTER_HOURS, "after_hours": hours}
    plain = office(contract=contract)
    holiday = office(contract=contract, tenant_fields={"holidays": frozenset({sunday})})
    noon = jst(2026, 11, 22, 12, 0)
    assert isinstance(decide(call, plain, live, noon), Announce)
    assert isinstance(decide(call, holiday, live, noon), Ring)


def test_berlin_tenant_business_hours_follow_summer_time() -> None:
    # 17:30 local is 16:30 UTC in winter and 15:30 UTC in summer.
    winter = route(utc(2026, 3, 27, 16, 30), timezone="Europe/Berlin")
    summer = route(utc(2026, 3, 30, 15, 30), timezone="Europe/Berlin")
    summer_after = route(utc(2026, 3, 30, 16, 30), timezone="Europe/Berlin")  # 18:30 CEST
    assert (type(winter), type(summer), type(summer_after)) == (Ring, Ring, Announce)


@pytest.mark.parametrize(
    ("zone", "now"),
    [
        ("America/New_York", datetime.min.replace(tzinfo=UTC)),
        ("Asia/Tokyo", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_times_at_the_edge_of_datetime_do_not_raise(zone: str, now: datetime) -> None:
    anomalies: list[str] = []
    slot = local_slot(tenant(timezone=zone), now, anomalies)
    assert anomalies == ["time-out-of-range"] and 0 <= slot.index < 48
