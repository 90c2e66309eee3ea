"""REST API load benchmark (a script, not a test).

    .venv/bin/python -m tests.bench.api_bench [--clients 200] [--reads 20000] [--writes 5000]
                                              [--database URL] [--tool auto|wrk|aiohttp]
                                              [--duration 10]

Starts the API in a separate process on 127.0.0.1 (an ephemeral port) over a fresh store
with the demo seed (SQLite in a temporary directory unless --database is given), then drives
a bounded load from this process with aiohttp clients sharing `--clients` connections:

- read:  GET   /v1/tenants/demo/devices/demo-app             (a typical customer-page read)
- write: PATCH /v1/tenants/demo/numbers/+81355500100/forwarding  (forwarding ON/OFF, a write
         transaction with the rule checks and a change notification)

and prints p50 / p99 latency and requests per second for each. Every answer must be 200;
any other status is counted and reported.

The load generator is `wrk` when installed (`apt-get install wrk`; `--duration` seconds per
scenario, 2 threads) — it costs the shared CPUs far less than a Python client — else aiohttp
clients in this process (`--reads` / `--writes` requests). Either way the client shares the
machine with the server: the figures are a floor, not a capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo-seed.toml"
NUMBER = "%2B81355500100"


# --------------------------------------------------------------------------- server side


async def serve(url: str, port: int) -> None:
    from aiohttp import web

    from provisioning.api import mount_api
    from provisioning.services import Services
    from provisioning.store import open_store

    store = await open_store(url)
    root = web.Application()
    mount_api(root, Services(store))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


async def prepare(url: str) -> str:
    """Demo seed, the forwarding option on the contract number, an operator token."""
    from provisioning.seed import load_seed
    from provisioning.services import OptionsUpdate, Principal, Services, import_seed
    from provisioning.store import open_store

    store = await open_store(url)
    try:
        await import_seed(store, load_seed(DEMO), replace=True)
        service = Services(store)
        op = Principal.operator()
        await service.number_settings.set_options(
            op, "demo", "+81355500100", OptionsUpdate(forwarding=True)
        )
        return (await service.tokens.create_token(op, scope="operator", label="bench")).token
    finally:
        await store.close()


# --------------------------------------------------------------------------- client side


async def drive(
    base: str, token: str, clients: int, total: int, method: str, path: str, body: Any
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = [total]
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker(i: int) -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                payload = body(remaining[0]) if callable(body) else body
                t0 = time.perf_counter()
                async with session.request(method, path, json=payload) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t0)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "statuses": statuses,
    }


WRK_SCRIPT = """
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = nil
  if wrk.method == "PATCH" then
    local on = (n % 2 == 0) and "true" or "false"
    body = '{{"enabled": ' .. on .. ', "target": "090-1234-5678"}}'
  end
  return wrk.format(nil, nil, nil, body)
end
"""


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if m is None:
        return float("nan")  # wrk prints nan/-nan when no request completed
    value, unit = m.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def drive_wrk(url: str, token: str, clients: int, seconds: int, method: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT.format(method=method, token=token))
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", f.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    total = int(re.search(r"([0-9]+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: ([0-9]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if os.environ.get("BENCH_VERBOSE"):
        print(out, file=sys.stderr)
    statuses = {200: total - (int(bad.group(1)) if bad else 0)}
    if bad:
        statuses[0] = int(bad.group(1))  # wrk does not tell which status
    return {
        "requests": total,
        "seconds": float(seconds),
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "statuses": statuses if not errors else {**statuses, "socket errors": errors.group(1)},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:<6} {r['requests']:>6} req in {r['seconds']:6.2f} s  {r['rps']:8.0f} req/s  "
        f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  statuses {r['statuses']}"
    )


async def bench(args: argparse.Namespace, url: str) -> int:
    token = await prepare(url)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.api_bench",
            "--serve",
            "--database",
            url,
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            print("error: the API server did not start", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{port}"
        tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "aiohttp")
        where = url.split("@")[-1]
        print(f"API on {base}, store {where}, {args.clients} concurrent clients, load: {tool}")
        read_path = "/v1/tenants/demo/devices/demo-app"
        write_path = f"/v1/tenants/demo/numbers/{NUMBER}/forwarding"
        await drive(base, token, args.clients, 2000, "GET", read_path, None)  # warm-up
        if tool == "wrk":
            read = drive_wrk(base + read_path, token, args.clients, args.duration, "GET")
            report("read", read)
            write = drive_wrk(base + write_path, token, args.clients, args.duration, "PATCH")
            report("write", write)
        else:
            read = await drive(base, token, args.clients, args.reads, "GET", read_path, None)
            report("read", read)
            write = await drive(
                base,
                token,
                args.clients,
                args.writes,
                "PATCH",
                write_path,
                lambda i: {"enabled": i % 2 == 0, "target": "090-1234-5678"},
            )
            report("write", write)
        bad = sum(
            n
            for r in (read, write)
            for s, n in r["statuses"].items()
            if s != 200 and isinstance(n, int)
        )
        return 1 if bad else 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--reads", type=int, default=20_000)
    p.add_argument("--writes", type=int, default=5_000)
    p.add_argument("--database", help="store URL (default: SQLite in a temporary directory)")
    p.add_argument("--tool", choices=("auto", "wrk", "aiohttp"), default="auto")
    p.add_argument("--duration", type=int, default=10, help="seconds per scenario with wrk")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        try:
            import uvloop  # the switch runs on uvloop where available

            uvloop.run(serve(args.database, args.port))
        except ImportError:
            asyncio.run(serve(args.database, args.port))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{os.path.join(tmp, 'bench.db')}"
        return asyncio.run(bench(args, url))


if __name__ == "__main__":
    sys.exit(main())
