"""Money: exact integers in tenths of a yen. Never floats.

The tariffs need one decimal place (¥17.5 per minute) and no more, so every price and charge
is an integer count of ¥0.1. Per-call charges and every total stay exact; only the amount a
tenant pays is rounded to whole yen, once per statement, by the tariff's `Rounding`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import assert_never

_YEN = re.compile(r"(0|[1-9][0-9]{0,8})(?:\.([0-9]))?")


class Rounding(enum.StrEnum):
    """How a statement's exact total becomes whole yen."""

    DOWN = "down"  # 切り捨て: drop the fraction (the tenant never pays for a part of a yen)
    HALF_UP = "half-up"  # 四捨五入
    UP = "up"  # 切り上げ


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Money:
    """An amount in tenths of a yen: `Money(tenths=175)` is ¥17.5."""

    tenths: int

    def __post_init__(self) -> None:
        if type(self.tenths) is not int:  # bool and float are refused, not coerced
            raise TypeError(f"Money takes an int of tenths of a yen, not {self.tenths!r}")

    @classmethod
    def parse(cls, text: str) -> Money:
        """ "17.5" -> Money(tenths=175). At most one decimal place, no sign, no exponent."""
        match = _YEN.fullmatch(text)
        if match is None:
            raise ValueError(f"not an amount of yen with at most one decimal place: {text!r}")
        whole, tenth = match.groups()
        return cls(tenths=int(whole) * 10 + int(tenth or "0"))

    @classmethod
    def yen(cls, whole: int) -> Money:
        return cls(tenths=whole * 10)

    def __add__(self, other: Money) -> Money:
        return Money(tenths=self.tenths + other.tenths)

    def __sub__(self, other: Money) -> Money:
        return Money(tenths=self.tenths - other.tenths)

    def __mul__(self, times: int) -> Money:
        return Money(tenths=self.tenths * times)

    @property
    def decimal(self) -> Decimal:
        """The exact amount in yen: Decimal("17.5")."""
        return Decimal(self.tenths).scaleb(-1)

    def whole_yen(self, rounding: Rounding) -> int:
        """Whole yen by `rounding` (only ever applied to a statement's total)."""
        whole, tenth = divmod(self.tenths, 10)  # floor division: also right for negatives
        match rounding:
            case Rounding.DOWN:
                return whole
            case Rounding.UP:
                return whole + (tenth > 0)
            case Rounding.HALF_UP:
                return whole + (tenth >= 5)
            case _:
                assert_never(rounding)

    def __str__(self) -> str:
        """ "¥17.5", "¥8", "-¥20": the tenth only when there is one."""
        whole, tenth = divmod(abs(self.tenths), 10)
        sign = "-" if self.tenths < 0 else ""
        return f"{sign}¥{whole:,}" + (f".{tenth}" if tenth else "")


ZERO = Money(tenths=0)
