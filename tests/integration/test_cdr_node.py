"""The CDR pipeline as `softswitch serve` composes it (switch/node.py), the proxy's part played
by the test: routing decides, the node's tracker builds the record, the node's writer rates
and stores it, and the REST API of the same node shows it in the history, the device view
and the statement; the metrics are in the switch's /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from billing.cdr import describe
from provisioning.records import CallOutcome, CallQuery
from provisioning.services import Principal
from routing import Call, LiveState, decide
from switch.config import Config, HostPort
from switch.node import Node

from .harness import REPO

pytestmark = pytest.mark.integration
OP = Principal.operator()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = Config(
        sip=HostPort("127.0.0.1", 0),
        http=HostPort("127.0.0.1", 0),
        data_dir=tmp_path / "data",
        seed=REPO / "deploy" / "demo-seed.toml",
    )
    n = await Node.open(config)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def test_a_call_becomes_a_rated_cdr_in_the_nodes_api(node: Node, tmp_path: Path) -> None:
    snap = node.app.snapshot
    now = datetime.now(UTC)
    number = next(n for n in snap.numbers.values() if n.tenant_id == "demo")
    call = Call.inbound(call_id="node-call-1", dialled=number.e164, caller_number="+819011112222")
    registered = frozenset(d for d in number.ring_group)
    decision = decide(call, snap, LiveState(registered=registered), now)
    cdr_id = node.cdrs.started(call.call_id, describe(decision, call, None, snap), now=now)
    device = number.ring_group[0]
    node.cdrs.rang(call.call_id, device, snap.devices[device].kind)
    node.cdrs.answered(call.call_id, now=now + timedelta(seconds=3), device_id=device)
    record = node.cdrs.ended(
        call.call_id, now=now + timedelta(seconds=33), status=200, reason="bye"
    )
    assert record is not None and record.cdr_id == cdr_id
    node.cdr_writer.submit(record)

    deadline = time.monotonic() + 10
    while not (
        page := await node.calls.list_calls(OP, CallQuery(tenant_id="demo"), cursor=None)
    ).items:
        assert time.monotonic() < deadline, "the CDR never reached the store"
        await asyncio.sleep(0.05)
    stored, _ = page.items[0]
    assert (stored.cdr_id, stored.outcome, stored.billable_seconds) == (
        cdr_id, CallOutcome.ANSWERED, 30,
    )  # fmt: skip
    assert stored.rating is not None and stored.tariff_version == "2021-06-26"
    assert stored.answered_device_kind == snap.devices[device].kind
    assert stored.node == node.cdr_config.node

    token = (await node.services.tokens.create_token(OP, scope="operator")).token
    assert node.app.http_address is not None
    base = "http://{}:{}".format(*node.app.http_address)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/v1/tenants/demo/statements/current") as r:
            assert r.status == 200, await r.text()
            statement = await r.json()
        async with http.get(f"{base}/v1/tenants/demo/devices/{device}/calls") as r:
            view = await r.json()
        async with http.get(f"{base}/metrics") as r:
            metrics = await r.text()
    assert (statement["open"], statement["total"]["calls"]) == (True, 1)
    assert view["items"][0]["answered_here"] is True
    assert 'cdr_calls_total{direction="inbound",outcome="answered"} 1.0' in metrics
    assert "cdr_spool_records 0.0" in metrics
    assert (tmp_path / "data" / "cdr-spool.jsonl").exists()
