"""A transaction whose task is cancelled (shutdown, a client gone, a timeout) at any await leaves
the SQLite store usable: aiosqlite runs a statement to its end in its thread even when the
awaiting task is cancelled, so a BEGIN in flight would otherwise open a transaction nobody ends,
and every later one would fail with "cannot start a transaction within a transaction"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provisioning.store import open_store
from provisioning.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration


async def _hold(store: SQLiteStore, kind: str, started: asyncio.Event) -> None:
    async with getattr(store, kind)() as tx:
        started.set()
        await tx.fetchval("SELECT version FROM meta WHERE id = 1")
        await asyncio.sleep(10)


@pytest.mark.parametrize("kind", ["read", "write", "data"])
@pytest.mark.parametrize("yields", [1, 2, 3, 4, 6])
async def test_a_cancelled_transaction_leaves_the_store_usable(
    tmp_path: Path, kind: str, yields: int
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/c.db")
    assert isinstance(store, SQLiteStore)
    try:
        before = await store.version()
        started = asyncio.Event()
        task = asyncio.create_task(_hold(store, kind, started))
        for _ in range(yields):  # cancel at different points: BEGIN in flight, in the body
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.write() as tx:  # the next transaction begins and commits
            await tx.fetchval("SELECT 1")
        assert await store.version() == before + 1  # the cancelled write's step rolled back
    finally:
        await store.close()
