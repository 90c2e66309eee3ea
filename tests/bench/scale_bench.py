"""The scale table of issue 11 §4 in one run: Kamailio (the reference), the switch with one
worker on memory state, one worker on Redis, two workers on Redis, and two switch nodes (one
worker each, on two loopback addresses, one Redis) behind two SIPp UACs, one per node.

    python -m tests.bench.scale_bench                          # the default ladder, 20 s steps
    python -m tests.bench.scale_bench --rates 500,1000 --step-seconds 10 --register 1000

Per configuration:
- the highest rate held for a whole step with zero failed calls (UAC and UAS both count every
  call successful). Each rate runs every configuration still in the ladder, in an order
  rotated at each rate, each step on a fresh instance (started, the UAS registered with
  digest, one step, stopped); a configuration leaves the ladder at its first failed step;
- CPU-s per 1,000 calls and INVITE->180 p50/p99 at 500 calls/s, measured twice (the 500/s
  step of the ladder, and a repeat after the ladder) - the two samples are printed;
- REGISTER with digest per second (the switch rows: `--register` unique users,
  `--reg-concurrency` (50) outstanding at a time - at 200 the switches on Redis refuse some
  with 503 + Retry-After, the overload gate at work; two nodes: half the users through each,
  at once);
- the CPU that every other process of the machine used during each step (`other`, in cores:
  2.0 = both cores of this VM), so that a disturbed step can be discounted.

The call is `tests.bench.run`'s (INVITE-100-180-200-ACK-BYE, SIPp UAC as the carrier ->
target -> SIPp UAS); the UAC opens one socket per call (`-t un`) as in the workers bench, so
that SO_REUSEPORT spreads the calls over a node's workers. Redis: `--redis`, DB 9 by default,
**the default URL** (the switch's own pool settings), flushed before each step.
Each figure is also printed as a ratio to Kamailio's.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.bench.machine import CpuWatch
from tests.bench.run import (
    CONTRACT,
    UAS_PASSWORD,
    Step,
    Target,
    invite_to_180,
    log,
    ratio,
    register_uas,
    run_step,
    start_kamailio,
    tree_cpu_seconds,
)
from tests.bench.workers_bench import EXEMPT, register, step_seed
from tests.integration.harness import (
    CARRIER_IP,
    DeviceSpec,
    SeedSpec,
    Sipp,
    SwitchProcess,
    free_port,
    percentile,
)

RATES = (500, 1000, 1500, 2000, 2500)
CPU_RATE = 500


def many_sources(rate: int) -> list[str]:
    """One socket per call (SIPp's default socket limit is above this VM's open-file limit)."""
    return ["-t", "un", "-max_socket", str(max(rate * 3, 600))]


NODE_B_IP = "127.0.0.4"


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # "kamailio", "switch", "nodes"
    workers: int = 1
    redis: bool = False


CONFIGS = (
    Config("kamailio", "kamailio"),
    Config("switch 1w memory", "switch"),
    Config("switch 1w redis", "switch", redis=True),
    Config("switch 2w redis", "switch", workers=2, redis=True),
    Config("2 nodes redis", "nodes", redis=True),
)


@dataclass
class Row:
    config: Config
    steps: list[Step] = field(default_factory=list)
    repeat: Step | None = None
    register_per_s: float | None = None
    out: bool = False  # left the ladder

    @property
    def held(self) -> int | None:
        rates = [s.rate for s in self.steps if s.ok]
        return max(rates) if rates else None

    def at_cpu_rate(self) -> list[Step]:
        return [s for s in [*self.steps, self.repeat] if s is not None and s.rate == CPU_RATE]


# --------------------------------------------------------------------------- instances
def _switch(config: Config, work: Path, seed: str, url: str, ip: str | None = None) -> Any:
    extra = EXEMPT + (f'[state]\nurl = "{url}"\n[auth]\nnonce_secret = "{"b" * 32}"\n'
                      if config.redis else "")  # fmt: skip
    kw = {"ip": ip} if ip else {}
    sw = SwitchProcess(work, seed, config_toml=extra, tls=False,
                       extra_args=["--workers", str(config.workers)], **kw)  # fmt: skip
    sw.start(timeout=60)
    return sw


def _target(sw: Any) -> Target:
    return Target("switch", sw.ip, sw.sip_port, CONTRACT, CARRIER_IP, sw.pid, sw.stop, sw.logs)


def _flush(url: str) -> None:
    with contextlib.closing(redis.Redis.from_url(url)) as r:
        r.flushdb()


def call_step(config: Config, rate: int, seconds: float, work: Path, url: str) -> Step:
    """One step on fresh instances of `config`."""
    work.mkdir(parents=True)
    latency = rate == CPU_RATE
    if config.redis:
        _flush(url)
    if config.kind == "kamailio":
        target = start_kamailio(work / "kamailio", children=2)
        try:
            port = free_port()
            register_uas(target, work, port, UAS_PASSWORD)
            return run_step(target, work, port, rate, seconds, latency, many_sources(rate))
        finally:
            target.stop()
    tenant = f"sb{rate}x{uuid.uuid4().hex[:8]}"
    seed = step_seed(tenant)
    nodes = [_switch(config, work / "a", seed, url)]
    try:
        if config.kind == "nodes":
            nodes.append(_switch(config, work / "b", seed, url, ip=NODE_B_IP))
        port = free_port()
        register(_target(nodes[0]), work, port, f"{tenant}-uas")
        if config.kind == "switch":
            return run_step(
                _target(nodes[0]), work, port, rate, seconds, latency, many_sources(rate)
            )
        return pair_step([_target(n) for n in nodes], work, port, rate, seconds, latency)
    finally:
        for n in nodes:
            n.stop()


def pair_step(
    targets: list[Target], work: Path, uas_port: int, rate: int, seconds: float, latency: bool
) -> Step:
    """run_step for two nodes: one UAS (registered through the first), one UAC per node at
    half the rate; CPU is both nodes' process trees."""
    calls = int(rate * seconds)
    half = calls // 2
    uas = Sipp(
        "uas", work, remote=None, local_port=uas_port, calls=2 * half, timeout_s=seconds + 8,
        trace_msg=False, name=f"nodes-uas-{rate}", extra=["-default_behaviors", "all,-abortunexp"],
    )  # fmt: skip
    shorts = [work / f"nodes-shortmsg-{rate}-{i}.log" for i in range(len(targets))]
    uacs = [
        Sipp(
            "uac_call",
            work,
            remote=(t.ip, t.port),
            local_ip=t.uac_ip,
            calls=half,
            rate=rate / 2,
            limit=max(rate, 200),
            timeout_s=seconds + 5,
            service=t.service,
            keys={"caller": "0312345678"},
            trace_msg=False,
            name=f"nodes-uac-{rate}-{i}",
            extra=[*many_sources(rate), *(_trace(shorts[i]) if latency else [])],
        )
        for i, t in enumerate(targets)
    ]
    uas.start()
    time.sleep(0.3)
    watch = CpuWatch()
    cpu0 = sum(tree_cpu_seconds(t.pid) for t in targets)
    t0 = time.monotonic()
    for u in uacs:
        u.start()
    results = [u.wait(grace=5) for u in uacs]
    elapsed = time.monotonic() - t0
    cpu = sum(tree_cpu_seconds(t.pid) for t in targets) - cpu0
    sr = uas.wait(grace=3)
    if uas.running:
        sr = uas.stop()
    load = watch.stop()
    ok_calls = sum(r.successful for r in results)
    failed = sum(r.failed for r in results)
    ok = all(r.returncode == 0 for r in results) and ok_calls == 2 * half and failed == 0
    ok = ok and sr.failed == 0 and sr.successful == 2 * half
    step = Step(
        rate=rate, calls=2 * half, ok=ok, uac_exit=max(r.returncode for r in results),
        uac_successful=ok_calls, uac_failed=failed, uas_successful=sr.successful,
        uas_failed=sr.failed, retransmissions=sum(max(r.counter("Retransmissions"), 0)
                                                   for r in results),
        seconds=round(elapsed, 2), cpu_seconds=round(cpu, 3),
        cpu_s_per_1000_calls=round(cpu / ok_calls * 1000, 4) if ok_calls else None,
        other_cores=load.other_cores,
    )  # fmt: skip
    if latency:
        lat = [ms for s in shorts if s.exists() for ms in invite_to_180(s)]
        step.invite_180_samples = len(lat)
        if lat:
            step.invite_180_p50_ms = round(percentile(lat, 50), 3)
            step.invite_180_p99_ms = round(percentile(lat, 99), 3)
        for s in shorts:
            with contextlib.suppress(OSError):
                s.unlink()
    if not ok:
        step.note = " | ".join(r.errors[:300] for r in [*results, sr] if r.errors)
    return step


