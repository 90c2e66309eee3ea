"""Rating CDRs (billing.cdr_rating) and their spool form (billing.cdr_codec): table-driven,
every direction, and the stored rating reads back as the very RatedCall rating produced."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing import CallClass, Direction, Money, default_tariffs, rate_call
from billing.cdr_codec import decode, encode
from billing.cdr_rating import rate_record, rated_call, rating_input, statement_row
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord

START = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, billing month 2024-05
TABLE = default_tariffs()


def cdr(direction: CallDirection, seconds: int = 0, **fields: Any) -> CallRecord:
    answered = START + timedelta(seconds=2) if seconds else None
    base: dict[str, Any] = {
        "cdr_id": "cdr-1",
        "call_id": "call-1",
        "node": "n1",
        "tenant_id": "t1",
        "direction": direction,
        "outcome": CallOutcome.ANSWERED if seconds else CallOutcome.NO_ANSWER,
        "dialled": "0312345678",
        "started_at": START,
        "answered_at": answered,
        "ended_at": START + timedelta(seconds=2 + seconds),
        "billable_seconds": seconds,
    }
    return CallRecord(**{**base, **fields})


APP = {"caller_device": "d1", "caller_device_kind": DeviceKind.APP}
DESK = {"caller_device": "d2", "caller_device_kind": DeviceKind.DESK}

# (record, billing direction, class, charge in tenths of a yen, plan savings in tenths)
CASES = [
    # app: ¥20/30 s; 61 s = 3 units
    (cdr(CallDirection.OUTBOUND, 61, callee="+819011112222", **APP), "outbound", "mobile", 600, 0),
    # app with the 10-minute plan: 601 s = 600 free + 1 unit
    (cdr(CallDirection.OUTBOUND, 601, callee="+819011112222", has_plan=True, **APP),
     "outbound", "mobile", 200, 4000),
    # the plan does not cover 0570
    (cdr(CallDirection.OUTBOUND, 60, callee="+81570123456", has_plan=True, **APP),
     "outbound", "navi-dial", 400, 0),
    # desk phone to a landline: ¥8/3 min; to a mobile: ¥17.5/min (3 min = ¥52.5)
    (cdr(CallDirection.OUTBOUND, 181, callee="+81311112222", **DESK),
     "outbound", "landline", 160, 0),
    (cdr(CallDirection.OUTBOUND, 180, callee="+819011112222", **DESK),
     "outbound", "mobile", 525, 0),
    # 104: per answered call
    (cdr(CallDirection.OUTBOUND, 30, callee="104", **DESK), "outbound", "directory", 2650, 0),
    # refused: 110, unanswered, free; an empty dialled string is "barred"
    (cdr(CallDirection.OUTBOUND, 0, callee="110", dialled="110", **APP),
     "outbound", "emergency", 0, 0),
    (cdr(CallDirection.OUTBOUND, 0, callee=None, dialled="", **APP), "outbound", "barred", 0, 0),
    # forwarded leg to a mobile: ¥17.5/min, never the plan
    (cdr(CallDirection.FORWARDED, 61, forwarded_to="+819011113333", number="+81312345678",
         has_plan=True), "forwarded", "mobile", 350, 0),
    # inbound: free; toll-free inbound from a mobile: ¥20/60 s, payphone (cpc) ¥30/60 s
    (cdr(CallDirection.INBOUND, 300, number="+81312345678", caller="+819011112222"),
     "inbound", "inbound", 0, 0),
    (cdr(CallDirection.INBOUND, 61, number="+81120123456", caller="+819011112222"),
     "toll-free-inbound", "toll-free", 400, 0),
    (cdr(CallDirection.INBOUND, 60, number="+81120123456", caller="+81311112222",
         caller_category="payphone"), "toll-free-inbound", "toll-free", 300, 0),
    # an unknown number called: no tenant number, free
    (cdr(CallDirection.INBOUND, 0, number=None, dialled="", tenant_id=None),
     "inbound", "inbound", 0, 0),
    # internal: free
    (cdr(CallDirection.INTERNAL, 100, callee="user-a", **APP), "internal", "internal", 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(("record", "direction", "call_class", "charge", "saved"), CASES)
def test_rate_record(
    record: CallRecord, direction: str, call_class: str, charge: int, saved: int
) -> None:
    rated = rate_record(record, TABLE, "Asia/Tokyo")
    g = rated.rating
    assert g is not None and rated.rating_error is None
    assert (g.rated_as, g.call_class, g.charge, g.plan_savings) == (
        direction, call_class, charge, saved,
    )  # fmt: skip
    assert (rated.billing_month, g.tariff_version, rated.charge) == (
        "2024-05",
        "2021-06-26",
        charge,
    )
    # the stored rating is exactly what rating produced
    assert rated_call(rated) == rate_call(rating_input(record), TABLE)
    assert decode(encode(rated)) == rated


def test_billing_month_is_the_tenants() -> None:
    late = START.replace(day=25, hour=15, minute=30)  # 26th 00:30 in Tokyo, 25th in New York
    record = cdr(CallDirection.INBOUND, 0, started_at=late, ended_at=late)
    assert rate_record(record, TABLE, "Asia/Tokyo").billing_month == "2024-06"
    assert rate_record(record, TABLE, "America/New_York").billing_month == "2024-05"
    assert rate_record(record, TABLE, "Not/AZone").billing_month == "2024-06"  # falls back


def test_unratable_records_keep_their_month_and_say_why() -> None:
    before_tariffs = datetime(2020, 1, 10, tzinfo=UTC)
    record = cdr(CallDirection.OUTBOUND, 0, started_at=before_tariffs, ended_at=before_tariffs,
                 callee="+81311112222", **DESK)  # fmt: skip
    rated = rate_record(record, TABLE, "Asia/Tokyo")
    assert (rated.rating, rated.rating_error, rated.billing_month) == (
        None, "no-tariff-in-force", "2020-01",
    )  # fmt: skip
    assert rated_call(rated) is None and statement_row(rated) is None
    # a desk phone cannot have the plan: refused by rating, the CDR kept
    bad = cdr(CallDirection.OUTBOUND, 60, callee="+81311112222", has_plan=True, **DESK)
    assert rate_record(bad, TABLE, "Asia/Tokyo").rating_error == "plan-not-for-device"


def test_statement_rows_charge_the_caller_else_the_answering_id() -> None:
    out = rate_record(
        cdr(CallDirection.OUTBOUND, 61, callee="+819011112222", number="+81312345678", **APP),
        TABLE,
        "Asia/Tokyo",
    )
    row = statement_row(out)
    assert row is not None and (row.device_id, row.number, row.tenant_id) == (
        "d1", "+81312345678", "t1",
    )  # fmt: skip
    assert row.call.charge == Money(tenths=600) and row.call.direction is Direction.OUTBOUND
    inbound = rate_record(
        cdr(CallDirection.INBOUND, 10, number="+81312345678", answered_device="d3"),
        TABLE,
        "Asia/Tokyo",
    )
    row = statement_row(inbound)
    assert row is not None and (row.device_id, row.call.call_class) == ("d3", CallClass.INBOUND)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "{",
        "[]",
        '{"v": 2}',
        encode(cdr(CallDirection.INBOUND)).replace('"v":1', '"v":9'),
        encode(cdr(CallDirection.INBOUND)).replace('"direction":"inbound"', '"direction":"up"'),
        encode(cdr(CallDirection.INBOUND)).replace(
            '"billable_seconds":0', '"billable_seconds":"0"'
        ),
        encode(cdr(CallDirection.INBOUND))[:-5],  # a torn line
    ],
)
def test_the_codec_refuses_what_is_not_a_cdr_line(line: str) -> None:
    with pytest.raises(ValueError):
        decode(line)


def test_the_codec_keeps_everything_and_one_line() -> None:
    record = cdr(CallDirection.INBOUND, 30, number="+81312345678", caller="Nom\n\u00e9",
                 rang=("a", "b"), shown_to=("c",), answered_device="a",
                 answered_device_kind=DeviceKind.DESK, sip_status=200, end_reason="bye",
                 rule="inbound-ring", recorded=True)  # fmt: skip
    line = encode(record)
    assert "\n" not in line
    assert decode(line) == record
    rated = rate_record(record, TABLE, "Asia/Tokyo")
    assert decode(encode(rated)) == rated
    assert replace(decode(encode(rated)), rating=None) != rated
