"""The CDR writer (switch/cdr_writer.py) against a fake store seam: batching, the bounded queue,
outage -> spool -> replay exactly once, crash loss, shutdown, the spool's torn lines and the
records a store refuses, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from billing import default_tariffs
from billing.cdr_codec import encode
from provisioning.errors import StoreUnavailable
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord
from switch.cdr_writer import CdrConfig, CdrWriter, WriterSettings

START = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)


class FakeSink:
    """The seam of provisioning.services.cdrs.CallRecordRepo: rows by cdr_id, like the
    real INSERT … ON CONFLICT DO NOTHING. `down` raises StoreUnavailable; `gate` (an Event)
    holds every write until set; `poison` ids make a batch containing them fail."""

    def __init__(self) -> None:
        self.rows: dict[str, CallRecord] = {}
        self.batches: list[int] = []
        self.down = False
        self.down_after: int | None = None  # go down after this many more successful writes
        self.gate: asyncio.Event | None = None
        self.poison: set[str] = set()
        self.in_write = asyncio.Event()

    async def insert(self, records: Sequence[CallRecord], *, now: datetime) -> int:
        self.in_write.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down_after is not None:
            if self.down_after == 0:
                self.down = True
            self.down_after -= 1
        if self.down:
            raise StoreUnavailable("PostgreSQL unavailable: connection refused")
        if any(r.cdr_id in self.poison for r in records):
            raise ValueError("violates a check constraint")
        self.batches.append(len(records))
        new = [r for r in records if r.cdr_id not in self.rows]
        self.rows.update((r.cdr_id, r) for r in new)
        return len(new)


def record(i: int, **fields: object) -> CallRecord:
    base: dict[str, object] = {
        "cdr_id": f"cdr-{i:06d}", "call_id": f"call-{i}", "node": "n1", "tenant_id": "t1",
        "direction": CallDirection.OUTBOUND, "outcome": CallOutcome.ANSWERED,
        "dialled": "09011112222", "callee": "+819011112222", "caller_device": "d1",
        "caller_device_kind": DeviceKind.APP, "started_at": START,
        "answered_at": START, "ended_at": START + timedelta(seconds=61), "billable_seconds": 61,
    }  # fmt: skip
    return CallRecord(**{**base, **fields})  # type: ignore[arg-type]


def writer(
    tmp_path: Path, sink: FakeSink, registry: CollectorRegistry | None = None, **settings: float
) -> CdrWriter:
    values = {
        "batch_size": 200, "batch_interval": 0.02, "max_queue": 2000, "retry_initial": 0.05,
        "retry_max": 0.2, "shutdown_timeout": 5.0, **settings,
    }  # fmt: skip
    return CdrWriter(
        sink,
        spool_path=tmp_path / "cdr-spool.jsonl",
        tariffs=default_tariffs(),
        timezone=lambda tenant: "Asia/Tokyo",
        registry=registry or CollectorRegistry(),
        settings=WriterSettings(**values),  # type: ignore[arg-type]
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def spool_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "cdr-spool.jsonl"
    return path.read_text().splitlines() if path.exists() else []


# --------------------------------------------------------------------------- batching
async def test_batches_of_batch_size_then_the_rest_after_the_interval(tmp_path: Path) -> None:
    sink = FakeSink()
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    for i in range(450):
        w.submit(record(i))
    await until(lambda: len(sink.rows) == 450)
    assert sink.batches == [200, 200, 50]
    assert value(reg, "cdr_written_total", path="direct") == 450
    stored = sink.rows["cdr-000007"]
    assert stored.rating is not None and stored.charge == 600  # rated before the write
    assert (stored.billing_month, stored.tariff_version) == ("2024-05", "2021-06-26")
    assert value(reg, "cdr_write_seconds_count") == 3
    await w.stop()
    assert value(reg, "cdr_queue_depth") == 0 and spool_lines(tmp_path) == []


async def test_a_lone_record_waits_one_interval_at_most(tmp_path: Path) -> None:
    sink = FakeSink()
    w = writer(tmp_path, sink, batch_interval=0.05)
    await w.start()
    began = time.monotonic()
    w.submit(record(1))
    await until(lambda: len(sink.rows) == 1)
    assert 0.04 <= time.monotonic() - began < 2.0
    await w.stop()


# --------------------------------------------------------------------------- queue full
async def test_a_full_queue_spools_at_once_and_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    sink = FakeSink()
    sink.gate = asyncio.Event()  # the database is slow: the first write hangs
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg, batch_size=10, max_queue=100)
    await w.start()
    w.submit(record(0))
    await sink.in_write.wait()  # batch [0] in flight
    began, synced = time.perf_counter(), len(fsyncs)
    for i in range(1, 1001):
        w.submit(record(i))  # synchronous: the loop cannot run in between
    elapsed = time.perf_counter() - began
    assert len(fsyncs) == synced  # 900 spooled by submit itself, none of them fsynced
    assert elapsed < 2.0  # (~0.05 s here: an encode and a buffered write each)
    assert w.queue_depth == 100 and w.unsaved == 101
    assert len(spool_lines(tmp_path)) == 900
    assert value(reg, "cdr_spooled_total", reason="overflow") == 900
    assert value(reg, "cdr_unsaved_records") == 101
    sink.gate.set()
    await until(lambda: len(sink.rows) == 1001)  # queue written, then the spool replayed
    await until(lambda: w.spool.records == 0)
    assert spool_lines(tmp_path) == []
    assert value(reg, "cdr_written_total", path="replay") == 900
    await w.stop()


# --------------------------------------------------------------------------- outage
async def test_outage_spools_then_replays_every_record_exactly_once(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    for i in range(500):
        w.submit(record(i))
    await until(lambda: w.spool.records == 500)
    assert sink.rows == {} and len(spool_lines(tmp_path)) == 500
    assert value(reg, "cdr_spool_records") == 500
    assert value(reg, "cdr_write_failures_total", reason="unavailable") >= 1
    # spooled records are rated already: the tariff version is the one at the call
    assert json.loads(spool_lines(tmp_path)[0])["rating"]["tariff_version"] == "2021-06-26"
    sink.down = False
    await until(lambda: len(sink.rows) == 500 and w.spool.records == 0)
    assert spool_lines(tmp_path) == []
    assert value(reg, "cdr_replays_total") == 1
    assert value(reg, "cdr_written_total", path="replay") == 500
    assert value(reg, "cdr_duplicates_total") == 0
    w.submit(record(500))  # back to direct writes
    await until(lambda: len(sink.rows) == 501)
    assert value(reg, "cdr_written_total", path="direct") == 1
    await w.stop()


async def test_a_replay_cut_half_way_resumes_without_doubling(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg, batch_size=100)
    await w.start()
    for i in range(450):
        w.submit(record(i))
    await until(lambda: w.spool.records == 450)
    sink.down, sink.down_after = False, 2  # two chunks commit, then the database goes again
    await until(lambda: len(sink.rows) == 200)
    await until(lambda: sink.down)
    assert w.spool.records >= 450  # nothing truncated before the whole spool committed
    sink.down, sink.down_after = False, None
    await until(lambda: len(sink.rows) == 450 and w.spool.records == 0)
    assert value(reg, "cdr_duplicates_total") == 200  # the first two chunks, skipped
    assert value(reg, "cdr_written_total", path="replay") == 450
    await w.stop()


async def test_records_arriving_during_an_outage_keep_going_to_the_spool(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    w = writer(tmp_path, sink, retry_initial=0.05, retry_max=0.05)
    await w.start()
    for round_ in range(5):
        for i in range(20):
            w.submit(record(round_ * 20 + i))
        await asyncio.sleep(0.03)
    await until(lambda: w.spool.records == 100)
    sink.down = False
    await until(lambda: len(sink.rows) == 100 and w.spool.records == 0)
    await w.stop()


# --------------------------------------------------------------------------- crash, stop
async def test_a_crash_loses_the_queue_and_the_batch_in_flight_only(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()
    w = writer(tmp_path, sink, batch_size=50, max_queue=500)
    await w.start()
    for i in range(300):
        w.submit(record(i))
    await sink.in_write.wait()
    at_risk = w.unsaved
    assert at_risk == 300  # 50 in flight + 250 queued: nothing of it is anywhere else
    # kill -9: the task dies mid-write, stop() never runs, the process state is gone
    assert w._task is not None
    w._task.cancel()
    stored = len(sink.rows) + len(spool_lines(tmp_path))
    assert 300 - stored == at_risk <= w.settings.max_queue + w.settings.batch_size


async def test_a_crash_during_an_outage_loses_nothing_spooled(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    w = writer(tmp_path, sink)
    await w.start()
    for i in range(400):
        w.submit(record(i))
    # (a batch is durable once its append returned; unsaved drops right after)
    await until(lambda: w.spool.records == 400 and w.unsaved == 0)
    assert w._task is not None
    w._task.cancel()  # crash
    # the next run replays what the crashed one spooled
    sink.down = False
    again = writer(tmp_path, sink)
    await again.start()
    await until(lambda: len(sink.rows) == 400 and again.spool.records == 0)
    await again.stop()


async def test_stop_drains_the_queue_to_the_database(tmp_path: Path) -> None:
    sink = FakeSink()
    w = writer(tmp_path, sink, batch_interval=10.0)  # nothing would be written for 10 s
    await w.start()
    for i in range(120):
        w.submit(record(i))
    await w.stop()
    assert len(sink.rows) == 120 and spool_lines(tmp_path) == []


async def test_stop_with_the_database_down_spools_and_the_next_start_replays(
    tmp_path: Path,
) -> None:
    sink = FakeSink()
    sink.down = True
    w = writer(tmp_path, sink, batch_interval=10.0)
    await w.start()
    for i in range(120):
        w.submit(record(i))
    await w.stop()
    assert len(spool_lines(tmp_path)) == 120 and sink.rows == {}
    sink.down = False
    reg = CollectorRegistry()
    again = writer(tmp_path, sink, reg)
    await again.start()
    await until(lambda: len(sink.rows) == 120)
    await until(lambda: again.spool.records == 0)
    assert value(reg, "cdr_replays_total") == 1
    await again.stop()


async def test_stop_gives_up_on_a_hung_database_and_spools(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()  # never set: every write hangs
    w = writer(tmp_path, sink, shutdown_timeout=0.2)
    await w.start()
    for i in range(30):
        w.submit(record(i))
    await sink.in_write.wait()
    await w.stop()
    assert sorted(json.loads(x)["cdr_id"] for x in spool_lines(tmp_path)) == [
        record(i).cdr_id for i in range(30)
    ]


# --------------------------------------------------------------------------- bad data
async def test_a_torn_last_line_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    path = tmp_path / "cdr-spool.jsonl"
    good = [encode(record(i)) for i in range(3)]
    path.write_text("\n".join(good) + "\n" + good[0][:40])  # the crash tore the last line
    sink = FakeSink()
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    await until(lambda: len(sink.rows) == 3 and w.spool.records == 0)
    rejected = (tmp_path / "cdr-spool.jsonl.rejected").read_text().splitlines()
    assert len(rejected) == 1 and json.loads(rejected[0])["line"] == good[0][:40]
    await w.stop()


async def test_a_garbage_line_is_rejected_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "cdr-spool.jsonl"
    path.write_text(encode(record(1)) + "\nnot json\n" + encode(record(2)) + "\n")
    sink = FakeSink()
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    await until(lambda: len(sink.rows) == 2 and w.spool.records == 0)
    assert value(reg, "cdr_rejected_total") == 1
    await w.stop()


async def test_a_record_the_store_refuses_is_isolated(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.poison = {record(5).cdr_id}
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    for i in range(10):
        w.submit(record(i))
    await until(lambda: len(sink.rows) == 9)
    rejected = (tmp_path / "cdr-spool.jsonl.rejected").read_text().splitlines()
    assert [json.loads(json.loads(x)["line"])["cdr_id"] for x in rejected] == [record(5).cdr_id]
    assert value(reg, "cdr_rejected_total") == 1
    assert value(reg, "cdr_write_failures_total", reason="rejected") == 1
    await w.stop()


async def test_an_unratable_record_is_stored_unrated_and_counted(tmp_path: Path) -> None:
    sink = FakeSink()
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    w.submit(record(1, caller_device_kind=DeviceKind.DESK, has_plan=True))
    await until(lambda: len(sink.rows) == 1)
    stored = sink.rows[record(1).cdr_id]
    assert (stored.rating, stored.rating_error) == (None, "plan-not-for-device")
    assert value(reg, "cdr_rating_failures_total", error_id="plan-not-for-device") == 1
    await w.stop()


# --------------------------------------------------------------------------- metrics
async def test_call_metrics_and_fair_use(tmp_path: Path) -> None:
    sink = FakeSink()
    reg = CollectorRegistry()
    w = writer(tmp_path, sink, reg)
    await w.start()
    w.submit(record(1, outcome=CallOutcome.BUSY, answered_at=None, billable_seconds=0,
                    direction=CallDirection.INBOUND))  # fmt: skip
    for i in range(2, 33):  # 31 outbound calls of an ID on the plan, one day
        w.submit(record(i, has_plan=True, started_at=START + timedelta(minutes=i),
                        answered_at=START + timedelta(minutes=i),
                        ended_at=START + timedelta(minutes=i, seconds=61)))  # fmt: skip
    await until(lambda: len(sink.rows) == 32)
    assert value(reg, "cdr_calls_total", direction="inbound", outcome="busy") == 1
    assert value(reg, "cdr_calls_total", direction="outbound", outcome="answered") == 31
    assert value(reg, "cdr_call_duration_seconds_count") == 31
    assert value(reg, "cdr_call_duration_seconds_sum") == 31 * 61
    assert value(reg, "cdr_call_duration_seconds_bucket", le="60.0") == 0
    assert value(reg, "cdr_fair_use_flags_total") == 1
    await w.stop()


async def test_a_failing_time_zone_lookup_costs_no_cdr(tmp_path: Path) -> None:
    sink = FakeSink()
    w = CdrWriter(
        sink,
        spool_path=tmp_path / "cdr-spool.jsonl",
        tariffs=default_tariffs(),
        timezone=lambda tenant: {}[tenant],  # e.g. no snapshot yet at start-up
        registry=CollectorRegistry(),
        settings=WriterSettings(batch_interval=0.01),
    )
    await w.start()
    late = START.replace(day=25, hour=15, minute=30)  # the 26th in Tokyo
    w.submit(record(1, started_at=late, answered_at=late, ended_at=late + timedelta(seconds=61)))
    await until(lambda: len(sink.rows) == 1)
    assert sink.rows[record(1).cdr_id].billing_month == "2024-06"  # rated in Tokyo's month
    await w.stop()


def test_the_cdr_section() -> None:
    c = CdrConfig.from_section({"batch_size": 100, "retention_days": 30, "node": "sw-1"})
    assert (c.writer.batch_size, c.writer.batch_interval, c.retention_days, c.node) == (
        100, 0.05, 30, "sw-1",
    )  # fmt: skip
    assert CdrConfig().retention_days == 400 and CdrConfig().node
    with pytest.raises(ValueError, match=r"cdr\.batch"):
        CdrConfig.from_section({"batch": 1})
    with pytest.raises(ValueError):
        CdrConfig.from_section({"batch_size": 0})
    with pytest.raises(ValueError):
        CdrConfig.from_section({"retention_days": 0})
    with pytest.raises(ValueError, match="pg_insert"):
        CdrConfig.from_section({"pg_insert": "bulk"})
    assert CdrConfig.from_section({"pg_insert": "unnest"}).pg_insert == "unnest"
    assert CdrConfig().pg_insert == "copy"
