"""What the switch holds now (provisioning.services.live): active calls, ending one, and
registrations per device. Read from the switch's shared state, so on Redis they are the
whole cluster's, whichever node answers.

    GET    /v1/tenants/{tenant_id}/active-calls              the calls holding a channel
    DELETE /v1/tenants/{tenant_id}/active-calls/{call_id}    end one (BYE both ways, or CANCEL
                                                             while ringing), lease freed
    GET    /v1/tenants/{tenant_id}/registrations?device=…    contacts per device

A Call-ID goes URL-encoded in the path. Ending a call no process here holds (the node that
set it up was restarted, or it is another node's) releases its lease and says
`signalled: false`. 503 `live-state-unavailable` when the switch's state cannot be reached.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from provisioning.services.live import ActiveCall, CallEnded, LiveService, Registration

from ..common import TENANT_ID, TIMESTAMP, ident
from ..core import Ctx, Operation, PathParam, Reply
from ..schema import Array, Boolean, Integer, Nullable, Object, Ref, String

__all__ = ["API_LIVE", "OPERATIONS"]

API_LIVE = web.AppKey("api_live", LiveService)

CALL_ID = PathParam(
    schema=String(pattern=r"[!-~]{1,256}"),
    what="call",
    description="the call's SIP Call-ID, URL-encoded",
)
_TEXT = Nullable(String(any_text=True))
_CALL_FIELDS = {
    "call_id": String(any_text=True),
    "caller": _TEXT,
    "called": _TEXT,
    "started_at": TIMESTAMP,
    "answered_at": Nullable(TIMESTAMP),
    "answered": Boolean(),
    "node": String(any_text=True),
}
ACTIVE_CALL = Ref("ActiveCall", Object(_CALL_FIELDS, required=tuple(_CALL_FIELDS)))
_ENDED_FIELDS = {
    "call_id": String(any_text=True),
    "ended": Boolean(),
    "signalled": Boolean(
        description="true: BYE both ways (CANCEL if ringing); false: no process here held the"
        " call, only its lease was released"
    ),
    "node": String(any_text=True),
}
CALL_ENDED = Ref("CallEnded", Object(_ENDED_FIELDS, required=tuple(_ENDED_FIELDS)))
_REG_FIELDS = {
    "device_id": String(),
    "contact": String(any_text=True),
    "transport": String(),
    "source": String(any_text=True, description="host:port the REGISTER came from"),
    "user_agent": _TEXT,
    "expires_at": TIMESTAMP,
    "expires_in": Integer(minimum=0),
    "node": String(any_text=True),
}
REGISTRATION = Ref("Registration", Object(_REG_FIELDS, required=tuple(_REG_FIELDS)))


def _items(schema: Ref, name: str) -> Ref:
    return Ref(name, Object({"items": Array(schema)}, required=("items",)))


def render_call(c: ActiveCall) -> dict[str, Any]:
    return {
        "call_id": c.call_id, "caller": c.caller, "called": c.called,
        "started_at": c.started.isoformat(),
        "answered_at": None if c.answered is None else c.answered.isoformat(),
        "answered": c.answered is not None, "node": c.node,
    }  # fmt: skip


def render_registration(r: Registration, now: float) -> dict[str, Any]:
    return {
        "device_id": r.device_id, "contact": r.contact, "transport": r.transport,
        "source": r.source, "user_agent": r.user_agent, "expires_at": r.expires.isoformat(),
        "expires_in": max(0, int(r.expires.timestamp() - now)), "node": r.node,
    }  # fmt: skip


def render_ended(e: CallEnded) -> dict[str, Any]:
    return {"call_id": e.call_id, "ended": True, "signalled": e.signalled, "node": e.node}


def _service(ctx: Ctx) -> LiveService:
    return ctx.request.app[API_LIVE]


async def list_active_calls(ctx: Ctx) -> Reply:
    found = await _service(ctx).active_calls(ctx.principal, ctx.path["tenant_id"])
    return Reply(200, {"items": [render_call(c) for c in found]})


async def end_active_call(ctx: Ctx) -> Reply:
    p = ctx.path
    ended = await _service(ctx).end_call(ctx.principal, p["tenant_id"], p["call_id"])
    return Reply(200, render_ended(ended))


async def list_registrations(ctx: Ctx) -> Reply:
    device = ctx.query.get("device")
    found = await _service(ctx).registrations(ctx.principal, ctx.path["tenant_id"], device)
    now = time.time()
    return Reply(200, {"items": [render_registration(r, now) for r in found]})


OPERATIONS = [
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/active-calls",
        handler=list_active_calls,
        operation_id="listActiveCalls",
        summary="Calls holding one of the tenant's channels now (every node), oldest first",
        tag="live",
        path_params={"tenant_id": TENANT_ID},
        responses={200: _items(ACTIVE_CALL, "ActiveCallList")},
        errors=(503,),
    ),
    Operation(
        method="DELETE",
        path="/tenants/{tenant_id}/active-calls/{call_id}",
        handler=end_active_call,
        operation_id="endActiveCall",
        summary="End a call: BYE to both ends, its channel released",
        tag="live",
        path_params={"tenant_id": TENANT_ID, "call_id": CALL_ID},
        responses={200: CALL_ENDED},
        errors=(503,),
    ),
    Operation(
        method="GET",
        path="/tenants/{tenant_id}/registrations",
        handler=list_registrations,
        operation_id="listRegistrations",
        summary="The tenant's registered contacts, per device (every node)",
        tag="live",
        path_params={"tenant_id": TENANT_ID},
        query={"device": ident("one ID only")},
        responses={200: _items(REGISTRATION, "RegistrationList")},
        errors=(503,),
    ),
]
