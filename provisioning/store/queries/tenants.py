"""Tenants and their holidays: rows <-> `model.Tenant`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from ...model import Tenant, TenantStatus
from ..base import Row, Tx
from .sql import Where, like, marks

__all__ = [
    "any_exist",
    "delete_tenant",
    "exists",
    "ids",
    "insert_tenant",
    "insert_tenants",
    "list_tenants",
    "load_holidays",
    "load_tenant",
    "save_holidays",
    "tenant_of",
    "update_tenant",
]

_INSERT = (
    "INSERT INTO tenants (id, name, timezone, identity_verified, status, created_at,"
    " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)"
)


def tenant_of(row: Row, holidays: Iterable[str] = ()) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        timezone=row["timezone"],
        identity_verified=bool(row["identity_verified"]),
        status=TenantStatus(row["status"]),
        holidays=frozenset(date.fromisoformat(h) for h in holidays),
    )


def _values(t: Tenant) -> tuple[Any, ...]:
    return (t.id, t.name, t.timezone, t.identity_verified, t.status.value)


async def exists(tx: Tx, tenant_id: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id))


async def any_exist(tx: Tx) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM tenants LIMIT 1"))


async def ids(tx: Tx) -> set[str]:
    return {r["id"] for r in await tx.fetch("SELECT id FROM tenants")}


async def load_tenant(tx: Tx, tenant_id: str) -> Tenant | None:
    row = await tx.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
    if row is None:
        return None
    days = await tx.fetch(
        "SELECT day FROM tenant_holidays WHERE tenant_id = $1 ORDER BY day", tenant_id
    )
    return tenant_of(row, [d["day"] for d in days])


async def load_holidays(tx: Tx, tenant_ids: Sequence[str]) -> dict[str, list[str]]:
    """Holidays of several tenants in one query."""
    out: dict[str, list[str]] = {}
    if not tenant_ids:
        return out
    rows = await tx.fetch(
        "SELECT tenant_id, day FROM tenant_holidays"
        f" WHERE tenant_id IN ({marks(len(tenant_ids))}) ORDER BY day",
        *tenant_ids,
    )
    for r in rows:
        out.setdefault(r["tenant_id"], []).append(r["day"])
    return out


async def list_tenants(
    tx: Tx,
    *,
    only: str | None,
    name_contains: str | None,
    status: TenantStatus | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[Tenant]:
    """At most `limit` tenants in (name, id) order, after the keys `after`; `only` restricts
    to one tenant id (a tenant principal sees only itself)."""
    q = Where()
    if only is not None:
        q.add("id = {}", only)
    if name_contains:
        q.add("LOWER(name) LIKE {} ESCAPE '\\'", like(name_contains))
    if status is not None:
        q.add("status = {}", status.value)
    q.after("name, id", after)
    rows = await tx.fetch(q.sql("SELECT * FROM tenants", "name, id", limit), *q.args)
    holidays = await load_holidays(tx, [r["id"] for r in rows])
    return [tenant_of(r, holidays.get(r["id"], ())) for r in rows]


async def insert_tenant(tx: Tx, t: Tenant, now: str) -> None:
    await tx.execute(_INSERT, *_values(t), now)
    await save_holidays(tx, t)


async def insert_tenants(tx: Tx, tenants: Sequence[Tenant], now: str) -> None:
    """Bulk insert (seed import): one batched statement per table."""
    if tenants:
        await tx.executemany(_INSERT, [(*_values(t), now) for t in tenants])
    holidays = [(t.id, d.isoformat()) for t in tenants for d in sorted(t.holidays)]
    if holidays:
        await tx.executemany(
            "INSERT INTO tenant_holidays (tenant_id, day) VALUES ($1, $2)", holidays
        )


async def update_tenant(tx: Tx, t: Tenant, now: str) -> None:
    await tx.execute(
        "UPDATE tenants SET name = $2, timezone = $3, identity_verified = $4, status = $5,"
        " updated_at = $6 WHERE id = $1",
        *_values(t),
        now,
    )
    await save_holidays(tx, t)


async def save_holidays(tx: Tx, t: Tenant) -> None:
    await tx.execute("DELETE FROM tenant_holidays WHERE tenant_id = $1", t.id)
    if t.holidays:
        await tx.executemany(
            "INSERT INTO tenant_holidays (tenant_id, day) VALUES ($1, $2)",
            [(t.id, d.isoformat()) for d in sorted(t.holidays)],
        )


async def delete_tenant(tx: Tx, tenant_id: str) -> None:
    """Everything of the tenant goes with it (ON DELETE CASCADE)."""
    await tx.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
