"""The one `meta` row: the SIP realm every HA1 is computed with (and the store version,
which `store.write()` bumps itself)."""

from __future__ import annotations

from ..base import Tx

__all__ = ["realm", "set_realm"]


async def realm(tx: Tx) -> str:
    return str(await tx.fetchval("SELECT realm FROM meta WHERE id = 1"))


async def set_realm(tx: Tx, value: str) -> None:
    await tx.execute("UPDATE meta SET realm = $1 WHERE id = 1", value)
