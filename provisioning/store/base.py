"""The store seam: a transactional SQL connection with change notification.

The two backends (`sqlite.py`, `postgres.py`) implement `Store` and `Tx` below; every SQL
statement and row mapper of provisioning is in `queries/` and runs unchanged on both.

Design choice: plain SQL, no ORM
--------------------------------
The schema lives in versioned plain-SQL migration files (`migrations/NNNN_name.sql`) written
in the subset of SQL that SQLite (3.35+) and PostgreSQL (13+) share: TEXT, BIGINT, INTEGER,
BOOLEAN, DOUBLE PRECISION, BYTEA (stored as a BLOB by SQLite), foreign keys with ON DELETE
CASCADE, partial unique indexes, RETURNING and row-value comparisons for keyset pagination.
A `schema_version` table records what ran; `migrate.py` applies the missing files in one
transaction (under an advisory lock on PostgreSQL, so several processes may start at once).

Why not SQLAlchemy Core + Alembic: the data model is small (ten tables), the queries are
simple and few, and the one place that must be fast -- building the routing snapshot -- is a
handful of full-table SELECTs whose rows go straight into frozen dataclasses; an ORM or an
expression layer would add a dependency, a second migration tool with its own autogenerate
pitfalls, and per-row overhead, for no query we could not write by hand in a portable way. The
cost of the choice: the SQL must stay in the common subset (tested on both backends by the
store contract suite), and placeholders are written PostgreSQL-style (`$1`) and rewritten to
SQLite's numbered form (`?1`) by the SQLite store.

Timestamps are ISO-8601 UTC strings (`2026-11-22T05:00:00.000000Z`): they sort correctly,
are identical on both backends and need no driver adapters. Dates (holidays) are ISO strings.

Transactions
------------
- `store.read()`: a consistent read-only view (REPEATABLE READ on PostgreSQL), used by
  `build_snapshot` and the services' reads.
- `store.data()`: a write transaction for operational data (voicemail messages, call
  records) with no version bump and no notification.
- `store.write()`: a write transaction that first bumps `meta.version` (which also serialises
  every writer on that one row: provisioning writes are human-rate, and it makes the rule
  checks race-free: each writer sees the state every earlier writer committed) and queues
  `NOTIFY softswitch_changes, '<version>'` (PostgreSQL delivers it on commit). Any exception
  rolls back. After the commit, in-process listeners are called with the new version.
- `write()` and `data()` insert the audit entry of the REST API request being served (if
  any, and only once per request) just before they commit: see `audit.py`.
- Connection failures surface as `StoreUnavailable` (503).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

CHANNEL = "softswitch_changes"

Row = Mapping[str, Any]
ChangeCallback = Callable[[int | None], None]
"""Called with the new store version, or None for "something may have changed (the watch
reconnected): compare versions"."""


def utcnow_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Tx(Protocol):
    """One open transaction. SQL uses `$1, $2 …` placeholders on both backends."""

    version: int  # the store version this write will commit (0 for reads)

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None: ...


class ChangeWatch(Protocol):
    async def stop(self) -> None: ...


class Store(Protocol):
    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        ...

    @property
    def url(self) -> str: ...

    def read(self) -> AbstractAsyncContextManager[Tx]: ...

    def write(self) -> AbstractAsyncContextManager[Tx]: ...

    def data(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction for operational data (voicemail, call records): committed like
        any write, but without bumping `meta.version` or notifying - it is not routing
        configuration, and the switch must not rebuild its snapshot for it."""
        ...

    def migration(self) -> AbstractAsyncContextManager[Tx]:
        """A plain transaction (no version bump), exclusive among migrating processes."""
        ...

    async def version(self) -> int: ...

    def add_listener(self, callback: ChangeCallback) -> Callable[[], None]:
        """In-process listener called after each commit made through THIS store object.
        Returns a function that removes it."""
        ...

    async def watch(self, callback: ChangeCallback) -> ChangeWatch:
        """Cross-process change feed: PostgreSQL LISTEN on a dedicated connection that
        reconnects with backoff by itself (callback(None) after each reconnect); SQLite: the
        in-process listener (other processes are caught by LiveSnapshot's version poll)."""
        ...

    async def close(self) -> None: ...
