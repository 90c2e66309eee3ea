"""The OpenAPI 3.1 document, rendered from the same `Operation` declarations that serve the
routes (core.py) — so a route cannot exist undocumented, and a documented schema is the one
that validates. Error answers are documented per operation with the statuses it can give.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from provisioning.errors import ERROR_IDS
from provisioning.services import AUDIO_ERROR_IDS

from .common import ERROR
from .core import JSON, Operation
from .errors import API_ERROR_IDS
from .schema import ByMedia, Schema, collect_refs

__all__ = ["build_document", "error_statuses"]

_REASONS = {
    400: (
        "Malformed request (invalid-json, json-too-deep, invalid-query, or a domain input error)"
    ),
    401: "Missing or invalid bearer token",
    403: (
        "The token's scope does not allow this operation or field, or its tenant is "
        "suspended (tenant-suspended)"
    ),
    404: "No such resource (also for another tenant's resources)",
    409: "A service rule or a uniqueness constraint refuses the change",
    413: "Request body too large (payload-too-large)",
    415: "Unsupported Content-Type, or an upload in a format that cannot be read (audio-*)",
    416: "The byte range starts past the end (range-not-satisfiable)",
    422: (
        "The body does not match the schema (invalid-payload; details.field names it), "
        "or an uploaded file is refused for its content (audio-*)"
    ),
    503: "The provisioning store is unavailable (store-unavailable); retry later",
}


def error_statuses(op: Operation) -> list[int]:
    if op.public:
        return []
    statuses = {400, 401, 403, 404, 503}
    if op.method != "GET":
        statuses.add(409)
    if op.takes_body:
        statuses |= {413, 415}
    if op.body is not None:
        statuses.add(422)
    return sorted(statuses | set(op.errors))


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, p in op.path_params.items():
        param = {
            "name": name,
            "in": "path",
            "required": True,
            "schema": p.schema.json_schema(),
            "description": p.description or p.what,
        }
        if p.example is not None:
            param["example"] = p.example  # the demo seed's, so examples reach real data
        params.append(param)
    params += [
        {
            "name": name,
            "in": "query",
            "required": name in op.query_required,
            "schema": schema.json_schema(),
        }
        for name, schema in op.query.items()
    ]
    return params


def _request_body(op: Operation) -> dict[str, Any] | None:
    if op.body is not None:
        content = {op.body_media: {"schema": op.body.json_schema()}}
    elif op.raw_body is not None:
        content = {media: {"schema": s.json_schema()} for media, s in op.raw_body.items()}
    else:
        return None
    return {"required": True, "content": content}


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    medias = (op.response_media,) if isinstance(op.response_media, str) else op.response_media
    for status, schema in op.responses.items():
        entry: dict[str, Any] = {"description": "Success"}
        if isinstance(schema, ByMedia):
            entry["content"] = {m: {"schema": s.json_schema()} for m, s in schema.media.items()}
        elif schema is not None:
            entry["content"] = {m: {"schema": schema.json_schema()} for m in medias}
        out[str(status)] = entry
    for status in error_statuses(op):
        out[str(status)] = {
            "description": _REASONS[status],
            "content": {JSON: {"schema": ERROR.json_schema()}},
        }
    return out


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op),
        "responses": _responses(op),
        "security": [] if op.public else [{"bearer": []}],
    }
    if op.description:
        doc["description"] = op.description
    if op.operator_only:
        doc["x-operator-only"] = True
    body = _request_body(op)
    if body is not None:
        doc["requestBody"] = body
    return doc


def _schemas(ops: Sequence[Operation]) -> dict[str, Any]:
    refs: dict[str, Schema] = {}
    collect_refs(ERROR, refs)
    for op in ops:
        for s in [
            op.body,
            *op.responses.values(),
            *op.query.values(),
            *(op.raw_body or {}).values(),
        ]:
            if s is not None:
                collect_refs(s, refs)
    return {name: s.json_schema() for name, s in sorted(refs.items())}


def build_document(ops: Sequence[Operation], prefix: str = "/v1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        path = re.sub(r"{(\w+):[^}]*}", r"{\1}", op.path)  # drop aiohttp's route regexes
        paths.setdefault(prefix + path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "softswitch provisioning API",
            "version": "1.0.0",
            "description": (
                "Tenants, IDs (devices), numbers and their options, schedules, prompts, "
                "phonebook and carrier gateways of the cloud-phone softswitch. Every error is "
                "JSON {error_id, message, details}; another tenant's resources answer 404."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(ops),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "operator or tenant API token",
                },
            },
        },
        "security": [{"bearer": []}],
        "x-error-ids": dict(sorted({**ERROR_IDS, **AUDIO_ERROR_IDS, **API_ERROR_IDS}.items())),
    }
