"""Rating a call detail record, and reading a rated one back for a statement. Pure.

`rate_record(record, table, timezone)` maps a `provisioning.records.CallRecord` to billing's
`RatingInput`, rates it with the version in force when the call started, and returns the
record with its billing month and `CallRating` (or `rating_error`, the billing error_id,
when it cannot be rated: the CDR is stored all the same and a statement counts it as
unrated). The CDR writer calls it once per record, before the record is written or spooled;
a record read back from the store is never re-rated: `rated_call` rebuilds the exact
`RatedCall` from what was stored, so a statement sums the prices the calls were rated with.

Mapping (CDR direction -> billing direction, destination):
- outbound -> outbound, the callee (what was dialled, E.164 or a short code), the calling
  ID's kind and its 10-minute plan as it was when the call started;
- forwarded -> forwarded, the forward target;
- inbound to a toll-free number (0120/0800) -> toll-free inbound, the caller's kind from its
  number and the carrier's calling-party category; any other inbound -> inbound (free);
- internal -> internal (free).
An outbound call refused before it reached a destination with an empty dialled string is
rated as "barred" (free): rating needs a destination, and such a call has none.
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from provisioning.records import CallDirection, CallRating, CallRecord

from .classes import CallClass, CallerKind, Direction, caller_kind_for, destination_class
from .errors import BillingError
from .money import Money
from .month import billing_month_of
from .rating import RatedCall, RatingInput, rate_call
from .statement import StatementRow
from .tariff import Rate, TariffTable

__all__ = ["FALLBACK_TIMEZONE", "rate_record", "rated_call", "rating_input", "statement_row"]

FALLBACK_TIMEZONE = "Asia/Tokyo"  # a CDR of no tenant, or a tenant with an unknown zone
_NO_DESTINATION = "invalid"  # classified as barred (routing.dialled: an invalid string)


def rating_input(record: CallRecord) -> RatingInput:
    """Billing's view of the call (see the module docstring for the mapping)."""
    direction, destination, caller = _direction(record)
    outbound = direction is Direction.OUTBOUND
    return RatingInput(
        direction=direction,
        start=record.started_at,
        billable_seconds=record.billable_seconds,
        destination=destination.strip() or _NO_DESTINATION,
        device_kind=record.caller_device_kind if outbound else None,
        has_plan=record.has_plan and outbound,
        caller_kind=caller,
    )


def _direction(record: CallRecord) -> tuple[Direction, str, CallerKind | None]:
    match record.direction:
        case CallDirection.OUTBOUND:
            return Direction.OUTBOUND, record.callee or record.dialled, None
        case CallDirection.FORWARDED:
            return Direction.FORWARDED, record.forwarded_to or record.callee or "", None
        case CallDirection.INTERNAL:
            return Direction.INTERNAL, record.callee or record.dialled, None
        case CallDirection.INBOUND:
            called = record.number or record.dialled
            if destination_class(called or _NO_DESTINATION) is CallClass.TOLL_FREE:
                kind = caller_kind_for(record.caller, record.caller_category)
                return Direction.TOLL_FREE_INBOUND, called, kind
            return Direction.INBOUND, called, None
        case _:
            assert_never(record.direction)


def rate_record(record: CallRecord, table: TariffTable, timezone: str) -> CallRecord:
    """`record` with its billing month (in `timezone`, the tenant's) and its rating."""
    month = _month(record, timezone)
    try:
        rated = rate_call(rating_input(record), table)
    except BillingError as exc:
        return replace(record, billing_month=month, rating=None, rating_error=exc.error_id)
    return replace(record, billing_month=month, rating=_rating(rated), rating_error=None)


def _month(record: CallRecord, timezone: str) -> str:
    try:
        return billing_month_of(record.started_at, timezone).label
    except BillingError:  # an unknown zone must not lose the month
        return billing_month_of(record.started_at, FALLBACK_TIMEZONE).label


def _rating(rated: RatedCall) -> CallRating:
    rate = rated.rate
    return CallRating(
        tariff_version=rated.tariff_version,
        rated_as=rated.direction.value,
        call_class=rated.call_class.value,
        caller_kind=None if rated.caller_kind is None else rated.caller_kind.value,
        units=rated.units,
        charge=rated.charge.tenths,
        free_seconds=rated.free_seconds,
        plan_savings=rated.plan_savings.tenths,
        rate_price=None if rate is None else rate.price.tenths,
        rate_unit_seconds=None if rate is None else rate.unit_seconds,
    )


def rated_call(record: CallRecord) -> RatedCall | None:
    """The `RatedCall` the record was rated as (None when it was not rated)."""
    g = record.rating
    if g is None:
        return None
    rate = None
    if g.rate_price is not None:
        rate = Rate(price=Money(tenths=g.rate_price), unit_seconds=g.rate_unit_seconds)
    return RatedCall(
        direction=Direction(g.rated_as),
        call_class=CallClass(g.call_class),
        start=record.started_at,
        billable_seconds=record.billable_seconds,
        units=g.units,
        charge=Money(tenths=g.charge),
        free_seconds=g.free_seconds,
        plan_savings=Money(tenths=g.plan_savings),
        tariff_version=g.tariff_version,
        rate=rate,
        caller_kind=None if g.caller_kind is None else CallerKind(g.caller_kind),
    )


def statement_row(record: CallRecord) -> StatementRow | None:
    """The statement line of a rated CDR of a tenant: on the ID that placed or answered it,
    and on the tenant number involved (None for an unrated or tenant-less record)."""
    call = rated_call(record)
    if call is None or record.tenant_id is None:
        return None
    return StatementRow(
        tenant_id=record.tenant_id,
        call=call,
        device_id=record.charged_device,
        number=record.number,
    )
