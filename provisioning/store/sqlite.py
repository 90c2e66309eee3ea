"""The embedded store: one SQLite file (WAL mode) through one aiosqlite connection.

One connection and an asyncio lock serialise every transaction of this process; writes use
`BEGIN IMMEDIATE` so another process (e.g. `softswitch tenant import` next to `serve`) waits
on SQLite's lock (busy_timeout) instead of failing half-way. Change notification is
in-process: listeners run after the commit. Another process's commits are seen by
LiveSnapshot's periodic version poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from ..errors import StoreUnavailable
from .audit import flush_pending
from .base import ChangeCallback, Row

log = logging.getLogger(__name__)

_PARAM = re.compile(r"\$(?=\d)")  # "$1" -> "?1": only the "$" is replaced


def _unavailable(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("locked", "busy", "disk i/o", "unable to open"))


@lru_cache(maxsize=64)
def _sql(text: str) -> str:
    # Statements are few and recur (the CDR writer's multi-row INSERT has one text per batch
    # size, thousands of $N): translated once each, not per execution.
    # A literal replacement (no group reference): no template expansion per placeholder.
    return _PARAM.sub("?", text)


class _SQLiteTx:
    def __init__(self, conn: aiosqlite.Connection, version: int = 0) -> None:
        self._conn = conn
        self.version = version

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._conn.execute(_sql(sql), args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._conn.execute(_sql(sql), args) as cur:
            row = await cur.fetchone()
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._conn.execute(_sql(sql), args) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(_sql(sql), args)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(_sql(sql), [tuple(a) for a in args])


class _LocalWatch:
    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove = remove

    async def stop(self) -> None:
        self._remove()


# In-process listeners per database file, shared by every SQLiteStore of this process on that
# file: the REST API's store and the switch's LiveSnapshot may be two objects on one file.
_LISTENERS: dict[str, list[ChangeCallback]] = {}


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it, whatever the umask:
    it holds HA1 hashes, which are password-equivalent for digest authentication. SQLite
    gives the -wal and -shm files it creates next to it the same mode. A new parent directory
    is owner-only too. An existing file is left as it is (`softswitch serve` tightens it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteStore:
    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, url: str, conn: aiosqlite.Connection, key: str) -> None:
        self.url = url
        self._conn = conn
        self._lock = asyncio.Lock()
        self._listeners = _LISTENERS.setdefault(key, [])

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = 10.0) -> SQLiteStore:
        path = url.removeprefix("sqlite:").removeprefix("//")
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
        if path != ":memory:":
            _create_private(Path(path))
            key = str(Path(path).resolve())
        else:
            key = f":memory:{id(object())}"
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode = WAL",
            "foreign_keys = ON",
            f"busy_timeout = {int(busy_timeout * 1000)}",
            "synchronous = NORMAL",
        ):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(url, conn, key)

    @asynccontextmanager
    async def _tx(self, begin: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._conn.in_transaction:  # never expected: say so, and do not stay wedged
                log.error("SQLite store: a transaction was left open; rolled back")
                await self._settled("ROLLBACK")
            try:
                await self._settled(begin)
                yield self._conn
                await self._settled("COMMIT")
            except BaseException as exc:
                # Cancelled (shutdown, a timeout, a client gone), failed, or a statement error:
                # the transaction ends here, before the lock goes to the next one.
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):
                        await self._settled("ROLLBACK")
                # "database is locked" past busy_timeout, disk I/O errors, unopenable file:
                # the store is unavailable, the request may be retried.
                if isinstance(exc, sqlite3.OperationalError) and _unavailable(exc):
                    raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc
                raise

    async def _settled(self, sql: str) -> None:
        """Run one transaction-control statement to its end even if the awaiting task is
        cancelled meanwhile: aiosqlite finishes it in its thread regardless, so the
        transaction state is known when this returns or raises."""
        statement = asyncio.ensure_future(self._conn.execute(sql))
        try:
            await asyncio.shield(statement)
        except asyncio.CancelledError:
            await asyncio.wait([statement])
            if not statement.cancelled():
                statement.exception()  # retrieved: the cancellation is what the caller sees
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SQLiteTx]:
        async with self._tx("BEGIN") as conn:
            yield _SQLiteTx(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SQLiteTx]:
        async with self._tx("BEGIN IMMEDIATE") as conn:
            tx = _SQLiteTx(conn)
            tx.version = await tx.fetchval(
                "UPDATE meta SET version = version + 1 WHERE id = 1 RETURNING version"
            )
            yield tx
            await flush_pending(tx)  # the API request's audit entry, in this transaction
        self._notify(tx.version)

    @asynccontextmanager
    async def data(self) -> AsyncIterator[_SQLiteTx]:
        async with self._tx("BEGIN IMMEDIATE") as conn:
            tx = _SQLiteTx(conn)
            yield tx
            await flush_pending(tx)

    @asynccontextmanager
    async def migration(self) -> AsyncIterator[_SQLiteTx]:
        async with self._tx("BEGIN IMMEDIATE") as conn:
            yield _SQLiteTx(conn)

    async def version(self) -> int:
        async with self.read() as tx:
            return int(await tx.fetchval("SELECT version FROM meta WHERE id = 1"))

    def _notify(self, version: int) -> None:
        for cb in list(self._listeners):
            cb(version)

    def add_listener(self, callback: ChangeCallback) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            with suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def watch(self, callback: ChangeCallback) -> _LocalWatch:
        return _LocalWatch(self.add_listener(callback))

    async def close(self) -> None:
        await self._conn.close()
