"""Uploaded announcements for the media service: `media.voicemail.PromptSource` over the
provisioning store (the `prompts` resource keeps each tenant's files, converted at upload to
8 kHz 16-bit mono WAV). Part of the composition root: it joins provisioning and media, which
do not know each other.

Prompts are read once and cached (bounded, least recently used first out); a prompt deleted
through the API cannot be in use (provisioning refuses to delete an announcement a number
names), so a stale cache entry is harmless and ages out.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from media.errors import AudioError
from media.wav import read_wav
from provisioning.errors import ProvisioningError
from provisioning.rules import PROMPT_PREFIX
from provisioning.services import Principal, Services

__all__ = ["StorePrompts"]

log = logging.getLogger(__name__)


class StorePrompts:
    def __init__(self, services: Services, capacity: int = 64) -> None:
        self._services = services
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    async def pcm(self, tenant_id: str, name: str) -> bytes | None:
        if not name.startswith(PROMPT_PREFIX):
            return None
        key = (tenant_id, name)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        prompt_id = name.removeprefix(PROMPT_PREFIX)
        try:
            _, audio = await self._services.prompts.get_prompt_audio(
                Principal.operator(), tenant_id, prompt_id
            )
            pcm = read_wav(audio)
        except (ProvisioningError, AudioError) as exc:
            log.warning("prompt %s of tenant %s unusable: %s", name, tenant_id, exc)
            return None
        self._cache[key] = pcm
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return pcm
