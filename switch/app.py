"""Process wiring: config -> snapshot source -> state -> transaction layer -> registrar and
proxy -> transports -> HTTP (metrics, health, admin). The helpers that build single parts
(snapshot sources, the state backend, the proxy, the GC tuning) are in switch/wiring.py;
this module puts them together in `SwitchApp` and serves its HTTP.

Snapshot source (the seam towards provisioning)
-----------------------------------------------
`SnapshotSource` is a zero-argument callable returning an async iterator of Snapshots. The
first snapshot is awaited at start (the switch does not serve before it has one); every
later one replaces the current snapshot atomically (routing reads `app.snapshot` per call).
`seed_source(path)` yields the seed file's snapshot once; a store-backed source will yield
the store's snapshot and then one per committed change (LISTEN/NOTIFY). If a live source
ends or fails, the switch keeps serving the last snapshot (logged).

On each new snapshot, `provisioning.live.dropped_devices(old, new)` names the IDs whose
registrations must go: deleted IDs, IDs released from the customer page (`release_seq`
changed), IDs whose username or password changed, and IDs of suspended tenants. Their bindings
and device lock are dropped (`state.release_device`).

State
-----
`make_state(config)`: `state.url = "memory"` keeps registrations, device locks and channel
leases in this process; a redis:// URL shares them between nodes (switch/state/redis.py).
A backend the app built is closed by `stop()`; one passed in belongs to the caller.

HTTP
----
One aiohttp application on `--http`: `GET /metrics`, `GET /healthz`,
`POST /admin/devices/{id}/release` (Authorization: Bearer <admin token>; used by
`softswitch device release`), and the authentication guard's bans (switch/proxy/bans.py;
same token): `GET /admin/bans` lists the live bans of every node (from the shared state),
`DELETE /admin/bans/{kind}/{key}` lifts one (kind "source" or "id"; 404 when there is none).
Other modules mount theirs with `http_hooks`: callables
`hook(web_app, switch_app)` run before the HTTP server starts, e.g.
`lambda web_app, sw: web_app.add_subapp("/v1", make_api(...))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from billing.cdr import CallRecords
from media.ua.agent import MediaSettings
from media.ua.app import MediaApp, MediaListen
from media.ua.config import MediaConfig
from media.ua.services import ServiceDeps
from provisioning.api.server import ApiAppRunner
from provisioning.live import dropped_devices
from provisioning.model import Snapshot
from provisioning.records import CallRecord
from switch.config import Config, resolve_secret
from switch.metrics import CONTENT_TYPE, Metrics
from switch.mwi import MwiNotifier
from switch.proxy.bans import AuthGuard, BanFilter, BanKind
from switch.proxy.registrar import Registrar, RegistrarPolicy
from switch.proxy.targets import NodePaths, Peers
from switch.recordings import RecordingPaths, notice_file
from switch.relaying import RelayRuntime
from switch.sip.digest import DigestAuthenticator
from switch.sip.transaction import TransactionLayer
from switch.sip.transitions import Timers
from switch.state.base import StateBackend, StateUnavailable
from switch.state.redis import RedisState
from switch.transport.endpoint import SipEndpoint
from switch.transport.manager import TransportManager, TransportSettings, server_tls_context
from switch.tu import TransactionUser
from switch.wiring import (
    MailboxCounts,
    SnapshotSource,
    any_recording,
    default_source,
    make_flow_tokens,
    make_proxy,
    make_state,
    media_hosts,
    seed_source,
    static_source,
    tune_gc,
)

if TYPE_CHECKING:
    from switch.workers import WorkerRuntime

__all__ = [  # the wiring helpers are re-exported: callers build a SwitchApp with them
    "HttpHook",
    "SnapshotSource",
    "SwitchApp",
    "make_proxy",
    "make_state",
    "seed_source",
    "static_source",
]

log = logging.getLogger(__name__)

HttpHook = Callable[[web.Application, "SwitchApp"], None]
_HOUSEKEEPING_INTERVAL = 1.0  # seconds between binding expiry sweeps
# Seconds a process's announcement holds (state/base.py, Processes): it announces itself at
# every housekeeping round, so the others count it dead within this long after it died.
_ALIVE_FOR = 4.0
_FIRST_SNAPSHOT_TIMEOUT = 60.0


class SwitchApp:
    """One switch process. `await start()`, then `await stop()`; `sip_addresses` and
    `http_address` give the bound (real) addresses, port 0 resolved."""

    def __init__(
        self,
        config: Config,
        *,
        snapshot_source: SnapshotSource | None = None,
        state: StateBackend | None = None,
        http_hooks: Sequence[HttpHook] = (),
        proxy_factory: Callable[[SwitchApp], TransactionUser] | None = None,
        media: ServiceDeps | None = None,
        recording_finished: Callable[[], None] | None = None,
        worker: WorkerRuntime | None = None,
    ) -> None:
        self.config = config
        self.worker = worker  # one of `softswitch serve --workers N` (switch/workers.py)
        self.peers = Peers()  # the other nodes' live processes, from the housekeeping
        self.metrics = Metrics()
        node_id = worker.node_id if worker is not None else None
        self.state: StateBackend = state or make_state(config, node_id=node_id)
        self._owns_state = state is None
        self.snapshot_source = snapshot_source or default_source(config)
        self.http_hooks = list(http_hooks)
        self.proxy_factory = proxy_factory or make_proxy
        self.media_deps = media
        self.media: MediaApp | None = None  # the embedded media service, when it runs here
        self.mwi: MwiNotifier | None = None  # message-waiting indication, with voicemail
        self.relay: RelayRuntime | None = None  # [recording] the RTP relay (switch/relaying.py)
        self.recording_finished = recording_finished or (lambda: None)
        # [cdr] the call records the proxy keeps and where finished ones go (billing.cdr and
        # CdrWriter.submit): set by the composition root (switch/node.py) before start()
        self.call_records: CallRecords | None = None
        self.cdr_sink: Callable[[CallRecord], None] | None = None
        self._snapshot: Snapshot | None = None
        self._registrations = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._unwatch_gc: Callable[[], None] | None = None
        self.sip_addresses: dict[str, tuple[str, int]] = {}
        self.http_address: tuple[str, int] | None = None
        self.admin_token = ""

    # ------------------------------------------------------------------ snapshot
    @property
    def snapshot(self) -> Snapshot:
        assert self._snapshot is not None, "no snapshot yet"
        return self._snapshot

    def apply_snapshot(self, new: Snapshot) -> None:
        old, self._snapshot = self._snapshot, new
        self._exempt_peers()
        if self.relay is not None and any_recording(new):  # [recording] relay up before the call
            self.relay.prepare()
        if old is None:
            return
        for device_id in dropped_devices(old, new):
            self._spawn(self._release_from_snapshot(device_id))
        log.info("snapshot version %s applied", new.version)

    async def _release_from_snapshot(self, device_id: str) -> None:
        dropped = await self.state.release_device(device_id)
        await self.refresh_registrations()
        log.info("device %s released by provisioning: %d bindings dropped", device_id, dropped)

    async def _follow(self, updates: AsyncIterator[Snapshot]) -> None:
        try:
            async for snap in updates:
                self.apply_snapshot(snap)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("snapshot source failed; serving the last snapshot")

    # ------------------------------------------------------------------ start / stop
    async def start(self) -> None:
        cfg = self.config
        updates = self.snapshot_source()
        first = await asyncio.wait_for(anext(updates), _FIRST_SNAPSHOT_TIMEOUT)
        self.apply_snapshot(first)
        self._tasks.append(asyncio.create_task(self._follow(updates)))
        secret = resolve_secret(cfg.nonce_secret, cfg.data_dir, "nonce-secret")
        self.authenticator = DigestAuthenticator(
            realm=cfg.realm or first.realm,
            secret=secret.encode(),
            nonce_ttl=cfg.nonce_ttl,
            algorithms=cfg.digest_algorithms,
        )
        self.layer = TransactionLayer(Timers(t1=cfg.t1, t2=cfg.t2, t4=cfg.t4))
        self.core = SipEndpoint(self.layer, self.metrics, advertised_host=cfg.advertised_host)
        self.flows = make_flow_tokens(cfg, workers=self.worker is not None)
        self.guard = AuthGuard(self.state, cfg.guard_settings(), self.metrics)
        try:  # the bans other nodes made; an unreachable backend is the housekeeping's turn
            await self.guard.sync(time.time())
        except StateUnavailable as exc:
            log.warning("auth bans not loaded at start: %s", exc)
        self.registrar = Registrar(
            state=self.state, snapshot=lambda: self.snapshot, authenticator=self.authenticator,
            policy=RegistrarPolicy(
                min_expires=cfg.min_expires, max_expires=cfg.max_expires,
                default_expires=cfg.default_expires,
                warn_agent=cfg.advertised_host or cfg.sip.host,
            ),
            metrics=self.metrics, sender=self.core, guard=self.guard,
            # several nodes: each binding says how the others reach its flow through us
            paths=NodePaths(self.flows, self.core.local_uri) if self._shared_state else None,
        )  # fmt: skip
        self.metrics.watch_transactions(self.layer.counts)
        self.metrics.watch_registrations(lambda: self._registrations)
        await self._start_transports()
        await self._start_media()
        await self._start_relay()
        self._exempt_peers()
        self.proxy = self.proxy_factory(self)
        if getattr(getattr(self.proxy, "config", None), "media", 1) is None:
            log.warning(
                "no media service: after-hours announcements, the busy message and voicemail"
                " have nowhere to go (calls get 480/486); configure [media] uri, or run"
                " `softswitch serve` with its store so the embedded one starts"
            )
        self.core.users.default = self.proxy
        self.core.users.add("REGISTER", self.registrar)
        self._start_mwi()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        tune_gc()
        self._unwatch_gc = self.metrics.watch_gc()
        if cfg.http is not None:
            await self._start_http()

    async def _start_transports(self) -> None:
        cfg = self.config
        settings = TransportSettings.from_config(cfg)
        # the guard's drop mode filters banned sources before the transaction layer
        receiver = BanFilter(self.core, self.guard, self.metrics, time.time)
        worker = self.worker
        siblings = worker.siblings if worker is not None else None
        self.transports = TransportManager(receiver, self.metrics, settings, siblings)
        tls_ctx = None
        if cfg.tls is not None:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            tls_ctx = server_tls_context(str(cfg.tls_cert), str(cfg.tls_key))
        tls = (cfg.tls.host, cfg.tls.port) if cfg.tls is not None else None
        prebound = worker.sockets if worker is not None else None
        await self.transports.start((cfg.sip.host, cfg.sip.port), tls, tls_ctx, prebound)
        self.core.attach(self.transports)
        self.sip_addresses = dict(self.transports.bound)
        rcv, snd = self.transports.udp_buffers
        log.info("UDP buffers granted: SO_RCVBUF=%d SO_SNDBUF=%d", rcv, snd)

    def _start_mwi(self) -> None:
        """Message-waiting indication (switch/mwi.py) for the voicemail the media service
        keeps: SUBSCRIBE message-summary goes to it, and the registrar tells it when a device
        registers (unsolicited NOTIFY)."""
        if self.media_deps is None:
            return
        section = MediaConfig.from_section(dict(self.config.extra.get("media", {})))
        mwi = MwiNotifier(
            sender=self.core, snapshot=lambda: self.snapshot, state=self.state,
            authenticator=self.authenticator, counts=MailboxCounts(self.media_deps.voicemail),
            registry=self.metrics.registry, unsolicited=section.mwi_unsolicited, guard=self.guard,
        )  # fmt: skip
        mwi.sender = self.core.sender_for(mwi)
        self.core.users.add("SUBSCRIBE", mwi, event="message-summary")
        self.registrar.on_registered = mwi.registered
        self.mwi = mwi

    def _exempt_peers(self) -> None:
        """The flood guard never blocks the carrier gateways (their allowed sources) nor the
        media services (a media process sends a BYE per call): trusted peers whose rate is
        the service's own load, not an attack."""
        if not hasattr(self, "transports") or self._snapshot is None:
            return
        peers = [s for gw in self._snapshot.gateways for s in gw.allowed_sources]
        peers += media_hosts(self.config)
        flows = list(self.peers.flows())  # the other nodes' processes (paths, peer routes)
        if self.media is not None and self.media.address is not None:
            # the embedded media service: its one flow only (phones may share its address)
            flows.append(self.media.address)
        self.transports.set_exempt_flows(flows)
        try:
            self.transports.set_exempt(peers)
        except ValueError as exc:  # a host name among them: the configured ones still apply
            log.warning("flood exemptions not applied: %s", exc)

    async def _start_media(self) -> None:
        """The embedded media service (announcements, busy message, voicemail), unless the
        configuration names external ones (`[media] uri`) or nothing provides its store."""
        section = dict(self.config.extra.get("media", {}))
        if section.get("uri") or self.media_deps is None:
            return
        media_cfg = MediaConfig.from_section(section)
        host = self.sip_addresses["udp"][0]
        self.media_secret = resolve_secret(
            section.get("secret") or None, self.config.data_dir, "media-secret"
        ).encode()
        settings = MediaSettings(
            rtp_host=media_cfg.rtp_host or self.core.local_via("udp")[0],
            ports=media_cfg.rtp_ports,
            secret=self.media_secret,
            allowed_sources=frozenset({host, "127.0.0.1", "::1"}),
            max_session=media_cfg.max_session,
        )
        self.media = MediaApp(
            listen=MediaListen(host=host, port=0), settings=settings, deps=self.media_deps,
            registry=self.metrics.registry,
        )  # fmt: skip
        await self.media.start()

    async def _start_relay(self) -> None:
        """[recording] The RTP relay recorded calls go through (`[media] relay`); its
        recordings go to this node's directory (switch/recordings.py)."""
        section = MediaConfig.from_section(dict(self.config.extra.get("media", {})))
        self.relay = RelayRuntime(
            section, host=self.core.local_via("udp")[0],
            recordings=RecordingPaths.of(self.config).node_dir, notice=notice_file(section),
            finished=self.recording_finished,
        )  # fmt: skip
        await self.relay.start()
        if any_recording(self.snapshot):
            self.relay.prepare()

    async def _start_http(self) -> None:
        cfg = self.config
        assert cfg.http is not None
        self.admin_token = resolve_secret(cfg.admin_token, cfg.data_dir, "admin-token")
        web_app = build_http_app(self)
        for hook in self.http_hooks:
            hook(web_app, self)
        # HTTP limits and parser refusals answered as JSON API errors (provisioning/api/limits.py)
        self._runner = ApiAppRunner(web_app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if self.worker is not None:  # the parent's socket, shared by the workers
            await self.worker.start_http(self._runner, self.metrics)
        else:
            await web.TCPSite(self._runner, cfg.http.host, cfg.http.port).start()
        host, port = self._runner.addresses[0][:2]
        self.http_address = (str(host), int(port))

    async def _housekeeping(self) -> None:
        """Expire bindings, refresh the registrations gauge and the guard's view of the
        bans (made or lifted by other nodes), until stop()."""
        while not self._stopping.is_set():
            try:
                now = time.time()
                await self._announce(now)
                await self.state.expire(now)
                await self._end_requested()
                self._registrations = await self.state.count()
                if self.mwi is not None:
                    await self.mwi.sweep()
                await self.guard.sync(now)
            except StateUnavailable as exc:  # an outage: one line, not a traceback a second
                log.warning("housekeeping: %s", exc)
            except Exception:
                log.exception("housekeeping failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _HOUSEKEEPING_INTERVAL)

    async def _announce(self, now: float) -> None:
        """With several nodes: this process is alive, at the addresses its Record-Route and
        paths name (UDP, TCP) and the one its requests come from, and the view of which
        others are (state/base.py, Processes); their flows are exempt from the flood guard."""
        process = self.call_owner
        if process is None:
            return
        host, _ = self.core.local_via("udp")
        sent_from = self.transports.bound["udp"][1]  # requests leave by the shared socket
        vias = ["{}:{}".format(*self.core.local_via(t)) for t in ("udp", "tcp", "tls")]
        where = ",".join([*vias, f"{host}:{sent_from}"])
        alive = await self.state.announce(process, where, now + _ALIVE_FOR, now)
        before = self.peers.flows()
        self.peers.update(alive.values())
        if self.peers.flows() != before:
            self._exempt_peers()

    async def _end_requested(self) -> None:
        """Calls an operator ended through another node (switch/live.py): BYE both ways."""
        node = self.call_owner
        end_call = getattr(getattr(self, "proxy", None), "end_call", None)
        if isinstance(node, str) and end_call is not None:
            for call_id in await self.state.ends_requested(node):
                log.info("call %s: ended at another node's request", call_id)
                end_call(call_id)

    @property
    def _shared_state(self) -> bool:
        """Does the state backend serve several nodes (it names this one)?"""
        return isinstance(getattr(self.state, "node_id", None), str)

    @property
    def call_owner(self) -> str | None:
        """The node named in this process's call records (switch/proxy/leases.py `owner`):
        the state backend's node id, and the worker's index with workers (they share the
        node id for their connections, not their dialogs)."""
        node = getattr(self.state, "node_id", None)
        if not isinstance(node, str):
            return None
        return node if self.worker is None else f"{node}/w{self.worker.index}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def stop(self) -> None:
        """Graceful: stop listening, close connections, stop HTTP, end background tasks."""
        self._stopping.set()
        if self._unwatch_gc is not None:
            self._unwatch_gc()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.worker is not None:  # its private metrics listener
            await self.worker.close()
        if self.media is not None:
            await self.media.stop()
        if hasattr(self, "transports"):
            await self.transports.close()
        if hasattr(self, "core"):
            self.core.close()
        if self.relay is not None:  # [recording] after the SIP side: recordings finished
            await self.relay.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if self._owns_state and isinstance(self.state, RedisState):
            await self.state.close()

    async def refresh_registrations(self) -> None:
        self._registrations = await self.state.count()


SWITCH_APP_KEY = web.AppKey("switch_app", SwitchApp)


# --------------------------------------------------------------------------- HTTP
def build_http_app(switch: SwitchApp) -> web.Application:
    web_app = web.Application()
    web_app[SWITCH_APP_KEY] = switch
    web_app.router.add_get("/metrics", _metrics)
    web_app.router.add_get("/healthz", _healthz)
    web_app.router.add_post("/admin/devices/{device_id}/release", _release)
    web_app.router.add_get("/admin/bans", _list_bans)
    web_app.router.add_delete("/admin/bans/{kind}/{key}", _lift_ban)
    return web_app


async def _metrics(request: web.Request) -> web.Response:
    switch = request.app[SWITCH_APP_KEY]
    if switch.worker is not None:  # every worker's registry, labelled worker="i"
        body = await switch.worker.node_metrics(switch.metrics)
    else:
        body = switch.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    switch = request.app[SWITCH_APP_KEY]
    snap = switch.snapshot
    return web.json_response({"status": "ok", "snapshot_version": snap.version})


def _unauthorised(request: web.Request) -> web.Response | None:
    """401 unless the request carries `Authorization: Bearer <admin token>`."""
    switch = request.app[SWITCH_APP_KEY]
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {switch.admin_token}"
    if not switch.admin_token or not hmac.compare_digest(given.encode(), expected.encode()):
        return web.json_response({"error_id": "unauthorized", "details": {}}, status=401)
    return None


async def _list_bans(request: web.Request) -> web.Response:
    """The live bans of every node (the shared state), soonest-lifted last."""
    refusal = _unauthorised(request)
    if refusal is not None:
        return refusal
    switch = request.app[SWITCH_APP_KEY]
    now = time.time()
    try:
        bans = await switch.guard.sync(now)
    except StateUnavailable:
        return _state_unavailable()
    listed = [
        {"kind": b.kind, "key": b.key, "until": b.until, "remaining": round(b.until - now, 1)}
        for b in bans
    ]
    return web.json_response({"bans": listed})


async def _lift_ban(request: web.Request) -> web.Response:
    refusal = _unauthorised(request)
    if refusal is not None:
        return refusal
    switch = request.app[SWITCH_APP_KEY]
    kind, key = request.match_info["kind"], request.match_info["key"]
    if kind not in {k.value for k in BanKind}:
        details = {"kind": kind, "kinds": [k.value for k in BanKind]}
        return web.json_response({"error_id": "bad-ban-kind", "details": details}, status=400)
    try:
        lifted = await switch.guard.lift(BanKind(kind), key, time.time())
    except StateUnavailable:
        return _state_unavailable()
    if not lifted:
        details = {"kind": kind, "key": key}
        return web.json_response({"error_id": "no-such-ban", "details": details}, status=404)
    return web.json_response({"kind": kind, "key": key, "lifted": True})


def _state_unavailable() -> web.Response:
    body = {"error_id": "state-unavailable", "details": {}}
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


async def _release(request: web.Request) -> web.Response:
    refusal = _unauthorised(request)
    if refusal is not None:
        return refusal
    switch = request.app[SWITCH_APP_KEY]
    device_id = request.match_info["device_id"]
    if device_id not in switch.snapshot.devices:
        return web.json_response(
            {"error_id": "no-such-device", "details": {"device_id": device_id}}, status=404
        )
    dropped = await switch.registrar.release_device(device_id)
    await switch.refresh_registrations()
    return web.json_response({"device_id": device_id, "released": True, "bindings": dropped})
