"""The REST API as an aiohttp sub-application, mounted at `/v1` by the switch app:

    from provisioning.api import mount_api
    mount_api(app, Services(store), registry=metrics.registry)   # == app.add_subapp("/v1", ...)

or `app.add_subapp(API_PREFIX, create_api_app(services, registry=...))`. The sub-app owns
its middlewares (JSON errors, metrics, bearer auth), so they never touch the parent's
`/metrics`. It holds no resources of its own: the caller opens and closes the store the
services use (no cleanup_ctx needed). Its typed state: `API_SERVICES` (the
`provisioning.services.Services`), `API_METRICS`, `API_DOCUMENT`, `API_VOICEMAIL` (the
`VoicemailRepo` of the voicemail routes) and `API_CONVERTER` (only when given); each resource
module's handlers call their own service (`ctx.services.tenants`, `ctx.mailboxes`, …).

Injected by the composition root (switch/node.py):
- `voicemail`: the node's `VoicemailRepo`, so that API changes (heard, deleted) reach its
  change listeners (message-waiting indication). Default: a repository over the services'
  store (same data, no listeners of its own).
- `converter`: an `AudioConverter` over the media service's upload conversion; prompt uploads
  are then stored as 8 kHz 16-bit mono WAV or refused with an `audio-*` error_id. Default:
  none, uploads are stored as received.
- `calls` (`API_CALLS`): the call history and statements, with the statement builder
  (`billing.statement_doc`). Default: the history over the services' store, no statements
  (their routes answer 503 `statements-unavailable`).
- `live` (`API_LIVE`): the switch's live state (provisioning.services.live.LiveSwitch):
  active calls, ending one, registrations. Default: none, those routes answer 503
  `live-state-unavailable`.
- `recordings`: the node's `RecordingsRepo` (the store and the recordings directory the
  relay writes into). Default: the same store with no files (every download is
  `recording-file-missing`).

Bodies are read from the request stream with each operation's own limit, whatever the
parent's `client_max_size`, so the parent needs no change for prompt uploads.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from provisioning.services import AudioConverter, Services
from provisioning.services.cdrs import CallHistoryService
from provisioning.services.live import LiveService, LiveSwitch
from provisioning.services.recordings import NoFiles, RecordingsRepo
from provisioning.services.voicemail import VoicemailRepo

from .core import CONVERTER_KEY, VOICEMAIL_KEY, Ctx, Operation, Reply, bind
from .middleware import API_METRICS, ApiMetrics, auth_middleware, errors_middleware
from .openapi import build_document
from .resources import ALL_OPERATIONS
from .resources.calls import API_CALLS
from .resources.live import API_LIVE
from .resources.recordings import API_RECORDINGS
from .schema import AnyObject

__all__ = [
    "API_CONVERTER",
    "API_DOCUMENT",
    "API_METRICS",
    "API_PREFIX",
    "API_RECORDINGS",
    "API_SERVICES",
    "API_VOICEMAIL",
    "create_api_app",
    "mount_api",
    "operations",
]

API_PREFIX = "/v1"
API_SERVICES = web.AppKey("api_services", Services)
API_DOCUMENT = web.AppKey("api_document", dict[str, Any])
API_VOICEMAIL = VOICEMAIL_KEY
API_CONVERTER = CONVERTER_KEY


async def _openapi(ctx: Ctx) -> Reply:
    return Reply(200, ctx.request.app[API_DOCUMENT])


OPENAPI = Operation(
    method="GET",
    path="/openapi.json",
    handler=_openapi,
    operation_id="getOpenApi",
    summary="This document",
    tag="meta",
    responses={200: AnyObject(description="OpenAPI 3.1")},
    public=True,
)


def operations() -> list[Operation]:
    return [OPENAPI, *ALL_OPERATIONS]


def create_api_app(
    services: Services,
    *,
    registry: CollectorRegistry | None = None,
    prefix: str = API_PREFIX,
    voicemail: VoicemailRepo | None = None,
    converter: AudioConverter | None = None,
    calls: CallHistoryService | None = None,
    recordings: RecordingsRepo | None = None,
    live: LiveSwitch | None = None,
) -> web.Application:
    """The API sub-application over `services`; `registry` is the app's Prometheus registry
    (a private one when None). `prefix` is where the caller mounts it; it is only used to
    write the paths of the OpenAPI document. `voicemail`, `converter`, `calls`, `recordings`:
    see the
    module doc."""
    metrics = ApiMetrics(registry)
    app = web.Application(
        middlewares=[errors_middleware(metrics), auth_middleware(services.tokens.authenticate)]
    )
    app[API_SERVICES] = services
    app[API_CALLS] = calls or CallHistoryService(services.store)
    app[API_METRICS] = metrics
    app[API_VOICEMAIL] = voicemail if voicemail is not None else VoicemailRepo(services.store)
    if converter is not None:
        app[API_CONVERTER] = converter
    app[API_RECORDINGS] = recordings or RecordingsRepo(services.store, NoFiles())
    app[API_LIVE] = LiveService(live)
    ops = operations()
    app[API_DOCUMENT] = build_document(ops, prefix)
    for op in ops:
        bind(app.router, op, services)
    return app


def mount_api(
    parent: web.Application,
    services: Services,
    *,
    registry: CollectorRegistry | None = None,
    voicemail: VoicemailRepo | None = None,
    converter: AudioConverter | None = None,
    calls: CallHistoryService | None = None,
    recordings: RecordingsRepo | None = None,
    live: LiveSwitch | None = None,
) -> web.Application:
    api = create_api_app(
        services, registry=registry, prefix=API_PREFIX, voicemail=voicemail,
        converter=converter, calls=calls, recordings=recordings, live=live,
    )  # fmt: skip
    parent.add_subapp(API_PREFIX, api)
    # The parent's HTTP server counts requests its parser refuses (server.ApiAppRunner).
    parent[API_METRICS] = api[API_METRICS]
    return api
