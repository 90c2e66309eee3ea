"""Tenants and their holidays.

The operator creates, lists, updates and deletes tenants. A tenant token reads its own
tenant and may change `name` and `timezone`; `identity_verified` and `status` are the
operator's (the identity check is done by the operator's staff, and turning it on unlocks
after-hours and forwarding) — the service answers 403 `operator-only` otherwise.
Holidays (the "holiday" day kind of the after-hours schedule) are the tenant's own.
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.model import Tenant, TenantStatus
from provisioning.services import TenantCreate, TenantUpdate

from ..common import (
    HOLIDAY,
    PAGE_QUERY,
    TENANT_ID,
    ident,
    page_args,
    page_body,
    page_of,
    phone_number,
    updates,
)
from ..core import Ctx, Operation, Reply
from ..schema import Array, Boolean, Date, Enum, Object, Ref, String
from .devices import DEVICE_CREATE_FIELDS, device_create

TIMEZONE = String(
    min_length=1,
    max_length=rules.TIMEZONE_MAX,
    pattern=r"[A-Za-z0-9_+\-/]+",
    description="IANA time zone, e.g. Asia/Tokyo",
)
NAME = String(min_length=1, max_length=rules.TENANT_NAME_MAX)
STATUS = Enum([s.value for s in TenantStatus])

TENANT = Ref(
    "Tenant",
    Object(
        {
            "id": String(),
            "name": String(),
            "timezone": String(),
            "identity_verified": Boolean(description="identity check done (operator only)"),
            "status": STATUS,
            "holidays": Array(String(format="date")),
        },
        required=("id", "name", "timezone", "identity_verified", "status", "holidays"),
    ),
)
TENANT_PAGE = page_of("TenantPage", TENANT)
HOLIDAYS = Ref(
    "Holidays",
    Object(
        {"holidays": Array(Date(), max_items=rules.HOLIDAYS_MAX, unique=True)},
        required=("holidays",),
    ),
)

BASIC_DEVICE = Ref(
    "DeviceCreate",
    Object(DEVICE_CREATE_FIELDS, required=("kind", "username", "password")),
)
TENANT_CREATE = Object(
    {
        "id": ident("generated when absent"),
        "name": NAME,
        "timezone": TIMEZONE,
        "identity_verified": Boolean(),
        "contract_number": phone_number("the tenant's contract number"),
        "basic_device": BASIC_DEVICE,
    },
    required=("name", "contract_number", "basic_device"),
)
TENANT_UPDATE = Object(
    {
        "name": NAME,
        "timezone": TIMEZONE,
        "identity_verified": Boolean(description="operator only"),
        "status": Enum([s.value for s in TenantStatus], description="operator only"),
    },
    min_properties=1,
)


def render_tenant(t: Tenant) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "timezone": t.timezone,
        "identity_verified": t.identity_verified,
        "status": t.status.value,
        "holidays": sorted(d.isoformat() for d in t.holidays),
    }


def render_holidays(t: Tenant) -> dict[str, Any]:
    return {"holidays": sorted(d.isoformat() for d in t.holidays)}


async def list_tenants(ctx: Ctx) -> Reply:
    q = ctx.query
    status = TenantStatus(q["status"]) if "status" in q else None
    page = await ctx.services.tenants.list_tenants(
        ctx.principal, name_contains=q.get("name_contains"), status=status, **page_args(q)
    )
    return Reply(200, page_body(page, render_tenant))


async def create_tenant(ctx: Ctx) -> Reply:
    b = dict(ctx.body)
    data = TenantCreate(
        name=b["name"],
        contract_number=b["contract_number"],
        basic_device=device_create(b["basic_device"]),
        **{k: b[k] for k in ("timezone", "identity_verified", "id") if k in b},
    )
    tenant = await ctx.services.tenants.create_tenant(ctx.principal, data)
    return Reply(201, render_tenant(tenant), {"Location": f"tenants/{tenant.id}"})


async def get_tenant(ctx: Ctx) -> Reply:
    return Reply(
        200, render_tenant(await ctx.services.tenants.get_tenant(ctx.principal, _tid(ctx)))
    )


async def update_tenant(ctx: Ctx) -> Reply:
    fields = updates(ctx.body)
    if "status" in fields:
        fields["status"] = TenantStatus(fields["status"])
    tenant = await ctx.services.tenants.update_tenant(
        ctx.principal, _tid(ctx), TenantUpdate(**fields)
    )
    return Reply(200, render_tenant(tenant))


async def delete_tenant(ctx: Ctx) -> Reply:
    await ctx.services.tenants.delete_tenant(ctx.principal, _tid(ctx))
    return Reply(204)


async def get_holidays(ctx: Ctx) -> Reply:
    t = await ctx.services.tenants.get_tenant(ctx.principal, _tid(ctx))
    return Reply(200, render_holidays(t))


async def put_holidays(ctx: Ctx) -> Reply:
    t = await ctx.services.tenants.set_holidays(ctx.principal, _tid(ctx), ctx.body["holidays"])
    return Reply(200, render_holidays(t))


async def add_holiday(ctx: Ctx) -> Reply:
    t = await ctx.services.tenants.add_holiday(ctx.principal, _tid(ctx), ctx.path["day"])
    return Reply(200, render_holidays(t))


async def remove_holiday(ctx: Ctx) -> Reply:
    t = await ctx.services.tenants.remove_holiday(ctx.principal, _tid(ctx), ctx.path["day"])
    return Reply(200, render_holidays(t))


def _tid(ctx: Ctx) -> str:
    return str(ctx.path["tenant_id"])


_T = {"tenant_id": TENANT_ID}
_H = {"tenant_id": TENANT_ID, "day": HOLIDAY}

OPERATIONS = [
    Operation(
        method="GET",
        path="/tenants",
        handler=list_tenants,
        operation_id="listTenants",
        summary="List tenants (operator; a tenant token sees only itself)",
        tag="tenants",
        query={
            **PAGE_QUERY,
            "name_contains": String(min_length=1, max_length=rules.TENANT_NAME_MAX),
            "status": STATUS,
        },
        responses={200: TENANT_PAGE},
    ),
    Operation(
        method="POST",
        path="/tenants",
        handler=create_tenant,
        operation_id="createTenant",
        summary="Create a tenant with its contract number and basic ID (operator)",
        tag="tenants",
        body=TENANT_CREATE,
        responses={201: TENANT},
        operator_only=True,
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}",
        handler=get_tenant,
        operation_id="getTenant",
        summary="Get a tenant",
        tag="tenants",
        path_params=_T,
        responses={200: TENANT},
    ),
    Operation(
        method="PATCH",
        path="/tenants/{tenant_id}",
        handler=update_tenant,
        operation_id="updateTenant",
        summary="Update a tenant (tenant token: name and timezone only)",
        tag="tenants",
        path_params=_T,
        body=TENANT_UPDATE,
        responses={200: TENANT},
    ),
    Operation(
        method="DELETE",
        path="/tenants/{tenant_id}",
        handler=delete_tenant,
        operation_id="deleteTenant",
        summary="Delete a tenant and all its data (operator)",
        tag="tenants",
        path_params=_T,
        responses={204: None},
        operator_only=True,
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/holidays",
        handler=get_holidays,
        operation_id="getHolidays",
        summary="The tenant's holidays",
        tag="holidays",
        path_params=_T,
        responses={200: HOLIDAYS},
    ),
    Operation(
        method="PUT",
        path="/tenants/{tenant_id}/holidays",
        handler=put_holidays,
        operation_id="setHolidays",
        summary="Replace the tenant's holidays",
        tag="holidays",
        path_params=_T,
        body=HOLIDAYS,
        responses={200: HOLIDAYS},
    ),
    Operation(
        method="PUT",
        path="/tenants/{tenant_id}/holidays/{day}",
        handler=add_holiday,
        operation_id="addHoliday",
        summary="Add one holiday (idempotent)",
        tag="holidays",
        path_params=_H,
        responses={200: HOLIDAYS},
    ),
    Operation(
        method="DELETE",
        path="/tenants/{tenant_id}/holidays/{day}",
        handler=remove_holiday,
        operation_id="removeHoliday",
        summary="Remove one holiday (idempotent)",
        tag="holidays",
        path_params=_H,
        responses={200: HOLIDAYS},
    ),
]
