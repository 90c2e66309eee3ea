"""Devices (IDs): one device login each — app, desk IP phone or ATA.

A password goes in (create, or `PUT …/password`) and is stored only as HA1 hashes; no answer
ever contains it or a hash. `POST …/release` releases the logged-in device so that a new
phone can log in with the ID (the switch drops the current binding when it sees the change).
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.model import DeviceKind
from provisioning.records import DeviceInfo
from provisioning.services import DeviceCreate, DeviceUpdate, Principal

from ..common import (
    DEVICE_ID,
    E164,
    NULLABLE_TIMESTAMP,
    PAGE_QUERY,
    TENANT_ID,
    TIMESTAMP,
    ident,
    iso,
    page_args,
    page_body,
    page_of,
    phone_number,
    updates,
)
from ..core import Ctx, Operation, Reply
from ..schema import Array, Boolean, Enum, Integer, Nullable, Object, Ref, Schema, String

KIND = Enum([k.value for k in DeviceKind], description="app, desk (IP phone) or ata")
USERNAME = String(
    pattern=rf"[A-Za-z0-9][A-Za-z0-9._~-]{{0,{rules.USERNAME_MAX - 1}}}",
    max_length=rules.USERNAME_MAX,
    description="SIP digest username, unique across the service",
)
PASSWORD = String(
    min_length=rules.PASSWORD_LENGTH[0],
    max_length=rules.PASSWORD_LENGTH[1],
    description="write-only; stored as HA1 hashes, never returned",
)
DISPLAY_NAME = Nullable(String(max_length=rules.DISPLAY_NAME_MAX))

DEVICE_CREATE_FIELDS: dict[str, Schema] = {
    "id": ident("generated when absent"),
    "kind": KIND,
    "username": USERNAME,
    "password": PASSWORD,
    "presented_number": phone_number(
        "caller ID: one of the tenant's numbers (default: the contract number)"
    ),
    "display_name": DISPLAY_NAME,
    "free_calls_10min": Boolean(description="10-minute free calls option (apps only)"),
    "web_phonebook": Boolean(description="web phonebook option"),
    "ring_numbers": Array(
        phone_number(),
        max_items=rules.RING_NUMBERS_MAX,
        unique=True,
        description="numbers whose ring group the ID joins (default all)",
    ),
}
DEVICE_CREATE = Object(DEVICE_CREATE_FIELDS, required=("kind", "username", "password"))
DEVICE_UPDATE = Object(
    {
        "display_name": DISPLAY_NAME,
        "presented_number": phone_number(),
        "free_calls_10min": Boolean(),
        "web_phonebook": Boolean(),
        "password": PASSWORD,
    },
    min_properties=1,
)
PASSWORD_BODY = Object({"password": PASSWORD}, required=("password",))

DEVICE = Ref(
    "Device",
    Object(
        {
            "id": String(),
            "tenant_id": String(),
            "username": String(),
            "kind": KIND,
            "presented_number": E164,
            "display_name": Nullable(String()),
            "free_calls_10min": Boolean(),
            "web_phonebook": Boolean(),
            "release_seq": Integer(
                minimum=0, description="count of 'release the logged-in device'"
            ),
            "release_requested_at": NULLABLE_TIMESTAMP,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
        required=(
            "id",
            "tenant_id",
            "username",
            "kind",
            "presented_number",
            "display_name",
            "free_calls_10min",
            "web_phonebook",
            "release_seq",
            "release_requested_at",
            "created_at",
            "updated_at",
        ),
    ),
)
DEVICE_PAGE = page_of("DevicePage", DEVICE)


def device_create(b: dict[str, Any]) -> DeviceCreate:
    fields = dict(b)
    fields["kind"] = DeviceKind(fields["kind"])
    return DeviceCreate(**fields)


def render_device(d: DeviceInfo) -> dict[str, Any]:
    return {
        "id": d.id,
        "tenant_id": d.tenant_id,
        "username": d.username,
        "kind": DeviceKind(d.kind).value,
        "presented_number": d.presented_number,
        "display_name": d.display_name,
        "free_calls_10min": d.free_calls_10min,
        "web_phonebook": d.web_phonebook,
        "release_seq": d.release_seq,
        "release_requested_at": iso(d.release_requested_at),
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
    }


def _ids(ctx: Ctx) -> tuple[Principal, str, str]:
    return ctx.principal, ctx.path["tenant_id"], ctx.path["device_id"]


async def list_devices(ctx: Ctx) -> Reply:
    q = ctx.query
    page = await ctx.services.devices.list_devices(
        ctx.principal,
        ctx.path["tenant_id"],
        kind=DeviceKind(q["kind"]) if "kind" in q else None,
        username_contains=q.get("username_contains"),
        **page_args(q),
    )
    return Reply(200, page_body(page, render_device))


async def create_device(ctx: Ctx) -> Reply:
    tid = ctx.path["tenant_id"]
    dev = await ctx.services.devices.create_device(ctx.principal, tid, device_create(ctx.body))
    return Reply(201, render_device(dev), {"Location": f"devices/{dev.id}"})


async def get_device(ctx: Ctx) -> Reply:
    return Reply(200, render_device(await ctx.services.devices.get_device(*_ids(ctx))))


async def update_device(ctx: Ctx) -> Reply:
    dev = await ctx.services.devices.update_device(*_ids(ctx), DeviceUpdate(**updates(ctx.body)))
    return Reply(200, render_device(dev))


async def set_password(ctx: Ctx) -> Reply:
    update = DeviceUpdate(password=ctx.body["password"])
    await ctx.services.devices.update_device(*_ids(ctx), update)
    return Reply(204)


async def delete_device(ctx: Ctx) -> Reply:
    await ctx.services.devices.delete_device(*_ids(ctx))
    return Reply(204)


async def release_device(ctx: Ctx) -> Reply:
    return Reply(200, render_device(await ctx.services.devices.release_device(*_ids(ctx))))


_T = {"tenant_id": TENANT_ID}
_D = {"tenant_id": TENANT_ID, "device_id": DEVICE_ID}
_BASE = "/tenants/{tenant_id}/devices"

OPERATIONS = [
    Operation(
        method="GET",
        path=_BASE,
        handler=list_devices,
        operation_id="listDevices",
        summary="List the tenant's IDs",
        tag="devices",
        path_params=_T,
        query={
            **PAGE_QUERY,
            "kind": KIND,
            "username_contains": String(min_length=1, max_length=rules.USERNAME_MAX),
        },
        responses={200: DEVICE_PAGE},
    ),
    Operation(
        method="POST",
        path=_BASE,
        handler=create_device,
        operation_id="createDevice",
        summary="Add an ID (the password is stored as HA1 only)",
        tag="devices",
        path_params=_T,
        body=DEVICE_CREATE,
        responses={201: DEVICE},
    ),
    Operation(
        method="GET",
        path=_BASE + "/{device_id}",
        handler=get_device,
        operation_id="getDevice",
        summary="Get an ID",
        tag="devices",
        path_params=_D,
        responses={200: DEVICE},
    ),
    Operation(
        method="PATCH",
        path=_BASE + "/{device_id}",
        handler=update_device,
        operation_id="updateDevice",
        summary="Update an ID: presented number, display name, options, password",
        tag="devices",
        path_params=_D,
        body=DEVICE_UPDATE,
        responses={200: DEVICE},
    ),
    Operation(
        method="DELETE",
        path=_BASE + "/{device_id}",
        handler=delete_device,
        operation_id="deleteDevice",
        summary="Remove an ID",
        tag="devices",
        path_params=_D,
        responses={204: None},
    ),
    Operation(
        method="PUT",
        path=_BASE + "/{device_id}/password",
        handler=set_password,
        operation_id="setDevicePassword",
        summary="Set the ID's SIP password",
        tag="devices",
        path_params=_D,
        body=PASSWORD_BODY,
        responses={204: None},
    ),
    Operation(
        method="POST",
        path=_BASE + "/{device_id}/release",
        handler=release_device,
        operation_id="releaseDevice",
        summary="Release the logged-in device so that another device can log in",
        tag="devices",
        path_params=_D,
        responses={200: DEVICE},
    ),
]
