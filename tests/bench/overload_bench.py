"""`make bench`, overload step: the switch offered 1.5x and 3x the rate it holds, for a
bounded time, on its defaults (memory state, one process, overload control as shipped).

    python -m tests.bench.overload_bench                      # --held 500, x1.5 and x3, 12 s
    python -m tests.bench.overload_bench --held 600 --factors 3 --seconds 10

A benchmark, not a test: it prints one block per load factor and writes
bench-results/overload-<UTC time>.json. Each factor runs on a fresh switch:

- overload: SIPp UAC (tests/sipp/uac_call_or_503.xml, as the carrier from 127.0.0.2) at
  factor x held calls/s for --seconds -> switch -> SIPp UAS (tests/sipp/uas.xml). A call is
  either accepted (and must complete: INVITE-180-200-ACK-BYE-200) or refused with 503, which
  must carry Retry-After (SIPp counts those FailedTimeoutOnRecv, by the scenario's design;
  any other failure is an accepted call that did not complete).
- after: as soon as the overload UAC stops creating calls, a second UAC at held/2 calls/s for
  --after-seconds: when the last 503 came (seconds after the overload ended) and whether
  every call after it completed ("serves normally within seconds").
- beside each phase: the switch's CPU, the CPU other processes used (tests/bench/machine.py),
  and from the switch's /metrics the refusals by reason and the event-loop lag.

What "degrades instead of collapsing" means here: accepted calls complete (0 other
failures), the accepted rate stays near the held rate, the excess gets 503 + Retry-After,
and after the overload every call completes again within a few seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.machine import CpuWatch
from tests.bench.run import (
    UAS_PASSWORD,
    bench_seed,
    log,
    register_uas,
    start_switch,
    tree_cpu_seconds,
)
from tests.integration.harness import REPO, Sipp, SwitchProcess, free_port, percentile


@dataclass
class Phase:
    rate: float
    seconds: float
    created: int
    accepted: int  # completed calls
    refused: int  # 503 + Retry-After
    other_failures: int  # accepted calls that did not complete, or anything unexpected
    no_retry_after: int
    retransmissions: int
    accepted_per_s: float
    invite_180_p50_ms: float | None
    invite_180_p99_ms: float | None
    last_503_s: float | None  # after the phase's start
    switch_cpu_s: float
    other_cores: float


@dataclass
class Factor:
    factor: float
    overload: Phase
    after: Phase
    rejected_load: float
    rejected_pending: float
    loop_lag_p99_s: float | None
    verdict: str


def shortmsg_times(path: Path) -> tuple[list[float], list[float]]:
    """(INVITE->first 180 in ms per call, timestamps of the 503s received) from a SIPp
    -trace_shortmsg log."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    refusals: list[float] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return [], []
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
        elif direction == "R" and first.startswith("SIP/2.0 503"):
            refusals.append(ts)
    return [(got[c] - sent[c]) * 1000.0 for c in got if c in sent], refusals


def uac(work: Path, sw: SwitchProcess, rate: float, seconds: float, name: str) -> Sipp:
    short = work / f"{name}-shortmsg.log"
    return Sipp(
        "uac_call_or_503", work, remote=("127.0.0.1", sw.sip_port), local_ip="127.0.0.2",
        calls=int(rate * seconds), rate=rate, limit=int(max(rate * 2, 200)),
        timeout_s=seconds + 20, service="0355500100", keys={"caller": "0312345678"},
        trace_msg=False, name=name,
        extra=["-trace_shortmsg", "-shortmessage_file", str(short)],
    )  # fmt: skip


def phase(s: Sipp, rate: float, seconds: float, t0: float, cpu_s: float, other: float) -> Phase:
    r = s.result()
    latencies, refusals = shortmsg_times(s.dir.parent / f"{s.name}-shortmsg.log")
    refused = max(r.counter("FailedTimeoutOnRecv"), 0)
    wall_t0 = time.time() - (time.monotonic() - t0)
    return Phase(
        rate=rate,
        seconds=seconds,
        created=r.created,
        accepted=r.successful,
        refused=refused,
        other_failures=max(r.failed, 0) - refused,
        no_retry_after=max(r.counter("FailedRegexpHdrNotFound"), 0),
        retransmissions=max(r.counter("Retransmissions"), 0),
        accepted_per_s=round(r.successful / seconds, 1),
        invite_180_p50_ms=round(percentile(latencies, 50), 2) if latencies else None,
        invite_180_p99_ms=round(percentile(latencies, 99), 2) if latencies else None,
        last_503_s=round(max(refusals) - wall_t0, 2) if refusals else None,
        switch_cpu_s=round(cpu_s, 2),
        other_cores=other,
    )


def lag_p99(sw: SwitchProcess) -> float | None:
    m = sw.metrics()
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in m.items()
        if k.startswith("sip_event_loop_lag_seconds_bucket")
    )
    total = buckets[-1][1] if buckets else 0
    for le, n in buckets:
        if total and n >= 0.99 * total:
            return le
    return None


