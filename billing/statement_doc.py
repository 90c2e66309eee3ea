"""Statements from stored CDRs, as the REST API shows them. Pure.

`CdrStatements(table)` is the `provisioning.services.cdrs.StatementBuilder` that the
composition root (switch/node.py) gives the API: provisioning cannot import billing, so the
API asks this object to name billing months and to fold a month's CDRs into a statement.

A `CdrSheet` folds CDRs one at a time (the API reads them page by page): each rated CDR of
the tenant becomes a `StatementRow` (`cdr_rating.statement_row`, the price it was rated
with, never re-priced) in a `StatementAccumulator`; unrated CDRs are counted, not priced.
Fair use: every outbound call of an ID that had the 10-minute plan when it called counts
towards that ID's calls of the tenant's local day; a day at or above the plan's threshold
(`FreeCallPlan.fair_use_calls_per_day`, of the tariff version in force at that day's first
such call) flags the ID: listed in the document, never acted on (see `billing.fair_use`).

The document's shape is the `Statement` schema of provisioning/api/resources/statements.py
(tests check the one against the other). Money is given twice: exact tenths of a yen
(`*_tenths`, integers) and the same as a decimal string of yen ("52.5").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from provisioning.records import CallDirection, CallRecord, MonthSpan

from .cdr_rating import FALLBACK_TIMEZONE, statement_row
from .errors import BillingError, RatingError
from .fair_use import heavy_callers
from .money import Money, Rounding
from .month import BillingMonth, billing_month_from_label, billing_month_of, zone
from .statement import Breakdown, StatementAccumulator, Totals
from .tariff import FreeCallPlan, TariffTable

__all__ = ["CdrSheet", "CdrStatements", "money_fields", "totals_doc"]


class CdrStatements:
    """Billing months and statement sheets over one tariff table (loaded once)."""

    def __init__(self, table: TariffTable) -> None:
        self.table = table

    def month(self, label: str | None, timezone: str, now: datetime) -> MonthSpan | None:
        zone_name = _known_zone(timezone)
        try:
            if label is None:
                found = billing_month_of(now, zone_name)
            else:
                found = billing_month_from_label(label, zone_name)
        except BillingError:
            return None
        return MonthSpan(
            label=found.label,
            timezone=zone_name,
            start=found.start,
            end=found.end,
            is_open=now < found.end,
        )

    def sheet(self, tenant_id: str, month: MonthSpan, *, detail: bool) -> CdrSheet:
        return CdrSheet(self.table, tenant_id, month, detail=detail)


def _known_zone(name: str) -> str:
    try:
        zone(name)
    except BillingError:
        return FALLBACK_TIMEZONE
    return name


class CdrSheet:
    """One tenant's statement being built (see the module docstring)."""

    def __init__(
        self, table: TariffTable, tenant_id: str, month: MonthSpan, *, detail: bool
    ) -> None:
        self.table = table
        self.span = month
        self.detail = detail
        self.month: BillingMonth = billing_month_from_label(month.label, month.timezone)
        self._acc = StatementAccumulator(
            tenant_id=tenant_id, month=self.month, rounding=_rounding(table, self.month),
            strict=False,
        )  # fmt: skip
        self._zone = zone(month.timezone)
        self._days: dict[date, dict[str, int]] = {}
        self._day_plan: dict[date, FreeCallPlan] = {}
        self.unrated = 0

    def add(self, record: CallRecord) -> None:
        row = statement_row(record)
        if row is None:
            self.unrated += 1
            return
        self._acc.add(row)
        self._count_fair_use(record)

    def _count_fair_use(self, record: CallRecord) -> None:
        device = record.caller_device
        if record.direction is not CallDirection.OUTBOUND or not record.has_plan or not device:
            return
        day = record.started_at.astimezone(self._zone).date()
        counts = self._days.setdefault(day, {})
        counts[device] = counts.get(device, 0) + 1
        if day not in self._day_plan:
            self._day_plan[day] = self.table.version_at(record.started_at).plan

    def heavy_days(self) -> dict[str, list[tuple[date, int]]]:
        """Per flagged ID, the days (and counts) at or above the plan's threshold."""
        out: dict[str, list[tuple[date, int]]] = {}
        for day, counts in sorted(self._days.items()):
            for device in sorted(heavy_callers(counts, self._day_plan[day])):
                out.setdefault(device, []).append((day, counts[device]))
        return out

    def document(self) -> dict[str, Any]:
        st = self._acc.result()
        heavy = self.heavy_days()
        doc: dict[str, Any] = {
            "tenant_id": st.tenant_id,
            "month": self.span.label,
            "timezone": self.span.timezone,
            "start": self.span.start.isoformat(),
            "end": self.span.end.isoformat(),
            "open": self.span.is_open,
            "rounding": st.rounding.value,
            "tariff_versions": list(st.tariff_versions),
            "payable_yen": st.payable_yen,
            "unrated_calls": self.unrated,
            "fair_use_flagged": sorted(heavy),
            **breakdown_doc(st.tenant),
        }
        if self.detail:
            doc["by_device"] = [
                {"device_id": d, **breakdown_doc(b), "fair_use": self._fair_use(heavy.get(d))}
                for d, b in sorted(st.by_device.items())
            ]
            doc["by_number"] = [
                {"number": n, **breakdown_doc(b)} for n, b in sorted(st.by_number.items())
            ]
        return doc

    def _fair_use(self, days: list[tuple[date, int]] | None) -> dict[str, Any]:
        return {
            "flagged": bool(days),
            "days": [{"date": d.isoformat(), "calls": n} for d, n in days or ()],
        }


def _rounding(table: TariffTable, month: BillingMonth) -> Rounding:
    """The statement rounding of the version in force when the month closes (the first
    version's when the month predates every version)."""
    try:
        return table.version_at(month.end - timedelta(microseconds=1)).statement_rounding
    except RatingError:
        return table.versions[0].statement_rounding


def money_fields(name: str, amount: Money) -> dict[str, Any]:
    return {name: str(amount.decimal), f"{name}_tenths": amount.tenths}


def totals_doc(t: Totals) -> dict[str, Any]:
    return {
        "calls": t.calls,
        "answered": t.answered,
        "seconds": t.seconds,
        "minutes": str(t.minutes),
        **money_fields("charge", t.charge),
        "plan_free_seconds": t.plan_free_seconds,
        **money_fields("plan_savings", t.plan_savings),
    }


def breakdown_doc(b: Breakdown) -> dict[str, Any]:
    return {"total": totals_doc(b.total), "by_category": _categories(b.by_category)}


def _categories(lines: Mapping[Any, Totals]) -> list[dict[str, Any]]:
    return [
        {
            "category": c.label,
            "direction": c.direction.value,
            "class": c.call_class.value,
            "caller_kind": None if c.caller_kind is None else c.caller_kind.value,
            **totals_doc(t),
        }
        for c, t in sorted(lines.items(), key=lambda item: item[0].label)
    ]
