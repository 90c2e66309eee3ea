"""The HTTP layer: authentication, the JSON error shape for every kind of bad request, body
limits, unknown routes and methods, store outages, and the Prometheus counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from provisioning.api.core import DEFAULT_BODY_LIMIT
from provisioning.rules import MAX_PROMPT_BYTES

from .conftest import Api, make_api

ERROR_KEYS = {"error_id", "message", "details"}


def assert_error(r: Any, status: int, error_id: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and set(r.body) == ERROR_KEYS, r.body
    assert r.body["error_id"] == error_id, r.body
    assert r.headers["Content-Type"].startswith("application/json")


async def test_missing_token_is_401(api: Api) -> None:
    r = await api.get("/v1/tenants", token=None)
    assert_error(r, 401, "missing-token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer ", "Basic abc", "Bearer a b", "x"])
async def test_invalid_token_is_401(api: Api, header: str) -> None:
    r = await api.get("/v1/tenants", token=None, headers={"Authorization": header})
    assert r.status == 401, r.body
    assert r.body["error_id"] in ("invalid-token", "missing-token")


async def test_revoked_token_is_401(api: Api) -> None:
    created = await api.post("/v1/tokens", {"scope": "operator", "label": "short-lived"})
    assert created.status == 201
    token = created.body["token"]
    assert (await api.get("/v1/gateways", token=token)).status == 200
    assert (await api.delete(f"/v1/tokens/{created.body['id']}")).status == 204
    assert_error(await api.get("/v1/gateways", token=token), 401, "invalid-token")


async def test_openapi_needs_no_token(api: Api) -> None:
    r = await api.get("/v1/openapi.json", token=None)
    assert r.status == 200
    assert r.body["openapi"].startswith("3.1")


async def test_unknown_route_is_json_404(api: Api) -> None:
    assert_error(await api.get("/v1/no-such-thing"), 404, "not-found")
    assert_error(await api.get("/v1/tenants/x/y/z/w"), 404, "not-found")


async def test_wrong_method_is_json_405_with_allow(api: Api) -> None:
    r = await api.call("POST", "/v1/gateways/gw1")
    assert_error(r, 405, "method-not-allowed")
    assert set(r.headers["Allow"].split(",")) == {"GET", "PATCH", "DELETE"}


async def test_malformed_json_is_400(api: Api) -> None:
    for raw in (b"{", b"[1,", b"\xff\xfe", b"NaN", b"", b'{"name": Infinity}'):
        r = await api.call(
            "POST", "/v1/gateways", data=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(r, 400, "invalid-json")


async def test_deeply_nested_json_is_400_not_500(api: Api) -> None:
    raw = b"[" * 50_000 + b"]" * 50_000
    r = await api.call(
        "POST", "/v1/gateways", data=raw, headers={"Content-Type": "application/json"}
    )
    assert r.status in (400, 413), r.body
    assert r.body["error_id"] in ("invalid-json", "payload-too-large")


async def test_wrong_content_type_is_415(api: Api) -> None:
    r = await api.call(
        "POST",
        "/v1/gateways",
        data=b"name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "127.0.0.9"}, "name"),
        ({"name": "gw", "host": "127.0.0.9", "port": 70000}, "port"),
        ({"name": "gw", "host": "127.0.0.9", "port": "5060"}, "port"),
        ({"name": "gw", "host": "127.0.0.9", "transport": "sctp"}, "transport"),
        ({"name": "gw", "host": "127.0.0.9", "colour": "red"}, "colour"),
        ({"name": "gw", "host": "127.0.0.9", "allowed_sources": ["x y"]}, "allowed_sources[0]"),
        ([], ""),
    ],
)
async def test_schema_violation_is_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    r = await api.post("/v1/gateways", body)
    assert_error(r, 422, "invalid-payload")
    assert r.body["details"]["field"] == field
    assert (await api.get("/v1/gateways")).body["items"] == []


async def test_bad_query_is_400(api: Api) -> None:
    for query in ("limit=0", "limit=501", "limit=ten", "unknown=1", "limit=1&limit=2"):
        assert_error(await api.get(f"/v1/tenants?{query}"), 400, "invalid-query")


async def test_body_over_limit_by_content_length_is_413(api: Api) -> None:
    body = json.dumps({"name": "x" * DEFAULT_BODY_LIMIT, "host": "h"}).encode()
    r = await api.call(
        "POST", "/v1/gateways", data=body, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413, "payload-too-large")


async def test_chunked_body_over_limit_is_413(api: Api) -> None:
    async def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(DEFAULT_BODY_LIMIT // 1000 + 2):
            yield b"x" * 1000
        yield b'", "host": "h"}'

    r = await api.client.post(
        "/v1/gateways",
        data=chunks(),
        headers={"Authorization": f"Bearer {api.operator}", "Content-Type": "application/json"},
    )
    assert r.status == 413
    assert (await r.json())["error_id"] == "payload-too-large"


async def test_prompt_upload_has_its_own_larger_limit(api: Api) -> None:
    await api.tenant("acme")
    big = b"\0" * (DEFAULT_BODY_LIMIT * 4)
    ok = await api.call(
        "POST", "/v1/tenants/acme/prompts?name=big", data=big, headers={"Content-Type": "audio/wav"}
    )
    assert ok.status == 201, ok.body
    too_big = b"\0" * (MAX_PROMPT_BYTES + 1)
    r = await api.call(
        "POST",
        "/v1/tenants/acme/prompts?name=huge",
        data=too_big,
        headers={"Content-Type": "audio/wav"},
    )
    assert_error(r, 413, "payload-too-large")
    names = [p["name"] for p in (await api.get("/v1/tenants/acme/prompts")).body["items"]]
    assert names == ["big"]


async def test_metrics_count_requests_and_errors(api: Api) -> None:
    await api.get("/v1/gateways")
    await api.get("/v1/gateways", token=None)
    await api.get("/v1/nowhere")
    reg = api.registry
    ok = reg.get_sample_value(
        "api_requests_total", {"route": "/v1/gateways", "method": "GET", "status": "200"}
    )
    unauth = reg.get_sample_value(
        "api_requests_total", {"route": "/v1/gateways", "method": "GET", "status": "401"}
    )
    unmatched = reg.get_sample_value(
        "api_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}
    )
    assert (ok, unauth, unmatched) == (1.0, 1.0, 1.0)
    assert reg.get_sample_value("api_errors_total", {"error_id": "missing-token"}) == 1.0
    assert reg.get_sample_value("api_errors_total", {"error_id": "not-found"}) == 1.0


class TcpRelay:
    """127.0.0.1:port -> PostgreSQL; `cut()` closes the listener and every relayed
    connection, so the store sees the database go away as it would on a network outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [w, uw]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.integration
async def test_store_down_is_503(aiohttp_client: Any) -> None:
    from urllib.parse import urlsplit

    from provisioning.services import Services
    from provisioning.store import open_store

    from .conftest import _drop_pg_database, _pg_database

    url, name = await _pg_database()
    relay = TcpRelay(urlsplit(url).port or 5432)
    port = await relay.start()
    store = await open_store(url.replace(f":{urlsplit(url).port}/", f":{port}/"))
    try:
        api = await make_api(Services(store), aiohttp_client)
        await api.tenant("acme")
        assert (await api.get("/v1/tenants/acme")).status == 200
        await relay.cut()  # the database goes away under the API
        for path in ("/v1/tenants/acme", "/v1/gateways"):
            r = await api.get(path)
            assert_error(r, 503, "store-unavailable")
            assert r.headers.get("Retry-After")
    finally:
        await store.close()
        await _drop_pg_database(name)
