"""One module per resource: its schemas, handlers and `OPERATIONS` (wazo-confd style).
Each module's handlers call their own service (`ctx.services.<resource>`, see
`provisioning.services`); `tokens.py` serves the realm too (`ctx.services.realm`)."""

from __future__ import annotations

from ..core import Operation
from . import (
    audit,
    calls,
    devices,
    gateways,
    live,
    number_settings,
    numbers,
    phonebook,
    prompts,
    recordings,
    statements,
    tenants,
    tokens,
    voicemail,
)

ALL_OPERATIONS: list[Operation] = [
    *tenants.OPERATIONS,
    *devices.OPERATIONS,
    *numbers.OPERATIONS,
    *number_settings.OPERATIONS,
    *voicemail.OPERATIONS,
    *recordings.OPERATIONS,
    *prompts.OPERATIONS,
    *phonebook.OPERATIONS,
    *gateways.OPERATIONS,
    *tokens.OPERATIONS,
    *audit.OPERATIONS,
    *calls.OPERATIONS,
    *statements.OPERATIONS,
    *live.OPERATIONS,
]

__all__ = ["ALL_OPERATIONS"]
