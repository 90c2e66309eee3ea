"""Operations: one declaration per route that both serves it and documents it.

An `Operation` names the method, the path (relative to the API prefix), the handler, who may
call it, and the schemas of its path parameters, query, request body and response. `bind`
adds it to an aiohttp router behind a wrapper that, in this order:

1. takes the principal that the auth middleware authenticated (middleware.py);
2. answers 404 when a tenant token names another tenant in the path — cross-tenant access
   must look exactly like a tenant that does not exist;
3. answers 403 for operator-only operations called with a tenant token;
4. validates path parameters (a malformed id is a 404: such a resource cannot exist), the
   query (400 invalid-query) and the body (413 / 415 / 400 invalid-json or json-too-deep /
   422 invalid-payload; limits.py has the bounds);
5. calls the handler with a `Ctx` and renders its `Reply` as JSON; a write (POST, PUT,
   PATCH, DELETE) runs inside `auditing(...)`, so its audit entry is written in the write
   transaction of the change (`provisioning.store.audit`), or right after it when the
   handler opened none.

openapi.py renders the same declarations into the OpenAPI 3.1 document.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from provisioning.services import (
    AudioConverter,
    MailboxService,
    PendingAudit,
    Principal,
    Services,
    auditing,
)
from provisioning.services.voicemail import VoicemailRepo

from . import errors
from .limits import MAX_JSON_BODY, MAX_JSON_DEPTH, json_too_deep
from .schema import Boolean, Integer, Schema, SchemaError

__all__ = [
    "CONVERTER_KEY",
    "JSON",
    "VOICEMAIL_KEY",
    "Ctx",
    "Operation",
    "PathParam",
    "Reply",
    "bind",
]

JSON = "application/json"
DEFAULT_BODY_LIMIT = MAX_JSON_BODY  # JSON bodies; uploads declare their own limit

# What the API app holds besides the services (set by app.create_api_app): the voicemail
# repository the media service stores into, and the upload converter when one is injected.
VOICEMAIL_KEY = web.AppKey("api_voicemail", VoicemailRepo)
CONVERTER_KEY = web.AppKey[AudioConverter]("api_converter")


@dataclass(frozen=True, slots=True, kw_only=True)
class PathParam:
    schema: Schema
    what: str  # "tenant", "device" …: a malformed value is a 404 naming it
    description: str = ""
    example: str | None = None  # documented (the demo seed's), used by schemathesis


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any = None  # JSON-serialisable; None with 204
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Ctx:
    """What a handler gets: the services, the caller, and the validated path parameters,
    query and body (their shapes are the operation's schemas)."""

    request: web.Request
    services: Services
    caller: Principal | None  # None only for public operations
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any

    @property
    def principal(self) -> Principal:
        """The authenticated caller (every non-public operation has one)."""
        if self.caller is None:
            raise RuntimeError("a public operation has no principal")
        return self.caller

    @property
    def is_operator(self) -> bool:
        return self.caller is not None and self.caller.is_operator

    @property
    def mailboxes(self) -> MailboxService:
        """Voicemail messages of the tenant's numbers, over the app's repository."""
        return MailboxService(self.services.numbers, self.request.app[VOICEMAIL_KEY])

    @property
    def converter(self) -> AudioConverter | None:
        """The upload converter, when the composition root gave one."""
        return self.request.app.get(CONVERTER_KEY)


Handler = Callable[[Ctx], Awaitable[Reply | web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    method: str
    path: str  # relative to the API prefix, aiohttp syntax: "/tenants/{tenant_id}"
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Schema | None]  # success statuses -> body schema (None: no body)
    path_params: Mapping[str, PathParam] = field(default_factory=dict)
    query: Mapping[str, Schema] = field(default_factory=dict)
    query_required: tuple[str, ...] = ()
    body: Schema | None = None  # a JSON body
    body_media: str = JSON
    raw_body: Mapping[str, Schema] | None = None  # non-JSON media types -> schema (documented)
    body_limit: int = DEFAULT_BODY_LIMIT
    operator_only: bool = False
    public: bool = False  # no token needed (the OpenAPI document)
    response_media: str | tuple[str, ...] = JSON  # a tuple: any of these (raw bodies)
    errors: tuple[int, ...] = ()  # error statuses beyond the usual ones (openapi.py)
    description: str = ""

    @property
    def takes_body(self) -> bool:
        return self.body is not None or self.raw_body is not None


# Per-request state set by the auth middleware (middleware.py): typed keys where aiohttp has
# them, plain strings before (which the versions with typed keys warn about).
if TYPE_CHECKING or hasattr(web, "RequestKey"):
    PRINCIPAL_KEY = web.RequestKey("principal", Principal)
    OPERATION_KEY = web.RequestKey("operation", Operation)
else:  # pragma: no cover - aiohttp < 3.14
    PRINCIPAL_KEY, OPERATION_KEY = "principal", "operation"


def principal_tenant(principal: Principal | None) -> str | None:
    """The tenant a tenant principal is limited to; None for the operator (or nobody)."""
    return None if principal is None or principal.is_operator else principal.tenant_id


def bind(router: web.UrlDispatcher, op: Operation, services: Services) -> web.AbstractRoute:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = request.get(PRINCIPAL_KEY)
        path = _check_path(op, request, principal)
        if op.operator_only and not op.public and not (principal and principal.is_operator):
            raise errors.operator_only()
        query = _check_query(op, request)
        body = await read_body(request, op) if op.takes_body else None
        ctx = Ctx(request, services, principal, path, query, body)
        reply = await _call(op, ctx)
        return reply if isinstance(reply, web.StreamResponse) else render(reply, op)

    handle.__name__ = op.operation_id
    handle.operation = op  # type: ignore[attr-defined]  # read by the auth middleware
    return router.add_route(op.method, op.path, handle)


AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _call(op: Operation, ctx: Ctx) -> Reply | web.StreamResponse:
    """The handler, inside `auditing(...)` for a write; a successful write whose handler
    opened no write transaction gets its entry right after."""
    pending = _pending_audit(op, ctx)
    if pending is None:
        return await op.handler(ctx)
    with auditing(pending):
        reply = await op.handler(ctx)
    if reply.status < 400:
        await ctx.services.audit.record(pending, datetime.now(UTC))
    return reply


def _pending_audit(op: Operation, ctx: Ctx) -> PendingAudit | None:
    principal = ctx.caller
    if op.method not in AUDITED_METHODS or principal is None:
        return None
    tenant = ctx.path.get("tenant_id", principal.tenant_id)
    return PendingAudit(
        token_id=principal.token_id,
        scope=principal.scope,
        tenant_id=None if tenant is None else str(tenant),
        method=op.method,
        route=ctx.request.match_info.route.resource.canonical,  # type: ignore[union-attr]
        params={k: v.isoformat() if isinstance(v, date) else str(v) for k, v in ctx.path.items()},
        status=min(s for s in op.responses if s < 400),
    )


def render(reply: Reply, op: Operation) -> web.StreamResponse:
    if reply.body is None and reply.status == 204:
        return web.Response(status=204, headers=dict(reply.headers))
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


def _check_path(op: Operation, request: web.Request, principal: Principal | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    own = principal_tenant(principal)
    for name, param in op.path_params.items():
        raw = request.match_info.get(name, "")
        if name == "tenant_id" and own is not None and raw != own:
            # Another tenant's data: answer as if it did not exist (never 403).
            raise errors.not_found(param.what, raw)
        try:
            out[name] = param.schema.validate(raw, name)
        except SchemaError:
            raise errors.not_found(param.what, raw) from None
    return out


def _check_query(op: Operation, request: web.Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in request.query:
        if key not in op.query:
            raise errors.invalid_query(key, "unknown parameter")
        if len(request.query.getall(key)) > 1:
            raise errors.invalid_query(key, "given more than once")
    for key in op.query_required:
        if key not in request.query:
            raise errors.invalid_query(key, "is required")
    for key, schema in op.query.items():
        if key in request.query:
            try:
                out[key] = schema.validate(_coerce(request.query[key], schema), key)
            except SchemaError as exc:
                raise errors.invalid_query(key, exc.reason) from None
    return out


def _coerce(text: str, schema: Schema) -> Any:
    """Query strings are text: turn "10" into 10 and "true" into True where the schema wants."""
    if isinstance(schema, Integer):
        try:
            return int(text) if text.lstrip("-").isdigit() and len(text) < 20 else text
        except ValueError:
            return text
    if isinstance(schema, Boolean):
        return {"true": True, "false": False}.get(text, text)
    return text


async def read_body(request: web.Request, op: Operation) -> Any:
    """The body, bounded by the operation's limit whatever the server's client_max_size:
    Content-Length is checked first, then the stream is read in chunks up to the limit."""
    media = request.content_type
    accepted = [op.body_media] if op.body is not None else list(op.raw_body or {})
    if media not in accepted:
        raise errors.unsupported_media_type(" or ".join(accepted), media)
    data = await read_limited(request, op.body_limit)
    if media != JSON:
        return data
    return validate_json(data, op.body)


async def read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise errors.payload_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def validate_json(data: bytes, schema: Schema | None) -> Any:
    if not data.strip():
        raise errors.invalid_json("empty body")
    if json_too_deep(data, MAX_JSON_DEPTH):
        raise errors.json_too_deep(MAX_JSON_DEPTH)
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.invalid_json(str(exc)[:200]) from None
    if schema is None:
        return value
    try:
        return schema.validate(value, "")
    except SchemaError as exc:
        raise errors.invalid_payload(exc.field, exc.reason) from None


def operations_by_route(ops: Sequence[Operation]) -> dict[tuple[str, str], Operation]:
    return {(op.method, op.path): op for op in ops}
