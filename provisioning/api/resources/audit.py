"""The audit log: every successful write through this API (POST, PUT, PATCH, DELETE), newest
first — who (token id and scope), what (method, route template, path parameters), on which
tenant, when, and the answer's status. Never a request body or a secret.

`GET /audit` is the operator's (filters: tenant, token, time range); `GET
/tenants/{tenant_id}/audit` is a tenant's own trail (operator actions show without the
operator's token id). Entries are kept `[provisioning] audit_retention_days` (365).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from provisioning.records import AuditEntry
from provisioning.services import AuditQuery

from ..common import ID_PATTERN, PAGE_QUERY, TENANT_ID, TIMESTAMP, page_args, page_body, page_of
from ..core import Ctx, Operation, Reply
from ..schema import Enum, Integer, Nullable, Object, Ref, Schema, String

# RFC 3339 date-time, with its zone (a naive time would be ambiguous).
RFC3339 = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+\-][0-9]{2}:[0-9]{2})"
)


def _moment(text: str) -> datetime:
    """An RFC 3339 date-time (already matched) as an aware datetime; ValueError if it names
    no real moment (2026-02-30)."""
    text = text.upper()
    frac = re.search(r"\.([0-9]+)", text)
    if frac is not None and len(frac.group(1)) > 6:  # Python keeps microseconds
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _time_query(description: str) -> String:
    return String(
        max_length=40,
        pattern=RFC3339,
        format="date-time",
        convert=_moment,
        description=description,
    )


AUDIT_QUERY: dict[str, Schema] = {
    **PAGE_QUERY,
    "token_id": String(pattern=ID_PATTERN, description="only this token's writes"),
    "since": _time_query("entries at or after this time (RFC 3339, with its zone)"),
    "until": _time_query("entries before this time (RFC 3339, with its zone)"),
}
OPERATOR_AUDIT_QUERY: dict[str, Schema] = {
    **AUDIT_QUERY,
    "tenant_id": String(pattern=ID_PATTERN, description="only writes on this tenant"),
}

AUDIT_ENTRY = Ref(
    "AuditEntry",
    Object(
        {
            "id": String(),
            "at": TIMESTAMP,
            "token_id": Nullable(String(), description="null: an operator token, seen by a tenant"),
            "scope": Enum(["operator", "tenant"]),
            "tenant_id": Nullable(String()),
            "method": Enum(["POST", "PUT", "PATCH", "DELETE"]),
            "route": String(description="the route template, e.g. /v1/tenants/{tenant_id}"),
            "params": Object({}, extra={"additionalProperties": {"type": "string"}}),
            "status": Integer(minimum=200, maximum=399),
        },
        required=(
            "id",
            "at",
            "token_id",
            "scope",
            "tenant_id",
            "method",
            "route",
            "params",
            "status",
        ),
    ),
)
AUDIT_PAGE = page_of("AuditPage", AUDIT_ENTRY)


def render_entry(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "token_id": e.token_id,
        "scope": e.scope,
        "tenant_id": e.tenant_id,
        "method": e.method,
        "route": e.route,
        "params": dict(e.params),
        "status": e.status,
    }


def _query(ctx: Ctx) -> AuditQuery:
    q = ctx.query
    return AuditQuery(
        tenant_id=q.get("tenant_id"),
        token_id=q.get("token_id"),
        since=q.get("since"),
        until=q.get("until"),
        **page_args(q),
    )


async def list_audit(ctx: Ctx) -> Reply:
    page = await ctx.services.audit.list_entries(ctx.principal, _query(ctx))
    return Reply(200, page_body(page, render_entry))


async def tenant_audit(ctx: Ctx) -> Reply:
    tenant_id = str(ctx.path["tenant_id"])
    page = await ctx.services.audit.tenant_entries(ctx.principal, tenant_id, _query(ctx))
    return Reply(200, page_body(page, render_entry))


OPERATIONS = [
    Operation(
        method="GET",
        path="/audit",
        handler=list_audit,
        operation_id="listAudit",
        summary="The audit log of API writes, newest first (operator)",
        tag="audit",
        query=OPERATOR_AUDIT_QUERY,
        responses={200: AUDIT_PAGE},
        operator_only=True,
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/audit",
        handler=tenant_audit,
        operation_id="listTenantAudit",
        summary="The audit log of API writes on this tenant, newest first",
        tag="audit",
        path_params={"tenant_id": TENANT_ID},
        query=AUDIT_QUERY,
        responses={200: AUDIT_PAGE},
    ),
]
