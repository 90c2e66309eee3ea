"""Migrations: from an empty database, idempotent re-runs, concurrent starts, atomic upgrades."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provisioning.store import Store, open_store
from provisioning.store import migrate as migrate_module
from provisioning.store.migrate import Migration, available, migrate, schema_version

from .conftest import BACKENDS, create_pg_database, drop_pg_database, pg_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    name = await create_pg_database()
    try:
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


async def tables(store: Store) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if store.dialect == "sqlite"
        else "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
    )
    async with store.read() as tx:
        return {r["name"] for r in await tx.fetch(sql)}


async def test_from_empty_then_idempotent(empty_url: str) -> None:
    store = await open_store(empty_url, migrate=False)
    try:
        assert "meta" not in await tables(store)
        assert await migrate(store) == [m.version for m in available()]
        assert await migrate(store) == []
        assert await schema_version(store) == available()[-1].version
        assert {
            "meta",
            "tenants",
            "devices",
            "numbers",
            "ring_group_members",
            "prompts",
            "phonebook_entries",
            "gateways",
            "api_tokens",
            "tenant_holidays",
            "schema_version",
        } <= await tables(store)
        assert await store.version() == 0
    finally:
        await store.close()
    # opening again (open_store migrates) is a no-op too
    store = await open_store(empty_url)
    await store.close()


async def test_concurrent_starts_migrate_once(empty_url: str) -> None:
    stores = [await open_store(empty_url, migrate=False) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(s) for s in stores))
        assert sorted(map(len, results)) == [0, 0, len(available())]
    finally:
        for s in stores:
            await s.close()


async def test_a_failing_upgrade_changes_nothing(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(empty_url)
    try:
        good = available()
        bad = Migration(9999, "broken", "CREATE TABLE half_done (x INTEGER);\nNOT SQL AT ALL;\n")
        monkeypatch.setattr(migrate_module, "available", lambda: [*good, bad])
        with pytest.raises(Exception):  # noqa: B017 - the driver's own syntax error
            await migrate(store)
        assert await schema_version(store) == good[-1].version
        assert "half_done" not in await tables(store)
    finally:
        await store.close()


def test_statement_splitting() -> None:
    m = Migration(
        1, "x", "-- comment; here\nCREATE TABLE a (x TEXT);\n\nINSERT INTO a VALUES ('a;b');"
    )
    assert m.statements() == ["CREATE TABLE a (x TEXT)", "INSERT INTO a VALUES ('a;b')"]
