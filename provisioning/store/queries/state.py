"""One tenant's whole state, read in one transaction: what the tenant rules look at."""

from __future__ import annotations

from dataclasses import dataclass

from ...model import Device, Number, Tenant
from ..base import Tx
from . import devices, numbers, prompts, tenants

__all__ = ["TenantState", "load_state"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantState:
    """Everything the tenant rules look at, loaded in one transaction."""

    tenant: Tenant
    devices: tuple[Device, ...]
    numbers: tuple[Number, ...]
    prompt_ids: frozenset[str]


async def load_state(tx: Tx, tenant_id: str) -> TenantState | None:
    tenant = await tenants.load_tenant(tx, tenant_id)
    if tenant is None:
        return None
    devs = await tx.fetch("SELECT * FROM devices WHERE tenant_id = $1 ORDER BY id", tenant_id)
    nums = await tx.fetch("SELECT * FROM numbers WHERE tenant_id = $1 ORDER BY e164", tenant_id)
    members = await tx.fetch(
        "SELECT m.number, m.device_id FROM ring_group_members m"
        " JOIN numbers n ON n.e164 = m.number WHERE n.tenant_id = $1"
        " ORDER BY m.number, m.position",
        tenant_id,
    )
    groups = numbers.groups_of(members)
    return TenantState(
        tenant=tenant,
        devices=tuple(devices.device_of(r) for r in devs),
        numbers=tuple(numbers.number_of(r, groups.get(r["e164"], ())) for r in nums),
        prompt_ids=await prompts.ids(tx, tenant_id),
    )
