"""The production store: PostgreSQL through an asyncpg pool.

The pool keeps no minimum of idle connections (min_size=0): connections are opened on demand,
so an outage costs no background reconnect storm, and the first request after it reconnects.

Unavailability: every connection-level failure (refused, reset, closed, timed out, admin
shutdown) becomes `StoreUnavailable` (503). The pool heals itself: asyncpg replaces a closed
connection on the next acquire, `max_inactive_connection_lifetime` recycles idle ones, and a
connection that failed inside a transaction is terminated (never handed out again) rather
than released.

Change feed: `watch()` keeps one dedicated LISTEN connection per process. It checks the
connection with a tiny query every `keepalive` seconds (a cut TCP path may not deliver a
FIN), reconnects with exponential backoff when it is lost, and after every (re)connect calls
`callback(None)` so the caller compares versions and picks up changes it missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal

import asyncpg

from ..errors import StoreUnavailable
from .audit import flush_pending
from .base import CHANNEL, ChangeCallback, Row

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x50F7_5717  # pg_advisory_xact_lock key for migrations

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
)


class _PgTx:
    def __init__(self, conn: asyncpg.Connection, version: int = 0) -> None:
        self._conn = conn
        self.version = version

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(sql, *args)
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(a) for a in args])

    async def copy_records(
        self, table: str, records: Sequence[Sequence[Any]], columns: Sequence[str]
    ) -> None:
        """COPY rows into `table` (binary COPY protocol): PostgreSQL only, not part of `Tx`;
        the CDR batch insert uses it when present (store/queries/cdrs.py)."""
        await self._conn.copy_records_to_table(table, records=records, columns=list(columns))


class PostgresStore:
    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool, timeout: float) -> None:
        self.url = url
        self._pool = pool
        self._timeout = timeout
        self._listeners: list[ChangeCallback] = []

    @classmethod
    async def open(
        cls, url: str, *, timeout: float = 3.0, min_size: int = 0, max_size: int = 10
    ) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,  # connect timeout
                command_timeout=10.0,
                max_inactive_connection_lifetime=60.0,
            )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(url, pool, timeout)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            conn = await self._pool.acquire(timeout=self._timeout)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        broken = False
        try:
            yield conn
        except UNAVAILABLE as exc:
            broken = True
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        finally:
            with suppress(*UNAVAILABLE):  # the pool may have reclaimed it already
                if broken:
                    conn.terminate()  # never hand a half-dead connection out again
                await self._pool.release(conn, timeout=self._timeout)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PgTx]:
        async with (
            self._conn() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield _PgTx(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PgTx]:
        async with self._conn() as conn, conn.transaction():
            tx = _PgTx(conn)
            # First statement: takes the row lock that serialises writers (see base.py).
            tx.version = await conn.fetchval(
                "UPDATE meta SET version = version + 1 WHERE id = 1 RETURNING version"
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(tx.version))
            yield tx
            await flush_pending(tx)  # the API request's audit entry, in this transaction
        for cb in list(self._listeners):
            cb(tx.version)

    @asynccontextmanager
    async def data(self) -> AsyncIterator[_PgTx]:
        async with self._conn() as conn, conn.transaction():
            tx = _PgTx(conn)
            yield tx
            await flush_pending(tx)

    @asynccontextmanager
    async def migration(self) -> AsyncIterator[_PgTx]:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            yield _PgTx(conn)

    async def version(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT version FROM meta WHERE id = 1"))

    def add_listener(self, callback: ChangeCallback) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            with suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def watch(
        self, callback: ChangeCallback, *, keepalive: float = 2.0, max_backoff: float = 1.0
    ) -> PgWatch:
        """LISTEN for every process's commits, and hear this process's own at once (an API
        write in the switch process must not wait for the LISTEN connection, which may be
        reconnecting after an outage). The reconnect backoff stays short (≤ 1 s): one
        connection attempt a second while the server is away is cheap, and a late LISTEN
        would delay changes made by other processes right after it returns."""
        w = PgWatch(
            self.url, callback, keepalive=keepalive, max_backoff=max_backoff, timeout=self._timeout
        )
        w.local = self.add_listener(callback)
        w.start()
        return w

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), timeout=self._timeout)
        except UNAVAILABLE:
            self._pool.terminate()


class PgWatch:
    """LISTEN softswitch_changes on a dedicated connection, reconnecting forever."""

    def __init__(
        self,
        url: str,
        callback: ChangeCallback,
        *,
        keepalive: float,
        max_backoff: float,
        timeout: float,
    ) -> None:
        self._url = url
        self._callback = callback
        self._keepalive = keepalive
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.local: Callable[[], None] | None = None  # removes the in-process listener

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-listen")

    async def stop(self) -> None:
        if self.local is not None:
            self.local()
            self.local = None
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            version: int | None = int(payload)
        except ValueError:
            version = None
        self._callback(version)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._listen_once()
                backoff = 0.1
            except UNAVAILABLE as exc:
                log.warning("LISTEN connection lost (%s); retrying in %.1fs", exc, backoff)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=self._timeout)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.connected.set()
            self._callback(None)  # changes may have happened while we were away
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=self._keepalive)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self._timeout)
            raise ConnectionResetError("LISTEN connection terminated")
        finally:
            conn.terminate()
