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
from datetime import date, datetime

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
