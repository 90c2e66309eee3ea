"""Statements: a tenant's billing month per ID, per number and per category."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from billing import (
    CallClass,
    Category,
    Direction,
    Rounding,
    StatementError,
    StatementRow,
    billing_month,
    build_statement,
)
from billing.classes import CallerKind
from provisioning.model import DeviceKind

from .helpers import call, rate

MAY = billing_month(2024, 5, "Asia/Tokyo")
N1, N2, TF = "+81312345678", "+81398765432", "+81120123456"


def row(
    direction: Direction,
    dest: str,
    seconds: int,
    *,
    device_id: str | None = None,
    number: str | None = None,
    kind: DeviceKind | None = None,
    plan: bool = False,
    caller: CallerKind | None = None,
    start: str = "2024-05-10T10:00:00+09:00",
    tenant: str = "t1",
) -> StatementRow:
    rated = rate(
        call(
            direction,
            dest,
            seconds,
            device=kind,
            plan=plan,
            caller=caller,
            start=datetime.fromisoformat(start),
        )
    )
    return StatementRow(tenant_id=tenant, call=rated, device_id=device_id, number=number)


def rows() -> list[StatementRow]:
    out, app, desk = Direction.OUTBOUND, DeviceKind.APP, DeviceKind.DESK
    return [
        # app "a" on the plan: 10:01 to a mobile (¥20, saves ¥400), 104 (¥265), unanswered
        row(out, "09012345678", 601, device_id="a", number=N1, kind=app, plan=True),
        row(out, "104", 20, device_id="a", number=N1, kind=app, plan=True),
        row(out, "09012345678", 0, device_id="a", number=N2, kind=app, plan=True),
        # desk "d": 3 min to a mobile (¥52.5), 3:01 to a landline (¥16)
        row(out, "09012345678", 180, device_id="d", number=N2, kind=desk),
        row(out, "0312340000", 181, device_id="d", number=N2, kind=desk),
        # forwarded leg of N1 to a mobile, 61 s (¥35); inbound to N1 on "a" (free)
        row(Direction.FORWARDED, "08011112222", 61, number=N1),
        row(Direction.INBOUND, N1, 300, device_id="a", number=N1),
        # toll-free from a payphone, 61 s (¥60), answered on "d"; internal a -> d (free)
        row(
            Direction.TOLL_FREE_INBOUND,
            TF,
            61,
            device_id="d",
            number=TF,
            caller=CallerKind.PAYPHONE,
            start="2024-05-25T23:59:59+09:00",
        ),
        row(
            Direction.INTERNAL, "desk1", 42, device_id="a", kind=app, start="2024-04-26T00:00+09:00"
        ),
    ]


def test_tenant_totals() -> None:
    s = build_statement(tenant_id="t1", month=MAY, rows=rows(), rounding=Rounding.DOWN)
    total = s.tenant.total
    assert (total.calls, total.answered) == (9, 8)
    assert total.seconds == 601 + 20 + 180 + 181 + 61 + 300 + 61 + 42
    assert total.charge.tenths == 200 + 2650 + 525 + 160 + 350 + 600
    assert (total.plan_free_seconds, total.plan_savings.tenths) == (600, 4000)
    assert s.payable_yen == 448  # ¥448.5 cut to whole yen
    assert s.tariff_versions == ("2021-06-26",)


def test_rounding_comes_from_the_caller() -> None:
    s = build_statement(tenant_id="t1", month=MAY, rows=rows(), rounding=Rounding.HALF_UP)
    assert s.payable_yen == 449


def test_per_id_and_per_number() -> None:
    s = build_statement(tenant_id="t1", month=MAY, rows=rows(), rounding=Rounding.DOWN)
    assert set(s.by_device) == {"a", "d"}
    a, d = s.by_device["a"].total, s.by_device["d"].total
    assert (a.calls, a.charge.tenths, a.plan_savings.tenths) == (5, 2850, 4000)
    assert (d.calls, d.charge.tenths, d.seconds) == (3, 525 + 160 + 600, 180 + 181 + 61)
    assert set(s.by_number) == {N1, N2, TF}
    n1 = s.by_number[N1].total
    assert (n1.calls, n1.charge.tenths) == (4, 200 + 2650 + 350)
    assert s.by_number[N2].total.charge.tenths == 525 + 160
    assert s.by_number[TF].total.charge.tenths == 600


def test_charges_by_category() -> None:
    s = build_statement(tenant_id="t1", month=MAY, rows=rows(), rounding=Rounding.DOWN)
    lines = {c.label: t for c, t in s.tenant.by_category.items()}
    assert {k: (t.calls, t.charge.tenths) for k, t in lines.items()} == {
        "outbound/mobile": (3, 200 + 525),
        "outbound/directory": (1, 2650),
        "outbound/landline": (1, 160),
        "forwarded/mobile": (1, 350),
        "inbound/inbound": (1, 0),
        "toll-free-inbound/toll-free/payphone": (1, 600),
        "internal/internal": (1, 0),
    }
    key = Category(direction=Direction.OUTBOUND, call_class=CallClass.MOBILE)
    assert s.by_device["a"].by_category[key].plan_savings.tenths == 4000
    assert lines["outbound/mobile"].seconds == 601 + 0 + 180
    assert str(lines["outbound/mobile"].minutes) == "13.02"  # 781 s / 60, for display


def test_an_empty_month() -> None:
    s = build_statement(tenant_id="t1", month=MAY, rows=[], rounding=Rounding.DOWN)
    assert (s.tenant.total.calls, s.payable_yen, s.by_device, s.tariff_versions) == (0, 0, {}, ())


@pytest.mark.parametrize(
    ("bad", "error_id"),
    [
        (lambda: row(Direction.INBOUND, N1, 1, tenant="t2"), "row-other-tenant"),
        (
            lambda: row(Direction.INBOUND, N1, 1, start="2024-05-26T00:00:00+09:00"),
            "row-outside-month",
        ),
        (
            lambda: row(Direction.INBOUND, N1, 1, start="2024-04-25T23:59:59+09:00"),
            "row-outside-month",
        ),
    ],
)
def test_rows_that_do_not_belong_are_refused(
    bad: Callable[[], StatementRow], error_id: str
) -> None:
    with pytest.raises(StatementError) as err:
        build_statement(
            tenant_id="t1",
            month=MAY,
            rows=[*rows(), bad()],
            rounding=Rounding.DOWN,
        )
    assert err.value.error_id == error_id
