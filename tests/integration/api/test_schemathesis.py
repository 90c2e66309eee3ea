"""Schemathesis against the LIVE API: a real aiohttp server on 127.0.0.1 (the demo seed in a
SQLite store), driven by the `st` CLI as a subprocess with an operator token.

Checks: all of them — no 5xx, status codes, content types, headers and bodies conforming to
the document, negative data rejected, auth not ignored, 405 with a correct Allow header —
except `positive_data_acceptance`: a schema cannot express every domain rule ("0" matches
the number field's pattern but is not a Japanese number; a random cursor is not ours), so
schema-valid requests answered 400/409 by the service are correct, not failures.

Bounded: 10 examples per operation and a fixed seed keep each run around half a minute.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from billing import default_tariffs
from billing.cdr_rating import rate_record
from billing.statement_doc import CdrStatements
from provisioning.api import mount_api
from provisioning.live import build_snapshot
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord
from provisioning.seed import load_seed
from provisioning.services import Principal, Services, import_seed
from provisioning.services.cdrs import CallHistoryService, CallRecordRepo
from switch.live import SwitchLive
from switch.state.memory import MemoryState

REPO = Path(__file__).resolve().parents[3]
ST = Path(sys.executable).with_name("st")


async def seed_calls(service: Services) -> None:
    """A few rated CDRs of the demo tenant this month, so that the call history, its CSV and
    the statements answer with real items."""
    tariffs = default_tariffs()
    now = datetime.now(UTC)
    records = []
    for i, (direction, seconds) in enumerate(
        [(CallDirection.OUTBOUND, 61), (CallDirection.INBOUND, 0), (CallDirection.FORWARDED, 30)]
    ):
        start = now - timedelta(minutes=10 + i)
        record = CallRecord(
            cdr_id=f"st-cdr-{i}", call_id=f"st-call-{i}", node="st", tenant_id="demo",
            direction=direction, outcome=CallOutcome.ANSWERED if seconds else CallOutcome.BUSY,
            dialled="0355500100", number="+81355500100", caller="+819011112222",
            callee="+819011113333", caller_device="demo-app", caller_device_kind=DeviceKind.APP,
            forwarded_to="+819011113333", rang=("demo-desk",), started_at=start,
            answered_at=start if seconds else None, ended_at=start + timedelta(seconds=seconds),
            billable_seconds=seconds,
        )  # fmt: skip
        records.append(rate_record(record, tariffs, "Asia/Tokyo"))
    await CallRecordRepo(service.store).insert(records, now=now)


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scope", ["operator", "tenant"])
async def test_schemathesis_finds_nothing(
    service: Services, aiohttp_server: Any, tmp_path: Path, scope: str
) -> None:
    """With the operator token (everything reachable) and with the demo tenant's token
    (the tenant-scope code paths: 403/404 answers must be documented and well-formed too)."""
    await import_seed(service.store, load_seed(REPO / "deploy" / "demo-seed.toml"))
    await seed_calls(service)
    created = await service.tokens.create_token(
        Principal.operator(), scope=scope, tenant_id="demo" if scope == "tenant" else None
    )
    token = created.token
    root = web.Application()
    # as the node mounts it: the call history with billing's statement builder, the live
    # state over a (memory) state backend and the seed's snapshot
    calls = CallHistoryService(service.store, CdrStatements(default_tariffs()))
    snapshot = await build_snapshot(service.store)
    live = SwitchLive(MemoryState(), lambda: snapshot, lambda: None)
    mount_api(root, service, calls=calls, live=live)
    server = await aiohttp_server(root, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.port}/v1/openapi.json"
    proc = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "10",
        "--seed",
        "20261122",
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.integration.api.st_hooks",
            "NO_COLOR": "1",
            "PYTHONPATH": str(REPO),
        },
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=220)
    text = out.decode(errors="replace")
    summary = text[text.rfind("SUMMARY") :] if "SUMMARY" in text else text[-4000:]
    assert proc.returncode == 0, text[-12000:]
    assert "Tested: " in summary and "Server error" not in text, summary
    tested = int(summary.split("Tested: ")[1].split()[0])
    assert tested >= 50, summary  # every operation was exercised
