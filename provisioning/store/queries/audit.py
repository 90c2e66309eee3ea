"""The REST API's audit log: `records.AuditEntry` rows (migration 0004), newest first."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...records import AuditEntry
from ..base import Row, Tx
from .sql import Where, ts, ts_text

__all__ = ["AuditFilter", "delete_before", "entry_of", "insert_entry", "list_entries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    """Every given field narrows the list; `since` inclusive, `until` exclusive (UTC text)."""

    tenant_id: str | None = None
    token_id: str | None = None
    since: str | None = None
    until: str | None = None


def entry_of(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=ts(row["at"]),
        token_id=row["token_id"],
        scope=row["scope"],
        tenant_id=row["tenant_id"],
        method=row["method"],
        route=row["route"],
        params=dict(json.loads(row["params"])),
        status=int(row["status"]),
    )


async def insert_entry(tx: Tx, entry: AuditEntry) -> None:
    await tx.execute(
        "INSERT INTO audit_log"
        " (id, at, token_id, scope, tenant_id, method, route, params, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        entry.id,
        ts_text(entry.at),
        entry.token_id,
        entry.scope,
        entry.tenant_id,
        entry.method,
        entry.route,
        json.dumps(entry.params, sort_keys=True),
        entry.status,
    )


async def list_entries(
    tx: Tx, where: AuditFilter, *, before: tuple[str, str] | None, limit: int
) -> list[AuditEntry]:
    """Newest first, keyset-paginated on (at, id): `before` is the last (at, id) seen."""
    w = Where()
    if where.tenant_id is not None:
        w.add("tenant_id = {}", where.tenant_id)
    if where.token_id is not None:
        w.add("token_id = {}", where.token_id)
    if where.since is not None:
        w.add("at >= {}", where.since)
    if where.until is not None:
        w.add("at < {}", where.until)
    if before is not None:
        w.add("(at, id) < ({}, {})", *before)
    rows = await tx.fetch(w.sql("SELECT * FROM audit_log", "at DESC, id DESC", limit), *w.args)
    return [entry_of(r) for r in rows]


async def delete_before(tx: Tx, cutoff: str) -> int:
    """Delete the entries older than `cutoff` (UTC text); how many."""
    rows = await tx.fetch("DELETE FROM audit_log WHERE at < $1 RETURNING id", cutoff)
    return len(rows)
