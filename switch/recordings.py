"""Finished recordings become API-visible rows; old ones go. The node runs one `RecordingKeeper`.

Where the files are: `<recordings_dir>/<node>/<yyyy>/<mm>/<dd>/<call-id>.wav` + `.json`
(`media.relay.sink.DirectorySink`: the WAV appears whole, by a rename, and its JSON sidecar
after it). `<node>` is `[media] recordings_node` (the host name by default): each node's relay
writes only below its own, so a relay that recovers its crashed `.part` files at start-up never
touches another node's calls in progress, while every node reads everything (the rows keep
the path relative to `recordings_dir`).

The keeper, every `SCAN_INTERVAL` seconds (and at once when the in-process relay says a
recording is done):
1. with rtpengine (`[media] relay_spool`), converts the pcaps of finished calls
   (`media.relay.pcap.convert_spool`) into this node's directory, through `AnsweredOnly`: the
   WAV starts at the `answered` time of the ng metadata (rtpengine records from the offer, so
   the ringing is cut off: a recording is the conversation, on both relays) and a call that
   was never answered leaves nothing;
2. reads the new sidecars of today and yesterday (UTC; every day at start-up) and registers
   each recording: tenant, number, direction, other party, device, start, answer, end,
   duration, size (from the proxy's ng `metadata`, switch/proxy/anchor.py). A sidecar without
   an answer time, or without a tenant (a recording a relay recovered after a crash: its
   metadata was in the lost process), is not a call recording: unanswered ones are removed,
   unattributable ones moved to `<node>/unregistered/` for an operator (logged, counted).

Every `SWEEP_INTERVAL` seconds the retention sweep deletes the rows (and files) of calls that
started more than `[media] recording_retention_days` (30) before now, then day directories
older than that plus a day (orphans: files whose row was deleted by a node that could not
remove them). The clock is a parameter (`wall_clock`), for the tests.

Metrics: `recordings_written_total{relay}`, `recordings_discarded_total{reason}`,
`recordings_deleted_total{reason}` (api, retention), `recording_bytes_stored`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from media.relay.pcap import convert_spool
from media.relay.recorder import PcmWriter
from media.relay.sink import DirectorySink, RecordingMeta
from media.ua.config import MediaConfig
from provisioning.api.resources.recordings import party_key
from provisioning.records import NewRecording, RecordingInfo
from provisioning.services.recordings import RecordingsRepo
from switch.config import Config
from switch.proxy.anchor import parse_metadata

__all__ = [
    "AnsweredOnly",
    "RecordingKeeper",
    "RecordingPaths",
    "notice_file",
    "recording_from_sidecar",
]

log = logging.getLogger(__name__)

SCAN_INTERVAL = 5.0
SWEEP_INTERVAL = 60.0
RATE = 8000
FRAME_BYTES = 4  # stereo 16-bit


@dataclass(frozen=True, slots=True)
class RecordingPaths:
    root: Path  # [media] recordings_dir
    node: str  # this node's subdirectory

    @classmethod
    def of(cls, config: Config) -> RecordingPaths:
        section = MediaConfig.from_section(dict(config.extra.get("media", {})))
        given = section.recordings_dir
        root = Path(given) if given else config.data_dir / "recordings"
        return cls(root=root.resolve(), node=section.recordings_node or socket.gethostname())

    @property
    def node_dir(self) -> Path:
        return self.root / self.node


def notice_file(section: MediaConfig) -> Path:
    """The recording notice the relay plays: `[media] relay_notice`, else the shipped one."""
    if section.relay_notice:
        return Path(section.relay_notice).resolve()
    return Path(str(resources.files("media") / "prompts" / "recording-notice.wav")).resolve()


# --------------------------------------------------------------------------- rtpengine
class _Cut:
    """A PcmWriter that drops the first `skip` octets (the ringing) and counts the rest."""

    def __init__(self, inner: PcmWriter | None, skip: int) -> None:
        self.inner = inner
        self.skip = skip
        self.written = 0

    def write(self, pcm: bytes) -> None:
        if self.skip:
            dropped = min(self.skip, len(pcm))
            self.skip -= dropped
            pcm = pcm[dropped:]
        if pcm and self.inner is not None:
            self.inner.write(pcm)
            self.written += len(pcm)

    def sync(self) -> None:
        if self.inner is not None:
            self.inner.sync()

    @property
    def data_size(self) -> int:
        return self.written


class AnsweredOnly:
    """A `RecordingSink` for rtpengine's conversion: recordings start at the answer (the
    ng metadata's `answered`, ms), unanswered calls are dropped (module docstring)."""

    def __init__(self, inner: DirectorySink) -> None:
        self.inner = inner
        self.dropped = 0

    def open(self, call_id: str, meta: RecordingMeta) -> PcmWriter:
        answered = parse_metadata(meta.metadata).get("answered")
        if answered is None or not answered.isdigit():
            return _Cut(None, 0)
        start = max(meta.started, int(answered) / 1000)
        skip = round((start - meta.started) * RATE) * FRAME_BYTES
        return _Cut(self.inner.open(call_id, meta.finished(started=start)), skip)

    def close(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        assert isinstance(writer, _Cut)
        if writer.inner is None:
            self.dropped += 1
            return
        answered = int(parse_metadata(meta.metadata).get("answered", "0")) / 1000
        self.inner.close(writer.inner, meta.finished(
            started=max(meta.started, answered), duration=writer.written / FRAME_BYTES / RATE,
            data_bytes=writer.written,
        ))  # fmt: skip

    def discard(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        assert isinstance(writer, _Cut)
        if writer.inner is not None:
            self.inner.discard(writer.inner, meta)


# --------------------------------------------------------------------------- sidecars
class NotARecording(ValueError):
    """A sidecar that is no call recording: `reason` unanswered or unattributed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _instant(ms: str | None) -> datetime | None:
    if ms is None or not ms.isdigit():
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def recording_from_sidecar(sidecar: dict[str, Any], path: str, size: int) -> NewRecording:
    """The row of one finished recording (NotARecording if it is none)."""
    md = parse_metadata(sidecar.get("metadata"))
    tenant, number, direction = md.get("tenant"), md.get("number"), md.get("dir")
    if not tenant or not number or direction not in ("inbound", "outbound"):
        raise NotARecording("unattributed", "no tenant/number/direction in its metadata")
    answered = _instant(md.get("answered"))
    if answered is None:
        raise NotARecording("unanswered", "the call was never answered")
    ended = datetime.fromtimestamp(float(sidecar.get("ended") or 0.0), UTC)
    started = _instant(md.get("started")) or answered
    other = md.get("other")
    return NewRecording(
        tenant_id=tenant, number=number, direction=direction,  # type: ignore[arg-type]
        other_party=party_key(other) if other else None, device_id=md.get("device") or None,
        call_id=md.get("call-id") or str(sidecar.get("call_id") or ""),
        started_at=started, answered_at=answered, ended_at=max(ended, answered),
        duration=float(sidecar.get("duration") or 0.0), size_bytes=size, path=path,
        relay=str(sidecar.get("relay") or "unknown"),
    )  # fmt: skip


# --------------------------------------------------------------------------- metrics
class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "recordings_written_total", "Recordings registered (visible in the API)", ["relay"],
            registry=registry,
        )  # fmt: skip
        self.discarded = Counter(
            "recordings_discarded_total",
            "Relay files that are no call recording (unanswered, unattributed, invalid)",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.deleted = Counter(
            "recordings_deleted_total", "Recordings deleted, by reason (api, retention)",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.stored = Gauge(
            "recording_bytes_stored", "Octets of audio in the registered recordings",
            registry=registry,
        )  # fmt: skip


# --------------------------------------------------------------------------- the keeper
class RecordingKeeper:
    """Registers finished recordings and enforces retention (module docstring)."""

    def __init__(
        self,
        repo: RecordingsRepo,
        paths: RecordingPaths,
        *,
        registry: CollectorRegistry,
        retention_days: float = 30.0,
        spool: Path | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scan_interval: float = SCAN_INTERVAL,
    ) -> None:
        self.repo = repo
        self.paths = paths
        self.retention_days = retention_days
        self.spool = spool
        self.wall_clock = wall_clock
        self.scan_interval = scan_interval
        self.metrics = RecordingMetrics(registry)
        self._seen: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._full_scan = True
        repo.on_delete(self._deleted)

    def _deleted(self, reason: str, gone: list[RecordingInfo]) -> None:
        self.metrics.deleted.labels(reason).inc(len(gone))
        for info in gone:
            self.metrics.stored.dec(info.size_bytes)

    def wake(self) -> None:
        """A recording has just been finished (the in-process relay's sink)."""
        self._wake.set()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.paths.node_dir.mkdir(parents=True, exist_ok=True)
        self.metrics.stored.set(await self.repo.stored_bytes())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._scan_forever()),
            loop.create_task(self._sweep_forever()),
        ]

    async def stop(self) -> None:
        """Stop the loops; one last scan registers what the relay finished while stopping."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.scan_once()

    async def _scan_forever(self) -> None:
        while True:
            try:
                await self.scan_once()
            except Exception:
                log.exception("recording scan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.scan_interval)
            self._wake.clear()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("recording retention sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL)

    # ---------------------------------------------------------------- scanning
    async def scan_once(self) -> int:
        """Convert rtpengine's finished calls, register new recordings; how many."""
        if self.spool is not None:
            sink = AnsweredOnly(DirectorySink(self.paths.node_dir))
            result = await asyncio.to_thread(convert_spool, self.spool, sink)
            if sink.dropped:
                self.metrics.discarded.labels("unanswered").inc(sink.dropped)
            if result.failed:
                self.metrics.discarded.labels("invalid").inc(result.failed)
        found = await asyncio.to_thread(self._new_sidecars, self._days())
        self._full_scan = False
        registered = 0
        for sidecar in found:
            registered += await self._register(sidecar)
        return registered

    def _days(self) -> list[Path]:
        node = self.paths.node_dir
        if self._full_scan:
            return sorted(p for p in node.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]"))
        today = self.wall_clock().astimezone(UTC)
        days = (today, today - timedelta(days=1))
        return [node / f"{d.year:04d}" / f"{d.month:02d}" / f"{d.day:02d}" for d in days]

    def _new_sidecars(self, days: list[Path]) -> list[Path]:
        out: list[Path] = []
        current: set[str] = set()
        for day in days:
            if not day.is_dir():
                continue
            for sidecar in day.glob("*.json"):
                rel = self._rel(sidecar.with_suffix(".wav"))
                current.add(rel)
                if rel not in self._seen:
                    out.append(sidecar)
        if not self._full_scan:
            self._seen &= current  # only the days still scanned are remembered
        return sorted(out)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.paths.root).as_posix()

    async def _register(self, sidecar: Path) -> int:
        wav = sidecar.with_suffix(".wav")
        rel = self._rel(wav)
        try:
            data = json.loads(await asyncio.to_thread(sidecar.read_text))
            size = (await asyncio.to_thread(wav.stat)).st_size
            recording = recording_from_sidecar(data, rel, size)
        except NotARecording as exc:
            self._seen.add(rel)
            await asyncio.to_thread(self._set_aside, wav, exc.reason)
            self.metrics.discarded.labels(exc.reason).inc()
            return 0
        except (OSError, ValueError, TypeError) as exc:
            self._seen.add(rel)
            log.error("recording %s not registered: %s", rel, exc)
            self.metrics.discarded.labels("invalid").inc()
            return 0
        recording_id = await self.repo.register(recording, self.wall_clock())
        self._seen.add(rel)
        if recording_id is None:
            if rel not in await self.repo.known([rel]):  # the tenant is gone
                await asyncio.to_thread(self._set_aside, wav, "unattributed")
                self.metrics.discarded.labels("no-tenant").inc()
            return 0
        self.metrics.written.labels(recording.relay).inc()
        self.metrics.stored.inc(recording.size_bytes)
        log.info("recording %s registered (%s, %.1f s)", recording_id, rel, recording.duration)
        return 1

    def _set_aside(self, wav: Path, reason: str) -> None:
        """Unanswered: nothing to keep. Unattributed: kept aside for an operator."""
        files = [wav, wav.with_suffix(".json")]
        if reason == "unanswered":
            for path in files:
                path.unlink(missing_ok=True)
            return
        aside = self.paths.node_dir / "unregistered"
        aside.mkdir(exist_ok=True)
        log.warning("recording %s has no call metadata (a relay crash?): moved to %s", wav, aside)
        for path in files:
            if path.exists():
                shutil.move(str(path), aside / path.name)

    # ---------------------------------------------------------------- retention
    async def sweep_once(self) -> int:
        """Delete expired recordings (rows, files) and expired day directories; how many
        recordings went."""
        now = self.wall_clock()
        gone = await self.repo.expire(now, days=self.retention_days)
        if gone:
            log.info("recording retention: %d recording(s) deleted", len(gone))
        await asyncio.to_thread(self._old_days, now - timedelta(days=self.retention_days + 1))
        self.metrics.stored.set(await self.repo.stored_bytes())
        return len(gone)

    def _old_days(self, cutoff: datetime) -> None:
        limit = cutoff.astimezone(UTC).strftime("%Y/%m/%d")
        for day in self.paths.root.glob("*/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]"):
            if "/".join(day.parts[-3:]) < limit:
                shutil.rmtree(day, ignore_errors=True)
                log.info("recording retention: removed %s", day)
