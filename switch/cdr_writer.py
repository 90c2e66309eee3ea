"""The CDR writer: call detail records from the call path to the store, never blocking it.

Theory of operation
-------------------
`submit(record)` is called by the proxy when a call ends (`billing.cdr.CallRecords`). It never
awaits and never blocks: it counts the call (outcome, direction, duration) and appends the
record to a bounded in-memory queue. When the queue is full (the database is slow, not
down: an outage empties the queue into the spool), the record is appended to the spool file
at once (one buffered write, no fsync; counted as `overflow`).

One task (`_run`) takes batches off the queue: up to `batch_size` records, or whatever came
within `batch_interval` of the first one, whichever is first. It rates each record with
billing (`billing.rate_record`: the tariff table is loaded once, each record keeps the
tariff version it was rated with and its billing month in the tenant's time zone) and
writes the batch in one transaction (`CdrSink.insert`, idempotent on cdr_id).

Outage: when the write raises `StoreUnavailable`, the batch is appended to the spool
(JSON lines, `billing.cdr_codec`, fsync per batch, in a worker thread so the event loop
never waits for the disk) and the writer enters the outage state: every later batch goes
to the spool too (the order of the file is kept), and the database is retried with
exponential backoff (`retry_initial` doubling up to `retry_max`). A retry is a replay: the
spool is read from the start in chunks and written (idempotent: a chunk committed before a
second failure is skipped the next time, never doubled); only when every line has been
committed is the file truncated (under the spool's lock, checking nothing was appended
meanwhile), and the writer leaves the outage state. At start-up a spool left by a previous
run is replayed the same way, before anything else.

Records the database refuses for another reason (a constraint, a bug) are written one by
one to isolate the bad ones, which go to `<spool>.rejected` with the error, counted; a line
of the spool that cannot be decoded (the torn last line of a crash) goes there too.

Guarantees (defaults: batch_size 200, batch_interval 50 ms, max_queue 2,000):
- the producer never blocks: `submit` is a deque append, or one buffered file write;
- nothing is written twice: every write is `ON CONFLICT (cdr_id) DO NOTHING`;
- a graceful `stop()` loses nothing: the queue is drained to the database, or the spool;
- a crash (kill -9) loses exactly the records held only in memory (`cdr_unsaved_records`):
  the queue plus the batch being written. With the database healthy that is what arrived
  within one batch interval plus one write (≈ 50 ms + write latency of calls: at 100
  calls/s, about 6 records); the hard bound is max_queue + batch_size = 2,200 records (a
  database so slow that the queue fills; beyond that records go to the spool at once).
  A batch already appended to the spool survives: the spool is fsynced per batch.

Metrics (registered in the registry given; the dashboard computes answer-seizure ratio and
average call duration from `cdr_calls_total` and `cdr_call_duration_seconds`):
cdr_queue_depth, cdr_unsaved_records, cdr_spool_records (gauges), cdr_written_total{path},
cdr_duplicates_total, cdr_write_seconds (histogram), cdr_spooled_total{reason},
cdr_replays_total, cdr_write_failures_total{reason}, cdr_rejected_total,
cdr_lost_total{reason}, cdr_rating_failures_total{error_id}, cdr_calls_total{direction,
outcome}, cdr_call_duration_seconds (answered calls), cdr_fair_use_flags_total and
cdr_fair_use_flagged_ids (the 10-minute plan's ~30 calls a day).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from billing import TariffTable
from billing.cdr_codec import decode, encode
from billing.cdr_rating import FALLBACK_TIMEZONE, rate_record
from billing.fair_use import FairUseWatch
from provisioning.errors import StoreUnavailable
from provisioning.records import CallDirection, CallRecord
from provisioning.services.cdrs import DEFAULT_RETENTION_DAYS
from provisioning.store.queries.cdrs import INSERT_FORMS
from switch.cdr_metrics import CdrMetrics
from switch.cdr_spool import Spool

__all__ = ["CdrConfig", "CdrSink", "CdrWriter", "WriterSettings"]

log = logging.getLogger(__name__)


class CdrSink(Protocol):
    """Where batches go (`provisioning.services.cdrs.CallRecordRepo`)."""

    async def insert(self, records: Sequence[CallRecord], *, now: datetime) -> int:
        """Store the batch in one transaction, skipping cdr_ids already stored; returns how
        many were new. Raises `StoreUnavailable` when the database cannot be reached."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSettings:
    batch_size: int = 200
    batch_interval: float = 0.05  # seconds after a batch's first record
    max_queue: int = 2_000
    retry_initial: float = 0.5  # seconds before the first retry after a failure
    retry_max: float = 10.0
    shutdown_timeout: float = 5.0  # stop(): how long the queue may take to drain

    def __post_init__(self) -> None:
        if not (1 <= self.batch_size <= self.max_queue):
            raise ValueError("1 <= batch_size <= max_queue")
        if min(self.batch_interval, self.retry_initial, self.shutdown_timeout) <= 0:
            raise ValueError("intervals must be > 0")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max >= retry_initial")


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrConfig:
    """The `[cdr]` section: `batch_size`, `batch_interval` (s), `max_queue`, `retry_max` (s),
    `retention_days`, `node` (the CDRs' node name; default, or "", the host name), `pg_insert`
    (how batches go into PostgreSQL: "copy", "unnest" or "values", see
    provisioning/store/queries/cdrs.py), `enabled` (false: no call records are kept)."""

    writer: WriterSettings = field(default_factory=WriterSettings)
    retention_days: int = DEFAULT_RETENTION_DAYS
    node: str = field(default_factory=socket.gethostname)
    pg_insert: str = "copy"
    enabled: bool = True  # False: the proxy keeps no records (the history stays as it is)

    def __post_init__(self) -> None:
        if self.retention_days < 1 or not self.node:
            raise ValueError("cdr.retention_days >= 1 and a node name are required")
        if self.pg_insert not in INSERT_FORMS:
            raise ValueError(f"cdr.pg_insert: one of {', '.join(INSERT_FORMS)}")
        if not isinstance(self.enabled, bool):
            raise ValueError("cdr.enabled: true or false")

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> CdrConfig:
        writer_keys = {"batch_size", "batch_interval", "max_queue", "retry_max"}
        rest_keys = {"retention_days", "node", "pg_insert", "enabled"}
        unknown = sorted(set(section) - writer_keys - rest_keys)
        if unknown:
            raise ValueError(
                f"unknown configuration keys: {', '.join(f'cdr.{k}' for k in unknown)}"
            )
        writer = WriterSettings(**{k: v for k, v in section.items() if k in writer_keys})
        # node = "": the host name (the default), as the example file shows it
        rest = {k: v for k, v in section.items() if k not in writer_keys and v != ""}
        return cls(writer=writer, **rest)


