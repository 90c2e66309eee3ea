"""Store contract fixtures: every test runs against SQLite (a file in tmp_path) and against
the real PostgreSQL on 127.0.0.1:5432 (a throwaway database per session, emptied before each
test; migration tests make their own)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from provisioning.model import DeviceKind
from provisioning.services import DeviceCreate, Principal, Services, TenantCreate
from provisioning.store import Store, open_store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_HOST = "127.0.0.1"
PG_PORT = 5432

OP = Principal.operator()
TABLES = (
    "api_tokens",
    "phonebook_entries",
    "prompts",
    "ring_group_members",
    "numbers",
    "devices",
    "tenant_holidays",
    "tenants",
    "gateways",
    "audit_log",
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


async def create_pg_database() -> str:
    name = f"softswitch_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pg_url(name: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql://postgres@{host}:{port}/{name}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One migrated throwaway database for the session."""
    name = asyncio.run(create_pg_database())

    async def migrate() -> None:
        store = await open_store(pg_url(name))
        await store.close()

    asyncio.run(migrate())
    yield name
    asyncio.run(drop_pg_database(name))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/provisioning.db"
    return pg_url(request.getfixturevalue("pg_database"))


async def reset(store: Store) -> None:
    async with store.migration() as tx:
        for table in TABLES:
            await tx.execute(f"DELETE FROM {table}")
        await tx.execute("UPDATE meta SET version = 0, realm = 'softswitch.local' WHERE id = 1")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    await reset(s)
    yield s
    await s.close()


@pytest.fixture
def svc(store: Store) -> Services:
    return Services(store)


async def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sorted), for before/after comparisons."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with store.read() as tx:
        for table in (*TABLES, "meta"):
            rows = await tx.fetch(f"SELECT * FROM {table}")
            out[table] = sorted(
                (tuple((k, _plain(v)) for k, v in sorted(r.items())) for r in rows), key=repr
            )
    return out


def _plain(v: Any) -> Any:
    return bool(v) if isinstance(v, bool) else (bytes(v) if isinstance(v, memoryview) else v)


_counter = 0


def unique(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}{_counter}"


async def make_tenant(
    svc: Services,
    *,
    ids: int = 1,
    verified: bool = False,
    number: str | None = None,
    name: str | None = None,
) -> tuple[str, str, list[str]]:
    """A tenant with `ids` IDs (first app, then desk phones): (tenant id, contract e164, ids)."""
    global _counter
    _counter += 1
    n = _counter
    contract = number or f"03{5000_0000 + n:08d}"
    t = await svc.tenants.create_tenant(
        OP,
        TenantCreate(
            name=name or f"Tenant {n:04d}",
            contract_number=contract,
            identity_verified=verified,
            basic_device=DeviceCreate(
                kind=DeviceKind.APP, username=f"u{n}-0", password="password-0", id=f"d{n}-0"
            ),
        ),
    )
    dev_ids = [f"d{n}-0"]
    for i in range(1, ids):
        d = await svc.devices.create_device(
            OP,
            t.id,
            DeviceCreate(
                kind=DeviceKind.DESK, username=f"u{n}-{i}", password=f"password-{i}", id=f"d{n}-{i}"
            ),
        )
        dev_ids.append(d.id)
    num = await svc.numbers.get_number(OP, t.id, contract)
    return t.id, num.e164, dev_ids
