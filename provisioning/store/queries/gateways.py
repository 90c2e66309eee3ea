"""Carrier gateways: rows <-> `model.Gateway` (allowed sources as a JSON array)."""

from __future__ import annotations

import json

from ...model import Gateway
from ..base import Row, Tx

__all__ = ["delete_gateway", "exists", "gateway_of", "get_gateway", "list_gateways", "save_gateway"]


def gateway_of(row: Row) -> Gateway:
    return Gateway(
        id=row["id"],
        name=row["name"],
        host=row["host"],
        port=int(row["port"]),
        transport=row["transport"],
        allowed_sources=tuple(json.loads(row["allowed_sources"])),
    )


async def exists(tx: Tx, gateway_id: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM gateways WHERE id = $1", gateway_id))


async def get_gateway(tx: Tx, gateway_id: str) -> Gateway | None:
    row = await tx.fetchrow("SELECT * FROM gateways WHERE id = $1", gateway_id)
    return None if row is None else gateway_of(row)


async def list_gateways(tx: Tx) -> list[Gateway]:
    return [gateway_of(r) for r in await tx.fetch("SELECT * FROM gateways ORDER BY id")]


async def save_gateway(tx: Tx, g: Gateway, now: str, *, insert: bool) -> None:
    values = (g.id, g.name, g.host, int(g.port), g.transport, json.dumps(list(g.allowed_sources)))
    if insert:
        await tx.execute(
            "INSERT INTO gateways (id, name, host, port, transport, allowed_sources,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            *values,
            now,
        )
    else:
        await tx.execute(
            "UPDATE gateways SET name = $2, host = $3, port = $4, transport = $5,"
            " allowed_sources = $6, updated_at = $7 WHERE id = $1",
            *values,
            now,
        )


async def delete_gateway(tx: Tx, gateway_id: str) -> None:
    await tx.execute("DELETE FROM gateways WHERE id = $1", gateway_id)