def _trace(path: Path) -> list[str]:
    return ["-trace_shortmsg", "-shortmessage_file", str(path)]


# --------------------------------------------------------------------------- REGISTER
def register_rate(
    config: Config, work: Path, url: str, count: int, concurrency: int = 200
) -> float | None:
    """REGISTER with digest per second through fresh instances of `config` (None: failures)."""
    if config.kind == "kamailio":
        return None
    work.mkdir(parents=True)
    if config.redis:
        _flush(url)
    users = [(f"r{i:05d}", f"pw-{i:05d}-reg") for i in range(count)]
    seed = SeedSpec(devices=[DeviceSpec(u, p) for u, p in users], tenant="reg",
                    contract=CONTRACT, ring_group=[users[0][0]]).toml()  # fmt: skip
    nodes = [_switch(config, work / "a", seed, url)]
    try:
        if config.kind == "nodes":
            nodes.append(_switch(config, work / "b", seed, url, ip=NODE_B_IP))
        share = len(users) // len(nodes)
        runs = [
            Sipp(
                "register",
                work,
                remote=(n.ip, n.sip_port),
                local_port=free_port(),
                credentials=users[i * share : (i + 1) * share],
                keys={"expires": "3600"},
                calls=share,
                rate=20000,
                limit=concurrency // len(nodes),
                timeout_s=max(60, count / 50),
                trace_msg=False,
                name=f"register-{i}",
                extra=["-nd"],
            )
            for i, n in enumerate(nodes)
        ]
        t0 = time.monotonic()
        for r in runs:
            r.start()
        results = [r.wait(grace=5) for r in runs]
        elapsed = time.monotonic() - t0
        ok = sum(r.successful for r in results)
        if any(r.failed for r in results) or ok != share * len(nodes):
            log(f"{config.name}: REGISTER failures " + " | ".join(r.errors[:300] for r in results))
            return None
        return round(ok / elapsed, 1)
    finally:
        for n in nodes:
            n.stop()


