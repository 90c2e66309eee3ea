"""Rating at every boundary of the shipped tariff (billing/tariffs.toml)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from billing import CallClass, Direction, RatingError, RatingInput
from billing.classes import CallerKind
from provisioning.model import DeviceKind

from .helpers import T0, call, rate

OUT, FWD, TFI = Direction.OUTBOUND, Direction.FORWARDED, Direction.TOLL_FREE_INBOUND
APP, DESK, ATA = DeviceKind.APP, DeviceKind.DESK, DeviceKind.ATA
LANDLINE, MOBILE, IP = "0312345678", "09012345678", "05012345678"
NAVI, DIR, FREE, OTHER = "0570123456", "104", "0120123456", "0180123456"
C = CallClass

# (direction, device, plan, destination, seconds) -> (class, units, charge ¥0.1, free s, saved ¥0.1)
OUTBOUND_CASES = [
    # the app: ¥20 per started 30 s
    (APP, False, LANDLINE, 0, C.LANDLINE, 0, 0, 0, 0),
    (APP, False, LANDLINE, 1, C.LANDLINE, 1, 200, 0, 0),
    (APP, False, LANDLINE, 30, C.LANDLINE, 1, 200, 0, 0),
    (APP, False, LANDLINE, 31, C.LANDLINE, 2, 400, 0, 0),
    (APP, False, MOBILE, 30, C.MOBILE, 1, 200, 0, 0),
    (APP, False, MOBILE, 31, C.MOBILE, 2, 400, 0, 0),
    (APP, False, IP, 601, C.IP_PHONE, 21, 4200, 0, 0),
    (APP, False, NAVI, 31, C.NAVI_DIAL, 2, 400, 0, 0),
    (APP, False, DIR, 31, C.DIRECTORY, 1, 2650, 0, 0),
    (APP, False, FREE, 3600, C.TOLL_FREE, 1, 0, 0, 0),
    (APP, False, OTHER, 31, C.OTHER, 2, 400, 0, 0),
    # the 10-minute plan: the first 600 s free, then ¥20 per started 30 s
    (APP, True, MOBILE, 0, C.MOBILE, 0, 0, 0, 0),
    (APP, True, MOBILE, 59, C.MOBILE, 0, 0, 59, 400),
    (APP, True, MOBILE, 600, C.MOBILE, 0, 0, 600, 4000),
    (APP, True, MOBILE, 601, C.MOBILE, 1, 200, 600, 4000),
    (APP, True, MOBILE, 630, C.MOBILE, 1, 200, 600, 4000),
    (APP, True, MOBILE, 631, C.MOBILE, 2, 400, 600, 4000),
    (APP, True, LANDLINE, 600, C.LANDLINE, 0, 0, 600, 4000),
    (APP, True, LANDLINE, 601, C.LANDLINE, 1, 200, 600, 4000),
    (APP, True, IP, 601, C.IP_PHONE, 1, 200, 600, 4000),
    (APP, True, "+819012345678", 601, C.MOBILE, 1, 200, 600, 4000),
    (APP, True, "184-090-1234-5678", 601, C.MOBILE, 1, 200, 600, 4000),
    # …not covered: 0570 at ¥20/30 s, 104 at ¥265 a call, "other" like 0570
    (APP, True, NAVI, 600, C.NAVI_DIAL, 20, 4000, 0, 0),
    (APP, True, NAVI, 601, C.NAVI_DIAL, 21, 4200, 0, 0),
    (APP, True, DIR, 0, C.DIRECTORY, 0, 0, 0, 0),
    (APP, True, DIR, 1, C.DIRECTORY, 1, 2650, 0, 0),
    (APP, True, DIR, 601, C.DIRECTORY, 1, 2650, 0, 0),
    (APP, True, OTHER, 600, C.OTHER, 20, 4000, 0, 0),
    (APP, True, FREE, 601, C.TOLL_FREE, 1, 0, 0, 0),
    # desk phone: ¥8 per started 3 min to landlines, ¥17.5 per started minute to mobiles
    (DESK, False, LANDLINE, 0, C.LANDLINE, 0, 0, 0, 0),
    (DESK, False, LANDLINE, 1, C.LANDLINE, 1, 80, 0, 0),
    (DESK, False, LANDLINE, 180, C.LANDLINE, 1, 80, 0, 0),
    (DESK, False, LANDLINE, 181, C.LANDLINE, 2, 160, 0, 0),
    (DESK, False, MOBILE, 60, C.MOBILE, 1, 175, 0, 0),
    (DESK, False, MOBILE, 61, C.MOBILE, 2, 350, 0, 0),
    (DESK, False, MOBILE, 180, C.MOBILE, 3, 525, 0, 0),
    (DESK, False, IP, 61, C.IP_PHONE, 2, 350, 0, 0),
    (DESK, False, NAVI, 31, C.NAVI_DIAL, 2, 400, 0, 0),
    (DESK, False, DIR, 5, C.DIRECTORY, 1, 2650, 0, 0),
    (DESK, False, FREE, 600, C.TOLL_FREE, 1, 0, 0, 0),
    (DESK, False, OTHER, 31, C.OTHER, 2, 400, 0, 0),
    # ATA: the desk phone's rates
    (ATA, False, LANDLINE, 180, C.LANDLINE, 1, 80, 0, 0),
    (ATA, False, LANDLINE, 181, C.LANDLINE, 2, 160, 0, 0),
    (ATA, False, MOBILE, 1, C.MOBILE, 1, 175, 0, 0),
    (ATA, False, IP, 60, C.IP_PHONE, 1, 175, 0, 0),
]


@pytest.mark.parametrize(
    ("device", "plan", "dest", "seconds", "cls", "units", "charge", "free", "saved"),
    OUTBOUND_CASES,
)
def test_outbound(
    device: DeviceKind,
    plan: bool,
    dest: str,
    seconds: int,
    cls: CallClass,
    units: int,
    charge: int,
    free: int,
    saved: int,
) -> None:
    rated = rate(call(OUT, dest, seconds, device=device, plan=plan))
    got = (rated.call_class, rated.units, rated.charge.tenths, rated.free_seconds)
    assert got == (cls, units, charge, free)
    assert rated.plan_savings.tenths == saved
    assert rated.tariff_version == "2021-06-26"
    assert rated.direction is OUT and rated.billable_seconds == seconds


FORWARDED_CASES = [
    (LANDLINE, 0, C.LANDLINE, 0, 0),
    (LANDLINE, 180, C.LANDLINE, 1, 80),
    (LANDLINE, 181, C.LANDLINE, 2, 160),
    (MOBILE, 60, C.MOBILE, 1, 175),
    (MOBILE, 61, C.MOBILE, 2, 350),
    (MOBILE, 600, C.MOBILE, 10, 1750),
    (IP, 60, C.IP_PHONE, 1, 175),
    (IP, 61, C.IP_PHONE, 2, 350),
    ("+81312345678", 181, C.LANDLINE, 2, 160),
]


@pytest.mark.parametrize("plan", [False, True])
@pytest.mark.parametrize(("dest", "seconds", "cls", "units", "charge"), FORWARDED_CASES)
def test_forwarded_leg_is_never_covered_by_the_plan(
    plan: bool, dest: str, seconds: int, cls: CallClass, units: int, charge: int
) -> None:
    rated = rate(call(FWD, dest, seconds, device=APP, plan=plan))
    assert (rated.call_class, rated.units, rated.charge.tenths) == (cls, units, charge)
    assert (rated.free_seconds, rated.plan_savings.tenths) == (0, 0)


TOLL_FREE_CASES = [
    (CallerKind.LANDLINE, 0, 0, 0),
    (CallerKind.LANDLINE, 1, 1, 70),
    (CallerKind.LANDLINE, 60, 1, 70),
    (CallerKind.LANDLINE, 61, 2, 140),
    (CallerKind.MOBILE, 60, 1, 200),
    (CallerKind.MOBILE, 61, 2, 400),
    (CallerKind.PAYPHONE, 1, 1, 300),
    (CallerKind.PAYPHONE, 60, 1, 300),
    (CallerKind.PAYPHONE, 121, 3, 900),
]


@pytest.mark.parametrize("dest", ["0120123456", "+818001234567"])
@pytest.mark.parametrize(("caller", "seconds", "units", "charge"), TOLL_FREE_CASES)
def test_toll_free_inbound_charged_to_the_tenant_by_caller_kind(
    dest: str, caller: CallerKind, seconds: int, units: int, charge: int
) -> None:
    rated = rate(call(TFI, dest, seconds, caller=caller))
    assert (rated.call_class, rated.caller_kind) == (C.TOLL_FREE, caller)
    assert (rated.units, rated.charge.tenths) == (units, charge)


@pytest.mark.parametrize(
    ("direction", "dest", "device", "cls"),
    [
        (Direction.INTERNAL, "alice", APP, C.INTERNAL),
        (Direction.INTERNAL, "0312345678", DESK, C.INTERNAL),
        (Direction.INBOUND, "0312345678", None, C.INBOUND),
        (Direction.INBOUND, "+81312345678", DESK, C.INBOUND),
    ],
)
@pytest.mark.parametrize("seconds", [0, 1, 3600])
def test_internal_and_inbound_calls_are_free(
    direction: Direction, dest: str, device: DeviceKind | None, cls: CallClass, seconds: int
) -> None:
    rated = rate(call(direction, dest, seconds, device=device, plan=device is APP))
    assert (rated.call_class, rated.units, rated.charge.tenths) == (cls, 0, 0)
    assert rated.rate is None and rated.billable_seconds == seconds


@pytest.mark.parametrize(
    ("dest", "cls"),
    [
        ("110", C.EMERGENCY),
        ("118", C.EMERGENCY),
        ("119", C.EMERGENCY),
        ("184119", C.EMERGENCY),
        ("+12125551234", C.INTERNATIONAL),
        ("01012125551234", C.INTERNATIONAL),
        ("117", C.BARRED),
        ("031234", C.BARRED),
    ],
)
@pytest.mark.parametrize("direction", [OUT, FWD])
def test_refused_destinations_rate_to_nothing_unanswered_and_fail_answered(
    dest: str, cls: CallClass, direction: Direction
) -> None:
    rated = rate(call(direction, dest, 0, device=APP, plan=True))
    assert (rated.call_class, rated.charge.tenths) == (cls, 0)
    with pytest.raises(RatingError) as err:
        rate(call(direction, dest, 1, device=APP))
    assert err.value.error_id == "refused-destination-answered"


def test_unanswered_outbound_calls_cost_nothing_on_any_device() -> None:
    for device in DeviceKind:
        for dest in (LANDLINE, MOBILE, IP, NAVI, DIR, FREE, OTHER):
            assert rate(call(OUT, dest, 0, device=device)).charge.tenths == 0


@pytest.mark.parametrize(
    ("make", "error_id"),
    [
        (lambda: call(OUT, MOBILE, 60, device=DESK, plan=True), "plan-not-for-device"),
        (lambda: call(OUT, MOBILE, 60, device=ATA, plan=True), "plan-not-for-device"),
        (lambda: call(OUT, MOBILE, 60), "missing-device-kind"),
        (lambda: call(TFI, FREE, 60), "caller-kind-mismatch"),
        (
            lambda: call(Direction.INBOUND, LANDLINE, 60, caller=CallerKind.MOBILE),
            "caller-kind-mismatch",
        ),
        (lambda: call(OUT, MOBILE, -1, device=APP), "bad-billable-seconds"),
        (lambda: call(OUT, MOBILE, True, device=APP), "bad-billable-seconds"),
        (lambda: call(OUT, " ", 1, device=APP), "empty-destination"),
        (
            lambda: call(OUT, MOBILE, 1, device=APP, start=datetime(2024, 5, 1)),
            "naive-instant",
        ),
        (
            lambda: call(OUT, MOBILE, 1, device=APP, start=T0.replace(year=2021, month=6, day=25)),
            "no-tariff-in-force",
        ),
        (lambda: call(TFI, LANDLINE, 60, caller=CallerKind.LANDLINE), "not-a-toll-free-number"),
        (lambda: call(FWD, DIR, 60), "no-forwarded-rate"),
    ],
)
def test_bad_calls_are_refused_with_a_stable_error_id(
    make: Callable[[], RatingInput], error_id: str
) -> None:
    with pytest.raises(RatingError) as err:
        rate(make())
    assert err.value.error_id == error_id
    assert err.value.to_dict()["error_id"] == error_id


def test_a_desk_phone_with_the_plan_calling_a_refused_number_is_still_refused_cleanly() -> None:
    rated = rate(call(OUT, "110", 0, device=DESK, plan=True))
    assert rated.call_class is C.EMERGENCY


def test_the_shipped_tariff_starts_with_the_2021_service() -> None:
    start = datetime.fromisoformat("2021-06-26T00:00:00+09:00")
    assert rate(call(OUT, MOBILE, 30, device=APP, start=start)).charge.tenths == 200
    with pytest.raises(RatingError):
        rate(call(OUT, MOBILE, 30, device=APP, start=start - timedelta(microseconds=1)))
