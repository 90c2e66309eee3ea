"""Unavailability without PostgreSQL tricks: an unreachable server at open time, and a SQLite
file locked by another process past the busy timeout. (The PostgreSQL outage and recovery
through a TCP proxy is in test_live.py.)"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from provisioning.errors import StoreUnavailable
from provisioning.services import Services
from provisioning.store import open_store
from provisioning.store.sqlite import SQLiteStore

from .conftest import OP, make_tenant

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.postgres
async def test_open_store_on_an_unreachable_server() -> None:
    with pytest.raises(StoreUnavailable) as e:
        await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert (e.value.status, e.value.error_id) == (503, "store-unavailable")


async def test_sqlite_locked_by_another_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    store = await open_store(url)
    svc = Services(store)
    tid, _, _ = await make_tenant(svc)
    await store.close()

    store = await SQLiteStore.open(url, busy_timeout=0.2)
    svc = Services(store)
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await make_tenant(svc)
        assert (await svc.tenants.get_tenant(OP, tid)).id == tid  # WAL: readers are not blocked
        other.execute("ROLLBACK")
        await make_tenant(svc)  # and writes work again
    finally:
        other.close()
        await store.close()