def run_factor(work: Path, factor: float, held: int, seconds: float, after_s: float) -> Factor:
    seed, _ = bench_seed(2000)
    target, sw = start_switch(work / "switch-run", seed)
    try:
        uas_port = free_port()
        register_uas(target, work / "switch-run", uas_port, UAS_PASSWORD)
        uas = Sipp(
            "uas", work, remote=None, local_port=uas_port, calls=10_000_000,
            timeout_s=seconds + after_s + 40, trace_msg=False, name=f"uas-x{factor:g}",
            extra=["-default_behaviors", "all,-abortunexp"],
        ).start()  # fmt: skip
        time.sleep(0.3)
        rate, after_rate = held * factor, held / 2
        over = uac(work, sw, rate, seconds, f"over-x{factor:g}")
        watch, cpu0, t0 = CpuWatch(), tree_cpu_seconds(sw.pid), time.monotonic()
        over.start()
        time.sleep(seconds)
        cpu1, load1 = tree_cpu_seconds(sw.pid), watch.stop()
        after = uac(work, sw, after_rate, after_s, f"after-x{factor:g}")
        watch2, t1 = CpuWatch(), time.monotonic()
        after.start()
        over.wait(grace=10)
        after.wait(grace=10)
        cpu2 = tree_cpu_seconds(sw.pid)
        load2 = watch2.stop()
        uas.stop()
        p1 = phase(over, rate, seconds, t0, cpu1 - cpu0, load1.other_cores)
        p2 = phase(after, after_rate, after_s, t1, cpu2 - cpu1, load2.other_cores)
        m = sw.metrics()
        out = Factor(
            factor=factor,
            overload=p1,
            after=p2,
            rejected_load=m.get_value("sip_overload_rejected_total", reason="load"),
            rejected_pending=m.get_value("sip_overload_rejected_total", reason="pending_invites"),
            loop_lag_p99_s=lag_p99(sw),
            verdict="",
        )
        out.verdict = verdict(out, held)
        return out
    finally:
        target.stop()


def verdict(f: Factor, held: int) -> str:
    o, a = f.overload, f.after
    problems = []
    if o.other_failures > 0:
        problems.append(f"{o.other_failures} accepted calls did not complete")
    if o.refused == 0:
        problems.append("nothing refused")
    if o.no_retry_after:
        problems.append("503 without Retry-After")
    if a.other_failures > 0:
        problems.append(f"{a.other_failures} calls failed after the overload")
    if a.last_503_s is not None and a.last_503_s > 5:
        problems.append(f"still refusing {a.last_503_s} s after the overload")
    return "degrades (ok)" if not problems else "; ".join(problems)


def describe(f: Factor) -> str:
    o, a = f.overload, f.after
    return "\n".join(
        [
            f"x{f.factor:g}: offered {o.rate:g}/s for {o.seconds:g} s: {o.created} calls, "
            f"accepted+completed {o.accepted} ({o.accepted_per_s}/s), refused 503 {o.refused} "
            f"(without Retry-After {o.no_retry_after}), other failures {o.other_failures}, "
            f"retransmissions {o.retransmissions}; accepted INVITE->180 p50 "
            f"{o.invite_180_p50_ms} ms p99 {o.invite_180_p99_ms} ms; switch CPU "
            f"{o.switch_cpu_s} s; other processes {o.other_cores} cores",
            f"   after: {a.rate:g}/s for {a.seconds:g} s: {a.created} calls, completed "
            f"{a.accepted}, refused {a.refused} (last 503 at +{a.last_503_s} s), other "
            f"failures {a.other_failures}; INVITE->180 p50 {a.invite_180_p50_ms} ms p99 "
            f"{a.invite_180_p99_ms} ms; other processes {a.other_cores} cores",
            f"   switch: refused for load {f.rejected_load:.0f}, for pending INVITEs "
            f"{f.rejected_pending:.0f}; event-loop lag p99 <= {f.loop_lag_p99_s} s -> "
            f"{f.verdict}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--held", type=int, default=500, help="calls/s the switch holds")
    ap.add_argument("--factors", default="1.5,3")
    ap.add_argument("--seconds", type=float, default=12.0, help="overload time (<= 15)")
    ap.add_argument("--after-seconds", type=float, default=8.0)
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("error: sipp not found (scripts/ensure-test-deps.sh)", file=sys.stderr)
        return 2
    factors = [float(f) for f in args.factors.split(",") if f.strip()]
    started = datetime.now(UTC)
    results: list[Factor] = []
    for factor in factors:
        work = Path(tempfile.mkdtemp(prefix="softswitch-overload-"))
        try:
            f = run_factor(work, factor, args.held, min(args.seconds, 15.0), args.after_seconds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results.append(f)
        log(describe(f))
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"overload-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"held": args.held, "results": [asdict(r) for r in results]}))
    print(f"\nwritten {path}")
    return 0 if all(r.verdict.startswith("degrades") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