# --------------------------------------------------------------------------- the run
def describe(step: Step) -> str:
    lat = (f", INVITE->180 p50 {step.invite_180_p50_ms} p99 {step.invite_180_p99_ms} ms"
           if step.invite_180_samples else "")  # fmt: skip
    return (
        f"{'held' if step.ok else 'FAILED'} ok {step.uac_successful}/{step.calls} failed "
        f"{step.uac_failed}; {step.cpu_s_per_1000_calls} CPU-s/1k{lat}; other processes "
        f"{step.other_cores} cores" + (f"; {step.note[:200]}" if step.note else "")
    )


def table(rows: list[Row]) -> str:
    kam = next((r for r in rows if r.config.kind == "kamailio"), None)

    def first(r: Row, attr: str) -> float | None:
        vals = [getattr(s, attr) for s in r.at_cpu_rate() if getattr(s, attr) is not None]
        return min(vals) if vals else None

    head = (f"{'':18} {'held/s':>7} {'x K':>6} {'CPU-s/1k@500':>22} {'x K':>6} "
            f"{'p50/p99 ms @500':>26} {'p99 x K':>7} {'REG/s':>7}")  # fmt: skip
    lines = [head]
    for r in rows:
        cpus = "/".join(str(s.cpu_s_per_1000_calls) for s in r.at_cpu_rate()) or "-"
        lats = "; ".join(f"{s.invite_180_p50_ms}/{s.invite_180_p99_ms}" for s in r.at_cpu_rate())
        k_held = kam.held if kam else None
        lines.append(
            f"{r.config.name:18} {r.held or '-':>7} {ratio(r.held, k_held):>6} {cpus:>22} "
            f"{ratio(first(r, 'cpu_s_per_1000_calls'), first(kam, 'cpu_s_per_1000_calls') if kam else None):>6} "  # noqa: E501
            f"{lats or '-':>26} "
            f"{ratio(first(r, 'invite_180_p99_ms'), first(kam, 'invite_180_p99_ms') if kam else None):>7} "  # noqa: E501
            f"{r.register_per_s or '-':>7}"
        )
    lines.append("x K: ratio to Kamailio (CPU and p99: the lower of the two samples at 500/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--register", type=int, default=2000, help="users for the REGISTER rate")
    ap.add_argument(
        "--reg-concurrency", type=int, default=50,
        help="REGISTERs outstanding at once (200 on Redis meets the overload gate's 503s)",
    )  # fmt: skip
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None or shutil.which("kamailio") is None:
        print("error: sipp/kamailio missing (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
        return 2
    wanted = [c for c in CONFIGS if not args.only or c.name in args.only.split(",")]
    rows = [Row(c) for c in wanted]
    work = Path(tempfile.mkdtemp(prefix="softswitch-scale-bench-"))
    try:
        for k, rate in enumerate(int(r) for r in args.rates.split(",")):
            live = [r for r in rows if not r.out]
            for row in live if k % 2 == 0 else list(reversed(live)):  # rotated per rate
                s = call_step(row.config, rate, args.step_seconds,
                              work / f"{rate}-{uuid.uuid4().hex[:6]}", args.redis)  # fmt: skip
                row.steps.append(s)
                row.out = not s.ok
                log(f"{row.config.name:18} {rate:5}/s: {describe(s)}")
        for row in reversed(rows):  # the 500/s point again, in the other order
            row.repeat = call_step(row.config, CPU_RATE, args.step_seconds,
                                   work / f"repeat-{uuid.uuid4().hex[:6]}", args.redis)  # fmt: skip
            log(f"{row.config.name:18} {CPU_RATE:5}/s (repeat): {describe(row.repeat)}")
        for row in rows:
            row.register_per_s = register_rate(
                row.config,
                work / f"reg-{uuid.uuid4().hex[:6]}",
                args.redis,
                args.register,
                args.reg_concurrency,
            )
            if row.register_per_s:
                log(f"{row.config.name:18} REGISTER with digest: {row.register_per_s}/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(Exception):
            _flush(args.redis)
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
