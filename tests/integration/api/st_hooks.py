"""Schemathesis hooks for the API test (loaded with SCHEMATHESIS_HOOKS): prompt uploads are
raw audio bodies, which schemathesis has no serializer for out of the box."""

from __future__ import annotations

from typing import Any

import schemathesis

from provisioning.api.resources.prompts import AUDIO_TYPES


@schemathesis.serializer(*AUDIO_TYPES)
def audio(ctx: Any, value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
