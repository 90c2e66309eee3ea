"""Call history: the tenant's CDRs, one ID's history as its app shows it, and (operator) every
tenant's.

    GET /v1/tenants/{tenant_id}/calls                       filters, cursor paging
    GET /v1/tenants/{tenant_id}/calls?format=csv            the same, as CSV, streamed
    GET /v1/tenants/{tenant_id}/devices/{device_id}/calls   the device-facing view
    GET /v1/calls                                           operator: across tenants

Filters (AND): `since`/`until` (RFC 3339 instants with an offset, start time in [since,
until)), `number` (the tenant number involved, any usual form), `party` (the other party's
number exactly as received), `device` (an ID concerned in any role), `direction`, `outcome`
and, for the operator, `tenant`. A filter that cannot match anything by construction
(`since` not before `until`, a number that is not one) is 400 `invalid-filter`.

CSV: streamed page by page (`EXPORT_PAGE` CDRs per short read transaction), never the whole
result in memory; the first page is read before the answer starts, so an unavailable store
is still a clean 503. Cells that a spreadsheet would run as a formula (=, @, and + or -
not followed by digits only) get a leading apostrophe; phone numbers (+81…) are left as
they are.

The device view is what the app's call history shows: from that ID's point of view
(`incoming`/`outgoing`), the other party (a forwarded call shows its original caller, which
the forward target never saw), which of the tenant's numbers was involved, and whether the
call was answered here, elsewhere, or missed.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from provisioning.model import normalize_number
from provisioning.records import CallDirection, CallOutcome, CallQuery, CallRecord, DeviceRole
from provisioning.services.base import invalid_filter
from provisioning.services.cdrs import CallHistoryService, HistoryItem

from ..common import (
    DEVICE_ID,
    NULLABLE_TIMESTAMP,
    PAGE_QUERY,
    TENANT_ID,
    TIMESTAMP,
    ident,
    instant_filter,
    page_args,
    page_of,
)
from ..core import JSON, Ctx, Operation, Reply
from ..schema import Array, Boolean, ByMedia, Enum, Integer, Nullable, Object, Ref, String

__all__ = ["API_CALLS", "CSV_COLUMNS", "OPERATIONS", "csv_cell", "render_call"]

log = logging.getLogger(__name__)

API_CALLS = web.AppKey("api_calls", CallHistoryService)
CSV = "text/csv"

_NULLABLE_TEXT = Nullable(String(any_text=True))
_KIND = Nullable(Enum(["app", "desk", "ata"]))
_CALL_FIELDS = {
    "cdr_id": String(),
    "call_id": String(any_text=True),
    "tenant_id": Nullable(String()),
    "direction": Enum([d.value for d in CallDirection]),
    "outcome": Enum([o.value for o in CallOutcome]),
    "started_at": TIMESTAMP,
    "answered_at": NULLABLE_TIMESTAMP,
    "ended_at": TIMESTAMP,
    "billable_seconds": Integer(minimum=0),
    "dialled": String(any_text=True),
    "number": _NULLABLE_TEXT,
    "caller": _NULLABLE_TEXT,
    "callee": _NULLABLE_TEXT,
    "caller_device": Nullable(String()),
    "caller_device_kind": _KIND,
    "rang": Array(String()),
    "answered_device": Nullable(String()),
    "answered_device_kind": _KIND,
    "shown_to": Array(String()),
    "presented_number": _NULLABLE_TEXT,
    "forwarded_to": _NULLABLE_TEXT,
    "sip_status": Nullable(Integer()),
    "end_reason": _NULLABLE_TEXT,
    "rule": _NULLABLE_TEXT,
    "recorded": Boolean(),
    "node": String(any_text=True),
    "billing_month": Nullable(String()),
    "tariff_version": Nullable(String()),
    "call_class": Nullable(String()),
    "charge": Nullable(String(description="yen, exact (e.g. 52.5)")),
    "charge_tenths": Nullable(Integer(minimum=0)),
    "plan_savings_tenths": Nullable(Integer(minimum=0)),
    "rating_error": Nullable(String()),
    "role": Nullable(Enum([r.value for r in DeviceRole]), description="the `device` filter's role"),
}
CALL = Ref("Call", Object(_CALL_FIELDS, required=tuple(_CALL_FIELDS)))
CALL_PAGE = page_of("CallPage", CALL)
CALL_CSV = String(any_text=True, description="CSV, one CDR a row, header first")
_DEVICE_CALL_FIELDS = {
    "cdr_id": String(),
    "started_at": TIMESTAMP,
    "direction": Enum(["incoming", "outgoing"]),
    "other_party": _NULLABLE_TEXT,
    "number": _NULLABLE_TEXT,
    "outcome": Enum([o.value for o in CallOutcome]),
    "role": Enum([r.value for r in DeviceRole]),
    "answered_here": Boolean(),
    "answered_elsewhere": Boolean(),
    "missed": Boolean(),
    "forwarded_to": _NULLABLE_TEXT,
    "duration_seconds": Integer(minimum=0),
    "charge": Nullable(String()),
}
DEVICE_CALL = Ref("DeviceCall", Object(_DEVICE_CALL_FIELDS, required=tuple(_DEVICE_CALL_FIELDS)))
DEVICE_CALL_PAGE = page_of("DeviceCallPage", DEVICE_CALL)

_TIME_FILTERS = {
    "since": String(format="date-time", max_length=64, description="start >= (RFC 3339)"),
    "until": String(format="date-time", max_length=64, description="start < (RFC 3339)"),
}
FILTERS = {
    **_TIME_FILTERS,
    "number": String(min_length=1, max_length=32, description="the tenant number involved"),
    "party": String(min_length=1, max_length=64, any_text=True, description="the other party"),
    "device": ident("an ID concerned in any role"),
    "direction": Enum([d.value for d in CallDirection]),
    "outcome": Enum([o.value for o in CallOutcome]),
}
_FORMAT = {"format": Enum(["json", "csv"], description="csv: streamed, no paging")}


# --------------------------------------------------------------------------- rendering
def _yen(tenths: int | None) -> str | None:
    if tenths is None:
        return None
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth}" if tenth else str(whole)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def render_call(record: CallRecord, role: DeviceRole | None = None) -> dict[str, Any]:
    r, g = record, record.rating
    return {
        "cdr_id": r.cdr_id, "call_id": r.call_id, "tenant_id": r.tenant_id,
        "direction": r.direction.value, "outcome": r.outcome.value,
        "started_at": r.started_at.isoformat(), "answered_at": _iso(r.answered_at),
        "ended_at": r.ended_at.isoformat(), "billable_seconds": r.billable_seconds,
        "dialled": r.dialled, "number": r.number, "caller": r.caller, "callee": r.callee,
        "caller_device": r.caller_device,
        "caller_device_kind": _opt(r.caller_device_kind), "rang": list(r.rang),
        "answered_device": r.answered_device,
        "answered_device_kind": _opt(r.answered_device_kind), "shown_to": list(r.shown_to),
        "presented_number": r.presented_number, "forwarded_to": r.forwarded_to,
        "sip_status": r.sip_status, "end_reason": r.end_reason, "rule": r.rule,
        "recorded": r.recorded, "node": r.node, "billing_month": r.billing_month,
        "tariff_version": r.tariff_version, "call_class": r.call_class,
        "charge": _yen(r.charge), "charge_tenths": r.charge,
        "plan_savings_tenths": None if g is None else g.plan_savings,
        "rating_error": r.rating_error, "role": _opt(role),
    }  # fmt: skip


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def render_device_call(record: CallRecord, role: DeviceRole) -> dict[str, Any]:
    outgoing = role is DeviceRole.CALLER
    answered = record.outcome is CallOutcome.ANSWERED
    here = role is DeviceRole.ANSWERED
    return {
        "cdr_id": record.cdr_id,
        "started_at": record.started_at.isoformat(),
        "direction": "outgoing" if outgoing else "incoming",
        "other_party": record.callee if outgoing else record.caller,
        "number": record.number,
        "outcome": record.outcome.value,
        "role": role.value,
        "answered_here": here,
        "answered_elsewhere": not outgoing and answered and not here,
        "missed": not outgoing and not answered,
        "forwarded_to": record.forwarded_to,
        "duration_seconds": record.billable_seconds,
        "charge": _yen(record.charge) if outgoing else None,
    }


CSV_COLUMNS = (
    "cdr_id", "call_id", "tenant_id", "direction", "outcome", "started_at", "answered_at",
    "ended_at", "billable_seconds", "dialled", "number", "caller", "callee", "caller_device",
    "caller_device_kind", "rang", "answered_device", "answered_device_kind",
    "presented_number", "forwarded_to", "sip_status", "end_reason", "rule", "recorded",
    "billing_month", "tariff_version", "call_class", "charge", "node", "role",
)  # fmt: skip


def csv_cell(value: Any) -> str:
    """A cell no spreadsheet runs as a formula (CWE-1236), numbers left intact."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(value)
    text = str(value)
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in "+-" and not text[1:].isdigit()):
        return "'" + text
    return text


