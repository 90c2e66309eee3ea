"""Helpers of `test_provisioning_e2e.py`: the provisioning API over HTTP (stdlib), the CLI's
operator token, a throwaway PostgreSQL database, a TCP proxy run in a thread (so that
synchronous tests can cut and restore it), REGISTER through `sipclient`, carrier calls through
SIPp and what a SIPp trace says about who answered.

No pytest here; fixtures live in the test module.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .harness import REPO
from .sipclient import Response, SipClient, register
from .store.tcpproxy import TcpProxy

SOFTSWITCH = REPO / ".venv" / "bin" / "softswitch"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_HOST, PG_PORT = "127.0.0.1", 5432

T = TypeVar("T")


# --------------------------------------------------------------------------- deadlines


@dataclass
class Waited:
    """The outcome of `poll_until`: the last value, when the condition was first met (seconds
    after `since`, None if never) and every attempt's (elapsed, value) for messages."""

    value: Any
    met_after: float | None
    attempts: list[tuple[float, Any]]

    def describe(self, limit: int = 8) -> str:
        shown = self.attempts[-limit:]
        lines = [f"  +{t:.3f}s: {v!r}"[:600] for t, v in shown]
        more = len(self.attempts) - len(shown)
        return (f"  ({more} earlier attempts)\n" if more > 0 else "") + "\n".join(lines)


def poll_until(
    probe: Callable[[], T],
    ok: Callable[[T], bool],
    *,
    since: float,
    deadline: float,
    interval: float = 0.02,
) -> Waited:
    """Call `probe()` until `ok(value)` or `deadline` seconds after `since` (monotonic) have
    passed. The deadline is not an assertion by itself: the caller asserts on `met_after`."""
    attempts: list[tuple[float, Any]] = []
    while True:
        value = probe()
        elapsed = time.monotonic() - since
        attempts.append((elapsed, value))
        if ok(value):
            return Waited(value, elapsed, attempts)
        if elapsed > deadline:
            return Waited(value, None, attempts)
        time.sleep(interval)


# --------------------------------------------------------------------------- REST API


@dataclass
class ApiReply:
    method: str
    path: str
    request_body: Any
    status: int
    body: Any
    returned_at: float  # time.monotonic() when the response had been read
    returned_wall: float  # time.time() at the same moment (to compare with SIPp's traces)

    @property
    def error_id(self) -> str | None:
        return self.body.get("error_id") if isinstance(self.body, dict) else None

    def __str__(self) -> str:
        req = "" if self.request_body is None else " " + json.dumps(self.request_body)
        return f"{self.method} {self.path}{req} -> {self.status} {self.body!r}"

    __repr__ = __str__


class Api:
    """The switch's /v1 API with a bearer token (urllib; blocking)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10) -> ApiReply:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return ApiReply(method, path, body, status, parsed, time.monotonic(), time.time())

    def get(self, path: str, **kw: Any) -> ApiReply:
        return self.call("GET", path, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> ApiReply:
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> ApiReply:
        return self.call("DELETE", path, **kw)


def operator_token(*, data_dir: Path | None = None, database_url: str | None = None) -> str:
    """`softswitch token create --operator` in a subprocess (the bootstrap an operator uses)."""
    args = [str(SOFTSWITCH), "token", "create", "--operator", "--label", "e2e"]
    if database_url is not None:
        args += ["--database", database_url]
    if data_dir is not None:
        args += ["--data", str(data_dir)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip(), (
        f"{' '.join(args)} -> exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- PostgreSQL


async def _pg_admin(sql: str, database: str = "postgres") -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url(database), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close(timeout=5)


def pg_url(name: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql://postgres@{host}:{port}/{name}"


def create_pg_database() -> str:
    name = f"ss_e2e_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return name


def empty_pg_database(name: str) -> None:
    """Back to an empty database (the switch migrates it and imports the seed again)."""
    asyncio.run(_pg_admin("DROP SCHEMA public CASCADE; CREATE SCHEMA public", name))


def drop_pg_database(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ThreadedTcpProxy:
    """`store.tcpproxy.TcpProxy` on its own event loop in a thread: `cut()` closes the
    listening socket and aborts every connection (the client sees resets, then refusals),
    `restore()` listens again on the same port."""

    def __init__(self, target_host: str = PG_HOST, target_port: int = PG_PORT) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(target_host, target_port)
        self._run(self.proxy.start())
        self.port = self.proxy.port

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def cut(self) -> None:
        self._run(self.proxy.stop())

    def restore(self) -> None:
        self._run(self.proxy.start())
        assert self.proxy.port == self.port

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.proxy.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


# --------------------------------------------------------------------------- SIP


def register_once(
    client: SipClient, user: str, password: str, expires: int = 300
) -> tuple[int | None, str]:
    """REGISTER with an MD5 digest answer (the switch under test offers MD5 only):
    (final status or None, a one-line summary of the exchange)."""
    challenge, final = register(
        client, user=user, password=password, expires=expires, algorithm="MD5"
    )
    return (final.status if final else None), _summary(challenge, final)


def _summary(challenge: Response | None, final: Response | None) -> str:
    def one(r: Response | None) -> str:
        if r is None:
            return "no answer"
        warn = r.get("Warning")
        return f"{r.status} {r.reason}" + (f" (Warning: {warn})" if warn else "")

    return f"REGISTER -> {one(challenge)}; with Authorization -> {one(final)}"


_TO_TAG_PID = re.compile(r"(?im)^To:.*;tag=(\d+)SIPpTag01")


def answered_by(uac_trace: str) -> int | None:
    """The SIPp pid in the To tag of the 200 OK to the INVITE (uas*.xml tag their To with
    `[pid]SIPpTag01…`), i.e. which UAS answered; None if no 200 came."""
    for block in re.split(r"-{5,}.*\n", uac_trace):
        if re.search(r"(?m)^\s*SIP/2\.0 200 ", block) and re.search(
            r"(?im)^CSeq:\s*\d+ INVITE", block
        ):
            m = _TO_TAG_PID.search(block)
            if m:
                return int(m.group(1))
    return None


_STAMP = re.compile(r"-{5,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n")


def invite_sent_at(uac_trace: str) -> float | None:
    """time.time() of the first INVITE a SIPp UAC sent (its -trace_msg stamps are local time)."""
    parts = _STAMP.split(uac_trace)
    # parts: [before, stamp1, block1, stamp2, block2, ...]
    for stamp, block in zip(parts[1::2], parts[2::2], strict=False):
        if re.match(r"\s*\w+ message sent[^\n]*\n\s*INVITE ", block):
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def first_call_id(trace: str) -> str | None:
    m = re.search(r"(?im)^Call-ID:\s*(\S+)", trace)
    return m.group(1) if m else None


def received_invites(trace: str) -> list[str]:
    """Call-IDs of the INVITEs a SIPp UAS received (from its -trace_msg log, which SIPp
    writes per message, so it can be read while SIPp runs)."""
    out = []
    for block in re.split(r"-{5,}.*\n", trace):
        if re.search(r"message received \[\d+\] bytes :\s*\n\s*INVITE ", block):
            cid = first_call_id(block)
            if cid:
                out.append(cid)
    return out
