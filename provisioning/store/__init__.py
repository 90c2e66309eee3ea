"""Provisioning stores: SQLite (embedded default) and PostgreSQL (production), one schema.

`open_store(url)` opens either from a URL, applies pending migrations and returns a `Store`.

    base.py        the seam: `Store` and `Tx` protocols, timestamps; the design (plain SQL,
                   no ORM) and the transaction rules
    sqlite.py      aiosqlite backend (one connection, WAL, in-process notifications)
    postgres.py    asyncpg backend (pool, LISTEN/NOTIFY change feed)
    migrate.py     versioned plain-SQL migrations (`migrations/NNNN_name.sql`)
    audit.py       the API request's audit entry, written into that request's transaction
    queries/       every SQL statement and row mapper, one module per resource
"""

from __future__ import annotations

from .base import Store

__all__ = ["Store", "open_store"]


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """`sqlite:///path/to.db` (relative path after three slashes, absolute after four;
    `sqlite:///:memory:` for a private in-memory store) or `postgresql://user@host:port/db`.
    Raises `StoreUnavailable` when PostgreSQL cannot be reached."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        store: Store = await SQLiteStore.open(url)
    elif url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresStore

        store = await PostgresStore.open(url)
    else:
        raise ValueError(f"unsupported store URL: {url!r}")
    if migrate:
        from .migrate import migrate as _migrate

        try:
            await _migrate(store)
        except BaseException:
            await store.close()
            raise
    return store
