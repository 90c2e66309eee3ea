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

The answers to PATCH options / after-hours / forwarding carry `side_effects`: every setting
the change switched although the request did not name it, e.g.
`{"setting": "after_hours.enabled", "from": true, "to": false,
"rule": "forwarding-excludes-after-hours"}` (empty when there was none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioning import rules
from provisioning.model import DayKind, Number, SlotAction
from provisioning.services import (
    SIDE_EFFECT_RULES,
    SWITCHES,
    AfterHoursUpdate,
    ForwardingUpdate,
    OptionsUpdate,
    SettingsChange,
    SideEffect,
)

from ..common import phone_number, updates
from ..core import Ctx, Handler, Operation, Reply
from ..schema import Array, Boolean, Enum, Nullable, Object, Ref, Schema, String
from .numbers import (
    AFTER_HOURS,
    BASE,
    FORWARDING,
    N_PARAMS,
    OPTIONS,
    RECORDING,
    RECORDING_NOTICE,
    RING_GROUP,
    RING_GROUP_IDS,
    SLOTS,
    VOICEMAIL,
    VOICEMAIL_RING_TIME,
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
    {"voicemail_ring_time": VOICEMAIL_RING_TIME},
    required=("voicemail_ring_time",),
    aliases={"ring_time": "voicemail_ring_time"},
)
RECORDING_UPDATE = Object(
    {"recording_notice": RECORDING_NOTICE},
    required=("recording_notice",),
    aliases={"notice": "recording_notice"},
)

SIDE_EFFECT = Ref(
    "SideEffect",
    Object(
        {
            "setting": Enum(list(SWITCHES), description="the setting that changed"),
            "from": Boolean(),
            "to": Boolean(),
            "rule": Enum(
                list(SIDE_EFFECT_RULES),
                description="; ".join(f"{k}: {v}" for k, v in SIDE_EFFECT_RULES.items()),
            ),
        },
        required=("setting", "from", "to", "rule"),
        description="a setting switched by a service rule, not named by the request",
    ),
)
SIDE_EFFECTS = Array(SIDE_EFFECT, description="what else the change switched (may be empty)")


def with_side_effects(name: str, schema: Ref) -> Ref:
    """The answer to a change: the sub-resource and its `side_effects`."""
    inner = schema.inner
    assert isinstance(inner, Object)
    fields = {**inner.fields, "side_effects": SIDE_EFFECTS}
    return Ref(name, Object(fields, required=(*inner.required, "side_effects")))


OPTIONS_CHANGE = with_side_effects("NumberOptionsChange", OPTIONS)
AFTER_HOURS_CHANGE = with_side_effects("AfterHoursChange", AFTER_HOURS)
FORWARDING_CHANGE = with_side_effects("ForwardingChange", FORWARDING)


def render_side_effect(e: SideEffect) -> dict[str, Any]:
    return {"setting": e.setting, "from": e.before, "to": e.after, "rule": e.rule}


def render_change(
    change: SettingsChange, render: Callable[[Number], dict[str, Any]]
) -> dict[str, Any]:
    return {
        **render(change.number),
        "side_effects": [render_side_effect(e) for e in change.side_effects],
    }


def render_voicemail(n: Number) -> dict[str, Any]:
    seconds = n.voicemail_ring_time
    return {"enabled": n.options.voicemail, "voicemail_ring_time": seconds, "ring_time": seconds}


def render_recording(n: Number) -> dict[str, Any]:
    notice = n.recording_notice
    return {"enabled": n.options.recording, "recording_notice": notice, "notice": notice}


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
    change = await ctx.services.number_settings.change_options(
        *ids(ctx), OptionsUpdate(**updates(ctx.body))
    )
    return Reply(200, render_change(change, render_options))


async def get_after_hours(ctx: Ctx) -> Reply:
    return Reply(200, render_after_hours(await _number(ctx)))


async def patch_after_hours(ctx: Ctx) -> Reply:
    fields = updates(ctx.body)
    if "slots" in fields:
        fields["slots"] = {
            DayKind(k): tuple(SlotAction(a) for a in v) for k, v in fields["slots"].items()
        }
    settings = ctx.services.number_settings
    change = await settings.change_after_hours(*ids(ctx), AfterHoursUpdate(**fields))
    return Reply(200, render_change(change, render_after_hours))


async def get_forwarding(ctx: Ctx) -> Reply:
    return Reply(200, render_forwarding(await _number(ctx)))


async def patch_forwarding(ctx: Ctx) -> Reply:
    update = ForwardingUpdate(**updates(ctx.body))
    change = await ctx.services.number_settings.change_forwarding(*ids(ctx), update)
    return Reply(200, render_change(change, render_forwarding))


async def get_voicemail(ctx: Ctx) -> Reply:
    return Reply(200, render_voicemail(await _number(ctx)))


async def patch_voicemail(ctx: Ctx) -> Reply:
    settings = ctx.services.number_settings
    n = await settings.set_voicemail_ring_time(*ids(ctx), ctx.body["voicemail_ring_time"])
    return Reply(200, render_voicemail(n))


async def get_recording(ctx: Ctx) -> Reply:
    return Reply(200, render_recording(await _number(ctx)))


async def patch_recording(ctx: Ctx) -> Reply:
    n = await ctx.services.number_settings.set_recording_notice(
        *ids(ctx), ctx.body["recording_notice"]
    )
    return Reply(200, render_recording(n))


def _pair(
    name: str,
    title: str,
    schema: Schema,
    get: Handler,
    put: Handler,
    update: Schema,
    method: str = "PATCH",
    changed: Schema | None = None,
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
            responses={200: changed or schema},
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
    *_pair(
        "options",
        "subscribed options",
        OPTIONS,
        get_options,
        patch_options,
        OPTIONS_UPDATE,
        changed=OPTIONS_CHANGE,
    ),
    *_pair(
        "after-hours",
        "after-hours schedule and one-touch switch",
        AFTER_HOURS,
        get_after_hours,
        patch_after_hours,
        AFTER_HOURS_UPDATE,
        changed=AFTER_HOURS_CHANGE,
    ),
    *_pair(
        "forwarding",
        "call forwarding",
        FORWARDING,
        get_forwarding,
        patch_forwarding,
        FORWARDING_UPDATE,
        changed=FORWARDING_CHANGE,
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
