"""The billing month: from the 26th to the 25th, in the tenant's time zone.

The user guide: "本サービスは毎月25日締めです" (the service closes on the 25th of each month)
and "2月度(1月26日~2月25日)": a billing month is named after the calendar month of the 25th
that closes it. A call belongs to the month in which it *started*, so a call from 23:59 on
the 25th to 00:10 on the 26th is billed entirely in the month that closes on that 25th.

`start` and `end` are UTC instants (a half-open [start, end)): comparing aware datetimes that
share one ZoneInfo compares wall-clock times and ignores DST folds; UTC never folds. Where a
time zone skips local midnight of the 26th, the month starts at the first instant of the
26th that exists (zoneinfo maps the missing midnight onto the transition itself).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BillingError

CLOSING_DAY = 25
_LABEL = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True, kw_only=True)
class BillingMonth:
    """`label` "YYYY-MM" names the month of the closing 25th; [start, end) in UTC."""

    label: str
    timezone: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not _LABEL.fullmatch(self.label):
            raise BillingError("bad-month-label", f"a billing month is YYYY-MM: {self.label!r}")
        if not (self.start.tzinfo is UTC and self.end.tzinfo is UTC and self.start < self.end):
            raise BillingError("bad-month-bounds", "start < end, both in UTC")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def following(self) -> BillingMonth:
        year, month = _split(self.label)
        return billing_month(*_next(year, month), self.timezone)

    def preceding(self) -> BillingMonth:
        year, month = _split(self.label)
        return billing_month(*_previous(year, month), self.timezone)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a BillingError "unknown-timezone"."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BillingError("unknown-timezone", f"unknown time zone {name!r}") from None


@functools.lru_cache(maxsize=4096)
def billing_month(year: int, month: int, timezone: str) -> BillingMonth:
    """The month that closes on `year`-`month`-25 in `timezone`. Cached: a value of its
    arguments only (BillingMonth is frozen), and the CDR writer asks for it per call."""
    if not (1 < year < 9999 and 1 <= month <= 12):
        raise BillingError("bad-month-label", f"no billing month {year}-{month}")
    tz = zone(timezone)
    first_year, first_month = _previous(year, month)
    start = datetime(first_year, first_month, CLOSING_DAY + 1, tzinfo=tz)
    end = datetime(year, month, CLOSING_DAY + 1, tzinfo=tz)
    return BillingMonth(
        label=f"{year:04d}-{month:02d}",
        timezone=timezone,
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
    )


def billing_month_of(instant: datetime, timezone: str) -> BillingMonth:
    """The billing month in which a call starting at `instant` (aware) is billed."""
    if instant.utcoffset() is None:
        raise BillingError("naive-instant", f"instant needs a UTC offset: {instant!r}")
    local = instant.astimezone(zone(timezone))
    if local.day > CLOSING_DAY:
        return billing_month(*_next(local.year, local.month), timezone)
    return billing_month(local.year, local.month, timezone)


def billing_month_from_label(label: str, timezone: str) -> BillingMonth:
    match = _LABEL.fullmatch(label)
    if match is None:
        raise BillingError("bad-month-label", f"a billing month is YYYY-MM: {label!r}")
    return billing_month(int(match[1]), int(match[2]), timezone)


def _split(label: str) -> tuple[int, int]:
    year, month = label.split("-")
    return int(year), int(month)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _previous(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)
