"""Monthly statements: what a tenant's calls cost in a billing month (26th to 25th, in the
tenant's time zone; the month is named after its closing 25th: 2024-02 runs from 2024-01-26
to 2024-02-25).

    GET /v1/tenants/{tenant_id}/statements/current    the open month, `open: true`
    GET /v1/tenants/{tenant_id}/statements/{month}    YYYY-MM, the open month or a closed one
    GET /v1/statements/{month}                        operator: every tenant, a page of them

Per ID (the one that placed or answered the call) and per tenant number: counts, billable
minutes, charges by category (direction / class / toll-free caller kind) and what the
10-minute plan saved; `payable_yen` is the month's call charges rounded once (tariff rule).
`fair_use`: IDs on the 10-minute plan that placed the plan's threshold of calls (~30) on a
local day are flagged, never cut off. A month after the current one, or a malformed label,
is 404 `no-such-month`; a node without the rating rules answers 503
`statements-unavailable`. The document is built by billing (`billing.statement_doc`),
injected at the composition root: provisioning does not import billing.
"""

from __future__ import annotations

from provisioning.services.cdrs import CallHistoryService

from ..common import PAGE_QUERY, TENANT_ID, TIMESTAMP, page_args, page_of
from ..core import Ctx, Operation, PathParam, Reply
from ..schema import Array, Boolean, Date, Integer, Nullable, Object, Ref, String
from .calls import API_CALLS

__all__ = ["OPERATIONS", "STATEMENT"]

MONTH = PathParam(
    schema=String(min_length=1, max_length=32),
    what="billing month",
    description="YYYY-MM: the month of the closing 25th",
    example="2026-11",
)
_YEN = String(description="yen, exact (e.g. 52.5)")
_TOTALS_FIELDS = {
    "calls": Integer(minimum=0),
    "answered": Integer(minimum=0),
    "seconds": Integer(minimum=0, description="billable (answered) seconds"),
    "minutes": String(description="billable minutes to 0.01, for display"),
    "charge": _YEN,
    "charge_tenths": Integer(minimum=0),
    "plan_free_seconds": Integer(minimum=0),
    "plan_savings": _YEN,
    "plan_savings_tenths": Integer(minimum=0),
}
TOTALS = Ref("StatementTotals", Object(_TOTALS_FIELDS, required=tuple(_TOTALS_FIELDS)))
_CATEGORY_FIELDS = {
    "category": String(description="direction/class[/caller kind]"),
    "direction": String(),
    "class": String(),
    "caller_kind": Nullable(String()),
    **_TOTALS_FIELDS,
}
CATEGORY = Ref("StatementCategory", Object(_CATEGORY_FIELDS, required=tuple(_CATEGORY_FIELDS)))
_BREAKDOWN = {"total": TOTALS, "by_category": Array(CATEGORY)}
FAIR_USE = Ref(
    "FairUse",
    Object(
        {
            "flagged": Boolean(),
            "days": Array(
                Object(
                    {"date": Date(), "calls": Integer(minimum=0)},
                    required=("date", "calls"),
                )
            ),
        },
        required=("flagged", "days"),
    ),
)
DEVICE_LINE = Object(
    {"device_id": String(), **_BREAKDOWN, "fair_use": FAIR_USE},
    required=("device_id", "total", "by_category", "fair_use"),
)
NUMBER_LINE = Object(
    {"number": String(), **_BREAKDOWN}, required=("number", "total", "by_category")
)
_HEAD = {
    "tenant_id": String(),
    "month": String(),
    "timezone": String(),
    "start": TIMESTAMP,
    "end": TIMESTAMP,
    "open": Boolean(description="the month has not closed yet"),
    "rounding": String(),
    "tariff_versions": Array(String()),
    "payable_yen": Integer(minimum=0),
    "unrated_calls": Integer(minimum=0),
    "fair_use_flagged": Array(String(), description="IDs flagged on some day of the month"),
    **_BREAKDOWN,
}
STATEMENT = Ref(
    "Statement",
    Object(
        {
            **_HEAD,
            "by_device": Array(DEVICE_LINE, description="absent in the operator's list"),
            "by_number": Array(NUMBER_LINE, description="absent in the operator's list"),
        },
        required=tuple(_HEAD),
    ),
)
STATEMENT_PAGE = page_of("StatementPage", STATEMENT)


def _service(ctx: Ctx) -> CallHistoryService:
    return ctx.request.app[API_CALLS]


async def current_statement(ctx: Ctx) -> Reply:
    doc = await _service(ctx).statement(ctx.principal, ctx.path["tenant_id"], None)
    return Reply(200, doc)


async def month_statement(ctx: Ctx) -> Reply:
    p = ctx.path
    doc = await _service(ctx).statement(ctx.principal, p["tenant_id"], p["month"])
    return Reply(200, doc)


async def all_statements(ctx: Ctx) -> Reply:
    page = await _service(ctx).all_statements(
        ctx.principal, ctx.path["month"], **page_args(ctx.query)
    )
    return Reply(200, {"items": page.items, "next_cursor": page.next_cursor})


_T = {"tenant_id": TENANT_ID}

OPERATIONS = [
    Operation(  # before {month}: "current" is not a month label
        method="GET",
        path="/tenants/{tenant_id}/statements/current",
        handler=current_statement,
        operation_id="getCurrentStatement",
        summary="The statement of the open billing month",
        tag="statements",
        path_params=_T,
        responses={200: STATEMENT},
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/statements/{month}",
        handler=month_statement,
        operation_id="getStatement",
        summary="The statement of a billing month (YYYY-MM), open or closed",
        tag="statements",
        path_params={**_T, "month": MONTH},
        responses={200: STATEMENT},
    ),
    Operation(
        method="GET",
        path="/statements/{month}",
        handler=all_statements,
        operation_id="listStatements",
        summary="Every tenant's statement summary for a billing month (operator)",
        tag="statements",
        path_params={"month": MONTH},
        query=PAGE_QUERY,
        responses={200: STATEMENT_PAGE},
        operator_only=True,
    ),
]
