"""Money in tenths of a yen; destination classes and toll-free caller kinds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import (
    DESTINATION_CLASSES,
    CallClass,
    Money,
    Rounding,
    caller_kind_for,
    destination_class,
)
from billing.classes import CallerKind
from routing.decisions import DestinationKind


@pytest.mark.parametrize(
    ("text", "tenths"),
    [("0", 0), ("8", 80), ("17.5", 175), ("265", 2650), ("0.1", 1), ("1000000", 10000000)],
)
def test_parse(text: str, tenths: int) -> None:
    assert Money.parse(text) == Money(tenths=tenths)


@pytest.mark.parametrize("text", ["", "17.55", "-1", "+1", "1e3", "01", ".5", "5.", "1,000", " 8"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="at most one decimal place"):
        Money.parse(text)


def test_money_refuses_floats_and_bools() -> None:
    for bad in (17.5, True, Decimal("1")):
        with pytest.raises(TypeError):
            Money(tenths=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tenths", "text", "down", "half_up", "up"),
    [
        (0, "¥0", 0, 0, 0),
        (80, "¥8", 8, 8, 8),
        (175, "¥17.5", 17, 18, 18),
        (4484, "¥448.4", 448, 448, 449),
        (12345675, "¥1,234,567.5", 1234567, 1234568, 1234568),
        (-200, "-¥20", -20, -20, -20),
    ],
)
def test_display_and_rounding(tenths: int, text: str, down: int, half_up: int, up: int) -> None:
    m = Money(tenths=tenths)
    assert str(m) == text
    assert [m.whole_yen(r) for r in (Rounding.DOWN, Rounding.HALF_UP, Rounding.UP)] == [
        down,
        half_up,
        up,
    ]
    assert m.decimal == Decimal(tenths) / 10


def test_arithmetic_is_exact() -> None:
    assert Money.parse("17.5") * 3 == Money.parse("52.5")
    assert sum((Money.parse("0.1") for _ in range(10)), Money(tenths=0)) == Money.yen(1)
    assert Money.yen(20) - Money.parse("17.5") == Money.parse("2.5")


def test_every_routing_destination_kind_is_a_rating_class() -> None:
    assert [c.value for c in DESTINATION_CLASSES] == [k.value for k in DestinationKind]


@pytest.mark.parametrize(
    ("dialled", "cls"),
    [
        ("0312345678", CallClass.LANDLINE),
        ("0612345678", CallClass.LANDLINE),
        ("+81312345678", CallClass.LANDLINE),
        ("tel:+81-3-1234-5678", CallClass.LANDLINE),
        ("07012345678", CallClass.MOBILE),
        ("08012345678", CallClass.MOBILE),
        ("09012345678", CallClass.MOBILE),
        ("05012345678", CallClass.IP_PHONE),
        ("0570123456", CallClass.NAVI_DIAL),
        ("0120123456", CallClass.TOLL_FREE),
        ("08001234567", CallClass.TOLL_FREE),
        ("104", CallClass.DIRECTORY),
        ("184104", CallClass.DIRECTORY),
        ("0180123456", CallClass.OTHER),
        ("0990123456", CallClass.OTHER),
        ("02012345678", CallClass.OTHER),
        ("110", CallClass.EMERGENCY),
        ("118", CallClass.EMERGENCY),
        ("119", CallClass.EMERGENCY),
        ("+12125551234", CallClass.INTERNATIONAL),
        ("010441234567890", CallClass.INTERNATIONAL),
        ("117", CallClass.BARRED),
        ("0312", CallClass.BARRED),
        ("alice", CallClass.BARRED),
    ],
)
def test_destination_class(dialled: str, cls: CallClass) -> None:
    assert destination_class(dialled) is cls


@pytest.mark.parametrize(
    ("caller", "cpc", "kind"),
    [
        ("+819012345678", None, CallerKind.MOBILE),
        ("08012345678", None, CallerKind.MOBILE),
        ("07012345678", None, CallerKind.MOBILE),  # PHS numbers are 070 too: 携帯PHS
        ("+81312345678", None, CallerKind.LANDLINE),
        ("+815012345678", None, CallerKind.LANDLINE),
        (None, None, CallerKind.LANDLINE),
        ("anonymous", None, CallerKind.LANDLINE),
        ("+81312345678", "payphone", CallerKind.PAYPHONE),
        (None, "PAYPHONE", CallerKind.PAYPHONE),
        ("+81312345678", "cellular", CallerKind.MOBILE),
        (None, "cellular-roaming", CallerKind.MOBILE),
        ("+819012345678", "ordinary", CallerKind.MOBILE),
    ],
)
def test_caller_kind_for(caller: str | None, cpc: str | None, kind: CallerKind) -> None:
    assert caller_kind_for(caller, cpc) is kind
