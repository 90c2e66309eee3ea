"""Hostile JSON bodies on every route that takes one (enumerated from the operations, so a new
route cannot be forgotten): a lone surrogate ("\\ud800", valid JSON, not Unicode text) in each
string field, in a key, and over-deep nesting. Each is refused with a 4xx naming the field,
never a 5xx, and nothing changes."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from provisioning.api import operations
from provisioning.api.core import Operation
from provisioning.api.limits import MAX_JSON_DEPTH
from provisioning.api.schema import Array, Deprecated, Nullable, Object, Ref, Schema, String

from .conftest import BOTH_BACKENDS, Api
from .test_isolation import BODIES, everything_of, populate_victim

SURROGATE = "x\ud800y"

# A valid body for the routes the isolation walk has none for (operator token, tenant "a").
MORE_BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/tenants/{tenant_id}/numbers/{number}/voicemail"): {"voicemail_ring_time": 5},
    ("PATCH", "/v1/tenants/{tenant_id}/numbers/{number}/recording"): {"recording_notice": False},
}


@pytest.fixture(params=BOTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def json_operations() -> dict[tuple[str, str], Operation]:
    """(method, route template as the router names it) -> operation, for JSON bodies."""
    return {
        (op.method, "/v1" + re.sub(r"{(\w+):[^}]*}", r"{\1}", op.path)): op
        for op in operations()
        if op.body is not None
    }


def string_fields(schema: Schema, path: tuple[str | int, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every String a body of `schema` can hold (array items as index 0)."""
    match schema:
        case String():
            yield path
        case Ref() | Nullable() | Deprecated():
            yield from string_fields(schema.inner, path)
        case Array():
            yield from string_fields(schema.items, (*path, 0))
        case Object():
            for name, field in schema.fields.items():
                yield from string_fields(field, (*path, name))


def put_at(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at `path` (missing objects and arrays created)."""
    out = json.loads(json.dumps(body))
    node: Any = out
    for key, nxt in itertools.pairwise(path):
        if isinstance(key, int):
            while len(node) <= key:
                node.append({} if isinstance(nxt, str) else [])
        elif key not in node or not isinstance(node[key], dict | list):
            node[key] = {} if isinstance(nxt, str) else []
        node = node[key]
    last = path[-1]
    if isinstance(last, int):
        node[:] = [value]
    else:
        node[last] = value
    return out


def field_name(path: tuple[Any, ...]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def base_body(method: str, template: str, params: dict[str, str]) -> dict[str, Any]:
    body = MORE_BODIES.get((method, template), BODIES.get((method, template)))
    assert body is not None, f"give {method} {template} a valid body"
    return dict(body(params) if callable(body) else body)


async def snapshot(api: Api) -> dict[str, Any]:
    return {**await everything_of(api, "a"), "tenants": (await api.get("/v1/tenants")).body}


async def post_raw(api: Api, method: str, template: str, params: dict[str, str], raw: bytes) -> Any:
    path = re.sub(r"{(\w+)}", lambda m: params[m.group(1)], template)
    headers = {"Content-Type": "application/json"}
    return await api.call(method, path, data=raw, headers=headers)


async def test_a_lone_surrogate_in_any_string_field_is_422_naming_it(api: Api) -> None:
    params = await populate_victim(api)
    before = await snapshot(api)
    checked = 0
    for (method, template), op in sorted(json_operations().items()):
        assert op.body is not None
        for path in string_fields(op.body):
            body = put_at(base_body(method, template, params), path, SURROGATE)
            raw = json.dumps(body).encode()  # ASCII: the surrogate travels as \ud800
            r = await post_raw(api, method, template, params, raw)
            assert (r.status, r.error_id) == (422, "invalid-payload"), (method, template, path)
            assert r.body["details"]["field"] == field_name(path), (method, template, r.body)
            checked += 1
    assert checked >= 40
    assert await snapshot(api) == before


async def test_a_lone_surrogate_in_a_key_is_422(api: Api) -> None:
    params = await populate_victim(api)
    before = await snapshot(api)
    for (method, template), _op in sorted(json_operations().items()):
        body = {**base_body(method, template, params), SURROGATE: 1}
        r = await post_raw(api, method, template, params, json.dumps(body).encode())
        assert (r.status, r.error_id) == (422, "invalid-payload"), (method, template, r.body)
        assert r.body["details"] == {"field": SURROGATE, "reason": "unknown field"}
    assert await snapshot(api) == before


async def test_a_paired_surrogate_is_ordinary_text(api: Api) -> None:
    """ "\\ud83d\\ude00" is one character (U+1F600): accepted and stored as it is."""
    await api.tenant("a")
    raw = b'{"name": "Caf\\u00e9 \\ud83d\\ude00"}'
    r = await post_raw(api, "PATCH", "/v1/tenants/{tenant_id}", {"tenant_id": "a"}, raw)
    assert r.status == 200 and r.body["name"] == "Café 😀"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",  # one level too deep
        b"[" * (64 * 1024),  # as deep as a body may be long: refused before decoding
    ],
    ids=["limit+1", "64KiB"],
)
async def test_json_deeper_than_the_limit_is_400_json_too_deep(api: Api, raw: bytes) -> None:
    await api.tenant("a")
    r = await post_raw(api, "PATCH", "/v1/tenants/{tenant_id}", {"tenant_id": "a"}, raw)
    assert (r.status, r.error_id) == (400, "json-too-deep"), r.body
    assert r.body["details"] == {"limit": MAX_JSON_DEPTH}


async def test_json_at_the_limit_reaches_the_schema(api: Api) -> None:
    """Exactly MAX_JSON_DEPTH levels is parsed (and refused for its shape: 422 naming the
    field); brackets inside strings do not count."""
    await api.tenant("a")
    inner = b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    raw = b'{"name":' + inner + b"}"
    r = await post_raw(api, "PATCH", "/v1/tenants/{tenant_id}", {"tenant_id": "a"}, raw)
    assert (r.status, r.error_id) == (422, "invalid-payload") and r.body["details"][
        "field"
    ] == "name"
    name = '[{"\\' * 45  # brackets, quotes and backslashes inside a string
    raw = json.dumps({"name": name}).encode()
    r = await post_raw(api, "PATCH", "/v1/tenants/{tenant_id}", {"tenant_id": "a"}, raw)
    assert r.status == 200 and r.body["name"] == name
