"""Uploaded prompts: a tenant's own announcement audio (the `prompts` API resource).

Decision: the audio is kept in the database (BYTEA / BLOB), at most `rules.MAX_PROMPT_BYTES`
each and `rules.MAX_PROMPTS` per tenant: one transaction covers the row and the audio (no
orphan files, no file left behind by a refused request), one backup covers everything; the
media side reads it with `get_prompt_audio` and may cache it. A prompt is used as
`announcement = "prompt:<id>"` and cannot be deleted while a number announces it.

Conversion at upload: given an `AudioConverter` (the composition root injects one over
`media.convert`; provisioning never imports media), `create_prompt` converts whatever the
tenant uploaded (WAV of any rate/width, MP3, M4A …) to the stored form, an 8 kHz 16-bit mono
WAV (`STORED_CONTENT_TYPE`), in a worker thread and before the write transaction. A refused
file raises one of the `AUDIO_ERROR_IDS` and nothing is stored. The size limit applies to the
upload as received. Without a converter the upload is stored as it came, with its media type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from .. import fields, rules
from ..errors import NotFound, ProvisioningError, RuleViolation, TooLarge
from ..records import PromptInfo
from ..store.base import utcnow_text
from ..store.queries import prompts
from ..store.queries.sql import ts
from .base import Principal, StoreService, new_id, require_tenant, tenant_state

__all__ = [
    "AUDIO_ERROR_IDS",
    "STORED_CONTENT_TYPE",
    "AudioConverter",
    "InvalidAudio",
    "PromptService",
    "UnsupportedAudio",
    "audio_refused",
]

STORED_CONTENT_TYPE = "audio/wav"


class AudioConverter(Protocol):
    """Blocking conversion of an uploaded file to the stored WAV: returns (wav, seconds), or
    raises a `ProvisioningError` (`audio_refused(error_id, message)`) for a refused file."""

    def __call__(
        self, data: bytes, *, max_bytes: int, max_seconds: float
    ) -> tuple[bytes, float]: ...


class UnsupportedAudio(ProvisioningError):
    """Not a format the converter reads (or cannot read on this host)."""

    status = 415


class InvalidAudio(ProvisioningError):
    """A file of a known format that is refused for its content."""

    status = 422


# The converter's error_ids and the HTTP status each is answered with. 415 when the server
# cannot read the format at all (the client should send another format), 422 when the file
# was read but is not acceptable (damaged, empty, silent, too long), 413 like the upload limit.
AUDIO_ERROR_IDS: Mapping[str, int] = {
    "audio-too-large": 413,
    "audio-unsupported-format": 415,
    "audio-codec-unavailable": 415,
    "audio-corrupt": 422,
    "audio-empty": 422,
    "audio-silent": 422,
    "audio-too-long": 422,
}


def audio_refused(error_id: str, message: str) -> ProvisioningError:
    """The provisioning error for a converter's refusal `error_id` (kept as it is); an id
    not in `AUDIO_ERROR_IDS` is a 422."""
    details = {"rule": "prompt audio", "max_seconds": rules.MAX_PROMPT_SECONDS}
    match AUDIO_ERROR_IDS.get(error_id, 422):
        case 413:
            return TooLarge(error_id, message, {**details, "limit": rules.MAX_PROMPT_BYTES})
        case 415:
            return UnsupportedAudio(error_id, message, details)
        case _:
            return InvalidAudio(error_id, message, details)


class PromptService(StoreService):
    __slots__ = ()

    async def create_prompt(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name: str,
        audio: bytes,
        content_type: str = "audio/wav",
        convert: AudioConverter | None = None,
    ) -> PromptInfo:
        """Errors: too-many-prompts, prompt-too-large, invalid-input (empty audio or name);
        with `convert`, the `AUDIO_ERROR_IDS` (an empty upload is then audio-empty)."""
        principal.require_tenant(tenant_id)
        name = fields.text_field(name, "name", 1, rules.PROMPT_NAME_MAX)
        if convert is not None and not audio:
            raise audio_refused("audio-empty", "the uploaded file is empty")
        rules.check_prompt_audio(audio)
        content_type = fields.text_field(content_type, "content_type", 1, rules.CONTENT_TYPE_MAX)
        if convert is not None:
            await self._check_room(tenant_id)  # refuse before spending CPU on the file
            audio = await _converted(convert, audio)
            content_type = STORED_CONTENT_TYPE
        info = PromptInfo(
            id=new_id("p"),
            tenant_id=tenant_id,
            name=name,
            content_type=content_type,
            size=len(audio),
            created_at=ts(utcnow_text()),
        )
        async with self.store.write() as tx:
            await require_tenant(tx, tenant_id)
            rules.check_prompt_count(await prompts.count(tx, tenant_id) + 1)
            await prompts.insert_prompt(tx, info, audio)
        return info

    async def _check_room(self, tenant_id: str) -> None:
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            rules.check_prompt_count(await prompts.count(tx, tenant_id) + 1)

    async def list_prompts(self, principal: Principal, tenant_id: str) -> list[PromptInfo]:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            return await prompts.list_infos(tx, tenant_id)

    async def get_prompt_audio(
        self, principal: Principal, tenant_id: str, prompt_id: str
    ) -> tuple[PromptInfo, bytes]:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            found = await prompts.get_with_audio(tx, tenant_id, prompt_id)
        if found is None:
            raise NotFound("prompt", prompt_id)
        return found

    async def delete_prompt(self, principal: Principal, tenant_id: str, prompt_id: str) -> None:
        """Refused (prompt-in-use) while a number's announcement names it."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            if prompt_id not in st.prompt_ids:
                raise NotFound("prompt", prompt_id)
            announcement = rules.PROMPT_PREFIX + prompt_id
            users = [n.e164 for n in st.numbers if n.after_hours.announcement == announcement]
            if users:
                raise RuleViolation(
                    "prompt-in-use",
                    "numbers announce this prompt",
                    {"rule": "a prompt in use stays", "numbers": users},
                )
            await prompts.delete_prompt(tx, prompt_id)


async def _converted(convert: AudioConverter, upload: bytes) -> bytes:
    """The stored WAV made from `upload` (blocking work, so in a worker thread)."""
    wav, _seconds = await asyncio.to_thread(
        convert, upload, max_bytes=rules.MAX_PROMPT_BYTES, max_seconds=rules.MAX_PROMPT_SECONDS
    )
    if not wav:
        raise InvalidAudio("audio-empty", "the converted audio is empty", {"rule": "prompt audio"})
    return wav
