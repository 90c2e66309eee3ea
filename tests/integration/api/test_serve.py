"""End to end: `softswitch serve` mounts the API at /v1 on its HTTP listener; a token from
`softswitch token create` (another process, same SQLite file) works against it, and the API's
counters appear on the switch's /metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SOFTSWITCH = Path(sys.executable).with_name("softswitch")


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    ctype = "json" if raw[:1] in (b"{", b"[") else "text"
    return status, json.loads(raw) if ctype == "json" else raw.decode()


@pytest.mark.integration
def test_serve_mounts_the_api(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            str(SOFTSWITCH),
            "serve",
            "--data",
            str(tmp_path / "data"),
            "--seed",
            str(REPO / "deploy" / "demo-seed.toml"),
            "--sip",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = None
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while base is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"HTTP listening on (http://\S+)", line)
            base = m.group(1) if m else None
        assert base, "serve did not report its HTTP address"
        token = subprocess.run(
            [str(SOFTSWITCH), "token", "create", "--operator", "--data", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        assert http("GET", f"{base}/v1/tenants/demo", token)[0] == 200
        number = f"{base}/v1/tenants/demo/numbers/0355500101"
        status, body = http("PATCH", number, token, {"label": "Support"})
        assert (status, body["label"]) == (200, "Support")
        assert http("GET", f"{base}/v1/tenants/demo")[0] == 401
        assert http("GET", f"{base}/v1/openapi.json")[0] == 200
        metrics = http("GET", f"{base}/metrics")[1]
        assert (
            'api_requests_total{method="PATCH",route="/v1/tenants/{tenant_id}/numbers/'
            '{number}",status="200"} 1.0' in metrics
        )
        assert 'api_errors_total{error_id="missing-token"} 1.0' in metrics
        assert "sip_requests_total" in metrics or "sip_" in metrics  # the switch's own registry
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
