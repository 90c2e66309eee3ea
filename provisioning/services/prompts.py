"""Uploaded prompts: a tenant's own announcement audio (the `prompts` API resource).

Decision: the audio is kept in the database (BYTEA / BLOB), at most `rules.MAX_PROMPT_BYTES`
each and `rules.MAX_PROMPTS` per tenant: one transaction covers the row and the audio (no
orphan files, no file left behind by a refused request), one backup covers everything; the
media side reads it with `get_prompt_audio` and may cache it. A prompt is used as
`announcement = "prompt:<id>"` and cannot be deleted while a number announces it.
"""

from __future__ import annotations

from .. import rules
from ..errors import NotFound, RuleViolation
from ..records import PromptInfo
from ..store.base import utcnow_text
from ..store.queries import prompts
from ..store.queries.sql import ts
from .base import Principal, StoreService, new_id, require_tenant, tenant_state

__all__ = ["PromptService"]


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
    ) -> PromptInfo:
        """Errors: too-many-prompts, prompt-too-large, invalid-input (empty audio or name)."""
        principal.require_tenant(tenant_id)
        name = rules.text_field(name, "name", 1, rules.PROMPT_NAME_MAX)
        rules.check_prompt_audio(audio)
        info = PromptInfo(
            id=new_id("p"),
            tenant_id=tenant_id,
            name=name,
            content_type=rules.text_field(content_type, "content_type", 1, rules.CONTENT_TYPE_MAX),
            size=len(audio),
            created_at=ts(utcnow_text()),
        )
        async with self.store.write() as tx:
            await require_tenant(tx, tenant_id)
            rules.check_prompt_count(await prompts.count(tx, tenant_id) + 1)
            await prompts.insert_prompt(tx, info, audio)
        return info

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
