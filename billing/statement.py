"""A tenant's statement for one billing month: pure aggregation of rated calls.

Totals are kept per ID (the device that placed or answered the call), per tenant number (the
number presented on an outbound call, or the one called or forwarded), and for the whole
tenant, each broken down by `Category` (direction, class, and the caller's kind for
toll-free inbound calls). Every amount is exact in tenths of a yen; `payable_yen` rounds the
tenant's total once, by the tariff's statement rounding (down: ¥52.5 + ¥20 pays ¥72).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from .classes import CallClass, CallerKind, Direction
from .errors import StatementError
from .money import ZERO, Money, Rounding
from .month import BillingMonth
from .rating import RatedCall


@dataclass(frozen=True, slots=True, kw_only=True)
class Category:
    """A statement line: outbound calls to mobiles, forwarded legs to landlines, toll-free
    inbound calls from payphones …"""

    direction: Direction
    call_class: CallClass
    caller_kind: CallerKind | None = None

    @classmethod
    def of(cls, call: RatedCall) -> Category:
        return cls(
            direction=call.direction, call_class=call.call_class, caller_kind=call.caller_kind
        )

    @property
    def label(self) -> str:
        parts = [self.direction.value, self.call_class.value]
        return "/".join([*parts, self.caller_kind.value] if self.caller_kind else parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    calls: int = 0
    answered: int = 0
    seconds: int = 0  # billable (answered) seconds
    charge: Money = ZERO
    plan_free_seconds: int = 0
    plan_savings: Money = ZERO

    def add(self, call: RatedCall) -> Totals:
        return Totals(
            calls=self.calls + 1,
            answered=self.answered + call.answered,
            seconds=self.seconds + call.billable_seconds,
            charge=self.charge + call.charge,
            plan_free_seconds=self.plan_free_seconds + call.free_seconds,
            plan_savings=self.plan_savings + call.plan_savings,
        )

    @property
    def minutes(self) -> Decimal:
        """Billable minutes for display, to 0.01 (the exact figure is `seconds`)."""
        return (Decimal(self.seconds) / 60).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _no_lines() -> Mapping[Category, Totals]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    total: Totals = Totals()
    by_category: Mapping[Category, Totals] = field(default_factory=_no_lines)

    def add(self, call: RatedCall) -> Breakdown:
        key = Category.of(call)
        lines = dict(self.by_category)
        lines[key] = lines.get(key, Totals()).add(call)
        return Breakdown(total=self.total.add(call), by_category=MappingProxyType(lines))


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRow:
    """One rated CDR. `device_id`: the ID that placed or answered the call (None for a
    forwarded leg or an unanswered inbound call); `number`: the tenant number involved (None
    for an internal call between IDs)."""

    tenant_id: str
    call: RatedCall
    device_id: str | None = None
    number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    tenant_id: str
    month: BillingMonth
    rounding: Rounding
    tenant: Breakdown
    by_device: Mapping[str, Breakdown]
    by_number: Mapping[str, Breakdown]
    tariff_versions: tuple[str, ...]  # every version used, in first-use order

    @property
    def payable_yen(self) -> int:
        """The call charges the tenant pays for the month, in whole yen, before tax."""
        return self.tenant.total.charge.whole_yen(self.rounding)


def build_statement(
    *, tenant_id: str, month: BillingMonth, rows: Iterable[StatementRow], rounding: Rounding
) -> Statement:
    """Aggregate `rows` (every one of `tenant_id`, started within `month`)."""
    acc = StatementAccumulator(tenant_id=tenant_id, month=month, rounding=rounding)
    for row in rows:
        acc.add(row)
    return acc.result()


class StatementAccumulator:
    """`build_statement` one row at a time, for rows read from a store page by page.

    `strict=False` accepts rows that started outside `month`'s bounds: a stored CDR carries
    the billing month it was rated into (in the tenant's time zone *then*); if the tenant's
    zone changed since, the label it was billed under wins over today's bounds. Rows of
    another tenant are refused either way."""

    __slots__ = ("_by_device", "_by_number", "_tenant", "_versions", "month", "rounding",
                 "strict", "tenant_id")  # fmt: skip

    def __init__(
        self, *, tenant_id: str, month: BillingMonth, rounding: Rounding, strict: bool = True
    ) -> None:
        self.tenant_id = tenant_id
        self.month = month
        self.rounding = rounding
        self.strict = strict
        self._tenant = Breakdown()
        self._by_device: dict[str, Breakdown] = {}
        self._by_number: dict[str, Breakdown] = {}
        self._versions: dict[str, None] = {}

    def add(self, row: StatementRow) -> None:
        _check_row(row, self.tenant_id, self.month if self.strict else None)
        self._tenant = self._tenant.add(row.call)
        _add(self._by_device, row.device_id, row.call)
        _add(self._by_number, row.number, row.call)
        self._versions[row.call.tariff_version] = None

    def result(self) -> Statement:
        return Statement(
            tenant_id=self.tenant_id,
            month=self.month,
            rounding=self.rounding,
            tenant=self._tenant,
            by_device=MappingProxyType(dict(self._by_device)),
            by_number=MappingProxyType(dict(self._by_number)),
            tariff_versions=tuple(self._versions),
        )


def _add(groups: dict[str, Breakdown], key: str | None, call: RatedCall) -> None:
    if key is not None:
        groups[key] = groups.get(key, Breakdown()).add(call)


def _check_row(row: StatementRow, tenant_id: str, month: BillingMonth | None) -> None:
    if row.tenant_id != tenant_id:
        raise StatementError(
            "row-other-tenant",
            f"a row of tenant {row.tenant_id!r} in the statement of {tenant_id!r}",
            {"tenant_id": row.tenant_id},
        )
    if month is not None and row.call.start not in month:
        raise StatementError(
            "row-outside-month",
            f"a call started {row.call.start.isoformat()} is not in billing month {month.label}",
            {"start": row.call.start.isoformat(), "month": month.label},
        )
