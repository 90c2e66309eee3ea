"""The HTTP server under the API: aiohttp's parser limits, answered like every API error.

aiohttp refuses an over-long request line, an over-long header field, too many header fields
or malformed HTTP inside its parser, before any application code: it logs the traceback
(`aiohttp.server`, ERROR) and answers `400` in plain text. `ApiAppRunner` is an `AppRunner`
whose connections answer those refusals as the API does instead:

- JSON `{"error_id", "message", "details"}`: 414 `request-line-too-long`, 431
  `header-too-large`, 400 `bad-http-request` (limits.py has the numbers and why);
- one log line, no traceback (it is the client's mistake, not a bug);
- counted in the API metrics (`api_requests_total{route="unparsed"}` and
  `api_errors_total{error_id}`) when the app carries them (`mount_api` puts them on it).

aiohttp offers no public seam for this: `handler_args` only pass keyword arguments to its
`RequestHandler`, whose `handle_error` writes the plain-text answer. So the runner builds its
`Server` with a `RequestHandler` subclass overriding `handle_error` for parser errors only
(everything else, e.g. a handler timeout, keeps aiohttp's behaviour). It is tested through
raw sockets (tests/integration/api/test_http_limits.py), so an aiohttp upgrade that moves
these internals fails loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .errors import error_response
from .limits import HttpLimits
from .middleware import API_METRICS

__all__ = ["ApiAppRunner", "HttpRefusal", "refusal_of"]

log = logging.getLogger("provisioning.api.http")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRefusal:
    status: int
    error_id: str
    message: str
    details: dict[str, Any]


RefusalCounter = Callable[[HttpRefusal], None]


def refusal_of(exc: HttpProcessingError, limits: HttpLimits) -> HttpRefusal:
    """What a parser error is, as an API error."""
    if isinstance(exc, LineTooLong) and exc.args[1:2] == (limits.request_line,):
        return HttpRefusal(
            status=414,
            error_id="request-line-too-long",
            message=f"the request target exceeds {limits.request_line} bytes",
            details={"limit": limits.request_line},
        )
    if isinstance(exc, LineTooLong):
        return _header_too_large(f"a header field exceeds {limits.header_field} bytes", limits)
    if "too many headers" in str(exc.message).lower():
        return _header_too_large(f"more than {limits.header_count} header fields", limits)
    return HttpRefusal(
        status=400,
        error_id="bad-http-request",
        message="malformed HTTP request",
        details={"reason": str(exc.message)[:200]},
    )


def _header_too_large(message: str, limits: HttpLimits) -> HttpRefusal:
    details = {"field_limit": limits.header_field, "count_limit": limits.header_count}
    return HttpRefusal(status=431, error_id="header-too-large", message=message, details=details)


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        server = self._manager
        if not isinstance(exc, HttpProcessingError) or not isinstance(server, _JsonErrorServer):
            return super().handle_error(request, status, exc, message)
        refusal = refusal_of(exc, server.limits)
        # One line; the reason as a short repr (it quotes what the client sent).
        reason = str(exc.message)[:120]
        log.info("HTTP request from %s refused: %s %r", request.remote, refusal.error_id, reason)
        server.count(refusal)
        if request.writer.output_size > 0:  # as aiohttp: too late for another answer
            raise ConnectionError("response already started; cannot send the error")
        resp = error_response(refusal.status, refusal.error_id, refusal.message, refusal.details)
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __init__(
        self, *args: Any, limits: HttpLimits, count: RefusalCounter, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.count = count

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class ApiAppRunner(web.AppRunner):
    """`web.AppRunner` with the HTTP limits of limits.py, answering parser refusals as JSON
    API errors (see the module doc). Use it exactly like `AppRunner`."""

    def __init__(
        self, app: web.Application, *, limits: HttpLimits | None = None, **kwargs: Any
    ) -> None:
        self.limits = limits or HttpLimits()
        super().__init__(app, **{**self.limits.handler_args(), **kwargs})

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # app startup, freeze, handler_args merged
        return _JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self.limits,
            count=self._count,
            **plain._kwargs,
        )

    def _count(self, refusal: HttpRefusal) -> None:
        metrics = self.app.get(API_METRICS)  # set by app.mount_api on the parent app
        if metrics is not None:
            metrics.refused(refusal.status, refusal.error_id)
