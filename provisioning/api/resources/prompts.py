"""Prompts: the tenant's uploaded announcement audio (at most `rules.MAX_PROMPTS`, each upload
at most `rules.MAX_PROMPT_BYTES`). Upload the raw audio as the request body with its media type
and the prompt's name in the query: `POST /v1/tenants/{id}/prompts?name=Closed` with
`Content-Type: audio/mpeg` (or any of `AUDIO_TYPES`). Use it in a schedule as
`announcement = "prompt:<id>"`.

With the converter the switch injects (app.py), the file's format is recognised from its
content, whatever the Content-Type says: WAV of any rate/width/channels, FLAC, Ogg, MP3,
M4A/AAC are stored as 8 kHz 16-bit mono WAV (`content_type` "audio/wav", `size` the stored
size); anything else is refused with an `audio-*` error_id (415 unreadable format, 422 damaged,
empty, silent or longer than `rules.MAX_PROMPT_SECONDS`) and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provisioning import rules
from provisioning.records import PromptInfo

from ..audio import Binary
from ..common import PROMPT_ID, TENANT_ID, TIMESTAMP, iso
from ..core import Ctx, Operation, Reply
from ..schema import Array, Integer, Object, Ref, String

# What people upload: WAV (several names in the wild), MP3, M4A/AAC from phones, FLAC, Ogg,
# and files a browser does not know the type of. The converter sniffs the content anyway.
AUDIO_TYPES = (
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "audio/basic",
    "audio/mpeg",
    "audio/mp3",
    "audio/mp4",
    "audio/x-m4a",
    "audio/m4a",
    "audio/aac",
    "audio/x-aac",
    "audio/flac",
    "audio/x-flac",
    "audio/ogg",
    "audio/opus",
    "application/ogg",
    "application/octet-stream",
)
__all__ = ["AUDIO_TYPES", "OPERATIONS", "PROMPT", "Binary", "render_prompt"]

PROMPT = Ref(
    "Prompt",
    Object(
        {
            "id": String(),
            "tenant_id": String(),
            "name": String(),
            "content_type": String(),
            "size": Integer(minimum=0),
            "created_at": TIMESTAMP,
            "announcement": String(description="the value to use as an announcement"),
        },
        required=("id", "tenant_id", "name", "content_type", "size", "created_at", "announcement"),
    ),
)
PROMPT_LIST = Ref("PromptList", Object({"items": Array(PROMPT)}, required=("items",)))


def render_prompt(p: PromptInfo) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant_id": p.tenant_id,
        "name": p.name,
        "content_type": p.content_type,
        "size": p.size,
        "created_at": iso(p.created_at),
        "announcement": f"prompt:{p.id}",
    }


async def list_prompts(ctx: Ctx) -> Reply:
    prompts = await ctx.services.prompts.list_prompts(ctx.principal, ctx.path["tenant_id"])
    return Reply(200, {"items": [render_prompt(p) for p in prompts]})


async def create_prompt(ctx: Ctx) -> Reply:
    info = await ctx.services.prompts.create_prompt(
        ctx.principal,
        ctx.path["tenant_id"],
        name=ctx.query["name"],
        audio=ctx.body,
        content_type=ctx.request.content_type,
        convert=ctx.converter,
    )
    return Reply(201, render_prompt(info), {"Location": f"prompts/{info.id}"})


async def _audio(ctx: Ctx) -> tuple[PromptInfo, bytes]:
    p = ctx.path
    return await ctx.services.prompts.get_prompt_audio(
        ctx.principal, p["tenant_id"], p["prompt_id"]
    )


async def get_prompt(ctx: Ctx) -> Reply:
    info, _ = await _audio(ctx)
    return Reply(200, render_prompt(info))


async def get_prompt_audio(ctx: Ctx) -> web.StreamResponse:
    info, audio = await _audio(ctx)
    return web.Response(body=audio, content_type=info.content_type)


async def delete_prompt(ctx: Ctx) -> Reply:
    p = ctx.path
    await ctx.services.prompts.delete_prompt(ctx.principal, p["tenant_id"], p["prompt_id"])
    return Reply(204)


_T = {"tenant_id": TENANT_ID}
_P = {"tenant_id": TENANT_ID, "prompt_id": PROMPT_ID}
_BASE = "/tenants/{tenant_id}/prompts"

OPERATIONS = [
    Operation(
        method="GET",
        path=_BASE,
        handler=list_prompts,
        operation_id="listPrompts",
        summary=f"List the tenant's prompts (at most {rules.MAX_PROMPTS})",
        tag="prompts",
        path_params=_T,
        responses={200: PROMPT_LIST},
    ),
    Operation(
        method="POST",
        path=_BASE,
        handler=create_prompt,
        operation_id="uploadPrompt",
        summary="Upload an announcement (raw audio body, name in the query)",
        description=(
            "WAV, MP3, M4A/AAC, FLAC or Ogg, recognised from the content and stored as 8 kHz "
            "16-bit mono WAV; refused files answer 415 audio-unsupported-format / "
            "audio-codec-unavailable or 422 audio-corrupt / audio-empty / audio-silent / "
            "audio-too-long, and nothing is stored."
        ),
        tag="prompts",
        path_params=_T,
        query={"name": String(min_length=1, max_length=rules.PROMPT_NAME_MAX)},
        query_required=("name",),
        raw_body={t: Binary(rules.MAX_PROMPT_BYTES) for t in AUDIO_TYPES},
        body_limit=rules.MAX_PROMPT_BYTES,
        responses={201: PROMPT},
        errors=(422,),
    ),
    Operation(
        method="GET",
        path=_BASE + "/{prompt_id}",
        handler=get_prompt,
        operation_id="getPrompt",
        summary="Get a prompt's description",
        tag="prompts",
        path_params=_P,
        responses={200: PROMPT},
    ),
    Operation(
        method="GET",
        path=_BASE + "/{prompt_id}/audio",
        handler=get_prompt_audio,
        operation_id="getPromptAudio",
        summary="Download a prompt's audio",
        tag="prompts",
        path_params=_P,
        responses={200: Binary(rules.MAX_PROMPT_BYTES)},
        response_media=AUDIO_TYPES,
    ),
    Operation(
        method="DELETE",
        path=_BASE + "/{prompt_id}",
        handler=delete_prompt,
        operation_id="deletePrompt",
        summary="Delete a prompt (refused while in use)",
        tag="prompts",
        path_params=_P,
        responses={204: None},
    ),
]
