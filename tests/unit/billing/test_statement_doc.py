"""Statements from CDRs (billing.statement_doc): the same totals as build_statement over the
rated calls, the shape the API documents, fair-use flags, months and their open flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing import build_statement, default_tariffs
from billing.cdr_rating import rate_record, statement_row
from billing.fair_use import FairUseWatch
from billing.money import Rounding
from billing.month import billing_month_from_label
from billing.statement_doc import CdrStatements
from provisioning.api.resources.statements import STATEMENT
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord

TABLE = default_tariffs()
BUILDER = CdrStatements(TABLE)
NOW = datetime(2024, 5, 20, 3, 0, tzinfo=UTC)  # inside billing month 2024-05 (Tokyo)
DAY = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)
_n = 0


def call(
    direction: CallDirection, seconds: int, start: datetime = DAY, **fields: Any
) -> CallRecord:
    global _n
    _n += 1
    record = CallRecord(
        cdr_id=f"cdr-{_n}", call_id=f"c{_n}", node="n", tenant_id="t1", direction=direction,
        outcome=CallOutcome.ANSWERED if seconds else CallOutcome.NO_ANSWER, dialled="x",
        started_at=start, answered_at=start if seconds else None,
        ended_at=start + timedelta(seconds=seconds), billable_seconds=seconds, **fields,
    )  # fmt: skip
    return rate_record(record, TABLE, "Asia/Tokyo")


def app_call(
    seconds: int, start: datetime = DAY, device: str = "d1", plan: bool = True
) -> CallRecord:
    return call(CallDirection.OUTBOUND, seconds, start, callee="+819011112222",
                caller_device=device, caller_device_kind=DeviceKind.APP, has_plan=plan,
                number="+81312345678")  # fmt: skip


def sheet_of(records: list[CallRecord], *, detail: bool = True) -> dict[str, Any]:
    month = BUILDER.month("2024-05", "Asia/Tokyo", NOW)
    assert month is not None
    sheet = BUILDER.sheet("t1", month, detail=detail)
    for r in records:
        sheet.add(r)
    return sheet.document()


def test_totals_are_build_statements_and_the_document_matches_the_api_schema() -> None:
    records = [
        app_call(61, plan=False),
        app_call(601),
        call(CallDirection.OUTBOUND, 180, callee="+819011112222", caller_device="d2",
             caller_device_kind=DeviceKind.DESK, number="+81312345678"),
        call(CallDirection.FORWARDED, 61, forwarded_to="+819011113333", number="+81312345679"),
        call(CallDirection.INBOUND, 30, number="+81312345678", answered_device="d2"),
        call(CallDirection.INBOUND, 0, number="+81312345678"),
    ]  # fmt: skip
    doc = sheet_of(records)
    month = BUILDER.month("2024-05", "Asia/Tokyo", NOW)
    assert month is not None
    rows = [r for r in map(statement_row, records) if r is not None]
    expected = build_statement(
        tenant_id="t1", month=billing_month_from_label("2024-05", "Asia/Tokyo"), rows=rows,
        rounding=Rounding.DOWN,
    )  # fmt: skip
    total = expected.tenant.total
    assert doc["total"]["charge_tenths"] == total.charge.tenths == 600 + 200 + 525 + 350
    assert doc["payable_yen"] == expected.payable_yen == 167  # ¥167.5 rounded down
    assert doc["total"]["plan_savings_tenths"] == 4000  # 600 s free at ¥20/30 s
    assert (doc["total"]["calls"], doc["total"]["answered"]) == (6, 5)
    assert doc["total"]["minutes"] == str(total.minutes)
    assert {d["device_id"] for d in doc["by_device"]} == {"d1", "d2"}
    by_number = {n["number"]: n["total"]["charge_tenths"] for n in doc["by_number"]}
    assert by_number == {"+81312345678": 600 + 200 + 525, "+81312345679": 350}
    categories = {c["category"]: c["charge_tenths"] for c in doc["by_category"]}
    assert categories == {
        "outbound/mobile": 1325, "forwarded/mobile": 350, "inbound/inbound": 0,
    }  # fmt: skip
    assert (doc["open"], doc["month"], doc["unrated_calls"], doc["tariff_versions"]) == (
        True, "2024-05", 0, ["2021-06-26"],
    )  # fmt: skip
    STATEMENT.validate(doc)  # the API's documented shape, additionalProperties false


def test_operator_summary_leaves_out_the_detail() -> None:
    doc = sheet_of([app_call(61)], detail=False)
    assert "by_device" not in doc and "by_number" not in doc
    STATEMENT.validate(doc)


def test_unrated_calls_are_counted_not_priced() -> None:
    bad = call(CallDirection.OUTBOUND, 60, callee="+81311112222", caller_device="d2",
               caller_device_kind=DeviceKind.DESK, has_plan=True)  # fmt: skip
    assert bad.rating is None
    doc = sheet_of([bad, app_call(30, plan=False)])
    assert (doc["unrated_calls"], doc["total"]["calls"]) == (1, 1)


def test_fair_use_flags_an_id_at_thirty_calls_a_local_day() -> None:
    # 29 calls of d1 on the 10th (Tokyo) + 1 at 23:59:59 Tokyo = 30; the 31st call is
    # at 00:00:01 on the 11th (Tokyo): a new day. d2 (no plan) makes 40: never flagged.
    day = datetime(2024, 5, 10, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    calls = [app_call(10, day + timedelta(minutes=i)) for i in range(29)]
    calls.append(app_call(10, datetime(2024, 5, 10, 14, 59, 59, tzinfo=UTC)))
    calls.append(app_call(10, datetime(2024, 5, 10, 15, 0, 1, tzinfo=UTC)))
    calls += [app_call(10, day + timedelta(minutes=i), device="d2", plan=False) for i in range(40)]
    doc = sheet_of(calls)
    assert doc["fair_use_flagged"] == ["d1"]
    d1 = next(d for d in doc["by_device"] if d["device_id"] == "d1")
    assert d1["fair_use"] == {"flagged": True, "days": [{"date": "2024-05-10", "calls": 30}]}
    d2 = next(d for d in doc["by_device"] if d["device_id"] == "d2")
    assert d2["fair_use"] == {"flagged": False, "days": []}
    assert sheet_of(calls[:29])["fair_use_flagged"] == []


def test_the_live_fair_use_watch_flags_once_per_day() -> None:
    plan = TABLE.versions[0].plan
    watch = FairUseWatch()
    day = datetime(2024, 5, 10, 0, 0, tzinfo=UTC)
    flags = [watch.observe("d1", day + timedelta(minutes=i), "Asia/Tokyo", plan) for i in range(35)]
    assert flags.index(True) == 29 and flags.count(True) == 1
    assert watch.flagged_at(day) == 1
    assert watch.flagged_at(datetime(2024, 5, 10, 15, 0, tzinfo=UTC)) == 0  # next Tokyo day
    next_day = [watch.observe("d1", day + timedelta(days=1, minutes=i), "Asia/Tokyo", plan)
                for i in range(30)]  # fmt: skip
    assert next_day.count(True) == 1
    assert watch.observe("d1", day, "Asia/Tokyo", plan) is False  # a late record of a past day


@pytest.mark.parametrize(
    ("label", "now", "expected"),
    [
        (None, NOW, ("2024-05", True)),
        ("2024-04", NOW, ("2024-04", False)),
        ("2024-05", datetime(2024, 5, 25, 15, 0, tzinfo=UTC), ("2024-05", False)),  # closed
        ("2024-13", NOW, None),
        ("current", NOW, None),
        ("24-05", NOW, None),
    ],
)
def test_months(label: str | None, now: datetime, expected: tuple[str, bool] | None) -> None:
    month = BUILDER.month(label, "Asia/Tokyo", now)
    assert (None if month is None else (month.label, month.is_open)) == expected


def test_an_unknown_zone_falls_back_to_tokyo() -> None:
    month = BUILDER.month("2024-05", "Mars/Olympus", NOW)
    assert month is not None and month.timezone == "Asia/Tokyo"
