"""LiveSnapshot: committed changes reach a snapshot on another connection within 1 s, bursts
coalesce, other processes are caught by the poll, and a PostgreSQL outage (a TCP proxy we cut)
keeps the last snapshot and recovers by itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from provisioning.errors import StoreUnavailable
from provisioning.live import LiveSnapshot, build_snapshot, dropped_devices, store_source
from provisioning.model import (
    Device,
    DeviceKind,
    Number,
    NumberKind,
    Snapshot,
    Tenant,
    TenantStatus,
)
from provisioning.seed import SeedData
from provisioning.services import NumberUpdate, Services, TenantUpdate, import_seed
from provisioning.store import Store, open_store

from .conftest import OP, PG_HOST, PG_PORT, make_tenant, pg_url
from .tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def other_store(store_url: str, store: Store) -> AsyncIterator[Store]:
    """A second, independent store object (own connection/pool) on the same database."""
    s = await open_store(store_url)
    yield s
    await s.close()


@pytest.fixture
async def live(other_store: Store) -> AsyncIterator[LiveSnapshot]:
    lv = LiveSnapshot(other_store, poll_interval=30.0)  # the poll must not be what we test
    await lv.start()
    yield lv
    await lv.stop()


async def test_a_commit_reaches_another_connection_within_a_second(
    svc: Services, live: LiveSnapshot, store: Store
) -> None:
    seen: list[Snapshot] = []
    live.subscribe(seen.append)
    started = time.monotonic()
    tid, contract, _ = await make_tenant(svc)
    version = await store.version()
    snap = await live.wait_for(version, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert tid in snap.tenants and snap.numbers[contract].tenant_id == tid
    assert seen and seen[-1] is snap
    await svc.numbers.update_number(OP, tid, contract, NumberUpdate(label="Main"))
    snap = await live.wait_for(version + 1, timeout=1.0)
    assert snap.numbers[contract].label == "Main"


async def test_a_burst_is_coalesced(svc: Services, live: LiveSnapshot, store: Store) -> None:
    tid, contract, _ = await make_tenant(svc)
    await live.wait_for(await store.version(), timeout=1.0)
    before = live.rebuilds
    for i in range(20):
        await svc.numbers.update_number(OP, tid, contract, NumberUpdate(label=f"L{i}"))
    snap = await live.wait_for(await store.version(), timeout=1.0)
    assert snap.numbers[contract].label == "L19"
    assert live.rebuilds - before < 10


async def test_deleted_and_released_ids_are_reported(
    svc: Services, live: LiveSnapshot, store: Store
) -> None:
    tid, _, ids = await make_tenant(svc, ids=3)
    old = await live.wait_for(await store.version(), timeout=1.0)
    await svc.devices.delete_device(OP, tid, ids[2])
    await svc.devices.release_device(OP, tid, ids[1])
    new = await live.wait_for(await store.version(), timeout=1.0)
    assert dropped_devices(old, new) == {ids[1], ids[2]}
    await svc.tenants.update_tenant(OP, tid, TenantUpdate(status=TenantStatus.SUSPENDED))
    newer = await live.wait_for(await store.version(), timeout=1.0)
    assert dropped_devices(new, newer) == {ids[0], ids[1]}


async def test_store_source_yields_first_and_then_changes(svc: Services, store_url: str) -> None:
    source = store_source(store_url, poll_interval=30.0)
    updates = source()
    first = await anext(updates)
    tid, _, _ = await make_tenant(svc)
    second = await asyncio.wait_for(anext(updates), timeout=1.0)
    assert tid not in first.tenants and tid in second.tenants
    await updates.aclose()


async def test_another_process_is_caught_by_the_version_poll(
    svc: Services, other_store: Store, store_url: str
) -> None:
    lv = LiveSnapshot(other_store, poll_interval=0.2)
    await lv.start()
    try:
        code = (
            "import asyncio\n"
            "from provisioning.store import open_store\n"
            "from provisioning.services import Services, Principal, TenantCreate, DeviceCreate\n"
            "async def main():\n"
            f"    s = await open_store({store_url!r})\n"
            "    await Services(s).tenants.create_tenant(Principal.operator(), TenantCreate(\n"
            "        name='From afar', contract_number='0399990001', id='far',\n"
            "        basic_device=DeviceCreate(kind='app', username='far-0',\n"
            "                                  password='password-far')))\n"
            "    await s.close()\n"
            "asyncio.run(main())\n"
        )
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr.decode()
        snap = await lv.wait_for(await svc.store.version(), timeout=1.5)
        assert "far" in snap.tenants
    finally:
        await lv.stop()


async def test_snapshot_of_thousands_of_tenants_builds_fast(store: Store) -> None:
    tenants, devices, numbers = [], [], []
    for i in range(3000):
        tid = f"bulk{i}"
        e164 = f"+8136{i:07d}"
        tenants.append(Tenant(id=tid, name=f"Bulk {i}"))
        for j in range(2):
            devices.append(
                Device(
                    id=f"{tid}-{j}",
                    tenant_id=tid,
                    username=f"{tid}-{j}",
                    kind=DeviceKind.APP,
                    ha1_md5="0" * 32,
                    ha1_sha256="0" * 64,
                    presented_number=e164,
                )
            )
        numbers.append(
            Number(
                e164=e164,
                tenant_id=tid,
                kind=NumberKind.CONTRACT,
                ring_group=(f"{tid}-0", f"{tid}-1"),
            )
        )
    await import_seed(store, SeedData("softswitch.local", tenants, devices, numbers, []))
    started = time.perf_counter()
    snap = await build_snapshot(store)
    elapsed = time.perf_counter() - started
    assert len(snap.tenants) == 3000 and len(snap.devices) == 6000
    assert snap.channels("bulk42") == 2
    assert elapsed < 1.0, f"snapshot took {elapsed:.2f}s"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_outage_keeps_the_snapshot_and_recovers(
    backend: str, pg_database: str, store: Store
) -> None:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    via_proxy = await open_store(pg_url(pg_database, port=proxy.port))
    svc_proxy, svc_direct = Services(via_proxy), Services(store)
    lv = LiveSnapshot(via_proxy, poll_interval=0.5, max_backoff=0.5)
    await lv.start()
    try:
        before, _, _ = await make_tenant(svc_proxy)
        await lv.wait_for(await store.version(), timeout=1.0)

        await proxy.stop()  # the outage
        for call in (
            lambda: svc_proxy.tenants.get_tenant(OP, before),
            lambda: svc_proxy.tenants.list_tenants(OP),
            lambda: make_tenant(svc_proxy),
            lambda: svc_proxy.tenants.get_tenant(OP, before),
        ):
            with pytest.raises(StoreUnavailable) as e:
                await call()
            assert (e.value.status, e.value.error_id) == (503, "store-unavailable")
        during, _, _ = await make_tenant(svc_direct)  # another node keeps writing
        await asyncio.sleep(1.0)
        assert before in lv.current().tenants and during not in lv.current().tenants
        assert lv.last_error is not None

        await proxy.start()  # the server is back, same address
        snap = await lv.wait_for(await store.version(), timeout=10.0)
        assert during in snap.tenants
        assert (await svc_proxy.tenants.get_tenant(OP, during)).id == during
        # and notifications flow again through the re-established LISTEN
        after, _, _ = await make_tenant(svc_direct)
        snap = await lv.wait_for(await store.version(), timeout=1.0)
        assert after in snap.tenants
    finally:
        await lv.stop()
        await via_proxy.close()
        await proxy.stop()


async def test_several_processes_stay_in_step(svc: Services, store: Store, store_url: str) -> None:
    """Two more independent stores, each with its LiveSnapshot (as two switch processes)."""
    stores = [await open_store(store_url) for _ in range(2)]
    lives = [LiveSnapshot(s, poll_interval=30.0) for s in stores]
    try:
        for lv in lives:
            await lv.start()
        tid, _, _ = await make_tenant(svc)
        version = await store.version()
        snaps = await asyncio.gather(*(lv.wait_for(version, timeout=1.0) for lv in lives))
        assert all(tid in s.tenants for s in snaps)
    finally:
        for lv in lives:
            await lv.stop()
        for s in stores:
            await s.close()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_live_snapshot_started_during_an_outage(
    backend: str, pg_database: str, store: Store
) -> None:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    via_proxy = await open_store(pg_url(pg_database, port=proxy.port))
    await proxy.stop()
    initial = Snapshot.empty(realm="seeded")
    lv = LiveSnapshot(via_proxy, poll_interval=0.3, max_backoff=0.3, initial=initial)
    try:
        await lv.start()  # does not raise: serves the initial snapshot meanwhile
        assert lv.current() is initial and lv.last_error is not None
        tid, _, _ = await make_tenant(Services(store))
        await proxy.start()
        snap = await lv.wait_for(await store.version(), timeout=10.0)
        assert tid in snap.tenants and snap.realm == "softswitch.local"
    finally:
        await lv.stop()
        await via_proxy.close()
        await proxy.stop()
