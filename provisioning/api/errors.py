"""The API's own errors (HTTP-level: bad JSON, bad payload, no token …) and the one JSON
shape every error answer has: `{"error_id": "...", "message": "...", "details": {...}}`.

`error_id`s are stable kebab-case strings that clients may switch on; messages are for humans
and may change. Domain errors raised by the provisioning service carry their own `status`,
`error_id` and `details` and are rendered by the same `error_response` (see middleware.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from provisioning.errors import NotFound

__all__ = ["API_ERROR_IDS", "ERROR_ID_KEY", "ApiError", "error_response"]

# The error_ids the HTTP layer itself answers with (the service's are in
# provisioning.errors.ERROR_IDS); both lists are published in the OpenAPI document.
API_ERROR_IDS: dict[str, int] = {
    "invalid-json": 400,
    "json-too-deep": 400,
    "invalid-query": 400,
    "bad-http-request": 400,
    "missing-token": 401,
    "invalid-token": 401,
    "operator-only": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "payload-too-large": 413,
    "request-line-too-long": 414,
    "unsupported-media-type": 415,
    "range-not-satisfiable": 416,
    "invalid-payload": 422,
    "header-too-large": 431,
    "internal-error": 500,
    "store-unavailable": 503,
}

# Stored on every error response so the metrics middleware can count it by error_id
# (typed keys since aiohttp 3.12; plain strings before, which newer versions warn about).
ERROR_ID_KEY: Any = web.ResponseKey("error_id", str) if hasattr(web, "ResponseKey") else "error_id"


def error_response(
    status: int,
    error_id: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    resp = web.json_response(
        {"error_id": error_id, "message": message, "details": dict(details or {})},
        status=status,
        headers=dict(headers or {}),
    )
    resp[ERROR_ID_KEY] = error_id
    return resp


class ApiError(Exception):
    """An error the HTTP layer itself detects. Raise it from anywhere in a handler."""

    def __init__(
        self,
        status: int,
        error_id: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.error_id, self.message, self.details, self.headers)


def invalid_json(reason: str) -> ApiError:
    return ApiError(400, "invalid-json", f"the request body is not valid JSON: {reason}")


def json_too_deep(limit: int) -> ApiError:
    return ApiError(
        400,
        "json-too-deep",
        f"the JSON body nests deeper than {limit} levels",
        {"limit": limit},
    )


def invalid_payload(field: str, reason: str) -> ApiError:
    return ApiError(
        422,
        "invalid-payload",
        f"{field or 'body'}: {reason}",
        {"field": field, "reason": reason},
    )


def invalid_query(field: str, reason: str) -> ApiError:
    return ApiError(
        400,
        "invalid-query",
        f"query parameter {field}: {reason}",
        {"field": field, "reason": reason},
    )


def payload_too_large(limit: int) -> ApiError:
    return ApiError(
        413, "payload-too-large", f"the request body exceeds {limit} bytes", {"limit": limit}
    )


def unsupported_media_type(expected: str, got: str) -> ApiError:
    return ApiError(
        415,
        "unsupported-media-type",
        f"Content-Type must be {expected}",
        {"expected": expected, "content_type": got},
    )


def unauthorized(error_id: str, message: str) -> ApiError:
    return ApiError(401, error_id, message, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def operator_only() -> ApiError:
    return ApiError(403, "operator-only", "this operation needs an operator token")


def not_found(what: str, key: object) -> NotFound:
    """The service's own `NotFound`, so that a resource of another tenant and a resource that
    does not exist cannot be told apart."""
    return NotFound(what, key)


def store_unavailable() -> ApiError:
    return ApiError(
        503,
        "store-unavailable",
        "the provisioning store is unavailable; retry later",
        headers={"Retry-After": "5"},
    )
