"""Seeding: writing a parsed seed file (`provisioning.seed.SeedData`) into a store.

Used by `softswitch tenant import FILE` (operator, may replace tenants) and by
`serve --seed FILE` on an empty store (`seed_if_empty`). One transaction: the realm, every
uniqueness check, every tenant rule, then one batched insert per table; any refusal leaves
the store as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import rules
from ..errors import Conflict, RuleViolation
from ..model import Device, Number
from ..store.base import Store, Tx, utcnow_text
from ..store.queries import devices, gateways, meta, numbers, tenants
from .base import Principal, StoreService
from .realm import change_realm

if TYPE_CHECKING:
    from ..seed import SeedData

__all__ = ["SeedImportResult", "SeedService", "import_seed", "seed_if_empty"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedImportResult:
    tenants: int
    devices: int
    numbers: int
    gateways: int
    replaced: list[str] = field(default_factory=list)  # tenant ids replaced (replace=True)


class SeedService(StoreService):
    __slots__ = ()

    async def import_seed(
        self, principal: Principal, seed: SeedData, *, replace: bool = False
    ) -> SeedImportResult:
        """Operator only. Writes a `SeedData` (from `provisioning.seed.load_seed`) in one
        transaction. A tenant id that already exists is refused (id-taken) unless
        `replace=True`, which replaces that tenant entirely; gateways are upserted by id.
        On an empty store (no device yet) the seed's realm becomes the store's realm;
        otherwise the realms must match (realm-mismatch), since HA1 hashes depend on it."""
        principal.require_operator()
        now = utcnow_text()
        async with self.store.write() as tx:
            await _adopt_realm(tx, seed.realm)
            replaced = await _clear_tenants(tx, seed, replace=replace)
            await _check_unique(tx, seed)
            _check_rules(seed)
            await tenants.insert_tenants(tx, seed.tenants, now)
            await devices.insert_devices(tx, seed.devices, now)
            await numbers.insert_numbers(tx, seed.numbers, now)
            for g in seed.gateways:
                exists = await gateways.exists(tx, g.id)
                await gateways.save_gateway(tx, g, now, insert=not exists)
        return SeedImportResult(
            tenants=len(seed.tenants),
            devices=len(seed.devices),
            numbers=len(seed.numbers),
            gateways=len(seed.gateways),
            replaced=replaced,
        )


async def import_seed(store: Store, seed: SeedData, *, replace: bool = False) -> SeedImportResult:
    """`SeedService(store).import_seed(Principal.operator(), seed, replace=replace)`: used by
    `softswitch tenant import FILE` and `serve --seed FILE` on an empty store."""
    return await SeedService(store).import_seed(Principal.operator(), seed, replace=replace)


async def seed_if_empty(store: Store, seed: SeedData) -> bool:
    """`serve --seed FILE` on a store: import the seed only if the store has no tenant yet.
    Returns True when it imported."""
    async with store.read() as tx:
        if await tenants.any_exist(tx):
            return False
    await import_seed(store, seed)
    return True


async def _adopt_realm(tx: Tx, realm: str) -> None:
    """An empty store (no device) takes the seed's realm; otherwise they must match."""
    current = await meta.realm(tx)
    if realm == current:
        return
    if await devices.count_all(tx):
        raise RuleViolation(
            "realm-mismatch",
            "the seed's realm differs from the store's (HA1 hashes would not match)",
            {"store_realm": current, "seed_realm": realm},
        )
    await change_realm(tx, realm)


async def _clear_tenants(tx: Tx, seed: SeedData, *, replace: bool) -> list[str]:
    """Delete the seed's tenants that exist already (replace=True; else `id-taken`)."""
    existing = await tenants.ids(tx)
    replaced: list[str] = []
    for t in seed.tenants:
        if t.id in existing:
            if not replace:
                raise Conflict("id-taken", f"tenant {t.id!r} exists", {"id": t.id})
            await tenants.delete_tenant(tx, t.id)
            replaced.append(t.id)
    return replaced


async def _check_unique(tx: Tx, seed: SeedData) -> None:
    """Numbers, usernames and device ids of the seed are free (one query per table)."""
    taken = await numbers.all_numbers(tx)
    for n in seed.numbers:
        if n.e164 in taken:
            raise Conflict(
                "number-taken",
                f"{n.e164} belongs to a tenant already",
                {"rule": "a number belongs to one tenant", "number": n.e164},
            )
    ids, usernames = await devices.taken_ids_and_usernames(tx)
    for d in seed.devices:
        if d.username in usernames:
            raise Conflict(
                "username-taken", f"SIP username {d.username!r} is taken", {"username": d.username}
            )
        if d.id in ids:
            raise Conflict("id-taken", f"device id {d.id!r} exists", {"id": d.id})


def _check_rules(seed: SeedData) -> None:
    by_tenant_devices: dict[str, list[Device]] = {t.id: [] for t in seed.tenants}
    by_tenant_numbers: dict[str, list[Number]] = {t.id: [] for t in seed.tenants}
    for d in seed.devices:
        by_tenant_devices.setdefault(d.tenant_id, []).append(d)
    for n in seed.numbers:
        by_tenant_numbers.setdefault(n.tenant_id, []).append(n)
    for t in seed.tenants:
        rules.check_tenant(t, by_tenant_devices[t.id], by_tenant_numbers[t.id])
