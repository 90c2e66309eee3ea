"""Fixtures of the REST API tests: a real store (SQLite file, or a throwaway PostgreSQL
database for tests parametrised with `backend`), the real Services, the API mounted at /v1 in
a parent app exactly as the switch mounts it, and an `Api` helper speaking JSON with tokens.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from provisioning.api import mount_api
from provisioning.services import Principal, Services
from provisioning.store import open_store

PG_ADMIN_URL = os.environ.get("SOFTSWITCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_TIMEOUT = 60


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Overridden in modules whose tests also run on PostgreSQL."""
    return str(request.param)


BOTH_BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.integration]),
]


async def _pg_database() -> tuple[str, Any]:
    import asyncpg

    name = f"api_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", name


async def _drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def store_url(backend: str, tmp_path: Any) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/provisioning.db"
        return
    url, name = await _pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture
async def service(store_url: str) -> AsyncIterator[Services]:
    store = await open_store(store_url)
    try:
        yield Services(store)
    finally:
        await store.close()


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def error_id(self) -> str | None:
        return self.body.get("error_id") if isinstance(self.body, dict) else None


@dataclass
class Api:
    """JSON over the test client; `token=None` sends no Authorization header."""

    client: TestClient
    service: Services
    operator: str
    app: web.Application
    registry: CollectorRegistry
    _numbers: list[int] = field(default_factory=lambda: [5550_0000])

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | object | None = ...,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        tok = self.operator if token is ... else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        kwargs: dict[str, Any] = {"headers": hdrs}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            # big bodies as a file object (aiohttp warns about large raw bytes)
            big = isinstance(data, bytes) and len(data) > 1024 * 1024
            kwargs["data"] = io.BytesIO(data) if big else data
        resp = await self.client.request(method, path, **kwargs)
        raw = await resp.read()
        try:
            body: Any = await resp.json(content_type=None) if raw else None
        except ValueError:
            body = raw
        return Reply(resp.status, body, resp.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, json, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.call("PATCH", path, json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.call("PUT", path, json, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    def number(self) -> str:
        """A fresh 03 number, national form with dashes (the API takes any form)."""
        self._numbers[0] += 1
        n = self._numbers[0]
        return f"03-{n // 10000:04d}-{n % 10000:04d}"

    async def tenant(
        self, tenant_id: str, *, verified: bool = True, ids: int = 1, kinds: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A tenant with its contract number and `ids` IDs (basic + additional)."""
        contract = self.number()
        r = await self.post(
            "/v1/tenants",
            {
                "id": tenant_id,
                "name": f"{tenant_id} K.K.",
                "identity_verified": verified,
                "contract_number": contract,
                "basic_device": {
                    "id": f"{tenant_id}-d0",
                    "kind": "desk",
                    "username": f"{tenant_id}-d0",
                    "password": "secret-pass-0",
                },
            },
        )
        assert r.status == 201, r.body
        for i in range(1, ids):
            kind = kinds[i - 1] if i - 1 < len(kinds) else "app"
            await self.device(tenant_id, f"{tenant_id}-d{i}", kind=kind)
        return r.body

    async def device(self, tenant_id: str, device_id: str, kind: str = "app") -> dict[str, Any]:
        r = await self.post(
            f"/v1/tenants/{tenant_id}/devices",
            {
                "id": device_id,
                "kind": kind,
                "username": device_id,
                "password": "secret-pass-1",
            },
        )
        assert r.status == 201, r.body
        return r.body

    async def contract_number(self, tenant_id: str) -> str:
        r = await self.get(
            f"/v1/tenants/{tenant_id}/numbers",
        )
        assert r.status == 200, r.body
        return next(n["number"] for n in r.body["items"] if n["kind"] == "contract")

    async def token_for(self, tenant_id: str) -> str:
        r = await self.post("/v1/tokens", {"scope": "tenant", "tenant_id": tenant_id})
        assert r.status == 201, r.body
        return str(r.body["token"])


async def make_api(service: Services, aiohttp_client: Any) -> Api:
    registry = CollectorRegistry()
    root = web.Application()
    api_app = mount_api(root, service, registry=registry)
    client = await aiohttp_client(root)
    created = await service.tokens.create_token(
        Principal.operator(), scope="operator", label="tests"
    )
    return Api(client, service, created.token, api_app, registry)


@pytest.fixture
async def api(service: Services, aiohttp_client: Any) -> Api:
    return await make_api(service, aiohttp_client)


def nq(number: str) -> str:
    """A number as a path segment (E.164 with its + percent-encoded)."""
    return number.replace("+", "%2B")
