"""Profile the switch on the call path: CPU-ms per call and where it goes.

    .venv/bin/python -m tests.bench.profile_switch                       # 500 calls/s, 10 s
    .venv/bin/python -m tests.bench.profile_switch --rate 1000 --seconds 10 --repeat 2
    .venv/bin/python -m tests.bench.profile_switch --profile --top 30     # + py-spy

A developer's tool, not a test. It starts `softswitch serve` (uvloop, memory state) with a
generated seed (one tenant, one contract number ringing one ID "uas", a few spare IDs, the
carrier gateway trusted from 127.0.0.2), registers a SIPp UAS as "uas" (digest, MD5), and
drives complete calls through it: SIPp UAC on 127.0.0.2 (tests/sipp/uac_call.xml:
INVITE-100-180-200-ACK-BYE-200, record-routed) -> switch -> SIPp UAS (tests/sipp/uas.xml),
all UDP on loopback.

For each run it prints the switch process's own CPU time (utime+stime from /proc/PID/stat,
delta over the run; machine-wide figures are wrong in these VMs) per call, the rate achieved
and SIPp's success/failure counts. With --profile a further run is sampled by py-spy
(`pip install py-spy`, not a project dependency; --gil: samples of the thread holding the
GIL; it pauses the switch briefly per sample,
so that run is slower and its CPU figure is not comparable)
and the top functions are printed by own time ("self") and by time including callees
("total"), as shares of all samples of the event-loop thread.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.harness import (
    CARRIER_IP,
    REPO,
    DeviceSpec,
    SeedSpec,
    Sipp,
    SwitchProcess,
    proc_cpu_seconds,
    stop_process,
)

CONTRACT = "0355500100"
UAS_USER = "uas"
UAS_PASSWORD = "uas-profile-secret"


# --cprofile: the switch runs under this boot script (given as SOFTSWITCH_PYTHON's
# "python"); SIGUSR1 starts cProfile, SIGUSR2 stops it and writes the stats file.
_CPROFILE_BOOT = """#!{python}
import asyncio, cProfile, signal, sys
import switch.app
prof = cProfile.Profile()
def _dump():
    prof.disable()
    prof.dump_stats({out!r})
_start = switch.app.SwitchApp.start
async def start(self):
    await _start(self)
    loop = asyncio.get_running_loop()  # the loop's handlers: uvloop owns the signals
    loop.add_signal_handler(signal.SIGUSR1, prof.enable)
    loop.add_signal_handler(signal.SIGUSR2, _dump)
switch.app.SwitchApp.start = start
if sys.argv[1] == "-c":
    code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
    exec(compile(code, "<switch>", "exec"), {{"__name__": "__main__"}})
