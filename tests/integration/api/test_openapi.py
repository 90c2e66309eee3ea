"""The OpenAPI document describes exactly the routes the app serves, with their parameters,
bodies, success and error responses and the bearer security scheme."""

from __future__ import annotations

import re

from aiohttp import web

from .conftest import Api


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}


async def test_every_route_is_documented_and_vice_versa(api: Api) -> None:
    doc = (await api.get("/v1/openapi.json", token=None)).body
    served = served_routes(api.app)
    assert all(path.startswith("/v1/") for _, path in served)
    assert served == documented_routes(doc)
    assert len(served) > 40


async def test_every_operation_is_fully_described(api: Api) -> None:
    doc = (await api.get("/v1/openapi.json")).body
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "operator or tenant API token",
    }
    ids = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ids.add(op["operationId"])
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            statuses = set(op["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            if path == "/v1/openapi.json":
                assert op["security"] == []
                continue
            assert op["security"] == [{"bearer": []}]
            assert {"401", "404", "503"} <= statuses, (method, path)
            for status in statuses - {"200", "201", "204", "206"}:  # 206: a byte range
                ref = op["responses"][status]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}
            if method in ("post", "put", "patch") and "requestBody" in op:
                assert {"413", "415"} <= statuses, (method, path)
    assert len(ids) == sum(len(ops) for ops in doc["paths"].values())  # unique operationIds


async def test_every_reference_resolves(api: Api) -> None:
    doc = (await api.get("/v1/openapi.json")).body
    text = str(doc)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in doc["components"]["schemas"], name


async def test_document_is_valid_for_schemathesis(api: Api) -> None:
    import schemathesis
    from schemathesis.core.result import Ok

    doc = (await api.get("/v1/openapi.json")).body
    schema = schemathesis.openapi.from_dict(doc)
    results = list(schema.get_all_operations())
    assert len(results) == sum(len(ops) for ops in doc["paths"].values())
    assert all(isinstance(r, Ok) for r in results), [r for r in results if not isinstance(r, Ok)]


async def test_error_ids_are_published(api: Api) -> None:
    """Clients switch on error_id: the document lists every one with its status."""
    ids = (await api.get("/v1/openapi.json")).body["x-error-ids"]
    assert ids["invalid-payload"] == 422 and ids["too-many-additional-numbers"] == 409
    assert ids["payload-too-large"] == 413 and ids["store-unavailable"] == 503
    assert all(re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", k) for k in ids)
