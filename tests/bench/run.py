"""`make bench`: stepped call rates through the switch and through Kamailio (the reference).

    python -m tests.bench.run                 # both targets, default steps, 20 s per step
    python -m tests.bench.run --only kamailio # validate the harness on Kamailio alone
    python -m tests.bench.run --only switch --steps 250,500 --step-seconds 10

A benchmark, not a test: it prints a table and writes bench-results/bench-<UTC time>.json.

What is measured, for each target (all UDP on loopback, SIPp 3.6.1 at both ends):
- call steps: SIPp UAC (tests/sipp/uac_call.xml: INVITE-100-180-200-ACK-BYE, route set learnt
  from the 200) -> target -> SIPp UAS (tests/sipp/uas.xml: mirrors Record-Route). For the
  switch the UAC plays the carrier (bound to the gateway source 127.0.0.2) and calls the
  tenant's contract number, whose ring group is the UAS's ID; the UAS registered with digest
  first. For Kamailio (reference cfg, no auth) the UAC calls AoR "uas" registered once.
  Each step runs rate x step-seconds calls; it holds when SIPp's UAC and UAS both count every
  call successful and none failed. The steps stop at the first one that does not hold.
- CPU-seconds per 1,000 calls at 500 calls/s: utime+stime from /proc/PID/stat of the target's
  own processes (the switch process, or Kamailio's main process and its children), delta over
  the step. Machine-wide figures are wrong in these VMs (bench README, pitfall 4).
- INVITE -> 180 at 500 calls/s: from SIPp's -trace_shortmsg timestamps (microseconds) at the
  UAC, per call, first INVITE sent to first 180 received; p50/p99. SIPp's own rtd/-trace_rtt
  has whole-millisecond resolution, too coarse for Kamailio (it reads 0 ms).
- switch only: REGISTER with digest per second (tests/sipp/register.xml, unique users from an
  injection file, 401 -> REGISTER with Authorization -> 200; SIPp limited to --reg-concurrency
  outstanding registrations, so the rate is what the switch sustains) and VmRSS with all the
  bench devices registered.

The bench seed has one tenant with --devices IDs (default 10,000) plus the UAS's ID. The
switch will soon enforce channels = number of IDs per tenant; with 10,001 IDs the call steps
(at most a few thousand calls in flight) stay far below that limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.machine import CpuWatch
from tests.integration.harness import (
    CARRIER_IP,
    REPO,
    DeviceSpec,
    SeedSpec,
    Sipp,
    SwitchProcess,
    free_port,
    make_self_signed,
    percentile,
    proc_cpu_seconds,
    proc_rss_kib,
    stop_process,
    tail,
)

DEFAULT_STEPS = (250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000)
CPU_RATE = 500  # the rate at which CPU per call and INVITE->180 are compared
CONTRACT = "0355500100"
UAS_USER = "uas"
UAS_PASSWORD = "uas-bench-secret"
KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio" / "kamailio.cfg.in"


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# --------------------------------------------------------------------------- process trees


def descendants(pid: int) -> list[int]:
    """pid and every live descendant (reads /proc/*/stat once)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(p)
    return total


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += proc_rss_kib(p)
    return total


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    ip: str
    port: int
    service: str  # Request-URI user the UAC calls
    uac_ip: str
    pid: int
    stop: Callable[[], None]
    describe: Callable[[], str]


def start_kamailio(work: Path, children: int) -> Target:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = KAMAILIO_CFG.read_text()
    for k, v in {
        "@LISTEN_IP@": "127.0.0.1",
        "@LISTEN_PORT@": str(port),
        "@CTL_SOCKET@": str(work / "kamailio.ctl"),
        "@CHILDREN@": str(children),
        "@RUNDIR@": str(work),
    }.items():
        cfg = cfg.replace(k, v)
    cfg_path = work / "kamailio.cfg"
    cfg_path.write_text(cfg)
    log_path = work / "kamailio.log"
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg_path)], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        raise RuntimeError(f"kamailio -c failed:\n{check.stdout}{check.stderr}")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg_path), "-m", "2048", "-M", "8", "-DD", "-E"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(descendants(proc.pid)) < children + 1:
        if proc.poll() is not None:
            raise RuntimeError(f"kamailio exited {proc.returncode}:\n{tail(log_path)}")
        time.sleep(0.1)
    time.sleep(0.5)

    def stop() -> None:
        stop_process(proc, grace=5)
        # -DD keeps the children in our session; make sure none outlives the main process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    return Target(
        "kamailio", "127.0.0.1", port, UAS_USER, CARRIER_IP, proc.pid, stop, lambda: tail(log_path)
    )


def bench_seed(devices: int) -> tuple[str, list[tuple[str, str]]]:
    users = [(f"b{i:05d}", f"pw-{i:05d}-bench") for i in range(1, devices + 1)]
    spec = SeedSpec(
        devices=[DeviceSpec(UAS_USER, UAS_PASSWORD)] + [DeviceSpec(u, p) for u, p in users],
        tenant="bench",
        contract=CONTRACT,
        ring_group=[UAS_USER],
    )
    return spec.toml(), users


def start_switch(work: Path, seed: str) -> tuple[Target, SwitchProcess]:
    cert, key = make_self_signed(work / "tls")
    # The load generators all run from loopback at far more than one source may send on
    # the defaults ([security] flood_limit): the benchmark measures capacity, so exempt them.
    exempt = '[security]\nexempt = ["127.0.0.0/8"]\n'
    sw = SwitchProcess(work / "switch", seed, cert=cert, key=key, config_toml=exempt)
    sw.start(timeout=60)  # a 10,000-device seed takes a moment to hash
    target = Target("switch", sw.ip, sw.sip_port, CONTRACT, CARRIER_IP, sw.pid, sw.stop, sw.logs)
    return target, sw


# --------------------------------------------------------------------------- measurements


@dataclass
class Step:
    rate: int
    calls: int
    ok: bool
    uac_exit: int
    uac_successful: int
    uac_failed: int
    uas_successful: int
    uas_failed: int
    retransmissions: int
    seconds: float
    cpu_seconds: float
    cpu_s_per_1000_calls: float | None
    invite_180_p50_ms: float | None = None
    invite_180_p99_ms: float | None = None
    invite_180_samples: int = 0
    other_cores: float | None = None  # CPU the rest of the machine used (tests/bench/machine.py)
    note: str = ""


def invite_to_180(shortmsg: Path) -> list[float]:
    """ms from each call's first INVITE sent to its first 180 received (SIPp shortmsg log)."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    try:
        lines = shortmsg.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for ln in lines:
        parts = ln.split("\t")
        if len(parts) < 7:
            continue
        try:
            ts = float(parts[2])
        except ValueError:
            continue
        direction, call_id, first = parts[3], parts[4], parts[6]
        if direction == "S" and first.startswith("INVITE ") and call_id not in sent:
            sent[call_id] = ts
        elif direction == "R" and first.startswith("SIP/2.0 180") and call_id not in got:
            got[call_id] = ts
    return [(got[c] - sent[c]) * 1000.0 for c in got if c in sent]


def register_uas(target: Target, work: Path, uas_port: int, password: str) -> None:
    res = Sipp(
        "register",
        work,
        remote=(target.ip, target.port),
        local_port=uas_port,
        credentials=[(UAS_USER, password)],
        keys={"expires": "3600"},
        timeout_s=10,
        name=f"{target.name}-register-uas",
    ).run()
    if res.returncode != 0 or res.successful != 1:
        raise RuntimeError(f"registering the UAS with {target.name} failed\n{res.report()}")


def run_step(
    target: Target,
    work: Path,
    uas_port: int,
    rate: int,
    seconds: float,
    latency: bool,
    uac_extra: Sequence[str] = (),
) -> Step:
    calls = int(rate * seconds)
    budget = seconds + 5
    # The UAS does not abort a call on a stray retransmission (a second ACK after a 200 it
    # retransmitted, an INVITE retransmitted by a proxy that was slow to see the 180): SIPp
    # recognises only some retransmissions, and under load these are not failures of the
    # proxy. The UAC stays strict; a UAS call still counts as successful only if it reaches
    # the end of the scenario.
    uas = Sipp(
        "uas",
        work,
        remote=None,
        local_port=uas_port,
        calls=calls,
        timeout_s=budget + 3,
        trace_msg=False,
        name=f"{target.name}-uas-{rate}",
        extra=["-default_behaviors", "all,-abortunexp"],
    )
    extra: list[str] = list(uac_extra)
    short = None
    if latency:
        short = uas.dir.parent / f"{target.name}-shortmsg-{rate}.log"
        extra += ["-trace_shortmsg", "-shortmessage_file", str(short)]
    uac = Sipp(
        "uac_call",
        work,
        remote=(target.ip, target.port),
        local_ip=target.uac_ip,
        calls=calls,
        rate=rate,
        limit=max(rate * 2, 200),
        timeout_s=budget,
        service=target.service,
        keys={"caller": "0312345678"},
        trace_msg=False,
        name=f"{target.name}-uac-{rate}",
        extra=extra,
    )
    uas.start()
    time.sleep(0.3)
    watch = CpuWatch()
    cpu0 = tree_cpu_seconds(target.pid)
    t0 = time.monotonic()
    uac.start()
    ur = uac.wait(grace=5)
    elapsed = time.monotonic() - t0
    cpu1 = tree_cpu_seconds(target.pid)
    sr = uas.wait(grace=3)
    if uas.running:
        sr = uas.stop()
    load = watch.stop()
    ok = (
        ur.returncode == 0
        and ur.successful == calls
        and ur.failed == 0
        and sr.failed == 0
        and sr.successful == calls
    )
    cpu = cpu1 - cpu0
    step = Step(
        rate=rate,
        calls=calls,
        ok=ok,
        uac_exit=ur.returncode,
        uac_successful=ur.successful,
        uac_failed=ur.failed,
        uas_successful=sr.successful,
        uas_failed=sr.failed,
        retransmissions=max(ur.counter("Retransmissions"), 0),
        seconds=round(elapsed, 2),
        cpu_seconds=round(cpu, 3),
        cpu_s_per_1000_calls=round(cpu / ur.successful * 1000, 4) if ur.successful > 0 else None,
        other_cores=load.other_cores,
    )
    if short is not None:
        lat = invite_to_180(short)
        step.invite_180_samples = len(lat)
        if lat:
            step.invite_180_p50_ms = round(percentile(lat, 50), 3)
            step.invite_180_p99_ms = round(percentile(lat, 99), 3)
        with contextlib.suppress(OSError):
            short.unlink()  # large; the percentiles are what we keep
    if not ok:
        step.note = (ur.errors or sr.errors)[:600]
        (work / f"{target.name}-step-{rate}-failure.txt").write_text(
            ur.report() + "\n\n" + sr.report()
        )
    return step


def run_steps(
    target: Target, work: Path, uas_port: int, steps: list[int], seconds: float, deadline: float
) -> list[Step]:
    out: list[Step] = []
    for rate in steps:
        if time.monotonic() + seconds + 10 > deadline:
            log(f"{target.name}: time budget spent, stopping before {rate}/s")
            break
        step = run_step(target, work, uas_port, rate, seconds, latency=rate == CPU_RATE)
        out.append(step)
        lat = (
            f", INVITE->180 p50 {step.invite_180_p50_ms} ms p99 {step.invite_180_p99_ms} ms"
            if step.invite_180_samples
            else ""
        )
        log(
            f"{target.name} {rate}/s: {'held' if step.ok else 'FAILED'} "
            f"(UAC ok {step.uac_successful}/{step.calls}, failed {step.uac_failed}; "
            f"UAS ok {step.uas_successful}, failed {step.uas_failed}; retrans "
            f"{step.retransmissions}; {step.cpu_seconds} CPU-s = "
            f"{step.cpu_s_per_1000_calls} per 1000 calls{lat}; other processes "
            f"{step.other_cores} cores)"
        )
        if not step.ok:
            break
        time.sleep(2)  # let finished transactions expire a little between steps
    return out


@dataclass
class Outcome:
    target: str
    steps: list[Step] = field(default_factory=list)
    max_rate_held: int | None = None
    cpu_s_per_1000_at_500: float | None = None
    invite_180_p50_ms: float | None = None
    invite_180_p99_ms: float | None = None
    register_per_s: float | None = None
    register_ok: int | None = None
    register_failed: int | None = None
    rss_kib_registered: int | None = None
    rss_kib_idle: int | None = None
    # after the call steps (the 1 s-after sample above still holds ~2 transactions per
    # REGISTER in their 32 s Timer J wait; this one also holds the steps' leftovers)
    rss_kib_after_steps: int | None = None
    cpu_step_held: bool | None = None  # False: the CPU/latency figures come from an overload
    error: str | None = None

    def summarise(self) -> None:
        held = [s.rate for s in self.steps if s.ok]
        self.max_rate_held = max(held) if held else None
        for s in self.steps:
            if s.rate == CPU_RATE:
                self.cpu_step_held = s.ok
                self.cpu_s_per_1000_at_500 = s.cpu_s_per_1000_calls
                self.invite_180_p50_ms = s.invite_180_p50_ms
                self.invite_180_p99_ms = s.invite_180_p99_ms


def bench_register(
    sw: SwitchProcess,
    target: Target,
    work: Path,
    users: list[tuple[str, str]],
    concurrency: int,
    out: Outcome,
) -> None:
    out.rss_kib_idle = tree_rss_kib(sw.pid)
    n = len(users)
    port = free_port()
    reg = Sipp(
        "register",
        work,
        remote=(target.ip, target.port),
        local_port=port,
        credentials=users,
        keys={"expires": "3600"},
        calls=n,
        rate=20000,
        limit=concurrency,
        timeout_s=max(60, n / 100),
        trace_msg=False,
        name="switch-register-bench",
        extra=["-nd"],
    )  # -nd: no BYE on an aborted REGISTER
    t0 = time.monotonic()
    res = reg.run(grace=5)
    elapsed = time.monotonic() - t0
    out.register_ok, out.register_failed = res.successful, res.failed
    out.register_per_s = round(res.successful / elapsed, 1) if elapsed > 0 else None
    log(
        f"switch REGISTER with digest: {res.successful} ok, {res.failed} failed in "
        f"{elapsed:.1f} s = {out.register_per_s}/s (SIPp exit {res.returncode})"
    )
    if res.failed or res.returncode != 0:
        (work / "switch-register-failure.txt").write_text(res.report())
        log("REGISTER failures: see switch-register-failure.txt\n" + res.errors[:800])
    time.sleep(1)
    out.rss_kib_registered = tree_rss_kib(sw.pid)
    with contextlib.suppress(Exception):
        m = sw.metrics()
        log(f"switch metrics: sip_registrations_active={m.get_value('sip_registrations_active')}")
    log(
        f"switch RSS: idle {out.rss_kib_idle} KiB, with {res.successful} registered "
        f"{out.rss_kib_registered} KiB"
    )


# --------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def fmt(v: object) -> str:
    return "n/a" if v is None else str(v)


def table(results: dict[str, Outcome]) -> str:
    sw, ka = results.get("switch"), results.get("kamailio")
    rows = [
        ("max calls/s held (0 failed)", "max_rate_held"),
        (f"CPU-s per 1,000 calls @ {CPU_RATE}/s", "cpu_s_per_1000_at_500"),
        (f"INVITE->180 p50 ms @ {CPU_RATE}/s", "invite_180_p50_ms"),
        (f"INVITE->180 p99 ms @ {CPU_RATE}/s", "invite_180_p99_ms"),
        ("REGISTER+digest per s", "register_per_s"),
        ("RSS KiB, all devices registered", "rss_kib_registered"),
        ("RSS KiB, after the call steps", "rss_kib_after_steps"),
    ]
    w = 36
    lines = [f"{'':{w}} {'switch':>12} {'kamailio':>12} {'ratio':>8}", "-" * (w + 36)]
    for label, attr in rows:
        a = getattr(sw, attr) if sw else None
        b = getattr(ka, attr) if ka else None
        r = (
            ratio(a, b)
            if attr
            in ("max_rate_held", "cpu_s_per_1000_at_500", "invite_180_p50_ms", "invite_180_p99_ms")
            else ""
        )
        at_500 = attr in ("cpu_s_per_1000_at_500", "invite_180_p50_ms", "invite_180_p99_ms")
        fa, fb = fmt(a), fmt(b)
        if at_500 and sw is not None and sw.cpu_step_held is False and a is not None:
            fa += "*"
        if at_500 and ka is not None and ka.cpu_step_held is False and b is not None:
            fb += "*"
        lines.append(f"{label:{w}} {fa:>12} {fb:>12} {r:>8}")
    lines.append("ratio = switch / kamailio (max rate: higher is better; CPU, latency: lower)")
    if any(o.cpu_step_held is False for o in results.values()):
        lines.append(f"* the {CPU_RATE}/s step did not hold: measured in overload")
    for o in results.values():
        if o.error:
            lines.append(f"{o.target}: ERROR {o.error.splitlines()[0] if o.error else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("switch", "kamailio"))
    ap.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)))
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--reg-concurrency", type=int, default=200)
    ap.add_argument("--kamailio-children", type=int, default=2)
    ap.add_argument(
        "--budget-seconds",
        type=float,
        default=290.0,
        help="wall-clock budget per target (steps stop when it is spent)",
    )
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    if CPU_RATE not in steps:
        log(f"note: {CPU_RATE}/s is not among the steps; no CPU/latency comparison")
    for tool in ("sipp",) + (("kamailio",) if args.only != "switch" else ()):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
            return 2

    work = Path(tempfile.mkdtemp(prefix="softswitch-bench-"))
    log(f"work directory {work}")
    results: dict[str, Outcome] = {}
    order = [t for t in ("kamailio", "switch") if args.only in (None, t)]
    started = datetime.now(UTC)
    try:
        for name in order:
            out = results[name] = Outcome(name)
            stopper: Callable[[], None] | None = None
            try:
                if name == "kamailio":
                    target = start_kamailio(work / "kamailio", args.kamailio_children)
                    stopper = target.stop
                    uas_port = free_port()
                    register_uas(target, work / "kamailio", uas_port, "unused")
                else:
                    seed, users = bench_seed(args.devices)
                    target, sw = start_switch(work / "switch-run", seed)
                    stopper = target.stop
                    bench_register(
                        sw, target, work / "switch-run", users, args.reg_concurrency, out
                    )
                    uas_port = free_port()
                    register_uas(target, work / "switch-run", uas_port, UAS_PASSWORD)
                log(
                    f"{name}: pid {target.pid} on {target.ip}:{target.port}, UAS on "
                    f"127.0.0.1:{uas_port}"
                )
                deadline = time.monotonic() + args.budget_seconds
                out.steps = run_steps(
                    target, work / name, uas_port, steps, args.step_seconds, deadline
                )
                out.summarise()
                if name == "switch":  # Kamailio's shared memory would count once per process
                    out.rss_kib_after_steps = tree_rss_kib(target.pid)
            except Exception as exc:  # report and go on with the other target
                out.error = f"{type(exc).__name__}: {exc}"
                log(f"{name}: {out.error}")
            finally:
                if stopper is not None:
                    stopper()
    finally:
        if not args.keep:
            failures = list(work.rglob("*failure.txt"))
            if failures:
                keep = Path(args.out) / f"failures-{started:%Y%m%dT%H%M%SZ}"
                keep.mkdir(parents=True, exist_ok=True)
                for f in failures:
                    shutil.copy(f, keep / f.name)
            shutil.rmtree(work, ignore_errors=True)

    text = table(results)
    print("\n" + text)
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    payload = {
        "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "step_seconds": args.step_seconds,
        "steps": steps,
        "devices": args.devices,
        "results": {k: asdict(v) for k, v in results.items()},
        "table": text,
    }
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwritten {path}")
    return 0 if all(o.error is None for o in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
