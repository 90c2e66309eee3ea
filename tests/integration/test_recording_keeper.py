"""The recording keeper (switch/recordings.py) over a real store (SQLite file) and real files,
without SIP: what a relay leaves in the recordings directory becomes rows (or is set aside),
rtpengine's pcaps are converted and cut at the answer, and the retention sweep - with the
clock as a parameter - deletes rows, files and expired day directories."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from media.relay.sink import DirectorySink, RecordingMeta
from provisioning.model import DeviceKind
from provisioning.records import RecordingQuery
from provisioning.services import DeviceCreate, Principal, Services, TenantCreate
from provisioning.services.recordings import DirectoryFiles, RecordingsRepo
from provisioning.store import open_store
from switch.proxy.anchor import format_metadata
from switch.recordings import RecordingKeeper, RecordingPaths
from tests.unit.relay.test_pcap import T0, metadata, spool

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[RecordingsRepo]:
    store = await open_store(f"sqlite:///{tmp_path}/db.sqlite")
    services = Services(store)
    await services.tenants.create_tenant(
        Principal.operator(),
        TenantCreate(
            id="t1", name="T1", contract_number="0355500100",
            basic_device=DeviceCreate(
                kind=DeviceKind.DESK, username="d0", password="d0-password-x"
            ),
        ),
    )  # fmt: skip
    try:
        yield RecordingsRepo(store, DirectoryFiles(tmp_path / "rec"))
    finally:
        await store.close()


def keeper(repo: RecordingsRepo, tmp_path: Path, **kw: object) -> RecordingKeeper:
    clock = kw.pop("clock", lambda: NOW)
    return RecordingKeeper(
        repo, RecordingPaths(root=(tmp_path / "rec").resolve(), node="n1"),
        registry=CollectorRegistry(), wall_clock=clock, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def md(answered: float | None, tenant: str = "t1", started: float | None = None) -> str:
    return format_metadata({
        "call-id": "c1@x", "from-tag": "ft", "tenant": tenant, "number": "+81355500100",
        "dir": "inbound", "other": "0312345678", "device": "d0",
        "started": None if started is None else int(started * 1000),
        "answered": None if answered is None else int(answered * 1000),
    })  # fmt: skip


def write(sink: DirectorySink, call_id: str, started: float, metadata: str | None) -> Path:
    meta = RecordingMeta(call_id=call_id, from_tag="ft", started=started, relay="embedded",
                         metadata=metadata)  # fmt: skip
    writer = sink.open(call_id, meta)
    writer.write(b"\x01\x00\x02\x00" * 8000)  # one second of stereo
    sink.close(writer, meta.finished(ended=started + 1, duration=1.0, data_bytes=32000))
    return next(sink.root.rglob(f"{call_id}.wav"))


async def test_finished_recordings_become_rows_and_the_rest_is_set_aside(
    repo: RecordingsRepo, tmp_path: Path
) -> None:
    k = keeper(repo, tmp_path)
    sink = DirectorySink(k.paths.node_dir)
    t = NOW.timestamp()
    good = write(sink, "good", t, md(answered=t, started=t - 5))
    unanswered = write(sink, "ringing", t, md(answered=None))
    stranger = write(sink, "stranger", t, md(answered=t, tenant="gone"))
    crashed = write(sink, "crashed", t, None)  # a relay recovered it: no metadata
    assert await k.scan_once() == 1
    page = await repo.page(Principal.operator(), "t1", _query())
    [row] = page.items
    assert (row.number, row.direction, row.other_party, row.device_id) == (
        "+81355500100", "inbound", "+81312345678", "d0",
    )  # fmt: skip
    assert row.started_at == datetime.fromtimestamp(int((t - 5) * 1000) / 1000, UTC)
    assert row.answered_at is not None and row.duration == 1.0 and row.size_bytes == 32044
    assert row.path == good.relative_to(k.paths.root).as_posix()
    assert not unanswered.exists() and not unanswered.with_suffix(".json").exists()
    aside = k.paths.node_dir / "unregistered"
    assert {p.name for p in aside.iterdir()} == {
        "stranger.wav", "stranger.json", "crashed.wav", "crashed.json",
    }  # fmt: skip
    assert not stranger.exists() and not crashed.exists()
    assert await k.scan_once() == 0  # nothing twice
    discarded = {
        reason: k.metrics.discarded.labels(reason)._value.get()
        for reason in ("unanswered", "unattributed", "no-tenant")
    }
    assert discarded == {"unanswered": 1, "unattributed": 1, "no-tenant": 1}


async def test_a_restarted_node_registers_what_it_missed_once(
    repo: RecordingsRepo, tmp_path: Path
) -> None:
    first = keeper(repo, tmp_path)
    sink = DirectorySink(first.paths.node_dir)
    old_day = (NOW - timedelta(days=3)).timestamp()  # outside the daily scan's two days
    write(sink, "old", old_day, md(answered=old_day))
    again = keeper(repo, tmp_path)  # a fresh process: its first scan covers every day
    assert await again.scan_once() == 1
    assert await keeper(repo, tmp_path).scan_once() == 0  # registered by path once only


async def test_rtpengine_pcaps_are_cut_at_the_answer_and_unanswered_ones_dropped(
    repo: RecordingsRepo, tmp_path: Path
) -> None:
    answered_at = T0 + 1.0  # the pcap's audio runs from T0 + 0.5 to T0 + 2.5, ends T0 + 3

    def text(pcap: Path) -> str:
        return metadata(pcap).rsplit("\n", 2)[0] + "\n" + md(answered_at, started=T0) + "\n"

    root, _ = spool(tmp_path / "a", text)
    k = keeper(repo, tmp_path, spool=root, clock=lambda: datetime.fromtimestamp(T0, UTC))
    assert await k.scan_once() == 1
    [row] = (await repo.page(Principal.operator(), "t1", _query())).items
    assert row.relay == "rtpengine"
    assert row.duration == pytest.approx(2.0, abs=0.03)  # answer -> termination
    with wave.open(str(k.paths.root / row.path)) as w:
        assert w.getnframes() == pytest.approx(16000, abs=240) and w.getnchannels() == 2
    sidecar = json.loads((k.paths.root / row.path).with_suffix(".json").read_text())
    assert sidecar["started"] == pytest.approx(answered_at, abs=0.001)

    def unanswered(pcap: Path) -> str:
        return metadata(pcap).rsplit("\n", 2)[0] + "\n" + md(None, started=T0) + "\n"

    root2, _ = spool(tmp_path / "b", unanswered)
    k2 = keeper(repo, tmp_path, spool=root2, clock=lambda: datetime.fromtimestamp(T0, UTC))
    assert await k2.scan_once() == 0
    assert k2.metrics.discarded.labels("unanswered")._value.get() == 1
    assert not list((root2 / "pcaps").glob("*.pcap"))  # consumed, nothing written


async def test_retention_deletes_rows_files_and_old_day_directories(
    repo: RecordingsRepo, tmp_path: Path
) -> None:
    now = [NOW]
    k = keeper(repo, tmp_path, clock=lambda: now[0], retention_days=30.0)
    sink = DirectorySink(k.paths.node_dir)
    t = NOW.timestamp()
    kept = write(sink, "kept", t, md(answered=t, started=t))
    await k.scan_once()
    orphan_day = k.paths.node_dir / "2026" / "10" / "01"
    orphan_day.mkdir(parents=True)
    (orphan_day / "lost.wav").write_bytes(b"RIFF")
    assert await k.sweep_once() == 0
    assert kept.exists() and not orphan_day.exists()  # older than 31 days: gone
    now[0] = NOW + timedelta(days=30, minutes=1)
    assert await k.sweep_once() == 1
    assert not kept.exists()
    assert (await repo.page(Principal.operator(), "t1", _query())).items == []
    assert k.metrics.deleted.labels("retention")._value.get() == 1
    assert k.metrics.stored._value.get() == 0


def _query() -> RecordingQuery:
    return RecordingQuery()
