"""Call recordings: `records.RecordingInfo` rows (the audio is a file, `path` relative to the
recordings directory). Written through `Store.data()` (no routing version bump).

Lists are newest first: `ORDER BY started_at DESC, id DESC`, keyset pages continue strictly
after the last (started_at, id) seen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...records import NewRecording, RecordingInfo, RecordingQuery
from ..base import Row, Tx
from .sql import marks, ts, ts_text

__all__ = [
    "count_matching",
    "delete_ids",
    "delete_matching",
    "delete_older_than",
    "get",
    "get_many",
    "info_of",
    "insert",
    "known_paths",
    "page",
    "stored_bytes",
]

_COLS = (
    "id, tenant_id, number, direction, other_party, device_id, call_id, started_at,"
    " answered_at, ended_at, duration, size_bytes, path, relay"
)


def info_of(row: Row) -> RecordingInfo:
    answered = row["answered_at"]
    return RecordingInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        number=row["number"],
        direction=row["direction"],
        other_party=row["other_party"],
        device_id=row["device_id"],
        call_id=row["call_id"],
        started_at=ts(row["started_at"]),
        answered_at=None if answered is None else ts(answered),
        ended_at=ts(row["ended_at"]),
        duration=float(row["duration"]),
        size_bytes=int(row["size_bytes"]),
        path=row["path"],
        relay=row["relay"],
    )


async def insert(tx: Tx, recording_id: str, r: NewRecording, now: datetime) -> bool:
    """Register a recording; False when its path is registered already (another node, or
    a rescan, saw it first) - the insert is idempotent by path."""
    inserted = await tx.fetchval(
        f"INSERT INTO recordings ({_COLS}, created_at) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        " ON CONFLICT (path) DO NOTHING RETURNING id",
        recording_id,
        r.tenant_id,
        r.number,
        r.direction,
        r.other_party,
        r.device_id,
        r.call_id,
        _utc(r.started_at),
        None if r.answered_at is None else _utc(r.answered_at),
        _utc(r.ended_at),
        r.duration,
        r.size_bytes,
        r.path,
        r.relay,
        _utc(now),
    )
    return inserted is not None


async def known_paths(tx: Tx, paths: tuple[str, ...]) -> set[str]:
    """Which of `paths` are registered."""
    if not paths:
        return set()
    rows = await tx.fetch(
        f"SELECT path FROM recordings WHERE path IN ({marks(len(paths))})", *paths
    )
    return {r["path"] for r in rows}


def _where(tenant_id: str, q: RecordingQuery) -> tuple[list[str], list[Any]]:
    clauses, args = ["tenant_id = $1"], [tenant_id]

    def add(clause: str, value: Any) -> None:
        args.append(value)
        clauses.append(clause.format(f"${len(args)}"))

    if q.since is not None:
        add("started_at >= {}", _utc(q.since))
    if q.until is not None:
        add("started_at < {}", _utc(q.until))
    if q.number is not None:
        add("number = {}", q.number)
    if q.direction is not None:
        add("direction = {}", q.direction)
    if q.party is not None:
        add("other_party = {}", q.party)
    return clauses, args


async def page(
    tx: Tx,
    tenant_id: str,
    q: RecordingQuery,
    limit: int,
    after: tuple[str, str] | None = None,
) -> list[RecordingInfo]:
    """Up to `limit` of the tenant's recordings matching `q`, newest first, strictly after
    the (started_at, id) key `after`."""
    clauses, args = _where(tenant_id, q)
    if after is not None:
        n = len(args)
        clauses.append(f"(started_at < ${n + 1} OR (started_at = ${n + 1} AND id < ${n + 2}))")
        args += list(after)
    rows = await tx.fetch(
        f"SELECT {_COLS} FROM recordings WHERE {' AND '.join(clauses)}"
        f" ORDER BY started_at DESC, id DESC LIMIT {int(limit)}",
        *args,
    )
    return [info_of(r) for r in rows]


async def get(tx: Tx, tenant_id: str, recording_id: str) -> RecordingInfo | None:
    row = await tx.fetchrow(
        f"SELECT {_COLS} FROM recordings WHERE id = $1 AND tenant_id = $2",
        recording_id,
        tenant_id,
    )
    return None if row is None else info_of(row)


async def get_many(tx: Tx, tenant_id: str, ids: tuple[str, ...]) -> list[RecordingInfo]:
    """The tenant's recordings among `ids`, newest first."""
    if not ids:
        return []
    rows = await tx.fetch(
        f"SELECT {_COLS} FROM recordings WHERE tenant_id = $1 AND id IN"
        f" ({marks(len(ids), 2)}) ORDER BY started_at DESC, id DESC",
        tenant_id,
        *ids,
    )
    return [info_of(r) for r in rows]


async def delete_ids(tx: Tx, tenant_id: str, ids: tuple[str, ...]) -> list[RecordingInfo]:
    """Delete the tenant's recordings among `ids`; returns what was deleted."""
    if not ids:
        return []
    rows = await tx.fetch(
        f"DELETE FROM recordings WHERE tenant_id = $1 AND id IN ({marks(len(ids), 2)})"
        f" RETURNING {_COLS}",
        tenant_id,
        *ids,
    )
    return [info_of(r) for r in rows]


async def delete_matching(
    tx: Tx, tenant_id: str, q: RecordingQuery, limit: int
) -> list[RecordingInfo]:
    """Delete at most `limit` of the tenant's recordings matching `q` (oldest first: a bulk
    delete runs in batches of short transactions)."""
    clauses, args = _where(tenant_id, q)
    rows = await tx.fetch(
        f"DELETE FROM recordings WHERE id IN (SELECT id FROM recordings WHERE"
        f" {' AND '.join(clauses)} ORDER BY started_at, id LIMIT {int(limit)})"
        f" RETURNING {_COLS}",
        *args,
    )
    return [info_of(r) for r in rows]


async def delete_older_than(tx: Tx, cutoff: datetime, limit: int) -> list[RecordingInfo]:
    """At most `limit` recordings of any tenant that started before `cutoff` (the retention
    sweeper's batch)."""
    rows = await tx.fetch(
        f"DELETE FROM recordings WHERE id IN (SELECT id FROM recordings"
        f" WHERE started_at < $1 ORDER BY started_at LIMIT {int(limit)}) RETURNING {_COLS}",
        _utc(cutoff),
    )
    return [info_of(r) for r in rows]


async def count_matching(tx: Tx, tenant_id: str, q: RecordingQuery) -> int:
    clauses, args = _where(tenant_id, q)
    return int(
        await tx.fetchval(f"SELECT COUNT(*) FROM recordings WHERE {' AND '.join(clauses)}", *args)
    )


async def stored_bytes(tx: Tx) -> int:
    """Octets of audio the registered recordings hold (every tenant)."""
    return int(await tx.fetchval("SELECT COALESCE(SUM(size_bytes), 0) FROM recordings") or 0)


def _utc(value: datetime) -> str:
    """Timestamps are stored as UTC text (store.base): whatever zone `value` is in."""
    return ts_text(value.astimezone(UTC))