class CdrWriter:
    """See the module docstring. `start()`, `submit()` from the call path, `stop()`."""

    def __init__(
        self,
        sink: CdrSink,
        *,
        spool_path: Path,
        tariffs: TariffTable,
        timezone: Callable[[str], str],
        registry: CollectorRegistry | None = None,
        settings: WriterSettings | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.settings = settings or WriterSettings()
        self.tariffs = tariffs
        self.timezone = timezone
        self.spool = Spool(spool_path)
        self.wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self.monotonic = monotonic
        self.fair_use = FairUseWatch()
        self.metrics = CdrMetrics(registry or CollectorRegistry(), self)
        self._queue: collections.deque[CallRecord] = collections.deque()
        self._wakeup = asyncio.Event()
        self._in_flight: list[CallRecord] = []
        self._outage = False
        self._backoff = self.settings.retry_initial
        self._retry_at = 0.0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the call path
    def submit(self, record: CallRecord) -> None:
        """Hand over a finished call's record. Never awaits, never raises."""
        try:
            self.metrics.count_call(record)
            if len(self._queue) >= self.settings.max_queue:
                self._spool_now(record)
                return
            self._queue.append(record)
            depth = len(self._queue)
            if depth == 1 or depth >= self.settings.batch_size:  # the first, or a full batch
                self._wakeup.set()
        except Exception:  # the call path must never see the writer's troubles
            log.exception("CDR %s not accepted", record.cdr_id)
            self.metrics.lost.labels(reason="submit-error").inc()

    def _spool_now(self, record: CallRecord) -> None:
        try:
            self.spool.append([encode(record)], sync=False)
            self.metrics.spooled.labels(reason="overflow").inc()
        except OSError:
            log.exception("CDR %s lost: the spool cannot be written", record.cdr_id)
            self.metrics.lost.labels(reason="spool-failed").inc()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def unsaved(self) -> int:
        """Records only in memory: what a crash right now would lose."""
        return len(self._queue) + len(self._in_flight)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await asyncio.to_thread(self.spool.open)
        self._outage = self.spool.records > 0  # a previous run's spool: replay it first
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cdr-writer")

    async def stop(self) -> None:
        """Drain the queue (to the database, else the spool) within `shutdown_timeout`;
        whatever is left then is spooled. Nothing is lost."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.shutdown_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        left = [*self._in_flight, *self._queue]
        self._in_flight, self._queue = [], collections.deque()
        if left:
            await self._to_spool([self._rated(r) for r in left], "shutdown")
        await asyncio.to_thread(self.spool.close)

    # ------------------------------------------------------------------ the task
    async def _run(self) -> None:
        if self._outage:
            await self._guarded(self._retry())
        while True:
            batch = await self._next_batch()
            if not batch:
                if self._stopping:
                    return
                await self._guarded(self._retry_if_due())
                continue
            self._in_flight = batch
            try:
                await self._deliver([self._rated(r) for r in batch])
            except Exception:  # never let the task die: the next batch must still go
                log.exception("CDR batch delivery failed; spooling it")
                await self._to_spool(batch, "outage")
            self._in_flight = []
            if not self._outage and self.spool.records:  # overflow spooled meanwhile
                await self._guarded(self._retry())

    async def _guarded(self, step: Awaitable[None]) -> None:
        """A replay that fails for anything but the database (a bug, a full disk) is logged
        and retried later; the task itself must never end."""
        try:
            await step
        except Exception:
            log.exception("CDR spool replay failed; retrying later")
            self._enter_outage()

    async def _next_batch(self) -> list[CallRecord]:
        """Up to batch_size records: the first one, then whatever arrives within
        batch_interval. Returns [] when stopping with nothing queued, or when a retry of
        the database is due."""
        s = self.settings
        if not self._queue and not self._stopping:
            self._wakeup.clear()
            await self._wait(self._retry_wait())
        if self._queue and not self._stopping:
            deadline = self.monotonic() + s.batch_interval
            while len(self._queue) < s.batch_size and (left := deadline - self.monotonic()) > 0:
                self._wakeup.clear()
                await self._wait(left)
                if self._stopping:
                    break
        return [self._queue.popleft() for _ in range(min(s.batch_size, len(self._queue)))]

    def _retry_wait(self) -> float | None:
        if not self._outage:
            return None
        return max(0.0, self._retry_at - self.monotonic())

    async def _wait(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _rated(self, record: CallRecord) -> CallRecord:
        if record.rating is not None or record.billing_month is not None:
            return record  # rated already (a spooled record, or a resubmission)
        zone = self._zone(record.tenant_id)
        rated = rate_record(record, self.tariffs, zone)
        if rated.rating_error is not None:
            self.metrics.rating_failures.labels(error_id=rated.rating_error).inc()
        self._watch_fair_use(rated, zone)
        return rated

    def _zone(self, tenant_id: str | None) -> str:
        if tenant_id is None:
            return FALLBACK_TIMEZONE
        try:
            return self.timezone(tenant_id)
        except Exception:  # a lookup must never cost a CDR: Tokyo's month is the fallback
            log.exception("time zone of tenant %s unknown; rating in %s", tenant_id,
                          FALLBACK_TIMEZONE)  # fmt: skip
            return FALLBACK_TIMEZONE

    def _watch_fair_use(self, record: CallRecord, zone: str) -> None:
        device = record.caller_device
        if record.direction is not CallDirection.OUTBOUND or not record.has_plan or not device:
            return
        plan = self.tariffs.version_at(record.started_at).plan
        if self.fair_use.observe(device, record.started_at, zone, plan):
            self.metrics.fair_use_flags.inc()
            log.warning("ID %s reached %d outgoing calls today (10-minute plan fair use)",
                        device, plan.fair_use_calls_per_day)  # fmt: skip

    # ------------------------------------------------------------------ delivery
    async def _deliver(self, batch: list[CallRecord]) -> None:
        if self._outage:
            await self._to_spool(batch, "outage")
            await self._retry_if_due()
            return
        try:
            await self._write(batch, "direct")
        except StoreUnavailable as exc:
            log.warning("CDR store unavailable (%s): spooling to %s", exc, self.spool.path)
            self.metrics.write_failures.labels(reason="unavailable").inc()
            await self._to_spool(batch, "outage")
            self._enter_outage()
        except Exception:
            log.exception("CDR batch refused by the store; isolating the bad records")
            self.metrics.write_failures.labels(reason="rejected").inc()
            try:
                await self._isolate(batch, "direct")
            except StoreUnavailable:
                await self._to_spool(batch, "outage")  # some may be stored: replay skips them
                self._enter_outage()

    async def _write(self, batch: Sequence[CallRecord], path: str) -> int:
        started = self.monotonic()
        new = await self.sink.insert(batch, now=self.wall_clock())
        self.metrics.write_seconds.observe(self.monotonic() - started)
        self.metrics.written.labels(path=path).inc(new)
        self.metrics.duplicates.inc(len(batch) - new)
        return new

    async def _isolate(self, batch: Sequence[CallRecord], path: str) -> None:
        """One record at a time: the good ones are stored, the bad ones set aside."""
        for record in batch:
            try:
                await self._write([record], path)
            except StoreUnavailable:
                raise
            except Exception as exc:
                await asyncio.to_thread(self.spool.reject, encode(record), repr(exc))
                self.metrics.rejected.inc()

    async def _to_spool(self, batch: Sequence[CallRecord], reason: str) -> None:
        try:
            await asyncio.to_thread(self.spool.append, [encode(r) for r in batch])
            self.metrics.spooled.labels(reason=reason).inc(len(batch))
        except OSError:
            log.exception("%d CDRs lost: the spool cannot be written", len(batch))
            self.metrics.lost.labels(reason="spool-failed").inc(len(batch))

    # ------------------------------------------------------------------ outage and replay
    def _enter_outage(self) -> None:
        if not self._outage:
            self._outage = True
            self._backoff = self.settings.retry_initial
        else:
            self._backoff = min(self._backoff * 2, self.settings.retry_max)
        self._retry_at = self.monotonic() + self._backoff

    async def _retry_if_due(self) -> None:
        if self._outage and self.monotonic() >= self._retry_at:
            await self._retry()

    async def _retry(self) -> None:
        try:
            await self._replay()
        except StoreUnavailable as exc:
            log.info("CDR store still unavailable (%s); next retry in %.1fs", exc, self._backoff)
            self.metrics.write_failures.labels(reason="unavailable").inc()
            self._enter_outage()
            return
        if self._outage:
            log.info("CDR store back: the spool is replayed")
        self._outage = False
        self._backoff = self.settings.retry_initial

    async def _replay(self) -> None:
        """Write the whole spool, chunk by chunk; truncate it once all is committed. Raises
        StoreUnavailable (the spool stays; what was committed is skipped next time)."""
        offset = 0
        while True:
            lines, end = await asyncio.to_thread(self.spool.read, offset, self.settings.batch_size)
            if not lines:
                if await asyncio.to_thread(self.spool.truncate_at, end):
                    self.metrics.replays.inc()
                    return
                continue  # appended meanwhile: read on
            records = [r for r in (await self._decode(lines)) if r is not None]
            if records:
                await self._write_replayed([self._rated(r) for r in records])
            offset = end

    async def _write_replayed(self, records: list[CallRecord]) -> None:
        try:
            await self._write(records, "replay")
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("spooled CDRs refused by the store; isolating the bad records")
            self.metrics.write_failures.labels(reason="rejected").inc()
            await self._isolate(records, "replay")

    async def _decode(self, lines: list[str]) -> list[CallRecord | None]:
        out: list[CallRecord | None] = []
        for line in lines:
            try:
                out.append(decode(line))
            except ValueError as exc:
                await asyncio.to_thread(self.spool.reject, line, str(exc))
                self.metrics.rejected.inc()
                out.append(None)
        return out
