"""Call detail records: `records.CallRecord` rows in `cdrs`, and the IDs concerned in
`cdr_devices` (migration 0003). Written through `Store.data()` (no routing version bump).

Writes are batched and idempotent, in one of three forms (`insert(…, form=…)`), each
skipping a cdr_id already stored and returning the ids that were new:
- "values" (both backends): one multi-row `INSERT … ON CONFLICT (cdr_id) DO NOTHING
  RETURNING cdr_id` per chunk of rows (the chunk keeps the statement under the 32,766-
  parameter limit of SQLite and PostgreSQL);
- "unnest" (PostgreSQL): each column as one array parameter, `INSERT … SELECT * FROM
  unnest($1::text[], …) ON CONFLICT …`: one statement whatever the batch size;
- "copy" (PostgreSQL): binary COPY into a per-connection temporary table (emptied at
  commit), then `INSERT INTO cdrs SELECT * FROM cdrs_in ON CONFLICT …`.
Then the ID rows (cdr_devices) of the CDRs that were new, as multi-row VALUES. The figures
behind the default ("copy" on PostgreSQL) are in tests/bench/cdr_bench.py's docstring.

Reads are keyset pages, newest first for the history ((started_at, cdr_id) descending),
oldest first for a statement's month.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ...model import DeviceKind
from ...records import CallDirection, CallOutcome, CallQuery, CallRating, CallRecord, DeviceRole
from ..base import Row, Tx
from .sql import Where, marks, ts, ts_text

__all__ = [
    "COLUMNS",
    "INSERT_FORMS",
    "PG_ONLY_FORMS",
    "delete_older_than",
    "insert",
    "list_calls",
    "month_calls",
    "month_tenants",
    "record_of",
    "values_of",
]

# (column, PostgreSQL array type for the unnest form)
_SPEC: tuple[tuple[str, str], ...] = (
    ("cdr_id", "text"),
    ("call_id", "text"),
    ("node", "text"),
    ("tenant_id", "text"),
    ("direction", "text"),
    ("outcome", "text"),
    ("dialled", "text"),
    ("number", "text"),
    ("caller", "text"),
    ("callee", "text"),
    ("caller_device", "text"),
    ("caller_device_kind", "text"),
    ("rang", "text"),
    ("answered_device", "text"),
    ("answered_device_kind", "text"),
    ("shown_to", "text"),
    ("presented_number", "text"),
    ("forwarded_to", "text"),
    ("started_at", "text"),
    ("answered_at", "text"),
    ("ended_at", "text"),
    ("billable_seconds", "bigint"),
    ("sip_status", "integer"),
    ("end_reason", "text"),
    ("rule", "text"),
    ("recorded", "boolean"),
    ("has_plan", "boolean"),
    ("caller_category", "text"),
    ("billing_month", "text"),
    ("tariff_version", "text"),
    ("rated_as", "text"),
    ("call_class", "text"),
    ("caller_kind", "text"),
    ("units", "integer"),
    ("charge", "bigint"),
    ("free_seconds", "integer"),
    ("plan_savings", "bigint"),
    ("rate_price", "bigint"),
    ("rate_unit_seconds", "integer"),
    ("rating_error", "text"),
    ("written_at", "text"),
)
COLUMNS = tuple(name for name, _ in _SPEC)
_COLS = ", ".join(COLUMNS)
_C_COLS = ", ".join(f"c.{name}" for name in COLUMNS)
_MAX_PARAMS = 32_000  # under SQLite's 32,766 and PostgreSQL's 32,767
_CHUNK = _MAX_PARAMS // len(COLUMNS)
_DEVICE_COLS = "cdr_id, tenant_id, device_id, role, started_at"
_DEVICE_CHUNK = _MAX_PARAMS // 5


def _ids(ids: tuple[str, ...]) -> str:
    # IDs are [A-Za-z0-9._-] (provisioning.rules): a space never occurs in one.
    return " ".join(ids)


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else ts_text(value)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def values_of(r: CallRecord, written_at: str) -> tuple[Any, ...]:
    """The row of `r`, in COLUMNS order."""
    g = r.rating
    rating: tuple[Any, ...] = (None,) * 10
    if g is not None:
        rating = (
            g.tariff_version, g.rated_as, g.call_class, g.caller_kind,
            g.units, g.charge, g.free_seconds, g.plan_savings, g.rate_price, g.rate_unit_seconds,
        )  # fmt: skip
    return (
        r.cdr_id, r.call_id, r.node, r.tenant_id, r.direction.value, r.outcome.value, r.dialled,
        r.number, r.caller, r.callee, r.caller_device, _opt(r.caller_device_kind), _ids(r.rang),
        r.answered_device, _opt(r.answered_device_kind), _ids(r.shown_to), r.presented_number,
        r.forwarded_to, ts_text(r.started_at), _opt_ts(r.answered_at), ts_text(r.ended_at),
        r.billable_seconds, r.sip_status, r.end_reason, r.rule, r.recorded, r.has_plan,
        r.caller_category, r.billing_month, *rating, r.rating_error, written_at,
    )  # fmt: skip


def _kind(value: str | None) -> DeviceKind | None:
    return None if value is None else DeviceKind(value)


def _split(value: str) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def _rating_of(row: Row) -> CallRating | None:
    if row["tariff_version"] is None:
        return None
    return CallRating(
        tariff_version=row["tariff_version"],
        rated_as=row["rated_as"],
        call_class=row["call_class"],
        caller_kind=row["caller_kind"],
        units=int(row["units"]),
        charge=int(row["charge"]),
        free_seconds=int(row["free_seconds"]),
        plan_savings=int(row["plan_savings"]),
        rate_price=None if row["rate_price"] is None else int(row["rate_price"]),
        rate_unit_seconds=row["rate_unit_seconds"],
    )


def record_of(row: Row) -> CallRecord:
    answered = row["answered_at"]
    return CallRecord(
        cdr_id=row["cdr_id"],
        call_id=row["call_id"],
        node=row["node"],
        tenant_id=row["tenant_id"],
        direction=CallDirection(row["direction"]),
        outcome=CallOutcome(row["outcome"]),
        dialled=row["dialled"],
        number=row["number"],
        caller=row["caller"],
        callee=row["callee"],
        caller_device=row["caller_device"],
        caller_device_kind=_kind(row["caller_device_kind"]),
        rang=_split(row["rang"]),
        answered_device=row["answered_device"],
        answered_device_kind=_kind(row["answered_device_kind"]),
        shown_to=_split(row["shown_to"]),
        presented_number=row["presented_number"],
        forwarded_to=row["forwarded_to"],
        started_at=ts(row["started_at"]),
        answered_at=None if answered is None else ts(answered),
        ended_at=ts(row["ended_at"]),
        billable_seconds=int(row["billable_seconds"]),
        sip_status=row["sip_status"],
        end_reason=row["end_reason"],
        rule=row["rule"],
        recorded=bool(row["recorded"]),
        has_plan=bool(row["has_plan"]),
        caller_category=row["caller_category"],
        billing_month=row["billing_month"],
        rating=_rating_of(row),
        rating_error=row["rating_error"],
    )


# --------------------------------------------------------------------------- writes
INSERT_FORMS = ("values", "unnest", "copy")
PG_ONLY_FORMS = ("unnest", "copy")


async def insert(
    tx: Tx, records: Sequence[CallRecord], written_at: datetime, *, form: str = "values"
) -> int:
    """Store `records`; a CDR already stored (same cdr_id) is skipped. Returns how many were
    new. `form`: see the module docstring ("unnest" and "copy" on PostgreSQL only)."""
    stamp = ts_text(written_at)
    step = _CHUNK if form == "values" else len(records)
    new: set[str] = set()
    for i in range(0, len(records), max(step, 1)):
        chunk = [values_of(r, stamp) for r in records[i : i + step]]
        new |= await _INSERTS[form](tx, chunk)
    roles = [
        (r.cdr_id, r.tenant_id, device, role.value, ts_text(r.started_at))
        for r in records
        if r.cdr_id in new
        for device, role in r.device_roles().items()
    ]
    for i in range(0, len(roles), _DEVICE_CHUNK):
        await _insert_roles(tx, roles[i : i + _DEVICE_CHUNK])
    return len(new)


async def _insert_values(tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
    args = [v for row in rows for v in row]
    found = await tx.fetch(_values_statement(len(rows)), *args)
    return {r["cdr_id"] for r in found}


@functools.lru_cache(maxsize=64)
def _values_statement(count: int) -> str:
    """The multi-row INSERT for `count` records (built once per batch size)."""
    width = len(COLUMNS)
    groups = ", ".join(f"({marks(width, 1 + i * width)})" for i in range(count))
    return (
        f"INSERT INTO cdrs ({_COLS}) VALUES {groups}"
        " ON CONFLICT (cdr_id) DO NOTHING RETURNING cdr_id"
    )


async def _insert_unnest(tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
    arrays = ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(_SPEC))
    columns = [list(col) for col in zip(*rows, strict=True)]
    found = await tx.fetch(
        f"INSERT INTO cdrs ({_COLS}) SELECT * FROM unnest({arrays})"
        " ON CONFLICT (cdr_id) DO NOTHING RETURNING cdr_id",
        *columns,
    )
    return {r["cdr_id"] for r in found}


_TEMP = "cdrs_in"


async def _insert_copy(tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
    copy = getattr(tx, "copy_records", None)
    if copy is None:
        raise ValueError("the copy form needs a PostgreSQL transaction")
    # Once per pooled connection (IF NOT EXISTS); ON COMMIT DELETE ROWS empties it each time.
    await tx.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_TEMP} (LIKE cdrs) ON COMMIT DELETE ROWS")
    await copy(_TEMP, rows, COLUMNS)
    found = await tx.fetch(
        f"INSERT INTO cdrs ({_COLS}) SELECT {_COLS} FROM {_TEMP}"
        " ON CONFLICT (cdr_id) DO NOTHING RETURNING cdr_id"
    )
    return {r["cdr_id"] for r in found}


_INSERTS = {"values": _insert_values, "unnest": _insert_unnest, "copy": _insert_copy}


async def _insert_roles(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    groups = ", ".join(f"({marks(5, 1 + i * 5)})" for i in range(len(rows)))
    await tx.execute(
        f"INSERT INTO cdr_devices ({_DEVICE_COLS}) VALUES {groups}"
        " ON CONFLICT (cdr_id, device_id) DO NOTHING",
        *[v for row in rows for v in row],
    )


async def delete_older_than(tx: Tx, cutoff: datetime, limit: int) -> int:
    """Delete at most `limit` CDRs that started before `cutoff` (their ID rows go with them,
    ON DELETE CASCADE); returns how many (the retention sweep's batch)."""
    rows = await tx.fetch(
        f"DELETE FROM cdrs WHERE cdr_id IN (SELECT cdr_id FROM cdrs WHERE started_at < $1"
        f" ORDER BY started_at LIMIT {int(limit)}) RETURNING cdr_id",
        ts_text(cutoff),
    )
    return len(rows)


# --------------------------------------------------------------------------- reads
def _filters(w: Where, q: CallQuery, alias: str) -> None:
    if q.since is not None:
        w.add(f"{alias}.started_at >= {{}}", ts_text(q.since))
    if q.until is not None:
        w.add(f"{alias}.started_at < {{}}", ts_text(q.until))
    if q.number is not None:
        w.add("c.number = {}", q.number)
    if q.party is not None:
        w.add("(c.caller = {} OR c.callee = {})", q.party, q.party)
    if q.direction is not None:
        w.add("c.direction = {}", q.direction.value)
    if q.outcome is not None:
        w.add("c.outcome = {}", q.outcome.value)


async def list_calls(
    tx: Tx, q: CallQuery, *, before: tuple[str, str] | None, limit: int
) -> list[tuple[CallRecord, DeviceRole | None]]:
    """CDRs matching `q`, newest first, strictly before the keyset `before` (started_at text,
    cdr_id). With `q.device`, each comes with that ID's role in the call."""
    w = Where()
    if q.device is not None:
        alias, select = "d", f"SELECT {_C_COLS}, d.role FROM cdr_devices d JOIN cdrs c"
        select += " ON c.cdr_id = d.cdr_id"
        if q.tenant_id is not None:
            w.add("d.tenant_id = {}", q.tenant_id)
        w.add("d.device_id = {}", q.device)
    else:
        alias, select = "c", f"SELECT {_C_COLS}, NULL AS role FROM cdrs c"
        if q.tenant_id is not None:
            w.add("c.tenant_id = {}", q.tenant_id)
    _filters(w, q, alias)
    if before is not None:
        w.add(f"({alias}.started_at, {alias}.cdr_id) < ({{}}, {{}})", *before)
    order = f"{alias}.started_at DESC, {alias}.cdr_id DESC"
    rows = await tx.fetch(w.sql(select, order, limit), *w.args)
    return [(record_of(r), None if r["role"] is None else DeviceRole(r["role"])) for r in rows]


async def month_calls(
    tx: Tx, tenant_id: str, month: str, *, after: tuple[str, str] | None, limit: int
) -> list[CallRecord]:
    """One tenant's CDRs of billing month `month` ("YYYY-MM"), oldest first, after `after`."""
    w = Where()
    w.add("billing_month = {}", month)
    w.add("tenant_id = {}", tenant_id)
    w.after("started_at, cdr_id", after)
    rows = await tx.fetch(w.sql(f"SELECT {_COLS} FROM cdrs", "started_at, cdr_id", limit), *w.args)
    return [record_of(r) for r in rows]


async def month_tenants(tx: Tx, month: str, *, after: str | None, limit: int) -> list[str]:
    """The tenants with CDRs in billing month `month`, in id order, after `after`."""
    w = Where()
    w.add("billing_month = {}", month)
    w.add("tenant_id IS NOT NULL")
    if after is not None:
        w.add("tenant_id > {}", after)
    sql = w.sql("SELECT DISTINCT tenant_id FROM cdrs", "tenant_id", limit)
    return [r["tenant_id"] for r in await tx.fetch(sql, *w.args)]
