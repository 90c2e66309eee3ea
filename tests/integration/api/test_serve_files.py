"""`softswitch serve` keeps its data private: started with a permissive umask (022), the data
directory is 0700 and every file it holds — the SQLite database (HA1 hashes), its -wal and
-shm, the generated secrets — is 0600; a directory or file left open by an earlier version
is tightened, with a warning naming it. The real process also answers an over-long request
line with the API's JSON error (the HTTP server of switch/app.py is `ApiAppRunner`)."""

from __future__ import annotations

import json
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOFTSWITCH = Path(sys.executable).with_name("softswitch")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def serve(data: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(SOFTSWITCH), "serve", "--data", str(data),
            "--seed", str(REPO / "deploy" / "demo-seed.toml"),
            "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0",
        ],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0o022,
    )  # fmt: skip


def http_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"HTTP listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError("serve did not report its HTTP address")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    return err


def assert_owner_only(data: Path) -> None:
    assert (data / "softswitch.db").exists() and (data / "softswitch.db-wal").exists()
    assert mode(data) == 0o700
    files = sorted(p for p in data.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"softswitch.db", "softswitch.db-wal", "nonce-secret", "admin-token"} <= names
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def refused_request_line(port: int) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /v1/tenants?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 414 ")
    assert b"Content-Type: application/json" in head
    return dict(json.loads(body))


@pytest.mark.integration
def test_a_fresh_data_directory_is_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = serve(data, tmp_path)
    try:
        port = http_port(proc)
        assert_owner_only(data)
        assert refused_request_line(port)["error_id"] == "request-line-too-long"
    finally:
        err = stop(proc)
    assert "was mode" not in err and "Traceback" not in err, err


@pytest.mark.integration
def test_what_was_too_open_is_tightened_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    token = data / "admin-token"
    token.write_text("old-admin-token\n")
    token.chmod(0o644)
    proc = serve(data, tmp_path)
    try:
        http_port(proc)
        assert_owner_only(data)
        assert token.read_text() == "old-admin-token\n"  # kept, only tightened
    finally:
        err = stop(proc)
    assert re.search(rf"WARNING .*{re.escape(str(data))} was mode 0755.* now 0700", err), err
    assert re.search(rf"WARNING .*{re.escape(str(token))} was mode 0644.* now 0600", err), err
    assert "Traceback" not in err
