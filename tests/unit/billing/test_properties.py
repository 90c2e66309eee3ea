"""Properties of rating, months and statements for any call, tariff version and time zone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing import (
    REFUSED_CLASSES,
    Direction,
    Money,
    RatedCall,
    RatingInput,
    Rounding,
    StatementRow,
    billing_month,
    billing_month_of,
    build_statement,
    default_tariffs,
    rate_call,
)
from billing.classes import CallerKind
from provisioning.model import DeviceKind

TABLE = default_tariffs()
DESTINATIONS = [
    "0312345678",
    "09012345678",
    "08012345678",
    "07012345678",
    "05012345678",
    "0570123456",
    "0120123456",
    "08001234567",
    "104",
    "0180123456",
    "+81612345678",
]
TOLL_FREE = ["0120123456", "+818001234567"]
ZONES = [
    "Asia/Tokyo",
    "UTC",
    "America/Los_Angeles",
    "Europe/London",
    "Africa/Cairo",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
]

instants = st.datetimes(
    min_value=datetime(2021, 7, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
seconds = st.integers(min_value=0, max_value=4 * 3600)


@st.composite
def calls(draw: st.DrawFn, direction: Direction | None = None) -> RatingInput:
    d = draw(st.sampled_from(list(Direction))) if direction is None else direction
    device = draw(st.sampled_from(list(DeviceKind)))
    toll_free = d is Direction.TOLL_FREE_INBOUND
    dest = draw(st.sampled_from(TOLL_FREE if toll_free else DESTINATIONS))
    if d is Direction.FORWARDED and dest == "104":
        dest = "0312345678"
    return RatingInput(
        direction=d,
        start=draw(instants),
        billable_seconds=draw(seconds),
        destination=dest,
        device_kind=device,
        has_plan=device is DeviceKind.APP and draw(st.booleans()),
        caller_kind=draw(st.sampled_from(list(CallerKind))) if toll_free else None,
    )


def _with(call: RatingInput, **changes: Any) -> RatingInput:
    return dataclasses.replace(call, **changes)


@given(calls(), seconds, seconds)
def test_charge_is_monotone_in_duration(call: RatingInput, a: int, b: int) -> None:
    short, long = sorted((a, b))
    cheap = rate_call(_with(call, billable_seconds=short), TABLE)
    dear = rate_call(_with(call, billable_seconds=long), TABLE)
    assert cheap.charge <= dear.charge
    assert cheap.units <= dear.units


@given(calls(Direction.OUTBOUND))
def test_the_plan_never_increases_a_charge_and_saves_exactly_the_difference(
    call: RatingInput,
) -> None:
    app = _with(call, device_kind=DeviceKind.APP)
    with_plan = rate_call(_with(app, has_plan=True), TABLE)
    without = rate_call(_with(app, has_plan=False), TABLE)
    assert with_plan.charge <= without.charge
    assert with_plan.charge + with_plan.plan_savings == without.charge
    assert without.plan_savings == Money(tenths=0) and without.free_seconds == 0
    assert with_plan.free_seconds <= min(600, call.billable_seconds)
    if call.billable_seconds <= 600 and with_plan.free_seconds == call.billable_seconds:
        assert with_plan.charge == Money(tenths=0)


@given(calls())
def test_a_charge_is_whole_units_of_the_rate(call: RatingInput) -> None:
    rated = rate_call(call, TABLE)
    if rated.rate is None:
        assert rated.charge == Money(tenths=0) and rated.units == 0
        return
    assert rated.charge == rated.rate.price * rated.units
    charged = call.billable_seconds - rated.free_seconds
    unit = rated.rate.unit_seconds
    expected = (1 if charged > 0 else 0) if unit is None else -(-charged // unit)
    assert rated.units == expected


@given(calls())
def test_unanswered_calls_cost_nothing(call: RatingInput) -> None:
    rated = rate_call(_with(call, billable_seconds=0), TABLE)
    assert (rated.charge, rated.units, rated.free_seconds) == (Money(tenths=0), 0, 0)
    assert rated.call_class not in REFUSED_CLASSES


@given(calls(Direction.FORWARDED))
def test_forwarded_legs_ignore_the_plan(call: RatingInput) -> None:
    a = rate_call(_with(call, has_plan=True, device_kind=DeviceKind.APP), TABLE)
    b = rate_call(_with(call, has_plan=False), TABLE)
    assert a.charge == b.charge and a.plan_savings == Money(tenths=0)


@given(instants, st.sampled_from(ZONES))
@settings(max_examples=300)
def test_every_instant_lies_in_its_billing_month(instant: datetime, zone: str) -> None:
    month = billing_month_of(instant, zone)
    assert instant in month
    assert month.following().start == month.end
    assert month.preceding().end == month.start
    assert billing_month_of(month.start, zone) == month
    assert billing_month_of(month.end - timedelta(microseconds=1), zone) == month
    assert timedelta(days=27) < month.end - month.start < timedelta(days=32)


@given(st.lists(calls(), max_size=40), st.sampled_from(list(Rounding)))
def test_a_statement_adds_up(inputs: list[RatingInput], rounding: Rounding) -> None:
    month = billing_month(2030, 6, "Asia/Tokyo")
    span = month.end - month.start
    rows = []
    for i, c in enumerate(inputs):
        start = month.start + span * ((i * 7919) % 1000) / 1000
        rated: RatedCall = rate_call(_with(c, start=start), TABLE)
        rows.append(
            StatementRow(
                tenant_id="t",
                call=rated,
                device_id=None if i % 3 == 0 else f"id{i % 4}",
                number=f"+8131234567{i % 2}",
            )
        )
    s = build_statement(tenant_id="t", month=month, rows=rows, rounding=rounding)
    total = sum((r.call.charge for r in rows), Money(tenths=0))
    assert s.tenant.total.charge == total
    assert sum((t.charge for t in s.tenant.by_category.values()), Money(tenths=0)) == total
    assert sum((b.total.charge for b in s.by_number.values()), Money(tenths=0)) == total
    by_device = sum((b.total.charge for b in s.by_device.values()), Money(tenths=0))
    no_device = sum((r.call.charge for r in rows if r.device_id is None), Money(tenths=0))
    assert by_device + no_device == total
    assert s.tenant.total.calls == len(rows)
    assert abs(s.payable_yen * 10 - total.tenths) < 10
