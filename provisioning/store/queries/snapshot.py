"""The whole routing picture in a handful of full-table reads (one transaction): what
`provisioning.live.build_snapshot` turns into a `model.Snapshot`."""

from __future__ import annotations

from dataclasses import dataclass

from ...model import Device, Gateway, Number, Tenant
from ..base import Tx
from .devices import device_of
from .gateways import list_gateways
from .numbers import groups_of, number_of
from .tenants import tenant_of

__all__ = ["Everything", "load_everything"]


@dataclass(frozen=True, slots=True)
class Everything:
    version: int
    realm: str
    tenants: list[Tenant]
    devices: list[Device]
    numbers: list[Number]
    gateways: list[Gateway]


async def load_everything(tx: Tx) -> Everything:
    meta = await tx.fetchrow("SELECT version, realm FROM meta WHERE id = 1")
    assert meta is not None  # the migration inserts the one row
    holidays: dict[str, list[str]] = {}
    for r in await tx.fetch("SELECT tenant_id, day FROM tenant_holidays"):
        holidays.setdefault(r["tenant_id"], []).append(r["day"])
    tenants = [
        tenant_of(r, holidays.get(r["id"], ()))
        for r in await tx.fetch("SELECT * FROM tenants ORDER BY id")
    ]
    devices = [device_of(r) for r in await tx.fetch("SELECT * FROM devices ORDER BY id")]
    groups = groups_of(
        await tx.fetch("SELECT number, device_id FROM ring_group_members ORDER BY number, position")
    )
    numbers = [
        number_of(r, groups.get(r["e164"], ()))
        for r in await tx.fetch("SELECT * FROM numbers ORDER BY e164")
    ]
    gateways = await list_gateways(tx)
    return Everything(int(meta["version"]), meta["realm"], tenants, devices, numbers, gateways)
