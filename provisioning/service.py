"""Compatibility names: the module the provisioning service used to be.

The services now live in `provisioning.services` (one module per resource, SQL in
`provisioning.store.queries`). This module keeps the old import path working for
`provisioning/cli.py` and `provisioning/embedded.py`, which move with the switch's
composition root; once they import `provisioning.services`, it can go.
"""

from __future__ import annotations

from .records import DeviceInfo, PhonebookEntry, PromptInfo, Scope, TokenInfo
from .services import (
    UNSET,
    AfterHoursUpdate,
    CreatedToken,
    DeviceCreate,
    DeviceUpdate,
    ForwardingUpdate,
    GatewayInput,
    GatewayUpdate,
    NumberCreate,
    NumberUpdate,
    OptionsUpdate,
    Page,
    PhonebookEntryInput,
    PhonebookImportResult,
    Principal,
    SeedImportResult,
    Services,
    TenantCreate,
    TenantUpdate,
    import_seed,
)

__all__ = [
    "UNSET",
    "AfterHoursUpdate",
    "CreatedToken",
    "DeviceCreate",
    "DeviceInfo",
    "DeviceUpdate",
    "ForwardingUpdate",
    "GatewayInput",
    "GatewayUpdate",
    "NumberCreate",
    "NumberUpdate",
    "OptionsUpdate",
    "Page",
    "PhonebookEntry",
    "PhonebookEntryInput",
    "PhonebookImportResult",
    "Principal",
    "PromptInfo",
    "SeedImportResult",
    "Service",
    "TenantCreate",
    "TenantUpdate",
    "TokenInfo",
    "import_seed",
]


class Service(Services):
    """`Services`, plus `create_token` where `provisioning/cli.py` calls it
    (`Service(store).create_token(...)`); new code calls `services.tokens.create_token`."""

    __slots__ = ()

    async def create_token(
        self,
        principal: Principal,
        *,
        scope: Scope,
        tenant_id: str | None = None,
        label: str | None = None,
    ) -> CreatedToken:
        return await self.tokens.create_token(
            principal, scope=scope, tenant_id=tenant_id, label=label
        )
