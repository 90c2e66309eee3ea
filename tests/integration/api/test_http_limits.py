"""HTTP-level bounds through raw sockets on a real listener, served as the switch serves it
(`ApiAppRunner`, the API mounted at /v1): an over-long request line, an over-long header
field, too many header fields, malformed HTTP and over-large bodies are answered with the
API's JSON error shape and a stable error_id, logged in one line without a traceback, and
counted in the API metrics. Sizes at the limit still reach the API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from provisioning.api import mount_api
from provisioning.api.limits import MAX_JSON_BODY, HttpLimits
from provisioning.api.server import ApiAppRunner
from provisioning.services import Principal, Services

LIMITS = HttpLimits()


@dataclass
class Served:
    port: int
    registry: CollectorRegistry
    token: str


@pytest.fixture
async def served(service: Services) -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    root = web.Application()
    mount_api(root, service, registry=registry)
    runner = ApiAppRunner(root, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    created = await service.tokens.create_token(Principal.operator(), scope="operator")
    try:
        yield Served(runner.addresses[0][1], registry, created.token)
    finally:
        await runner.cleanup()


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Send `raw`, read one answer (by its Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def request(target: bytes, headers: list[bytes] = (), body: bytes = b"") -> bytes:  # type: ignore[assignment]
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: x", b"Connection: close", *headers]
    if body:
        lines[0] = b"POST " + target + b" HTTP/1.1"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def target_of(length: int) -> bytes:
    base = b"/v1/openapi.json?x="
    return base + b"a" * (length - len(base))


def errors(registry: CollectorRegistry, error_id: str) -> float:
    return registry.get_sample_value("api_errors_total", {"error_id": error_id}) or 0.0


REFUSALS = [
    ("request line", request(target_of(LIMITS.request_line + 1)), 414, "request-line-too-long"),
    (
        "header field",
        request(b"/v1/openapi.json", [b"X-Big: " + b"a" * (LIMITS.header_field + 1)]),
        431,
        "header-too-large",
    ),
    (
        "header name",
        request(b"/v1/openapi.json", [b"X" * (LIMITS.header_field + 1) + b": a"]),
        431,
        "header-too-large",
    ),
    (
        "header count",
        request(b"/v1/openapi.json", [b"X-%d: a" % i for i in range(LIMITS.header_count)]),
        431,
        "header-too-large",
    ),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad-http-request"),
    ("bad version", b"GET /v1/openapi.json HTTP/9.9\r\n\r\n", 400, "bad-http-request"),
]


@pytest.mark.parametrize(
    ("what", "raw", "status", "error_id"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
async def test_parser_refusals_are_json_api_errors(
    served: Served,
    caplog: pytest.LogCaptureFixture,
    what: str,
    raw: bytes,
    status: int,
    error_id: str,
) -> None:
    caplog.set_level(logging.INFO)
    got, headers, body = await exchange(served.port, raw)
    assert (got, body["error_id"]) == (status, error_id), (what, body)
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"error_id", "message", "details"}
    # one line, no traceback, nothing at ERROR
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    refused = [r for r in caplog.records if r.name == "provisioning.api.http"]
    assert len(refused) == 1 and error_id in refused[0].getMessage()
    assert errors(served.registry, error_id) == 1.0
    unparsed = {"route": "unparsed", "method": "-", "status": str(status)}
    assert served.registry.get_sample_value("api_requests_total", unparsed) == 1.0


async def test_sizes_at_the_limits_reach_the_api(served: Served) -> None:
    """The longest request line, a header field of the largest size and the most header
    fields are parsed: the API itself answers (its query check refuses the filler)."""
    field = b"X-Big: " + b"a" * (LIMITS.header_field - len(b"X-Big"))  # name + value
    raw = request(
        target_of(LIMITS.request_line),
        [field, *(b"X-%d: a" % i for i in range(LIMITS.header_count - 3))],
    )
    status, _, body = await exchange(served.port, raw)
    assert (status, body["error_id"]) == (400, "invalid-query"), body
    assert errors(served.registry, "request-line-too-long") == 0.0
    assert errors(served.registry, "header-too-large") == 0.0


async def test_body_over_the_limit_is_413_before_it_is_read(served: Served) -> None:
    """Content-Length over the limit: refused on the header; the body is never sent."""
    headers = [
        b"Authorization: Bearer " + served.token.encode(),
        b"Content-Type: application/json",
        b"Content-Length: %d" % (MAX_JSON_BODY + 1),
    ]
    status, _, body = await exchange(served.port, request(b"/v1/gateways", headers, b"{"))
    assert (status, body["error_id"]) == (413, "payload-too-large")
    assert body["details"] == {"limit": MAX_JSON_BODY}
    assert errors(served.registry, "payload-too-large") == 1.0
