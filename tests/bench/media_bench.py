"""`make bench` (media): concurrent announcement streams from one `softswitch media` process,
and "announce then hang up" calls/s through the switch with its embedded media service.

    python -m tests.bench.media_bench          # streams 100, 250, 500, 500, +250 while held
    python -m tests.bench.media_bench --streams 500 --no-switch

A benchmark, not a test: it prints a table and writes bench-results/media-bench-<UTC>.json.

Streams (loopback; every process bounded in count and time):
- `softswitch media`, own data directory, a seed-less SQLite store with one tenant and a 45 s
  uploaded prompt made through the provisioning services, a known `[media] secret`.
- `loadgen` (tests/bench/media_peers.py, a process): N calls ramped at --ramp calls/s, each an
  INVITE to the hand-off `announce;prompt=prompt:<id>;then=hangup` signed as the proxy signs
  it, SDP offering PCMU to ONE receiving port; 200 -> ACK; with every call up it holds --hold
  s, then BYEs them all at the ramp rate. (The ramp stays under the media process's own
  per-source flood guard, 600 messages per 2 s, which does not exempt the proxy.)
- `receiver` (media_peers.py, a process): one UDP socket, kernel receive timestamps, (ssrc,
  seq, timestamp, source port, arrival) per packet. Kernel drops on its socket
  (/proc/net/udp) and on the loopback backlog (/proc/net/softnet_stat) are reported, and what
  arrived is compared with `media_rtp_packets_total{direction="out"}` of the media process.
Within the hold window every 20 ms slot of a stream (RTP timestamp / 160: frames the sender
skipped count) is due at anchor + slot x 20 ms, the anchor being the stream's earliest
(arrival - slot x 20 ms), i.e. its first arrival unless that one was late itself; a slot is
missing if nothing came for it and late if it came > 20 ms after that (which catches drift).
A step holds when every call was set up and missing + late <= 0.1 % of the slots. CPU is
utime+stime from /proc/PID/stat over the hold: the media process (per 100 streams per minute),
the receiver, and all other processes together. A thread of this process sleeping 5 ms at a
time records the machine's own stalls (its oversleep > 10 ms); late packets whose lateness
overlaps such a stall are counted apart, so a reader can discount a disturbed step. Then the
control (sched "rr"): the media process made a SCHED_RR task, 500 streams and 250 more while
they hold, which shows what the code sustains when other processes cannot delay it.

Switch: `softswitch serve` (embedded media), one number announcing template-2 in every
after-hours slot; SIPp tests/sipp/media/uac_listen.xml from the carrier address at stepped
rates until a step has a failed call; CPU-ms of the switch per call, and the packets its media
sent more than 20 ms late (`media_rtp_problems_total{kind="late_send"}`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tests.bench.media_peers import E164, STOP
from tests.bench.run import log, tree_cpu_seconds
from tests.integration.harness import (
    CARRIER_IP,
    REALM,
    REPO,
    Metrics,
    Sipp,
    SwitchProcess,
    free_port,
    parse_metrics,
    proc_cpu_seconds,
    proc_rss_kib,
    stop_process,
    tail,
)

PY = os.environ.get("SOFTSWITCH_PYTHON", str(REPO / ".venv" / "bin" / "python"))
SECRET = "media-bench-secret-0123456789abcdef"
NUMBER, CALLER = "0355500100", "+81312345678"
PROMPT_SECONDS = 45.0
SLOT_NS = 20_000_000  # 20 ms of PCMU: 160 timestamp units


# =========================================================================== analysis
def _unwrap(values: np.ndarray, start: np.ndarray, gid: np.ndarray, mod: int) -> np.ndarray:
    """Per group (contiguous, `start` marks the first of each), each value relative to the
    group's first one, across wrap-arounds."""
    step = np.zeros(len(values), np.int64)
    step[1:] = (np.diff(values.astype(np.int64)) + mod // 2) % mod - mod // 2
    step[start] = 0
    cs = np.cumsum(step)
    return cs - cs[start][gid]


def analyse(npz: Path, hold: tuple[int, int], stalls: list[tuple[int, int]]) -> dict[str, Any]:
    """The step's figures (see the module docstring); times in ns from the hold's start."""
    d = np.load(npz)
    hi = hold[1] - hold[0]
    ssrc, arr = d["ssrc"].astype(np.int64), d["arrival"] - hold[0]
    if not len(arr):
        return {"received_total": 0}
    order = np.lexsort((arr, ssrc))
    ssrc, arr, seq, ts = ssrc[order], arr[order], d["seq"][order], d["ts"][order]
    start = np.r_[True, ssrc[1:] != ssrc[:-1]]
    gid, first = np.cumsum(start) - 1, np.flatnonzero(start)
    rel_seq = _unwrap(seq, start, gid, 1 << 16)
    seq_span = np.maximum.reduceat(rel_seq, first) - np.minimum.reduceat(rel_seq, first) + 1
    unique_seq = len(np.unique(gid * (1 << 32) + rel_seq))
    slot = _unwrap(ts, start, gid, 1 << 32) // 160
    anchor = np.minimum.reduceat(arr - slot * SLOT_NS, first)
    due = anchor[gid] + slot * SLOT_NS
    first_slot = np.maximum(np.ceil(-anchor / SLOT_NS), np.minimum.reduceat(slot, first))
    last_slot = np.minimum((hi - 1 - anchor) // SLOT_NS, np.maximum.reduceat(slot, first))
    expected = int(np.clip(last_slot - first_slot + 1, 0, None).sum())
    mine = np.flatnonzero((due >= 0) & (due < hi))
    mine = mine[np.unique(gid[mine] * (1 << 40) + slot[mine], return_index=True)[1]]
    late = mine[arr[mine] - due[mine] > SLOT_NS]
    in_stall = np.zeros(len(late), bool)
    for x, y in stalls:  # the packet's [due, arrival] overlaps a stall the probe saw
        in_stall |= (due[late] <= y - hold[0]) & (arr[late] >= x - hold[0])
    in_hold = (arr >= 0) & (arr < hi)
    same = np.r_[False, ~start[1:]] & in_hold & np.r_[False, in_hold[:-1]]
    gaps = np.diff(arr, prepend=arr[0])[same] / 1e6
    return {
        "streams": len(first), "received_total": len(arr),
        "ssrc_with_several_ports": len(np.unique(gid * (1 << 16) + d["sport"][order]))
        - len(first), "seq_lost_total": int(seq_span.sum() - unique_seq),
        "duplicates_total": len(arr) - unique_seq, "expected": expected,
        "received": len(mine), "missing": max(0, expected - len(mine)), "late_20ms": len(late),
        "late_in_stalls": int(in_stall.sum()),
        "late_bins_10ms": len(np.unique(arr[late] // 10_000_000)),
        "late_max_ms": _q((arr[mine] - due[mine]) / 1e6, 100), "gap_p50_ms": _q(gaps, 50),
        "gap_p99_ms": _q(gaps, 99), "gap_max_ms": _q(gaps, 100),
    }  # fmt: skip


def _q(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


# =========================================================================== CPU sampling
def all_cpu() -> dict[int, float]:
    """utime+stime of every process visible in /proc."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[int(entry)] = proc_cpu_seconds(int(entry))
    return out


def softnet_drops() -> int:
    """Packets dropped because a CPU's input backlog was full (loopback goes through it)."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


class SleepProbe(threading.Thread):
    """Oversleep of 5 ms sleeps: the machine's own stalls during a step ((start, end) in
    time.time_ns() of each oversleep > 10 ms)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.stalls: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.time_ns()
            time.sleep(0.005)
            now = time.time_ns()
            self.late.append((now - t) / 1e6 - 5)
            if self.late[-1] > 10:
                self.stalls.append((t + 5_000_000, now))

    def result(self) -> float | None:
        self.stop.set()
        self.join()
        return _q(np.array(self.late), 100)


# =========================================================================== the media process
async def make_store(url: str) -> tuple[str, str]:
    """A tenant and a PROMPT_SECONDS uploaded prompt (a 440 Hz tone with a slow sweep)."""
    from media.wav import wav_bytes
    from provisioning.model import DeviceKind
    from provisioning.services import DeviceCreate, Principal, Services, TenantCreate
    from provisioning.store import open_store

    store = await open_store(url)
    try:
        services, op = Services(store), Principal.operator()
        device = DeviceCreate(kind=DeviceKind.DESK, username="mb1", password="media-bench-pw1")
        tenant = await services.tenants.create_tenant(op, TenantCreate(
            name="media bench", contract_number=NUMBER, basic_device=device,
        ))  # fmt: skip
        t = np.arange(int(PROMPT_SECONDS * 8000)) / 8000
        pcm = (8000 * np.sin(2 * np.pi * (440 + 40 * np.sin(t)) * t)).astype("<i2").tobytes()
        info = await services.prompts.create_prompt(
            op, tenant.id, name="45 s", audio=wav_bytes(pcm)
        )
        return tenant.id, info.id
    finally:
        await store.close()


@dataclass
class MediaProc:
    proc: subprocess.Popen[bytes]
    sip: str  # host:port
    http: int
    uri: str  # the signed hand-off for the bench prompt

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            return Metrics(parse_metrics(r.read().decode()))

    def counter(self, name: str, **labels: str) -> int:
        return int(self.metrics().get_value(name, **labels))


def start_media(work: Path, ports: str, nice: int = 0) -> MediaProc:
    from switch.handoff import HandOff, Service, Then
    from switch.proxy.diversion import MediaService

    data = work / "media-data"
    data.mkdir(parents=True)
    url = f"sqlite:///{data / 'media.db'}"
    tenant, prompt = asyncio.run(make_store(url))
    cfg = work / "media.toml"
    cfg.write_text(f'[media]\nsecret = "{SECRET}"\nrtp_ports = "{ports}"\n')
    sip = f"127.0.0.1:{free_port()}"
    with open(work / "media.stdout", "wb") as out, open(work / "media.stderr", "wb") as err:
        proc = subprocess.Popen(
            [PY, "-m", "switch", "media", "--listen", sip, "--database", url, "--config",
             str(cfg), "--data", str(data), "--http", "127.0.0.1:0"],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, cwd=work,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )  # fmt: skip
    marker, deadline = "HTTP listening on http://127.0.0.1:", time.monotonic() + 30
    while marker not in (text := (work / "media.stdout").read_text(errors="replace")):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"media did not start:\n{text}\n{tail(work / 'media.stderr')}")
        time.sleep(0.1)
    handoff = HandOff(service=Service.ANNOUNCE, tenant=tenant, target=E164,
                      prompt=f"prompt:{prompt}", then=Then.HANGUP, caller=CALLER)  # fmt: skip
    uri = MediaService.parse(f"sip:media@{sip}", SECRET.encode()).uri_for(handoff)
    return MediaProc(proc, sip, int(text.split(marker, 1)[1].split()[0]), uri)


# =========================================================================== one stream step
@dataclass
class StreamStep:
    streams: int
    sched: str = "default"  # or "rr": the media process as a SCHED_RR task (the control)
    held: bool = False
    established: int = 0
    failed_calls: int = 0
    hold_s: float = 0.0
    expected: int = 0
    received: int = 0
    missing: int = 0
    late_20ms: int = 0
    late_in_stalls: int = 0
    late_bins_10ms: int = 0
    bad_pct: float | None = None
    late_max_ms: float | None = None
    gap_p50_ms: float | None = None
    gap_p99_ms: float | None = None
    gap_max_ms: float | None = None
    media_cpu_s: float = 0.0
    cpu_s_per_100_streams_min: float | None = None
    media_rss_mib: int = 0
    receiver_cpu_pct: float = 0.0
    loadgen_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    probe_max_ms: float | None = None
    sent_by_media: int = 0
    received_total: int = 0
    drained: bool = False  # every session ended, so sent_by_media is complete
    socket_drops: int = 0
    backlog_drops: int = 0
    late_sends: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


def _line(proc: subprocess.Popen[str], word: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(word):
            return line[len(word) :].strip()
    raise RuntimeError(f"loadgen ended before {word}")


def run_stream_step(media: MediaProc, work: Path, n: int, hold: float, ramp: float) -> StreamStep:
    npz, me = work / f"rx-{n}-{time.time_ns()}.npz", [PY, "-m", "tests.bench.media_peers"]
    rx = subprocess.Popen([*me, "receiver", str(npz)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert rx.stdout is not None
    rtp_port = int(rx.stdout.readline())
    out, late = {"direction": "out"}, {"kind": "late_send"}
    sent0 = media.counter("media_rtp_packets_total", **out)
    late0 = media.counter("media_rtp_problems_total", **late)
    backlog0, step = softnet_drops(), StreamStep(n)
    gen = subprocess.Popen(
        [*me, "loadgen", "--media", media.sip, "--uri", media.uri, "--rtp-port", str(rtp_port),
         "--calls", str(n), "--ramp", str(ramp), "--hold", str(hold)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    ours = {os.getpid(), media.proc.pid, rx.pid, gen.pid}
    try:
        t_lo = int(_line(gen, "HOLD_START"))
        c0, probe = all_cpu(), SleepProbe()
        probe.start()
        t_hi = int(_line(gen, "HOLD_END"))
        c1, step.media_rss_mib = all_cpu(), proc_rss_kib(media.proc.pid) // 1024
        step.probe_max_ms = probe.result()
        done = json.loads(_line(gen, "DONE"))
        gen.wait(30)
        step.drained = _drain(media)
        step.sent_by_media = media.counter("media_rtp_packets_total", **out) - sent0
        step.late_sends = media.counter("media_rtp_problems_total", **late) - late0
    finally:
        stop_process(gen)  # type: ignore[arg-type]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(STOP, ("127.0.0.1", rtp_port))
        try:
            rx_out = rx.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            rx.kill()
            raise
    rx_stats = json.loads(rx_out.strip().splitlines()[-1])
    a = analyse(npz, (t_lo, t_hi), probe.stalls)
    npz.unlink()
    for k, v in a.items():
        if hasattr(step, k):
            setattr(step, k, v)
    cpu = {p: c1.get(p, 0.0) - c0.get(p, 0.0) for p in ours}
    step.hold_s = round((t_hi - t_lo) / 1e9, 2)
    step.established, step.failed_calls = done["established"], done["failed"]
    step.media_cpu_s = round(cpu[media.proc.pid], 2)
    step.cpu_s_per_100_streams_min = round(cpu[media.proc.pid] / (n / 100) / (step.hold_s / 60), 3)
    step.receiver_cpu_pct = round(100 * cpu[rx.pid] / step.hold_s, 1)
    step.loadgen_cpu_s = round(cpu[gen.pid], 2)
    # processes that exited during the hold are missed
    step.others_cpu_s = round(sum(v - c0.get(p, 0.0) for p, v in c1.items() if p not in ours), 2)
    step.socket_drops, step.backlog_drops = rx_stats["socket_drops"], softnet_drops() - backlog0
    bad = step.missing + step.late_20ms
    step.bad_pct = round(100 * bad / step.expected, 4) if step.expected else None
    all_up = step.established == n and step.failed_calls == 0
    step.held = all_up and step.expected > 0 and 1000 * bad <= step.expected
    step.detail = {**a, **done, "receiver": rx_stats}
    return step


def _drain(media: MediaProc) -> bool:
    """Wait until the media process has ended every session (its RTP counters are added when
    a session ends)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if media.metrics().total("media_sessions_active") == 0:
            return True
        time.sleep(0.2)
    return False


def run_streams(args: argparse.Namespace, work: Path) -> list[StreamStep]:
    media = start_media(work, args.rtp_ports, args.media_nice)
    log(f"media pid {media.proc.pid} on sip:{media.sip}, hand-off {media.uri}")
    steps: list[StreamStep] = []
    try:
        _stream_steps(media, work, args, [int(n) for n in args.streams.split(",")], steps)
        if args.rr_control:
            # The control: the same process as a real-time task, which the other processes
            # on the machine cannot delay. It tells the code's capacity from the machine's.
            try:
                os.sched_setscheduler(media.proc.pid, os.SCHED_RR, os.sched_param(10))
            except OSError as exc:
                log(f"no SCHED_RR control: {exc}")
                return steps
            _stream_steps(media, work, args, [500], steps, sched="rr")
    finally:
        stop_process(media.proc)
    return steps


def _stream_steps(
    media: MediaProc, work: Path, args: Any, plan: list[int], out: list[StreamStep], **kw: str
) -> None:
    """The planned steps, then `beyond` more at a time while the last one held (bounded)."""
    while plan:
        n = plan.pop(0)
        step = run_stream_step(media, work, n, args.hold, args.ramp)
        step.sched = kw.get("sched", step.sched)
        out.append(step)
        log(f"{n} streams ({step.sched}): {'held' if step.held else 'NOT held'} {summary(step)}")
        more = n + args.beyond
        if not plan and step.held and args.beyond and more <= args.max_streams:
            plan.append(more)
        time.sleep(2)


def summary(s: StreamStep) -> str:
    return (
        f"(calls {s.established}/{s.streams}, slots {s.expected}, missing {s.missing}, late "
        f"{s.late_20ms} ({s.late_in_stalls} in machine stalls, probe max {s.probe_max_ms} ms), "
        f"gap p99 {s.gap_p99_ms} max {s.gap_max_ms} ms, media {s.media_cpu_s} CPU-s = "
        f"{s.cpu_s_per_100_streams_min}/100 streams/min, RSS {s.media_rss_mib} MiB, rx "
        f"{s.receiver_cpu_pct}%, others {s.others_cpu_s} CPU-s, sent {s.sent_by_media} got "
        f"{s.received_total}, drops {s.socket_drops}+{s.backlog_drops})"
    )


# =========================================================================== through the switch
def switch_seed() -> str:
    day = "A" * 48  # every half-hour slot announces
    return "\n".join([
        f'realm = "{REALM}"', "[[gateways]]", 'id = "carrier"', 'host = "127.0.0.3"',
        "port = 5060", 'transport = "udp"', f'allowed_sources = ["{CARRIER_IP}"]',
        "[[tenants]]", 'id = "t1"', 'timezone = "Asia/Tokyo"', "identity_verified = true",
        "  [[tenants.devices]]", '  id = "dev0"', '  kind = "desk"',
        '  password = "dev-password-0"', f'  presented_number = "{NUMBER}"',
        "  [[tenants.numbers]]", f'  number = "{NUMBER}"', '  kind = "contract"',
        "  options = { voicemail = false, after_hours = true }",
        "  [tenants.numbers.after_hours]", "  enabled = true", '  announcement = "template-2"',
        *(f'  {d} = "{day}"' for d in ("weekday", "saturday", "sunday", "holiday")), "",
    ])  # fmt: skip


@dataclass
class CallStep:
    rate: int
    calls: int
    ok: bool
    successful: int
    failed: int
    seconds: float
    cpu_s: float
    cpu_ms_per_call: float | None
    flood_dropped: float
    rtp_sent: float
    late_sends: float
    note: str = ""


def _deltas(m0: Metrics, m1: Metrics) -> tuple[float, float, float]:
    def d(name: str, **labels: str) -> float:
        return m1.total(name, **labels) - m0.total(name, **labels)

    return (d("sip_flood_dropped_total"), d("media_rtp_packets_total", direction="out"),
            d("media_rtp_problems_total", kind="late_send"))  # fmt: skip


def run_switch(args: argparse.Namespace, work: Path) -> list[CallStep]:
    from media.prompts import default_library

    prompt_s = default_library().seconds("template-2")
    sw = SwitchProcess(work / "switch", switch_seed(), tls=False)
    sw.start(timeout=60)
    log(f"switch pid {sw.pid} on {sw.ip}:{sw.sip_port}; template-2 is {prompt_s:.1f} s")
    out: list[CallStep] = []
    try:
        for rate in [int(r) for r in args.rates.split(",")]:
            calls = int(rate * args.step_seconds)
            m0, cpu0, t0 = sw.metrics(), tree_cpu_seconds(sw.pid), time.monotonic()
            res = Sipp(
                "media/uac_listen.xml", work, remote=(sw.ip, sw.sip_port), local_ip=CARRIER_IP,
                calls=calls, rate=rate, limit=max(50, int(rate * (prompt_s + 5) * 2)),
                timeout_s=args.step_seconds + prompt_s + 25, service=NUMBER,
                keys={"caller": "0312345678"}, trace_msg=False, name=f"listen-{rate}",
            ).run(grace=5)  # fmt: skip
            elapsed, cpu = time.monotonic() - t0, tree_cpu_seconds(sw.pid) - cpu0
            ok = res.returncode == 0 and res.successful == calls and res.failed == 0
            step = CallStep(
                rate, calls, ok, res.successful, res.failed, round(elapsed, 1), round(cpu, 2),
                round(1000 * cpu / res.successful, 2) if res.successful else None,
                *_deltas(m0, sw.metrics()), "" if ok else res.errors[-400:],
            )  # fmt: skip
            out.append(step)
            log(f"switch {rate} calls/s: {'held' if ok else 'FAILED'} {asdict(step)}")
            if not ok:
                break
            time.sleep(3)
    finally:
        sw.stop()
    return out


# =========================================================================== report, main
STREAM_COLUMNS = {
    "streams": "N", "sched": "sched", "held": "held", "expected": "slots", "missing": "missing",
    "late_20ms": "late>20", "late_in_stalls": "in stalls", "bad_pct": "bad %",
    "gap_p50_ms": "gap p50", "gap_p99_ms": "gap p99", "gap_max_ms": "gap max",
    "cpu_s_per_100_streams_min": "CPU-s/100/min", "media_cpu_s": "media CPU-s",
    "media_rss_mib": "RSS MiB", "receiver_cpu_pct": "rx CPU%", "others_cpu_s": "others CPU-s",
    "probe_max_ms": "probe max", "sent_by_media": "sent", "received_total": "received",
    "socket_drops": "sock drops", "backlog_drops": "backlog drops",
}  # fmt: skip


def table(streams: list[StreamStep], calls: list[CallStep]) -> str:
    lines = ["Announcement streams from one `softswitch media` process (in the hold window):"]
    rows = [tuple(STREAM_COLUMNS.values())]
    rows += [tuple(fmt(getattr(s, c)) for c in STREAM_COLUMNS) for s in streams]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    held = {k: max([s.streams for s in streams if s.held and s.sched == k], default=None)
            for k in ("default", "rr")}  # fmt: skip
    lines.append(
        f"most streams held: {fmt(held['default'])}, as SCHED_RR {fmt(held['rr'])}. Times "
        "in ms. in stalls: late "
        "packets whose lateness overlaps a stall of the machine (probe max: the worst "
        "oversleep of a 5 ms sleep in another process during the hold)."
    )
    if calls:
        lines += ["", "Announce then hang up through `softswitch serve` (embedded media):"]
        lines.append(f"{'calls/s':>8} {'ok':>4} {'done':>6} {'failed':>6} {'CPU-ms/call':>12} "
                     f"{'flood drops':>11} {'RTP sent':>9} {'sent >20 ms late':>17}")  # fmt: skip
        for c in calls:
            pct = f"{100 * c.late_sends / c.rtp_sent:.2f} %" if c.rtp_sent else "n/a"
            lines.append(f"{c.rate:>8} {fmt(c.ok):>4} {c.successful:>6} {c.failed:>6} "
                         f"{fmt(c.cpu_ms_per_call):>12} {c.flood_dropped:>11g} "
                         f"{c.rtp_sent:>9g} {pct:>17}")  # fmt: skip
        ok = [c.rate for c in calls if c.ok]
        clean = [c.rate for c in calls if c.ok and 1000 * c.late_sends <= c.rtp_sent]
        lines.append(f"highest rate with 0 failed calls: {max(ok) if ok else 'none'} calls/s; "
                     f"and <= 0.1 % RTP sent late: {max(clean) if clean else 'none'}")  # fmt: skip
    return "\n".join(lines)


def fmt(v: object) -> str:
    return "n/a" if v is None else ("yes" if v is True else "no" if v is False else str(v))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="100,250,500,500", help="the planned stream steps")
    ap.add_argument("--beyond", type=int, default=250, help="then this many more while held")
    ap.add_argument("--max-streams", type=int, default=1000)  # ramp + hold < the 45 s prompt
    ap.add_argument("--no-rr-control", dest="rr_control", action="store_false")
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument("--ramp", type=float, default=100.0, help="calls/s (and BYEs/s)")
    ap.add_argument("--rtp-ports", default="30000-39999")
    ap.add_argument("--media-nice", type=int, default=0, help="nice value of the media process")
    ap.add_argument("--rates", default="5,10,20,40,80,120,160", help="switch steps, calls/s")
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--no-switch", action="store_true")
    ap.add_argument("--no-streams", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    args = ap.parse_args(argv)
    if not args.no_switch and shutil.which("sipp") is None:
        print("error: sipp not found (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
        return 2
    started, work = datetime.now(UTC), Path(tempfile.mkdtemp(prefix="softswitch-media-bench-"))
    log(f"work directory {work}")
    streams: list[StreamStep] = []
    calls: list[CallStep] = []
    try:
        streams = [] if args.no_streams else run_streams(args, work)
        calls = [] if args.no_switch else run_switch(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(streams, calls)
    print("\n" + text)
    path = Path(args.out) / f"media-bench-{started:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "started": started.isoformat(), "cpus": os.cpu_count(), "load_before": os.getloadavg(),
        "hold_s": args.hold, "ramp_per_s": args.ramp, "prompt_s": PROMPT_SECONDS,
        "streams": [asdict(s) for s in streams], "switch": [asdict(c) for c in calls],
        "table": text,
    }, indent=2))  # fmt: skip
    print(f"\nwritten {path}")
    return 0 if streams or calls else 1


if __name__ == "__main__":
    sys.exit(main())
