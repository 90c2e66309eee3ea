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
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from provisioning.api import mount_api
from provisioning.seed import load_seed
from provisioning.services import Principal, Services, import_seed

REPO = Path(__file__).resolve().parents[3]
ST = Path(sys.executable).with_name("st")


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scope", ["operator", "tenant"])
async def test_schemathesis_finds_nothing(
    service: Services, aiohttp_server: Any, tmp_path: Path, scope: str
) -> None:
    """With the operator token (everything reachable) and with the demo tenant's token
    (the tenant-scope code paths: 403/404 answers must be documented and well-formed too)."""
    await import_seed(service.store, load_seed(REPO / "deploy" / "demo-seed.toml"))
    created = await service.tokens.create_token(
        Principal.operator(), scope=scope, tenant_id="demo" if scope == "tenant" else None
    )
    token = created.token
    root = web.Application()
    mount_api(root, service)
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
