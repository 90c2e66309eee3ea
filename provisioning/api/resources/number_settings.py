"""A number's settings, one sub-resource each (what the app and the customer page change):

- `ring-group`: which IDs ring (a non-empty subset of the tenant's IDs);
- `options`: the subscribed options (after-hours, voicemail, forwarding, recording);
  after-hours and forwarding need the tenant's identity check;
- `after-hours`: one-touch ON/OFF, the announcement (template or uploaded prompt) and the
  schedule of 4 day kinds x 48 half-hour slots (ring / announce / forward);
- `forwarding`: target and ON/OFF. ON turns after-hours OFF and vice versa (the service
  applies the exclusion; combine them with `forward` slots instead);
- `voicemail`: the ring time before voicemail answers (5-30 s in steps of 5, never 0);
- `recording`: whether callers hear the "this call is recorded" notice.
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.model import DayKind, Number, SlotAction
from provisioning.services import AfterHoursUpdate, ForwardingUpdate, OptionsUpdate

from ..common import phone_number, updates
from ..core import Ctx, Handler, Operation, Reply
from ..schema import Boolean, Nullable, Object, Schema, String
from .numbers import (
    AFTER_HOURS,
    BASE,
    FORWARDING,
    N_PARAMS,
    OPTIONS,
    RECORDING,
    RING_GROUP,
    RING_GROUP_IDS,
    SLOTS,
    VOICEMAIL,
    ids,
    render_after_hours,
    render_forwarding,
    render_options,
)

OPTIONS_UPDATE = Object(
    {k: Boolean() for k in ("after_hours", "voicemail", "forwarding", "recording")},
    min_properties=1,
)
AFTER_HOURS_UPDATE = Object(
    {
        "enabled": Boolean(description="one-touch ON/OFF; ON turns forwarding OFF"),
        "announcement": String(
            min_length=1,
            max_length=rules.ANNOUNCEMENT_MAX,
            description="template-1..3 or prompt:<prompt id>",
        ),
        "slots": SLOTS,
    },
    min_properties=1,
)
FORWARDING_UPDATE = Object(
    {
        "enabled": Boolean(description="ON turns the after-hours announcement OFF"),
        "target": Nullable(phone_number("any Japanese number, mobiles included")),
    },
    min_properties=1,
)
RING_GROUP_UPDATE = Object({"ring_group": RING_GROUP_IDS}, required=("ring_group",))
VOICEMAIL_UPDATE = Object(
    {"ring_time": VOICEMAIL.inner.fields["ring_time"]},  # type: ignore[attr-defined]
    required=("ring_time",),
)
RECORDING_UPDATE = Object({"notice": Boolean()}, required=("notice",))


def render_voicemail(n: Number) -> dict[str, Any]:
    return {"enabled": n.options.voicemail, "ring_time": n.voicemail_ring_time}


def render_recording(n: Number) -> dict[str, Any]:
    return {"enabled": n.options.recording, "notice": n.recording_notice}


def render_ring_group(n: Number) -> dict[str, Any]:
    return {"ring_group": list(n.ring_group)}


async def _number(ctx: Ctx) -> Number:
    return await ctx.services.number_settings.get_number(*ids(ctx))


async def get_ring_group(ctx: Ctx) -> Reply:
    return Reply(200, render_ring_group(await _number(ctx)))


async def put_ring_group(ctx: Ctx) -> Reply:
    n = await ctx.services.number_settings.set_ring_group(*ids(ctx), ctx.body["ring_group"])
    return Reply(200, render_ring_group(n))


async def get_options(ctx: Ctx) -> Reply:
    return Reply(200, render_options(await _number(ctx)))


async def patch_options(ctx: Ctx) -> Reply:
    n = await ctx.services.number_settings.set_options(
        *ids(ctx), OptionsUpdate(**updates(ctx.body))
    )
    return Reply(200, render_options(n))


async def get_after_hours(ctx: Ctx) -> Reply:
    return Reply(200, render_after_hours(await _number(ctx)))


async def patch_after_hours(ctx: Ctx) -> Reply:
    fields = updates(ctx.body)
    if "slots" in fields:
        fields["slots"] = {
            DayKind(k): tuple(SlotAction(a) for a in v) for k, v in fields["slots"].items()
        }
    n = await ctx.services.number_settings.set_after_hours(*ids(ctx), AfterHoursUpdate(**fields))
    return Reply(200, render_after_hours(n))


async def get_forwarding(ctx: Ctx) -> Reply:
    return Reply(200, render_forwarding(await _number(ctx)))


async def patch_forwarding(ctx: Ctx) -> Reply:
    update = ForwardingUpdate(**updates(ctx.body))
    n = await ctx.services.number_settings.set_forwarding(*ids(ctx), update)
    return Reply(200, render_forwarding(n))


async def get_voicemail(ctx: Ctx) -> Reply:
    return Reply(200, render_voicemail(await _number(ctx)))


async def patch_voicemail(ctx: Ctx) -> Reply:
    settings = ctx.services.number_settings
    n = await settings.set_voicemail_ring_time(*ids(ctx), ctx.body["ring_time"])
    return Reply(200, render_voicemail(n))


async def get_recording(ctx: Ctx) -> Reply:
    return Reply(200, render_recording(await _number(ctx)))


async def patch_recording(ctx: Ctx) -> Reply:
    n = await ctx.services.number_settings.set_recording_notice(*ids(ctx), ctx.body["notice"])
    return Reply(200, render_recording(n))


def _pair(
    name: str,
    title: str,
    schema: Schema,
    get: Handler,
    put: Handler,
    update: Schema,
    method: str = "PATCH",
) -> list[Operation]:
    path = f"{BASE}/{{number}}/{name}"
    suffix = "".join(w.capitalize() for w in name.split("-"))
    return [
        Operation(
            method="GET",
            path=path,
            handler=get,
            operation_id=f"get{suffix}",
            summary=f"Get the number's {title}",
            tag="number settings",
            path_params=N_PARAMS,
            responses={200: schema},
        ),
        Operation(
            method=method,
            path=path,
            handler=put,
            operation_id=f"set{suffix}",
            summary=f"Change the number's {title}",
            tag="number settings",
            path_params=N_PARAMS,
            body=update,
            responses={200: schema},
        ),
    ]


OPERATIONS = [
    *_pair(
        "ring-group",
        "ring group",
        RING_GROUP,
        get_ring_group,
        put_ring_group,
        RING_GROUP_UPDATE,
        method="PUT",
    ),
    *_pair("options", "subscribed options", OPTIONS, get_options, patch_options, OPTIONS_UPDATE),
    *_pair(
        "after-hours",
        "after-hours schedule and one-touch switch",
        AFTER_HOURS,
        get_after_hours,
        patch_after_hours,
        AFTER_HOURS_UPDATE,
    ),
    *_pair(
        "forwarding",
        "call forwarding",
        FORWARDING,
        get_forwarding,
        patch_forwarding,
        FORWARDING_UPDATE,
    ),
    *_pair(
        "voicemail",
        "voicemail ring time",
        VOICEMAIL,
        get_voicemail,
        patch_voicemail,
        VOICEMAIL_UPDATE,
    ),
    *_pair(
        "recording", "recording notice", RECORDING, get_recording, patch_recording, RECORDING_UPDATE
    ),
]
