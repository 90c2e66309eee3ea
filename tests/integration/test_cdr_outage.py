"""The CDR writer against the real PostgreSQL: the database cut during calls (through a TCP
proxy that resets every connection and refuses new ones), then back — every CDR stored once,
none lost, none doubled; and a crash (kill -9 of a writer process under load), counting what
was lost against the writer's bound (the queue plus the batch in flight)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from billing import default_tariffs
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord
from provisioning.services.cdrs import CallRecordRepo
from provisioning.store import open_store
from switch.cdr_writer import CdrWriter, WriterSettings

from .harness import REPO
from .store.conftest import PG_HOST, PG_PORT, create_pg_database, drop_pg_database, pg_url
from .store.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

START = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name = await create_pg_database()
    store = await open_store(pg_url(name))  # migrated
    await store.close()
    try:
        yield name
    finally:
        await drop_pg_database(name)


def record(i: int) -> CallRecord:
    start = START + timedelta(milliseconds=i)
    return CallRecord(
        cdr_id=f"outage-{i:07d}", call_id=f"call-{i}", node="n1", tenant_id="t1",
        direction=CallDirection.OUTBOUND, outcome=CallOutcome.ANSWERED, dialled="09011112222",
        callee="+819011112222", caller_device="d1", caller_device_kind=DeviceKind.APP,
        started_at=start, answered_at=start, ended_at=start + timedelta(seconds=61),
        billable_seconds=61,
    )  # fmt: skip


async def stored_ids(name: str) -> list[str]:
    conn = await asyncpg.connect(pg_url(name), timeout=5)
    try:
        return [r["cdr_id"] for r in await conn.fetch("SELECT cdr_id FROM cdrs")]
    finally:
        await conn.close()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.timeout(120)
async def test_postgres_cut_during_calls_loses_and_doubles_nothing(
    database: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    store = await open_store(pg_url(database, port=proxy.port))
    registry = CollectorRegistry()
    writer = CdrWriter(
        CallRecordRepo(store, pg_form="copy"),
        spool_path=tmp_path / "cdr-spool.jsonl",
        tariffs=default_tariffs(),
        timezone=lambda _tenant: "Asia/Tokyo",
        registry=registry,
        settings=WriterSettings(
            batch_size=100, batch_interval=0.02, retry_initial=0.1, retry_max=0.5
        ),
    )
    await writer.start()
    submitted = 0

    async def calls(seconds: float, rate: int = 400) -> None:
        nonlocal submitted
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(rate // 50):
                writer.submit(record(submitted))
                submitted += 1
            await asyncio.sleep(1 / 50)

    try:
        await calls(1.0)
        await proxy.stop()  # PostgreSQL unreachable: connections reset, new ones refused
        await calls(2.0)
        assert writer.spool.records > 0, "nothing was spooled during the outage"
        spooled_during = writer.spool.records
        await proxy.start()  # back, same address
        await calls(1.0)
        deadline = time.monotonic() + 30
        while writer.spool.records or writer.unsaved:
            assert time.monotonic() < deadline, "the spool was not replayed"
            await asyncio.sleep(0.05)
        await writer.stop()
    finally:
        await store.close()
        await proxy.stop()
    ids = await stored_ids(database)
    assert len(ids) == len(set(ids)) == submitted  # none lost, none doubled
    assert set(ids) == {record(i).cdr_id for i in range(submitted)}
    assert sample(registry, "cdr_spooled_total", reason="outage") >= spooled_during
    assert sample(registry, "cdr_replays_total") >= 1
    assert sample(registry, "cdr_write_failures_total", reason="unavailable") >= 1
    written = sum(sample(registry, "cdr_written_total", path=p) for p in ("direct", "replay"))
    assert written == submitted  # each stored exactly once, whatever was retried
    assert sample(registry, "cdr_rejected_total") == 0
    assert (tmp_path / "cdr-spool.jsonl").stat().st_size == 0
    print(  # the numbers for the note
        f"\nPostgreSQL cut: {submitted} CDRs submitted, {spooled_during} spooled during the "
        f"outage, {int(sample(registry, 'cdr_duplicates_total'))} re-sent duplicates skipped, "
        f"all {len(ids)} stored once"
    )


CHILD = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from billing import default_tariffs
from provisioning.services.cdrs import CallRecordRepo
from provisioning.store import open_store
from switch.cdr_writer import CdrWriter, WriterSettings
from tests.integration.test_cdr_outage import record

async def main(url, spool, rate):
    store = await open_store(url)
    writer = CdrWriter(CallRecordRepo(store), spool_path=Path(spool),
                       tariffs=default_tariffs(), timezone=lambda t: "Asia/Tokyo",
                       settings=WriterSettings())
    await writer.start()
    out = sys.stdout
    i = 0
    while True:
        for _ in range(rate // 100):
            writer.submit(record(i))
            out.write(f"{i}\\n")  # after the submit: a printed id was submitted
            i += 1
        out.write(f"unsaved {writer.unsaved}\\n")
        out.flush()
        await asyncio.sleep(0.01)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.timeout(120)
async def test_a_crash_under_load_loses_at_most_the_queue_and_the_batch_in_flight(
    database: str, tmp_path: Path
) -> None:
    rate = 2_000  # CDRs a second (a busy node ends a few hundred calls a second)
    spool = tmp_path / "cdr-spool.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, pg_url(database), str(spool), str(rate)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    assert proc.stdout is not None
    await asyncio.sleep(3.0)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 under load
    out, _ = proc.communicate(timeout=30)
    lines = out.splitlines()
    printed = [int(x) for x in lines if x.isdigit()]
    unsaved_seen = [int(x.split()[1]) for x in lines if x.startswith("unsaved ")]
    assert len(printed) > rate, "the child did not run under load"
    in_db = set(await stored_ids(database))
    in_spool = (
        {json.loads(x)["cdr_id"] for x in spool.read_text().splitlines()}
        if spool.exists()
        else set()
    )
    submitted = {record(i).cdr_id for i in printed}
    lost = submitted - in_db - in_spool
    settings = WriterSettings()
    assert len(lost) <= settings.max_queue + settings.batch_size
    # the lost ones are the newest: the queue and the batch in flight, never older ones
    newest = {record(i).cdr_id for i in printed[len(printed) - len(lost) - settings.batch_size :]}
    assert lost <= newest
    # the next run replays the spool: everything not lost ends up stored, once
    store = await open_store(pg_url(database))
    writer = CdrWriter(CallRecordRepo(store), spool_path=spool, tariffs=default_tariffs(),
                       timezone=lambda _t: "Asia/Tokyo")  # fmt: skip
    await writer.start()
    await writer.stop()
    await store.close()
    final = await stored_ids(database)
    assert len(final) == len(set(final)) == len(submitted) - len(lost)
    print(  # the numbers for the note
        f"\nkill -9 at {rate} CDRs/s after {len(printed)} CDRs: {len(lost)} lost "
        f"({1000 * len(lost) / rate:.0f} ms of CDRs); unsaved gauge max {max(unsaved_seen)}, "
        f"median {sorted(unsaved_seen)[len(unsaved_seen) // 2]}; {len(in_spool)} in the spool"
    )