else:
    import runpy
    mod, sys.argv = sys.argv[2], [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(mod, run_name="__main__", alter_sys=True)
"""


def start(work: Path, cprofile_out: Path | None = None, state: str | None = None) -> SwitchProcess:
    seed = SeedSpec(
        devices=[DeviceSpec(UAS_USER, UAS_PASSWORD)],
        tenant="prof",
        contract=CONTRACT,
        ring_group=[UAS_USER],
        spare_ids=2000,
    )
    env = None
    if cprofile_out is not None:
        boot = work / "cprofile_boot.py"
        boot.write_text(_CPROFILE_BOOT.format(python=sys.executable, out=str(cprofile_out)))
        boot.chmod(0o755)
        env = {**os.environ, "SOFTSWITCH_PYTHON": str(boot)}
        os.environ["SOFTSWITCH_PYTHON"] = str(boot)  # the harness reads it from here
    exempt = '[security]\nexempt = ["127.0.0.0/8"]\n'  # load from loopback, see run.py
    if state is not None:  # a shared backend needs a shared flow-token secret
        exempt += f'[state]\nurl = "{state}"\n[auth]\nnonce_secret = "{"b" * 32}"\n'
    workers = ["--workers", "1"]  # on shared state the default is one per core
    sw = SwitchProcess(
        work / "switch", seed.toml(), tls=False, env=env, config_toml=exempt, extra_args=workers
    )
    sw.start(timeout=60)
    return sw


def register(sw: SwitchProcess, work: Path, uas_port: int) -> None:
    res = Sipp(
        "register",
        work,
        remote=(sw.ip, sw.sip_port),
        local_port=uas_port,
        credentials=[(UAS_USER, UAS_PASSWORD)],
        keys={"expires": "3600"},
        timeout_s=10,
        name="register-uas",
    ).run()
    if res.returncode != 0 or res.successful != 1:
        raise RuntimeError(f"registering the UAS failed\n{res.report()}")


def run_calls(
    sw: SwitchProcess,
    work: Path,
    uas_port: int,
    rate: int,
    seconds: float,
    name: str,
    during: list[str] | None = None,
) -> dict[str, float]:
    calls = int(rate * seconds)
    budget = seconds + 8
    uas = Sipp(
        "uas",
        work,
        remote=None,
        local_port=uas_port,
        calls=calls,
        timeout_s=budget + 3,
        trace_msg=False,
        name=f"uas-{name}",
        # as tests/bench/run.py: a stray retransmission does not abort the UAS's call
        extra=["-default_behaviors", "all,-abortunexp"],
    )
    uac = Sipp(
        "uac_call",
        work,
        remote=(sw.ip, sw.sip_port),
        local_ip=CARRIER_IP,
        calls=calls,
        rate=rate,
        limit=max(rate * 2, 200),
        timeout_s=budget,
        service=CONTRACT,
        keys={"caller": "0312345678"},
        trace_msg=False,
        name=f"uac-{name}",
    )
    uas.start()
    time.sleep(0.3)
    spy = None
    if during is not None:
        spy = subprocess.Popen(
            during, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        time.sleep(0.5)
    user0, sys0 = _user_sys(sw.pid)
    cpu0 = proc_cpu_seconds(sw.pid)
    t0 = time.monotonic()
    uac.start()
    ur = uac.wait(grace=5)
    elapsed = time.monotonic() - t0
    cpu1 = proc_cpu_seconds(sw.pid)
    user1, sys1 = _user_sys(sw.pid)
    sr = uas.wait(grace=3)
    if uas.running:
        sr = uas.stop()
    if spy is not None:
        try:
            spy.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            stop_process(spy)
    ok_calls = max(ur.successful, 0)
    cpu = cpu1 - cpu0
    return {
        "calls": calls,
        "uac_ok": ur.successful,
        "uac_failed": ur.failed,
        "uas_ok": sr.successful,
        "uas_failed": sr.failed,
        "retrans": max(ur.counter("Retransmissions"), 0),
        "seconds": elapsed,
        "cpu_s": cpu,
        "cpu_ms_per_call": cpu / ok_calls * 1000 if ok_calls else float("nan"),
        "user_share": (user1 - user0) / max((user1 - user0) + (sys1 - sys0), 1e-9),
        "calls_per_s": ok_calls / elapsed if elapsed else 0.0,
    }


def _user_sys(pid: int) -> tuple[float, float]:
    """utime and stime of a process in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# --------------------------------------------------------------------------- py-spy raw
def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "file.py:function"; the line varies per sample.
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    rel = path
    for root in (str(REPO) + "/", "/usr/lib/python3.11/", "/usr/local/lib/python3.11/"):
        if rel.startswith(root):
            rel = rel[len(root) :]
    if "site-packages/" in rel:
        rel = rel.split("site-packages/", 1)[1]
    return f"{rel}:{func}"


def summarise_raw(path: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [
            _frame_name(f)
            for f in stack.split(";")
            if not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    if not total:
        return "no samples"
    out = [
        f"{total} samples of the thread holding the GIL",
        "",
        f"top {top} by own time:",
    ]
    for name, n in own.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out += ["", f"top {top * 2} by total time (including callees):"]
    for name, n in incl.most_common(top * 2):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def summarise_pstats(path: Path, top: int, calls: int) -> str:
    import io
    import pstats

    if not path.exists():
        return "no cProfile stats written"
    buf = io.StringIO()
    st = pstats.Stats(str(path), stream=buf)
    total = st.total_tt  # type: ignore[attr-defined]
    buf.write(
        f"total {total:.2f} s profiled = {total / max(calls, 1) * 1e3:.3f} ms/call "
        "(cProfile overhead included)\n"
    )
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top * 2)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2, help="measured runs (after one warm-up)")
    ap.add_argument("--profile", action="store_true", help="one more run sampled by py-spy")
    ap.add_argument(
        "--cprofile",
        action="store_true",
        help="run the switch under cProfile (slow; for call counts and cumulative "
        "times; the CPU figures are then not comparable)",
    )
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--state", default=None, help="a state URL (redis://...) instead of memory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="profile-switch-"))
    pstats_path = work / "switch.pstats"
    sw = start(work, pstats_path if args.cprofile else None, args.state)
    try:
        uas_port = Sipp("uas", work, remote=None, name="port-probe").local_port
        register(sw, work, uas_port)
        print(f"switch pid {sw.pid} on {sw.ip}:{sw.sip_port}; work dir {work}", flush=True)
        warm = run_calls(sw, work, uas_port, args.rate, min(args.seconds, 3.0), "warm")
        print(f"warm-up: {_fmt(warm)}", flush=True)
        results = []
        if args.cprofile:
            os.kill(sw.pid, signal.SIGUSR1)
        for i in range(args.repeat):
            time.sleep(1.0)
            r = run_calls(sw, work, uas_port, args.rate, args.seconds, f"run{i}")
            results.append(r)
            print(f"run {i}: {_fmt(r)}", flush=True)
        if results:
            per_call = sorted(r["cpu_ms_per_call"] for r in results)
            print(
                f"CPU-ms per call at {args.rate}/s: min {per_call[0]:.3f}, "
                f"median {per_call[len(per_call) // 2]:.3f}",
                flush=True,
            )
        if args.cprofile:
            os.kill(sw.pid, signal.SIGUSR2)
            time.sleep(2.0)
            calls = sum(int(r["uac_ok"]) for r in results)
            print(f"cProfile over {calls} calls:")
            print(summarise_pstats(pstats_path, args.top, calls))
        if args.profile:
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            raw = work / "profile.txt"
            cmd = [
                spy_bin,
                "record",
                "--pid",
                str(sw.pid),
                "--format",
                "raw",
                "-o",
                str(raw),
                "--rate",
                "250",
                "--gil",  # only the thread holding the GIL: CPU work, not idle threads
                "-d",
                str(int(args.seconds + 1)),
            ]
            time.sleep(1.0)
            r = run_calls(sw, work, uas_port, args.rate, args.seconds, "profiled", during=cmd)
            print(f"profiled run (py-spy attached): {_fmt(r)}", flush=True)
            if raw.exists():
                print(summarise_raw(raw, args.top))
                print(f"raw profile: {raw}")
            else:
                print("py-spy wrote no profile")
    finally:
        sw.stop()
        if not args.keep and not (args.profile or args.cprofile):
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _fmt(r: dict[str, float]) -> str:
    return (
        f"{int(r['uac_ok'])}/{int(r['calls'])} ok, {int(r['uac_failed'])} failed "
        f"(UAS ok {int(r['uas_ok'])}, failed {int(r['uas_failed'])}), retrans "
        f"{int(r['retrans'])}, {r['calls_per_s']:.0f} calls/s, CPU {r['cpu_s']:.2f} s = "
        f"{r['cpu_ms_per_call']:.3f} CPU-ms/call ({100 * r['user_share']:.0f}% user)"
    )


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
