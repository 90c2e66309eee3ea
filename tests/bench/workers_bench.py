"""Workers step of the benchmark: the switch with 2 workers on Redis vs 1 worker on Redis vs
1 worker on memory state, at a few call rates (short, bounded).

    python -m tests.bench.workers_bench                       # 300 and 600 calls/s, 12 s each
    python -m tests.bench.workers_bench --rates 300 --step-seconds 10

The call step is `tests.bench.run`'s (SIPp UAC as the carrier -> switch -> SIPp UAS, one
registered device), with one difference: the UAC opens one socket per call (`-t un`), i.e.
the calls come from many source ports like phones do. SO_REUSEPORT spreads sources over the
workers by a hash, so one source (one socket, one carrier trunk) is always served by one
worker: with `-t u1` the second worker would idle.

At each rate the three configurations run in turn (the order reversed at every other rate),
each on a fresh switch (started, UAS
registered, one step, stopped). Printed per step: calls ok/failed, the switch's CPU-s per
1,000 calls (every process of the switch: supervisor and workers), INVITE->180 p50/p99 at
the UAC, the INVITEs each worker received, and the CPU that every other process on the
machine used meanwhile (a lower bound: processes that ended within the step, our SIPp UAC
among them, are not counted; the switch and our SIPp UAS are left out), so a disturbed step
can be discounted. Redis: `--redis` (default DB 9, a pool large enough for the rate:
`max_connections=1000`; the client's default pool of 100 connections is exhausted at these
rates, see issue 11).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.bench.run import (
    CONTRACT,
    UAS_PASSWORD,
    Target,
    descendants,
    log,
    run_step,
)
from tests.integration.harness import (
    CARRIER_IP,
    DeviceSpec,
    SeedSpec,
    Sipp,
    SwitchProcess,
    free_port,
    proc_cpu_seconds,
)

EXEMPT = '[security]\nexempt = ["127.0.0.0/8"]\n'


@dataclass(frozen=True)
class Setup:
    name: str
    workers: int
    redis: bool


SETUPS = (Setup("2 workers, redis", 2, True), Setup("1 worker, redis", 1, True),
          Setup("1 worker, memory", 1, False))  # fmt: skip


def step_seed(tenant: str) -> str:
    """The UAS's ID (named after the tenant) ringing on the contract number, in a tenant of
    this step's own (Redis keeps a failed step's channel leases and bindings for their TTL),
    with IDs enough that the channel limit (calls in progress <= IDs) is never what a step
    measures."""
    uas = DeviceSpec(f"{tenant}-uas", UAS_PASSWORD)
    spec = SeedSpec(
        devices=[uas], tenant=tenant, contract=CONTRACT, ring_group=[uas.id], spare_ids=2000
    )
    return spec.toml()


def register(target: Target, work: Path, port: int, user: str) -> None:
    res = Sipp(
        "register", work, remote=(target.ip, target.port), local_port=port,
        credentials=[(user, UAS_PASSWORD)], keys={"expires": "3600"}, timeout_s=10,
        name="register-uas",
    ).run()  # fmt: skip
    if res.returncode != 0 or res.successful != 1:
        raise RuntimeError(f"registering the UAS failed\n{res.report()}")


def all_cpu() -> dict[int, float]:
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[int(entry)] = proc_cpu_seconds(int(entry))
    return out


def others_cpu(before: dict[int, float], after: dict[int, float], mine: set[int]) -> float:
    """CPU-s used between the two samples by processes not in `mine` (a process that began
    and ended in between is missed: a lower bound)."""
    total = 0.0
    for pid, cpu in after.items():
        if pid not in mine:
            total += cpu - before.get(pid, 0.0)
    return total


def start(setup: Setup, work: Path, seed: str, redis_url: str) -> tuple[Target, SwitchProcess]:
    config = EXEMPT + (f'[state]\nurl = "{redis_url}"\n' if setup.redis else "")
    sw = SwitchProcess(
        work, seed, config_toml=config, tls=False, extra_args=["--workers", str(setup.workers)]
    )
    sw.start(timeout=60)
    target = Target("switch", sw.ip, sw.sip_port, CONTRACT, CARRIER_IP, sw.pid, sw.stop, sw.logs)
    return target, sw


def step(setup: Setup, rate: int, seconds: float, work: Path, redis: str) -> str:
    tenant = f"wb{rate}x{uuid.uuid4().hex[:8]}"
    target, sw = start(setup, work / "switch", step_seed(tenant), redis)
    try:
        uas_port = free_port()
        register(target, work, uas_port, f"{tenant}-uas")
        time.sleep(0.5)
        before = all_cpu()
        s_pids = [p for p in before if _runs_in(p, work)]  # our UAS
        many_sources = ["-t", "un", "-max_socket", str(max(rate * 3, 600))]
        s = run_step(target, work, uas_port, rate, seconds, latency=True, uac_extra=many_sources)
        after = all_cpu()
        mine = set(descendants(sw.pid)) | {os.getpid()} | set(s_pids)
        other = others_cpu(before, after, mine)
        invites = ""
        if setup.workers > 1:
            m = sw.metrics()
            per = [
                m.get_value("sip_requests_total", method="INVITE", worker=str(i)) for i in (0, 1)
            ]
            handed = m.total("sip_worker_handovers_total", kind="response")
            invites = f", INVITEs per worker {per[0]:.0f}/{per[1]:.0f}, {handed:.0f} handed over"
        return (
            f"{setup.name:17} {rate:4}/s: {'held' if s.ok else 'FAILED'} ok {s.uac_successful}/"
            f"{s.calls} failed {s.uac_failed}; {s.cpu_s_per_1000_calls} CPU-s/1k calls; "
            f"INVITE->180 p50 {s.invite_180_p50_ms} p99 {s.invite_180_p99_ms} ms{invites}; "
            f"other processes >= {other:.1f} CPU-s in {s.seconds} s"
        )
    finally:
        sw.stop()


def _runs_in(pid: int, work: Path) -> bool:
    """Is `pid` one of ours (its command line names our work directory)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(work).encode() in f.read()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="300,600")
    ap.add_argument("--step-seconds", type=float, default=12.0)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9?max_connections=1000")
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("error: sipp not found (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="softswitch-workers-bench-"))
    lines = []
    try:
        for k, rate in enumerate(int(r) for r in args.rates.split(",")):
            order = list(enumerate(SETUPS))
            for i, setup in order if k % 2 == 0 else reversed(order):  # rotated per rate
                line = step(setup, rate, args.step_seconds, work / f"{rate}-{i}", args.redis)
                log(line)
                lines.append(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average before/after: {os.getloadavg()}, {os.cpu_count()} CPUs")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
