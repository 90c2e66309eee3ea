"""The 10-minute plan's fair-use rule.

The user guide: "10分かけ放題では、回線圧迫による通話障害を回避する目的でテレアポ用途など
高頻度(1日30回程度)での発信はご遠慮頂いております" — IDs on the plan should not place calls at
telemarketing frequency (about 30 a day). Flagging is for an operator to review: the guide
says the operator *may* then cancel the plan and charge the normal rate from the start of the
calls, which is a decision (and a re-rating with has_plan=False), not something done here.

What counts is placing a call (発信): every outgoing call attempt of the ID on the tenant's
local calendar day, answered or not. The threshold is tariff data
(`FreeCallPlan.fair_use_calls_per_day`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from .errors import BillingError
from .month import zone
from .tariff import FreeCallPlan


def heavy_callers(calls_per_id: Mapping[str, int], plan: FreeCallPlan) -> frozenset[str]:
    """The IDs whose count of outgoing calls in one day reaches the plan's threshold."""
    bad = sorted(i for i, n in calls_per_id.items() if type(n) is not int or n < 0)
    if bad:
        raise BillingError("bad-call-count", f"call counts must be ints >= 0: {bad}")
    return frozenset(i for i, n in calls_per_id.items() if n >= plan.fair_use_calls_per_day)


def outgoing_calls_per_day(
    calls: Iterable[tuple[str, datetime]], timezone: str
) -> Mapping[date, Mapping[str, int]]:
    """(ID, start instant) of each outgoing call -> per local day, the calls of each ID."""
    tz = zone(timezone)
    days: dict[date, Counter[str]] = {}
    for device_id, start in calls:
        if start.utcoffset() is None:
            raise BillingError("naive-instant", f"instant needs a UTC offset: {start!r}")
        days.setdefault(start.astimezone(tz).date(), Counter())[device_id] += 1
    return {day: dict(counts) for day, counts in sorted(days.items())}


class FairUseWatch:
    """The live side of the flag: counts, per local day, the outgoing calls of each ID that
    had the plan, as the CDR writer sees them (one node's calls; the statement counts every
    node's from the store). `observe` returns True exactly once per ID and day: when its
    count reaches the threshold. Memory: only the newest day seen per ID is kept."""

    __slots__ = ("_counts", "flagged")

    def __init__(self) -> None:
        self._counts: dict[str, tuple[date, int]] = {}
        self.flagged: dict[str, datetime] = {}  # ID -> when its flagged local day ends

    def observe(self, device_id: str, start: datetime, timezone: str, plan: FreeCallPlan) -> bool:
        tz = zone(timezone)
        day = start.astimezone(tz).date()
        seen, count = self._counts.get(device_id, (day, 0))
        if seen > day:  # a late record of an earlier day: that day is gone from memory
            return False
        count = count + 1 if seen == day else 1
        self._counts[device_id] = (day, count)
        if count == plan.fair_use_calls_per_day:
            next_day = datetime.combine(day + timedelta(days=1), time(), tz)
            self.flagged[device_id] = next_day.astimezone(UTC)
            return True
        return False

    def flagged_at(self, now: datetime) -> int:
        """How many IDs are flagged for the local day they are in at `now`."""
        return sum(1 for end in self.flagged.values() if now < end)
