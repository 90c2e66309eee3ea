"""The web phonebook: `records.PhonebookEntry` rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...records import PhonebookEntry
from ..base import Row, Tx
from .sql import Where, like, ts

if TYPE_CHECKING:
    from ...fields import PhonebookRow

__all__ = [
    "count",
    "delete_all",
    "delete_entry",
    "entry_of",
    "get_entry",
    "insert_entries",
    "list_entries",
    "update_entry",
]


def entry_of(row: Row) -> PhonebookEntry:
    return PhonebookEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        number=row["number"],
        company=row["company"],
        note=row["note"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
    )


async def count(tx: Tx, tenant_id: str) -> int:
    return int(
        await tx.fetchval("SELECT COUNT(*) FROM phonebook_entries WHERE tenant_id = $1", tenant_id)
    )


async def get_entry(tx: Tx, tenant_id: str, entry_id: str) -> PhonebookEntry | None:
    row = await tx.fetchrow(
        "SELECT * FROM phonebook_entries WHERE id = $1 AND tenant_id = $2", entry_id, tenant_id
    )
    return None if row is None else entry_of(row)


async def list_entries(
    tx: Tx,
    tenant_id: str,
    *,
    name_contains: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[PhonebookEntry]:
    """At most `limit` entries in (name, id) order, after the keys `after`."""
    q = Where()
    q.add("tenant_id = {}", tenant_id)
    if name_contains:
        q.add("LOWER(name) LIKE {} ESCAPE '\\'", like(name_contains))
    q.after("name, id", after)
    rows = await tx.fetch(q.sql("SELECT * FROM phonebook_entries", "name, id", limit), *q.args)
    return [entry_of(r) for r in rows]


async def insert_entries(
    tx: Tx, tenant_id: str, entries: Sequence[tuple[str, PhonebookRow]], now: str
) -> None:
    """`entries`: (new id, checked row) pairs."""
    if entries:
        await tx.executemany(
            "INSERT INTO phonebook_entries (id, tenant_id, name, number, company, note,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            [(i, tenant_id, r.name, r.number, r.company, r.note, now) for i, r in entries],
        )


async def update_entry(tx: Tx, entry_id: str, row: PhonebookRow, now: str) -> None:
    await tx.execute(
        "UPDATE phonebook_entries SET name = $2, number = $3, company = $4, note = $5,"
        " updated_at = $6 WHERE id = $1",
        entry_id,
        row.name,
        row.number,
        row.company,
        row.note,
        now,
    )


async def delete_entry(tx: Tx, entry_id: str) -> None:
    await tx.execute("DELETE FROM phonebook_entries WHERE id = $1", entry_id)


async def delete_all(tx: Tx, tenant_id: str) -> None:
    await tx.execute("DELETE FROM phonebook_entries WHERE tenant_id = $1", tenant_id)
