"""The composition root of `softswitch serve`: one node of the service, wired from its parts.

    node = await Node.open(config)   # store opened + migrated; seed imported if empty
    await node.start()               # switch, REST API, embedded media, background jobs
    ...
    await node.stop()

- Provisioning: the store (`Config.effective_database_url`: SQLite under the data directory
  by default, PostgreSQL with `--database`), the REST API mounted on the switch's HTTP
  listener, and the live snapshot the switch routes from. With SQLite the API and the switch
  share one Store object, so a committed change reaches the switch through the in-process
  notification at once; with PostgreSQL it comes back through LISTEN/NOTIFY, which is also
  how other nodes hear about it.
- Media: unless `[media] uri` names external media services, the switch runs the media
  service itself (switch/app.py `_start_media`) on the same store's voicemail repository.
- Jobs: the voicemail retention sweeper (service rule: a message is deleted 7 days after it
  was received) and the API audit log's (`[provisioning] audit_retention_days`, 365), once
  a minute; the CDR retention sweep (`[cdr] retention_days`, default 400) once a day.
- CDRs: `self.cdrs` (billing.cdr.CallRecords, the sans-IO tracker the proxy drives) hands
  finished records to `self.cdr_writer` (switch/cdr_writer.py: queue, batches, spool under
  the data directory, metrics in the switch's registry); the API's call history and
  statements get the statement builder (billing.statement_doc) from here.
- Live state: the API's active calls, ending one, and registrations (switch/live.py over
  the switch's state backend and proxy).
- Call recordings: the relay (switch/relaying.py, started by the switch app) writes them into
  this node's directory; the `RecordingKeeper` (switch/recordings.py) registers each finished
  one in the store within seconds and runs the 30-day retention; the API serves them from
  the same directory (`RecordingsRepo` over `DirectoryFiles`).
- Workers (`serve --workers N`, switch/workers.py): `Node.prepare` runs once in the
  supervisor (secrets, migrations, seed); each worker is a Node given its `WorkerRuntime`,
  with its own CDR spool file; the retention sweeps and the recordings keeper run in
  worker 0 only.

Nothing else imports this module: it is the top of the layer table (tests/unit/test_layers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from billing import default_tariffs
from billing.cdr import CallRecords
from billing.statement_doc import CdrStatements
from media.convert import convert_upload
from media.errors import AudioError
from media.ua.config import MediaConfig
from media.ua.services import ServiceDeps
from provisioning.api.app import mount_api
from provisioning.live import seed_if_empty, store_source
from provisioning.seed import load_seed
from provisioning.services import Services, audio_refused
from provisioning.services.audit import retention_days
from provisioning.services.cdrs import CallHistoryService, CallRecordRepo
from provisioning.services.recordings import DirectoryFiles, RecordingsRepo
from provisioning.services.voicemail import VoicemailRepo
from provisioning.store import open_store
from provisioning.store.base import Store

from .app import SwitchApp
from .cdr_writer import CdrConfig, CdrWriter
from .config import Config, ConfigError, resolve_secret
from .live import SwitchLive
from .prompt_source import StorePrompts
from .recordings import RecordingKeeper, RecordingPaths

if TYPE_CHECKING:
    from .workers import WorkerRuntime

__all__ = ["Node"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # seconds between voicemail retention sweeps
CDR_SWEEP_INTERVAL = 86_400.0  # seconds between CDR retention sweeps


class Node:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        wall_clock: Callable[[], datetime] | None = None,
        worker: WorkerRuntime | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        # with workers, the retention sweeps and the recordings keeper run in worker 0
        self.runs_jobs = worker is None or worker.index == 0
        self.store = store
        self.services = Services(store)
        self.voicemail = VoicemailRepo(store)
        self.wall_clock = wall_clock or (lambda: datetime.now(UTC))
        try:
            self.audit_retention_days = retention_days(config.extra.get("provisioning", {}))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.recording_paths = RecordingPaths.of(config)
        self.recordings = RecordingsRepo(store, DirectoryFiles(self.recording_paths.root))
        self.keeper: RecordingKeeper | None = None
        self.app = SwitchApp(
            config,
            snapshot_source=store_source(store),
            http_hooks=[self._mount],
            media=ServiceDeps(
                voicemail=self.voicemail,
                prompts=StorePrompts(self.services),
                timezone=self._timezone,
            ),
            recording_finished=self._recording_finished,
            worker=worker,
        )
        self._sweeper: asyncio.Task[None] | None = None
        # message-waiting indication hears every mailbox change (deposit, heard, deleted)
        self.voicemail.on_change(self._mailbox_changed)
        self._init_cdrs(config, store)

    def _recording_finished(self) -> None:
        if self.keeper is not None:
            self.keeper.wake()

    def _mailbox_changed(self, tenant_id: str, mailbox: str) -> None:
        if self.app.mwi is not None:
            self.app.mwi.mailbox_changed(tenant_id, mailbox)

    def _init_cdrs(self, config: Config, store: Store) -> None:
        self.cdr_config = CdrConfig.from_section(config.extra.get("cdr", {}))
        tariffs = default_tariffs()
        self.cdr_writer = CdrWriter(
            CallRecordRepo(store, pg_form=self.cdr_config.pg_insert),
            spool_path=config.data_dir / self._spool_name(),
            tariffs=tariffs,
            timezone=self._cdr_timezone,
            registry=self.app.metrics.registry,
            settings=self.cdr_config.writer,
            wall_clock=self.wall_clock,
        )
        self.cdrs = CallRecords(node=self.cdr_config.node, on_evicted=self.cdr_writer.submit)
        if self.cdr_config.enabled:  # the proxy drives the tracker (switch/proxy/cdrs.py)
            self.app.call_records, self.app.cdr_sink = self.cdrs, self.cdr_writer.submit
        self.calls = CallHistoryService(store, CdrStatements(tariffs), clock=self.wall_clock)
        self._cdr_swept = 0.0

    def _spool_name(self) -> str:
        """One spool file per worker: each replays its own at start."""
        return "cdr-spool.jsonl" if self.worker is None else f"cdr-spool.w{self.worker.index}.jsonl"

    @classmethod
    async def open(cls, config: Config, worker: WorkerRuntime | None = None) -> Node:
        store = await open_store(config.effective_database_url)
        try:
            if worker is None:
                await _seed(config, store)
            return cls(config, store, worker=worker)
        except BaseException:
            await store.close()
            raise

    @staticmethod
    async def prepare(config: Config) -> None:
        """Before the workers start: the generated secrets written, the store opened once
        (migrated) and the seed imported if it is empty, so the workers never race on them."""
        for name in ("nonce-secret", "admin-token", "media-secret", "flow-secret"):
            resolve_secret(None, config.data_dir, name)  # created once, read by every worker
        store = await open_store(config.effective_database_url)
        try:
            await _seed(config, store)
        finally:
            await store.close()

    def _mount(self, web_app: web.Application, switch: SwitchApp) -> None:
        """The REST API under /v1, counted in the switch's Prometheus registry, on the node's
        voicemail repository (API changes reach its listeners: MWI) and with prompt uploads
        converted by the media service's converter. Its `AudioError`s become provisioning
        errors with the same error_id (`provisioning.services.prompts.AUDIO_ERROR_IDS`: 415
        for a format it cannot read, 422 for a damaged/empty/silent/too long file, 413 too
        large)."""

        def convert(data: bytes, *, max_bytes: int, max_seconds: float) -> tuple[bytes, float]:
            try:
                done = convert_upload(data, max_bytes=max_bytes, max_seconds=max_seconds)
            except AudioError as exc:
                raise audio_refused(exc.error_id, exc.message) from exc
            return done.wav, done.seconds

        mount_api(
            web_app,
            self.services,
            registry=switch.metrics.registry,
            voicemail=self.voicemail,
            converter=convert,
            calls=self.calls,
            recordings=self.recordings,
            live=SwitchLive(
                switch.state,
                lambda: switch.snapshot,
                lambda: getattr(switch, "proxy", None),
                node=switch.call_owner,
            ),
        )

    def _cdr_timezone(self, tenant_id: str) -> str:
        """The tenant's zone for rating; the writer may rate (a spool replayed at start-up)
        before the first snapshot has arrived."""
        try:
            return self._timezone(tenant_id)
        except (AssertionError, AttributeError):  # SwitchApp.snapshot: "no snapshot yet"
            return "Asia/Tokyo"

    def _timezone(self, tenant_id: str) -> str:
        tenant = self.app.snapshot.tenants.get(tenant_id)
        return tenant.timezone if tenant is not None else "Asia/Tokyo"

    async def start(self) -> None:
        await self.cdr_writer.start()  # replays a spool left by a previous run
        if self.runs_jobs:
            self.keeper = self._keeper()
        await self.app.start()
        if self.keeper is not None:
            await self.keeper.start()
        if self.runs_jobs:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def _keeper(self) -> RecordingKeeper:
        section = MediaConfig.from_section(dict(self.config.extra.get("media", {})))
        return RecordingKeeper(
            self.recordings, self.recording_paths, registry=self.app.metrics.registry,
            retention_days=section.recording_retention_days,
            spool=Path(section.relay_spool) if section.relay_spool else None,
            wall_clock=self.wall_clock,
        )  # fmt: skip

    async def sweep_once(self) -> int:
        """Delete expired voicemail messages now; returns how many."""
        expired = await self.voicemail.expire(self.wall_clock())
        if expired and self.app.media is not None:
            for _ in expired:
                self.app.media.metrics.count("expired", "")
        return len(expired)

    async def cdr_sweep_once(self) -> int:
        """Delete CDRs past the retention period now; returns how many."""
        repo = CallRecordRepo(self.store)
        return await repo.expire(self.wall_clock(), self.cdr_config.retention_days)

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                n = await self.sweep_once()
                if n:
                    log.info("voicemail retention: %d message(s) deleted", n)
                n = await self.services.audit.sweep(self.wall_clock(), self.audit_retention_days)
                if n:
                    log.info("audit log retention: %d entr(ies) deleted", n)
            except Exception:
                log.exception("retention sweep failed")
            if loop.time() - self._cdr_swept >= CDR_SWEEP_INTERVAL or not self._cdr_swept:
                self._cdr_swept = loop.time()
                await self._cdr_sweep()
            await asyncio.sleep(SWEEP_INTERVAL)

    async def _cdr_sweep(self) -> None:
        try:
            n = await self.cdr_sweep_once()
            if n:
                log.info("CDR retention: %d record(s) deleted", n)
        except Exception:
            log.exception("CDR retention sweep failed")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.app.stop()
        for record in self.cdrs.drain():  # calls still up: nothing will end them here now
            self.cdr_writer.submit(record)
        await self.cdr_writer.stop()  # after the calls: drains the queue (database or spool)
        if self.keeper is not None:  # after the relay: what it finished while stopping
            await self.keeper.stop()
        await self.store.close()


async def _seed(config: Config, store: Store) -> None:
    if config.seed is not None and await seed_if_empty(store, load_seed(config.seed)):
        log.info("seed %s imported into the empty store", config.seed)