def _csv_rows(items: list[HistoryItem]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for record, role in items:
        doc = render_call(record, role)
        writer.writerow([csv_cell(doc[c]) for c in CSV_COLUMNS])
    return out.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- handlers
def _query(ctx: Ctx, tenant_id: str | None) -> CallQuery:
    q = ctx.query
    since, until = instant_filter("since", q.get("since")), instant_filter("until", q.get("until"))
    if since is not None and until is not None and since >= until:
        raise invalid_filter("until", "must be after since")
    number = q.get("number")
    if number is not None:
        try:
            number = normalize_number(number)
        except ValueError:
            raise invalid_filter("number", "not a Japanese number") from None
    direction, outcome = q.get("direction"), q.get("outcome")
    return CallQuery(
        tenant_id=tenant_id, since=since, until=until, number=number, party=q.get("party"),
        device=q.get("device"), direction=CallDirection(direction) if direction else None,
        outcome=CallOutcome(outcome) if outcome else None,
    )  # fmt: skip


def _service(ctx: Ctx) -> CallHistoryService:
    return ctx.request.app[API_CALLS]


async def _history(ctx: Ctx, tenant_id: str | None) -> Reply | web.StreamResponse:
    query = _query(ctx, tenant_id)
    if ctx.query.get("format") == "csv":
        return await _stream_csv(ctx, query)
    page = await _service(ctx).list_calls(ctx.principal, query, **page_args(ctx.query))
    items = [render_call(r, role) for r, role in page.items]
    return Reply(200, {"items": items, "next_cursor": page.next_cursor})


async def list_tenant_calls(ctx: Ctx) -> Reply | web.StreamResponse:
    return await _history(ctx, ctx.path["tenant_id"])


async def list_all_calls(ctx: Ctx) -> Reply | web.StreamResponse:
    return await _history(ctx, ctx.query.get("tenant"))


async def list_device_calls(ctx: Ctx) -> Reply:
    p, q = ctx.path, ctx.query
    times = _query(ctx, p["tenant_id"])
    query = CallQuery(
        tenant_id=p["tenant_id"], device=p["device_id"], since=times.since, until=times.until
    )
    page = await _service(ctx).device_calls(ctx.principal, query, **page_args(q))
    items = [render_device_call(r, role or DeviceRole.SHOWN) for r, role in page.items]
    return Reply(200, {"items": items, "next_cursor": page.next_cursor})


async def _stream_csv(ctx: Ctx, query: CallQuery) -> web.StreamResponse:
    pages = await _service(ctx).export_calls(ctx.principal, query)
    first = await anext(pages, None)  # before the answer starts: errors are still JSON
    resp = web.StreamResponse(headers={"Content-Type": f"{CSV}; charset=utf-8"})
    resp.headers["Content-Disposition"] = 'attachment; filename="calls.csv"'
    await resp.prepare(ctx.request)
    await resp.write(",".join(CSV_COLUMNS).encode() + b"\r\n")
    try:
        await _write_pages(resp, first, pages)
    except Exception:  # the answer has started: cut it short, a client sees it truncated
        log.exception("CSV export of calls interrupted")
        if ctx.request.transport is not None:
            ctx.request.transport.close()
        return resp
    await resp.write_eof()
    return resp


async def _write_pages(
    resp: web.StreamResponse, first: list[HistoryItem] | None, pages: AsyncIterator[Any]
) -> None:
    if first is None:
        return
    await resp.write(_csv_rows(first))
    async for page in pages:
        await resp.write(_csv_rows(page))


# --------------------------------------------------------------------------- operations
_LIST = ByMedia({JSON: CALL_PAGE, CSV: CALL_CSV})

OPERATIONS = [
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/calls",
        handler=list_tenant_calls,
        operation_id="listCalls",
        summary="The tenant's call history (CDRs), newest first; ?format=csv streams CSV",
        tag="calls",
        path_params={"tenant_id": TENANT_ID},
        query={**PAGE_QUERY, **FILTERS, **_FORMAT},
        responses={200: _LIST},
        response_media=(JSON, CSV),
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/devices/{device_id}/calls",
        handler=list_device_calls,
        operation_id="listDeviceCalls",
        summary="One ID's call history as its app shows it, newest first",
        tag="calls",
        path_params={"tenant_id": TENANT_ID, "device_id": DEVICE_ID},
        query={**PAGE_QUERY, **_TIME_FILTERS},
        responses={200: DEVICE_CALL_PAGE},
    ),
    Operation(
        method="GET",
        path="/calls",
        handler=list_all_calls,
        operation_id="listAllCalls",
        summary="Every tenant's call history (operator); ?format=csv streams CSV",
        tag="calls",
        query={**PAGE_QUERY, **FILTERS, **_FORMAT, "tenant": ident("one tenant only")},
        responses={200: _LIST},
        response_media=(JSON, CSV),
        operator_only=True,
    ),
]
