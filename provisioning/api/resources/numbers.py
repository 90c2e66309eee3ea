"""Numbers: the contract number (comes with the tenant), up to two additional numbers (never
more than the additional IDs) and toll-free numbers (0120/0800, incoming only).

The number resource carries its label and ring timings; each option has a sub-resource
(numbers_settings.py): ring group, options, after-hours schedule, forwarding, voicemail and
recording. In paths, a number is given in E.164 (`%2B81312345678`) or national form
(`0312345678`); answers always use E.164.
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.model import (
    SLOTS_PER_DAY,
    VOICEMAIL_RING_TIMES,
    DayKind,
    Number,
    NumberKind,
    SlotAction,
)
from provisioning.services import NumberCreate, NumberUpdate, Principal

from ..common import (
    DEVICE_ID,
    E164,
    NUMBER,
    PAGE_QUERY,
    TENANT_ID,
    page_args,
    page_body,
    page_of,
    phone_number,
    updates,
)
from ..core import Ctx, Operation, Reply
from ..schema import Array, Boolean, Deprecated, Enum, Integer, Nullable, Object, Ref, String
from ..schema import Number as Num

KIND = Enum(
    [k.value for k in NumberKind],
    description="contract (one, with the tenant), additional, toll-free",
)
LABEL = Nullable(String(max_length=rules.LABEL_MAX), description="shown before the caller's name")
APP_RING_DELAY = Num(
    minimum=0,
    maximum=rules.MAX_APP_RING_DELAY,
    description="seconds apps wait while desk phones/ATAs ring",
)
MAX_RING_TIME = Num(
    minimum=rules.MAX_RING_TIME_RANGE[0],
    maximum=rules.MAX_RING_TIME_RANGE[1],
    description="seconds before giving up",
)
RING_GROUP_IDS = Array(
    DEVICE_ID.schema,
    min_items=1,
    max_items=rules.RING_GROUP_MAX,
    unique=True,
    description="device ids that ring for this number",
)

OPTIONS = Ref(
    "NumberOptions",
    Object(
        {k: Boolean() for k in ("after_hours", "voicemail", "forwarding", "recording")},
        required=("after_hours", "voicemail", "forwarding", "recording"),
    ),
)
SLOT_ACTION = Enum([a.value for a in SlotAction])
DAY_SLOTS = Array(
    SLOT_ACTION,
    min_items=SLOTS_PER_DAY,
    max_items=SLOTS_PER_DAY,
    description="48 half-hour slots from 00:00 local time",
)
SLOTS = Object(
    {k.value: DAY_SLOTS for k in DayKind},
    description="per day kind (weekday, saturday, sunday, holiday)",
)
AFTER_HOURS = Ref(
    "AfterHours",
    Object(
        {
            "enabled": Boolean(description="one-touch ON/OFF"),
            "announcement": String(description="template-1..3 or prompt:<prompt id>"),
            "slots": SLOTS,
        },
        required=("enabled", "announcement", "slots"),
    ),
)
FORWARDING = Ref(
    "Forwarding",
    Object({"enabled": Boolean(), "target": Nullable(E164)}, required=("enabled", "target")),
)
RING_GROUP = Ref("RingGroup", Object({"ring_group": RING_GROUP_IDS}, required=("ring_group",)))
VOICEMAIL_RING_TIME = Integer(
    minimum=VOICEMAIL_RING_TIMES[0],
    maximum=VOICEMAIL_RING_TIMES[-1],
    multiple_of=VOICEMAIL_RING_TIMES[1] - VOICEMAIL_RING_TIMES[0],
    description="seconds of ringing before voicemail answers",
)
RECORDING_NOTICE = Boolean(description="play 'this call is recorded' to the caller")
# One name per field across the seed file, the API and the docs: `voicemail_ring_time` and
# `recording_notice`, as in the number resource and the seed. The voicemail and recording
# sub-resources called them `ring_time` and `notice` before; those old names are still
# accepted and still answered, marked deprecated (README, "Field names").
VOICEMAIL = Ref(
    "Voicemail",
    Object(
        {
            "enabled": Boolean(description="the voicemail option (see options)"),
            "voicemail_ring_time": VOICEMAIL_RING_TIME,
            "ring_time": Deprecated(VOICEMAIL_RING_TIME, "voicemail_ring_time"),
        },
        required=("enabled", "voicemail_ring_time", "ring_time"),
    ),
)
RECORDING = Ref(
    "Recording",
    Object(
        {
            "enabled": Boolean(description="the recording option (see options)"),
            "recording_notice": RECORDING_NOTICE,
            "notice": Deprecated(RECORDING_NOTICE, "recording_notice"),
        },
        required=("enabled", "recording_notice", "notice"),
    ),
)
NUMBER_SCHEMA = Ref(
    "Number",
    Object(
        {
            "number": E164,
            "tenant_id": String(),
            "kind": KIND,
            "label": Nullable(String()),
            "label_in_display_name": Boolean(),
            "app_ring_delay": Num(),
            "max_ring_time": Num(),
            "ring_group": Array(String()),
            "options": OPTIONS,
            "after_hours": AFTER_HOURS,
            "forwarding": FORWARDING,
            "voicemail_ring_time": VOICEMAIL_RING_TIME,
            "recording_notice": RECORDING_NOTICE,
        },
        required=(
            "number",
            "tenant_id",
            "kind",
            "label",
            "label_in_display_name",
            "app_ring_delay",
            "max_ring_time",
            "ring_group",
            "options",
            "after_hours",
            "forwarding",
            "voicemail_ring_time",
            "recording_notice",
        ),
    ),
)
NUMBER_PAGE = page_of("NumberPage", NUMBER_SCHEMA)

NUMBER_CREATE = Object(
    {
        "number": phone_number(),
        "kind": KIND,
        "ring_group": RING_GROUP_IDS,
        "label": LABEL,
        "label_in_display_name": Boolean(),
        "app_ring_delay": APP_RING_DELAY,
    },
    required=("number",),
)
NUMBER_UPDATE = Object(
    {
        "label": LABEL,
        "label_in_display_name": Boolean(),
        "app_ring_delay": APP_RING_DELAY,
        "max_ring_time": MAX_RING_TIME,
    },
    min_properties=1,
)


def render_options(n: Number) -> dict[str, bool]:
    o = n.options
    return {
        "after_hours": o.after_hours,
        "voicemail": o.voicemail,
        "forwarding": o.forwarding,
        "recording": o.recording,
    }


def render_after_hours(n: Number) -> dict[str, Any]:
    a = n.after_hours
    return {
        "enabled": a.enabled,
        "announcement": a.announcement,
        "slots": {DayKind(k).value: [SlotAction(s).value for s in v] for k, v in a.slots.items()},
    }


def render_forwarding(n: Number) -> dict[str, Any]:
    return {"enabled": n.forwarding.enabled, "target": n.forwarding.target}


def render_number(n: Number) -> dict[str, Any]:
    return {
        "number": n.e164,
        "tenant_id": n.tenant_id,
        "kind": NumberKind(n.kind).value,
        "label": n.label,
        "label_in_display_name": n.label_in_display_name,
        "app_ring_delay": float(n.app_ring_delay),
        "max_ring_time": float(n.max_ring_time),
        "ring_group": list(n.ring_group),
        "options": render_options(n),
        "after_hours": render_after_hours(n),
        "forwarding": render_forwarding(n),
        "voicemail_ring_time": n.voicemail_ring_time,
        "recording_notice": n.recording_notice,
    }


def ids(ctx: Ctx) -> tuple[Principal, str, str]:
    return ctx.principal, ctx.path["tenant_id"], ctx.path["number"]


async def list_numbers(ctx: Ctx) -> Reply:
    q = ctx.query
    page = await ctx.services.numbers.list_numbers(
        ctx.principal,
        ctx.path["tenant_id"],
        kind=NumberKind(q["kind"]) if "kind" in q else None,
        **page_args(q),
    )
    return Reply(200, page_body(page, render_number))


async def add_number(ctx: Ctx) -> Reply:
    fields = dict(ctx.body)
    if "kind" in fields:
        fields["kind"] = NumberKind(fields["kind"])
    n = await ctx.services.numbers.add_number(
        ctx.principal, ctx.path["tenant_id"], NumberCreate(**fields)
    )
    return Reply(201, render_number(n), {"Location": f"numbers/{n.e164}"})


async def get_number(ctx: Ctx) -> Reply:
    return Reply(200, render_number(await ctx.services.numbers.get_number(*ids(ctx))))


async def update_number(ctx: Ctx) -> Reply:
    n = await ctx.services.numbers.update_number(*ids(ctx), NumberUpdate(**updates(ctx.body)))
    return Reply(200, render_number(n))


async def delete_number(ctx: Ctx) -> Reply:
    await ctx.services.numbers.delete_number(*ids(ctx))
    return Reply(204)


_T = {"tenant_id": TENANT_ID}
N_PARAMS = {"tenant_id": TENANT_ID, "number": NUMBER}
BASE = "/tenants/{tenant_id}/numbers"

OPERATIONS = [
    Operation(
        method="GET",
        path=BASE,
        handler=list_numbers,
        operation_id="listNumbers",
        summary="List the tenant's numbers",
        tag="numbers",
        path_params=_T,
        query={**PAGE_QUERY, "kind": KIND},
        responses={200: NUMBER_PAGE},
    ),
    Operation(
        method="POST",
        path=BASE,
        handler=add_number,
        operation_id="addNumber",
        summary="Add an additional or toll-free number",
        tag="numbers",
        path_params=_T,
        body=NUMBER_CREATE,
        responses={201: NUMBER_SCHEMA},
    ),
    Operation(
        method="GET",
        path=BASE + "/{number}",
        handler=get_number,
        operation_id="getNumber",
        summary="Get a number with all its settings",
        tag="numbers",
        path_params=N_PARAMS,
        responses={200: NUMBER_SCHEMA},
    ),
    Operation(
        method="PATCH",
        path=BASE + "/{number}",
        handler=update_number,
        operation_id="updateNumber",
        summary="Update a number's label and ring timings",
        tag="numbers",
        path_params=N_PARAMS,
        body=NUMBER_UPDATE,
        responses={200: NUMBER_SCHEMA},
    ),
    Operation(
        method="DELETE",
        path=BASE + "/{number}",
        handler=delete_number,
        operation_id="deleteNumber",
        summary="Remove an additional or toll-free number",
        tag="numbers",
        path_params=N_PARAMS,
        responses={204: None},
    ),
]
