"""The two middlewares of the API sub-application, outermost first.

`errors_middleware` is the one place where anything a handler raises becomes a JSON answer:
- `ApiError` (HTTP-level checks) and `ProvisioningError` (domain rules) render their own
  status / error_id / details;
- aiohttp's `HTTPException`s (unknown route 404, wrong method 405 keeping `Allow`, body over
  the server's client_max_size 413) become the same JSON shape;
- a lost database (asyncpg/sqlite/OS connection errors) is 503 `store-unavailable`;
- anything else is logged with its traceback and answered 500 `internal-error` — a bug, which
  the schemathesis test exists to find.
It also counts every answer in `api_requests_total{route,method,status}` and every error in
`api_errors_total{error_id}` (requests the HTTP parser refused before any middleware ran are
counted by server.py with route "unparsed").

`auth_middleware` authenticates `Authorization: Bearer <token>` for every matched operation
that is not public (`Services.tokens.authenticate`: 401 for a bad token, 403
`tenant-suspended` for a suspended tenant's) and stores the principal in the request under
`core.PRINCIPAL_KEY`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from provisioning.errors import NotFound, ProvisioningError, StoreUnavailable
from provisioning.services import Principal

from . import errors
from .core import OPERATION_KEY, PRINCIPAL_KEY, Operation
from .errors import ERROR_ID_KEY, error_response

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("provisioning.api")


__all__ = ["API_METRICS", "ApiMetrics", "auth_middleware", "errors_middleware"]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Never the global registry: several apps may live in one process (tests).
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests_total = Counter(
            "api_requests_total",
            "REST API requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors_total = Counter(
            "api_errors_total",
            "REST API error answers by error_id",
            ["error_id"],
            registry=self.registry,
        )

    def observe(self, request: web.Request, resp: web.StreamResponse) -> None:
        self.requests_total.labels(route_label(request), request.method, str(resp.status)).inc()
        error_id = resp.get(ERROR_ID_KEY)
        if error_id:
            self.errors_total.labels(error_id).inc()

    def refused(self, status: int, error_id: str) -> None:
        """A request the HTTP parser refused (server.py): no route, no method to label."""
        self.requests_total.labels("unparsed", "-", str(status)).inc()
        self.errors_total.labels(error_id).inc()


API_METRICS = web.AppKey("api_metrics", ApiMetrics)


def route_label(request: web.Request) -> str:
    """The route template ("/v1/tenants/{tenant_id}"), never the raw path (bounded labels)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _store_errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [ConnectionError, sqlite3.OperationalError, TimeoutError]
    try:
        import asyncpg

        kinds += [
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
        ]
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        pass
    return tuple(kinds)


STORE_ERRORS = _store_errors()


def _from_domain(exc: ProvisioningError, request: web.Request) -> web.Response:
    if exc.error_id == "wrong-tenant":
        exc = _hidden(exc, request)
    status = exc.status if 400 <= exc.status <= 599 else 400
    headers = {"Retry-After": "5"} if isinstance(exc, StoreUnavailable) else None
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc.message)
    return error_response(status, exc.error_id, exc.message, exc.details, headers)


def _hidden(exc: ProvisioningError, request: web.Request) -> ProvisioningError:
    """Another tenant's resource must look like one that does not exist: a 404 naming what
    the caller asked for (the last path parameter), never the tenant it belongs to."""
    op: Operation | None = request.get(OPERATION_KEY)
    if op is not None and op.path_params:
        name, param = list(op.path_params.items())[-1]
        return NotFound(param.what, request.match_info.get(name, ""))
    return NotFound("tenant", exc.details.get("tenant_id", ""))


_HTTP_IDS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def _from_http(exc: web.HTTPException, request: web.Request) -> web.StreamResponse:
    if exc.status < 400:  # a redirect raised on purpose
        return exc
    error_id = _HTTP_IDS.get(exc.status, "http-error")
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    details: dict[str, Any] = {}
    if exc.status == 404:
        details = {"what": "route", "key": request.path}
        return error_response(404, error_id, f"no route {request.path}", details)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        details = {"method": exc.method, "allowed": sorted(exc.allowed_methods)}
    return error_response(exc.status, error_id, exc.reason, details, headers)


def _internal(request: web.Request) -> web.Response:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal-error", "internal error; it has been logged")


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ApiError as exc:
        return exc.response()
    except ProvisioningError as exc:
        return _from_domain(exc, request)
    except web.HTTPException as exc:
        return _from_http(exc, request)
    except STORE_ERRORS as exc:
        log.warning("store unavailable: %r", exc)
        return errors.store_unavailable().response()
    except asyncio.CancelledError:
        raise
    except Exception:
        return _internal(request)


def errors_middleware(metrics: ApiMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await _answer(request, handler)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the error mapping itself: still JSON, still logged
            resp = _internal(request)
        metrics.observe(request, resp)
        return resp

    return middleware


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise errors.unauthorized("missing-token", "an Authorization: Bearer token is required")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.unauthorized("invalid-token", "Authorization must be 'Bearer <token>'")
    return token.strip()


def auth_middleware(authenticate: Callable[[str], Awaitable[Principal]]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info
        op: Operation | None = getattr(info.handler, "operation", None)
        if info.http_exception is None and op is not None and not op.public:
            try:
                request[PRINCIPAL_KEY] = await authenticate(_bearer(request))
            except ProvisioningError as exc:
                if exc.status != 401:
                    raise
                raise errors.unauthorized(exc.error_id, exc.message) from None
        if op is not None:
            request[OPERATION_KEY] = op
        return await handler(request)

    return middleware
