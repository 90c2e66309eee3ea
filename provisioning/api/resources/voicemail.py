"""Voicemail messages of a tenant number with the voicemail option (the media service records
them; the service deletes each 7 days after it was received). The number is given as in the
rest of the API (E.164 with the + URL-encoded, or national); `…/voicemail` itself is the
number's voicemail *settings* (number_settings.py), the messages are under
`…/voicemail/messages`:

    GET    …/voicemail/messages[?heard=false]   newest first
    POST   …/voicemail/messages/delete          {"ids": [...]} -> what was deleted, what not
    GET    …/voicemail/messages/{message_id}    the message's description
    PATCH  …/voicemail/messages/{message_id}    {"heard": true|false}
    DELETE …/voicemail/messages/{message_id}
    GET    …/voicemail/messages/{message_id}/audio   audio/wav (8 kHz 16-bit mono), byte ranges

A message of another mailbox or tenant is 404 not-found, like one that does not exist; a
number without the voicemail option is 409 option-required (every operation, reads too).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provisioning import rules
from provisioning.records import MessageInfo
from provisioning.services import Principal

from ..audio import Binary, byte_range, wav_bytes
from ..common import E164, ID_PATTERN, TIMESTAMP, iso
from ..core import Ctx, PathParam, Reply
from ..core import Operation as Op
from ..schema import Array, Boolean, Nullable, Object, Ref, String
from ..schema import Number as Num
from .numbers import BASE, N_PARAMS

__all__ = ["MESSAGE", "OPERATIONS", "render_message"]

WAV = "audio/wav"
MESSAGE_ID = PathParam(
    schema=String(pattern=ID_PATTERN), what="voicemail message", description="message id"
)
MESSAGE = Ref(
    "VoicemailMessage",
    Object(
        {
            "id": String(),
            "mailbox": E164,
            "caller": Nullable(String(any_text=True), description="the caller as received"),
            "dialled": String(description="the number dialled"),
            "received_at": TIMESTAMP,
            "duration": Num(minimum=0, description="seconds"),
            "heard": Boolean(),
        },
        required=("id", "mailbox", "caller", "dialled", "received_at", "duration", "heard"),
    ),
)
MESSAGE_LIST = Ref("VoicemailMessageList", Object({"items": Array(MESSAGE)}, required=("items",)))
MARK = Object({"heard": Boolean()}, required=("heard",))
IDS = Object(
    {"ids": Array(String(pattern=ID_PATTERN), min_items=1, max_items=rules.VOICEMAIL_DELETE_MAX)},
    required=("ids",),
)
DELETED = Ref(
    "VoicemailDeleted",
    Object(
        {
            "deleted": Array(MESSAGE, description="the messages deleted"),
            "not_found": Array(String(), description="ids that are not in this mailbox"),
        },
        required=("deleted", "not_found"),
    ),
)
# Longest message as a WAV file: its 44-octet header and 30 s of 8 kHz 16-bit PCM (plus a
# second: the recorder stops at the first frame past the limit).
MAX_WAV = 44 + int((rules.VOICEMAIL_MAX_SECONDS + 1) * 16000)


def render_message(m: MessageInfo) -> dict[str, Any]:
    return {
        "id": m.id,
        "mailbox": m.mailbox,
        "caller": m.caller,
        "dialled": m.dialled,
        "received_at": iso(m.received_at),
        "duration": round(m.duration, 3),
        "heard": m.heard,
    }


def _box(ctx: Ctx) -> tuple[Principal, str, str]:
    return ctx.principal, ctx.path["tenant_id"], ctx.path["number"]


def _msg(ctx: Ctx) -> tuple[Principal, str, str, str]:
    return (*_box(ctx), ctx.path["message_id"])


async def list_messages(ctx: Ctx) -> Reply:
    found = await ctx.mailboxes.list_messages(*_box(ctx), heard=ctx.query.get("heard"))
    return Reply(200, {"items": [render_message(m) for m in found]})


async def get_message(ctx: Ctx) -> Reply:
    return Reply(200, render_message(await ctx.mailboxes.get_message(*_msg(ctx))))


async def mark_message(ctx: Ctx) -> Reply:
    info = await ctx.mailboxes.mark(*_msg(ctx), ctx.body["heard"])
    return Reply(200, render_message(info))


async def delete_message(ctx: Ctx) -> Reply:
    await ctx.mailboxes.delete(*_msg(ctx))
    return Reply(204)


async def delete_messages(ctx: Ctx) -> Reply:
    done = await ctx.mailboxes.delete_many(*_box(ctx), ctx.body["ids"])
    deleted = [render_message(m) for m in done.deleted]
    return Reply(200, {"deleted": deleted, "not_found": list(done.not_found)})


async def get_audio(ctx: Ctx) -> web.StreamResponse:
    """The message as a WAV file; one byte range when asked (RFC 9110 §14). The audio never
    changes, so the message id is a strong validator (ETag, If-Range)."""
    info, pcm = await ctx.mailboxes.get_audio(*_msg(ctx))
    wav = wav_bytes(pcm)
    etag = f'"{info.id}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": f'inline; filename="{info.id}.wav"',
    }
    if_range = ctx.request.headers.get("If-Range")
    wanted = ctx.request.headers.get("Range") if if_range in (None, etag) else None
    span = byte_range(wanted, len(wav))
    if span is None:
        return web.Response(body=wav, content_type=WAV, headers=headers)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{len(wav)}"
    return web.Response(status=206, body=wav[first : last + 1], content_type=WAV, headers=headers)


BOX = BASE + "/{number}/voicemail/messages"
ONE = BOX + "/{message_id:(?!delete$)[^/]+}"
_B = N_PARAMS
_M = {**N_PARAMS, "message_id": MESSAGE_ID}
_TAG = "voicemail"

OPERATIONS = [
    Op(
        method="GET",
        path=BOX,
        errors=(409,),
        handler=list_messages,
        operation_id="listVoicemailMessages",
        summary="List the number's voicemail messages, newest first",
        tag=_TAG,
        path_params=_B,
        query={"heard": Boolean(description="only heard (true) or unheard (false) messages")},
        responses={200: MESSAGE_LIST},
    ),
    Op(
        method="POST",
        path=BOX + "/delete",
        handler=delete_messages,
        operation_id="deleteVoicemailMessages",
        summary="Delete several messages; ids not in this mailbox are reported, not deleted",
        tag=_TAG,
        path_params=_B,
        body=IDS,
        responses={200: DELETED},
    ),
    Op(
        method="GET",
        path=ONE,
        errors=(409,),
        handler=get_message,
        operation_id="getVoicemailMessage",
        summary="Get a message's description",
        tag=_TAG,
        path_params=_M,
        responses={200: MESSAGE},
    ),
    Op(
        method="PATCH",
        path=ONE,
        handler=mark_message,
        operation_id="markVoicemailMessage",
        summary="Mark a message heard or unheard",
        tag=_TAG,
        path_params=_M,
        body=MARK,
        responses={200: MESSAGE},
    ),
    Op(
        method="DELETE",
        path=ONE,
        handler=delete_message,
        operation_id="deleteVoicemailMessage",
        summary="Delete a message",
        tag=_TAG,
        path_params=_M,
        responses={204: None},
    ),
    Op(
        method="GET",
        path=ONE + "/audio",
        handler=get_audio,
        operation_id="getVoicemailAudio",
        summary="Download a message as audio/wav (8 kHz, 16-bit, mono)",
        description=(
            "A single byte range (Range: bytes=first-last) answers 206 with Content-Range; "
            "a range starting past the end answers 416 range-not-satisfiable."
        ),
        tag=_TAG,
        path_params=_M,
        responses={200: Binary(MAX_WAV), 206: Binary(MAX_WAV)},
        response_media=WAV,
        errors=(409, 416),
    ),
]
