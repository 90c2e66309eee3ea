"""The SIP digest realm (served by the `tokens` API resource module, next to the tokens).

Every HA1 hash is computed with the realm, so it can change only while no device exists
(`realm-locked`); a seed import into an empty store adopts the seed's realm.
"""

from __future__ import annotations

from .. import fields, rules
from ..errors import RuleViolation
from ..store.base import Tx
from ..store.queries import devices, meta
from .base import Principal, StoreService

__all__ = ["RealmService", "change_realm"]


class RealmService(StoreService):
    __slots__ = ()

    async def realm(self) -> str:
        """The SIP digest realm HA1 hashes are computed with (stored in the database)."""
        async with self.store.read() as tx:
            return await meta.realm(tx)

    async def set_realm(self, principal: Principal, realm: str) -> None:
        """Operator only; refused (`realm-locked`) once any device exists, since every HA1
        depends on it."""
        principal.require_operator()
        realm = fields.text_field(realm, "realm", 1, rules.REALM_MAX)
        async with self.store.write() as tx:
            await change_realm(tx, realm)


async def change_realm(tx: Tx, realm: str) -> None:
    """Set the realm in this transaction: a no-op when unchanged, `realm-locked` once
    devices exist."""
    if realm == await meta.realm(tx):
        return
    count = await devices.count_all(tx)
    if count:
        raise RuleViolation(
            "realm-locked",
            "the realm cannot change once devices exist (HA1 depends on it)",
            {"rule": "realm fixed once IDs exist", "devices": count},
        )
    await meta.set_realm(tx, realm)
