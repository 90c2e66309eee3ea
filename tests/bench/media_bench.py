"""`make bench` (media): concurrent announcement streams from one `softswitch media` process,
and "announce then hang up" calls/s through the switch with its embedded media service.

    python -m tests.bench.media_bench                      # streams 100, 250, 500 x2, ...; switch
    python -m tests.bench.media_bench --streams 500 --no-switch --hold 30

A benchmark, not a test: it prints a table and writes bench-results/media-bench-<UTC>.json.

Streams (loopback, three processes besides the media one, each bounded in count and time):
- `softswitch media` with its own data directory and a seed-less SQLite store holding one
  tenant and a 45 s uploaded prompt, made through the provisioning services.
- `loadgen` (this module): N calls, ramped at --ramp calls/s, each an INVITE whose Request-URI
  is the signed hand-off `announce;prompt=prompt:<id>;then=hangup` (switch.handoff, signed as
  the proxy signs it) with SDP offering PCMU to ONE receiving port; 200 -> ACK; when every call
  is up it holds --hold seconds, then BYEs them all at the ramp rate. It prints HOLD_START /
  HOLD_END / DONE lines the orchestrator samples CPU on.
- `receiver` (this module): one UDP socket with a large SO_RCVBUF and kernel receive
  timestamps (SO_TIMESTAMPNS, so a receiver that is itself descheduled does not make packets
  look late), recording (ssrc, seq, timestamp, source port, arrival) per packet; streams are
  told apart by SSRC. Kernel drops on that socket (/proc/net/udp) and on the loopback backlog
  (/proc/net/softnet_stat) are reported, and what it got is compared with what the media
  process says it sent (`media_rtp_packets_total{direction="out"}`).
Per step, within the hold window: every 20 ms slot of each stream (its RTP timestamp / 160, so
frames the sender skipped count as missing) is scheduled at anchor + slot x 20 ms, the anchor
being the stream's earliest (arrival - slot x 20 ms), i.e. its first arrival unless that one
was itself late; a slot is missing if nothing arrived for it and late if it arrived more than
20 ms after its schedule (which also catches drift). A step holds when every call was set up,
and missing + late <= 0.1 % of the expected packets. CPU: utime+stime from /proc/PID/stat over
the hold, for the media process (per 100 streams per minute), the receiver, and every other
process on the machine (so a reader can discount a disturbed step).

Switch: `softswitch serve` (embedded media) with one number announcing template-2 in every
after-hours slot; SIPp tests/sipp/media/uac_listen.xml from the carrier address at stepped
rates until a step has a failed call; CPU-ms of the switch process per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

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
    percentile,
    proc_cpu_seconds,
    proc_rss_kib,
    stop_process,
    tail,
)

PY = os.environ.get("SOFTSWITCH_PYTHON", str(REPO / ".venv" / "bin" / "python"))
SECRET = "media-bench-secret-" + "0123456789abcdef"
NUMBER, E164, CALLER = "0355500100", "+81355500100", "+81312345678"
PROMPT_SECONDS = 45.0
PTIME = 0.020
SO_TIMESTAMPNS, SO_RCVBUFFORCE = 35, 33  # Linux values; the socket module lacks the names
STOP = b"STOP"  # shorter than any RTP packet


# =========================================================================== receiver process
def receiver_main(out: Path) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)  # root: past rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(port, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
    ssrcs, seqs, stamps = array("I"), array("H"), array("I")
    arrivals, ports = array("q"), array("H")
    header, tstamp = struct.Struct("!2xHII").unpack_from, struct.Struct("=qq").unpack
    recvmsg, anc = sock.recvmsg, socket.CMSG_SPACE(16)
    while True:  # the tight loop: one syscall and five appends per packet
        data, ancdata, _, addr = recvmsg(2048, anc)
        if len(data) < 12:
            if data == STOP:
                break
            continue
        seq, ts, ssrc = header(data)
        sec, nsec = tstamp(ancdata[0][2])
        ssrcs.append(ssrc)
        seqs.append(seq)
        stamps.append(ts)
        ports.append(addr[1])
        arrivals.append(sec * 1_000_000_000 + nsec)
    drops = udp_drops(port)
    sock.close()
    assert ssrcs.itemsize == 4, "array('I') is 32 bits on every Linux ABI we run on"
    np.savez(out, ssrc=np.frombuffer(ssrcs, np.uint32), seq=np.frombuffer(seqs, np.uint16),
             ts=np.frombuffer(stamps, np.uint32), arrival=np.frombuffer(arrivals, np.int64),
             sport=np.frombuffer(ports, np.uint16))  # fmt: skip
    print(json.dumps({"packets": len(seqs), "socket_drops": drops}), flush=True)
    return 0


def udp_drops(port: int) -> int:
    """The kernel's drop counter of our socket (last column of /proc/net/udp)."""
    key = f":{port:04X} "
    with open("/proc/net/udp") as f:
        for line in f:
            if key in line.split("00000000:0000")[0]:
                return int(line.split()[-1])
    return -1


def softnet_drops() -> int:
    """Packets dropped because a CPU's input backlog was full (loopback goes through it)."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


# =========================================================================== load generator
@dataclass(slots=True)
class Leg:
    call_id: str
    tag: str
    invite: bytes
    started: float
    to_tag: str = ""
    contact: str = ""
    state: str = "calling"  # calling, up, failed, bye, done
    setup_ms: float = 0.0
    timer: asyncio.TimerHandle | None = None
    by_media: bool = False


def _headers(text: str) -> tuple[str, dict[str, str]]:
    lines = text.split("\r\n")
    out: dict[str, str] = {}
    compact = {"i": "call-id", "t": "to", "f": "from", "m": "contact", "v": "via"}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = compact.get(name.strip().lower(), name.strip().lower())
        out.setdefault(key, value.strip())
    return lines[0], out


class LoadGen(asyncio.DatagramProtocol):
    def __init__(self, media: tuple[str, int], uri: str, rtp_port: int) -> None:
        self.media, self.uri, self.rtp_port = media, uri, rtp_port
        self.loop = asyncio.get_running_loop()
        self.legs: dict[str, Leg] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def _via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"

    def _send(self, text: str, body: str = "") -> None:
        msg = (text + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()
        assert self.transport is not None
        self.transport.sendto(msg, self.media)

    def invite(self, n: int) -> None:
        call_id, tag = f"mb-{n}-{secrets.token_hex(6)}", secrets.token_hex(4)
        sdp = (
            f"v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        )
        text = (
            f"INVITE {self.uri} SIP/2.0\r\nVia: {self._via()}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{CALLER}@127.0.0.1>;tag={tag}\r\nTo: <sip:{E164}@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:load@127.0.0.1:{self.port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        leg = self.legs[call_id] = Leg(call_id, tag, text.encode(), self.loop.time())
        self._retransmit(leg, 0.5)

    def _retransmit(self, leg: Leg, interval: float) -> None:
        """RFC 3261 Timer A/E doubling (T2 cap); gives up after 32 s (Timer B)."""
        if leg.state not in ("calling", "bye"):
            return
        if self.loop.time() - leg.started > 32:
            leg.state = "failed" if leg.state == "calling" else "done"
            return
        assert self.transport is not None
        self.transport.sendto(leg.invite, self.media)
        leg.timer = self.loop.call_later(interval, self._retransmit, leg, min(2 * interval, 4.0))

    def _in_dialog(self, leg: Leg, method: str, cseq: int) -> str:
        return (
            f"{method} {leg.contact} SIP/2.0\r\nVia: {self._via()}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{CALLER}@127.0.0.1>;tag={leg.tag}\r\n"
            f"To: <sip:{E164}@127.0.0.1>;tag={leg.to_tag}\r\n"
            f"Call-ID: {leg.call_id}\r\nCSeq: {cseq} {method}\r\n"
        )

    def bye(self, leg: Leg) -> None:
        if leg.state != "up":
            return
        if leg.timer is not None:
            leg.timer.cancel()
        leg.state, leg.started = "bye", self.loop.time()
        leg.invite = (self._in_dialog(leg, "BYE", 2) + "Content-Length: 0\r\n\r\n").encode()
        self._retransmit(leg, 0.5)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head, _, _ = data.decode(errors="replace").partition("\r\n\r\n")
        first, h = _headers(head)
        leg = self.legs.get(h.get("call-id", ""))
        if leg is None:
            return
        if not first.startswith("SIP/2.0 "):
            self._request(leg, first, h)
            return
        status, method = int(first.split()[1]), h.get("cseq", "").split()[-1]
        if method == "INVITE":
            self._invite_response(leg, status, h)
        elif method == "BYE" and status >= 200 and leg.state == "bye":
            leg.state = "done"
            if leg.timer is not None:
                leg.timer.cancel()

    def _invite_response(self, leg: Leg, status: int, h: dict[str, str]) -> None:
        if status < 200:
            if leg.timer is not None and leg.state == "calling":
                leg.timer.cancel()  # Timer A stops on a provisional response
            return
        if status >= 300:
            leg.state = "failed"
            return
        if leg.state == "calling":
            leg.to_tag = h.get("to", "").partition(";tag=")[2].split(";")[0]
            leg.contact = h.get("contact", "").strip("<>").split(">")[0]
            leg.state, leg.setup_ms = "up", (self.loop.time() - leg.started) * 1000
            if leg.timer is not None:
                leg.timer.cancel()
        self._send(self._in_dialog(leg, "ACK", 1))  # also for a retransmitted 200

    def _request(self, leg: Leg, first: str, h: dict[str, str]) -> None:
        if first.startswith("BYE "):  # the prompt ended before our hold did
            leg.by_media, leg.state = True, "done"
        reply = "".join(
            f"{k}: {h[k]}\r\n" for k in ("via", "from", "to", "call-id", "cseq") if k in h
        )
        self._send("SIP/2.0 200 OK\r\n" + reply)


async def loadgen_main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    host, port = args.media.rsplit(":", 1)
    gen = LoadGen((host, int(port)), args.uri, args.rtp_port)
    await loop.create_datagram_endpoint(lambda: gen, local_addr=("127.0.0.1", 0))
    t0 = loop.time()
    for n in range(args.calls):
        await asyncio.sleep(max(0.0, t0 + n / args.ramp - loop.time()))
        gen.invite(n)
    deadline = loop.time() + 35
    while any(leg.state == "calling" for leg in gen.legs.values()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    print("HOLD_START", time.time_ns(), flush=True)
    await asyncio.sleep(args.hold)
    print("HOLD_END", time.time_ns(), flush=True)
    up = [leg for leg in gen.legs.values() if leg.state == "up"]
    t1 = loop.time()
    for i, leg in enumerate(up):
        await asyncio.sleep(max(0.0, t1 + i / args.ramp - loop.time()))
        gen.bye(leg)
    deadline = loop.time() + 10
    while any(leg.state == "bye" for leg in gen.legs.values()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    legs = list(gen.legs.values())
    setup = [leg.setup_ms for leg in legs if leg.setup_ms]
    print("DONE", json.dumps({
        "established": len(setup), "failed": sum(leg.state == "failed" for leg in legs),
        "ended_by_media": sum(leg.by_media for leg in legs),
        "bye_unanswered": sum(leg.state == "bye" for leg in legs),
        "setup_p50_ms": round(percentile(setup, 50), 2) if setup else None,
        "setup_p99_ms": round(percentile(setup, 99), 2) if setup else None,
    }), flush=True)  # fmt: skip
    return 0


# =========================================================================== analysis
def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an array sorted by `key`: the start mask and each element's group index."""
    start = np.r_[True, key[1:] != key[:-1]]
    return start, np.cumsum(start) - 1


def _unwrap(values: np.ndarray, start: np.ndarray, gid: np.ndarray, mod: int) -> np.ndarray:
    """Per group, each value relative to the group's first one, across wrap-arounds."""
    step = np.zeros(len(values), np.int64)
    step[1:] = (np.diff(values.astype(np.int64)) + mod // 2) % mod - mod // 2
    step[start] = 0
    cs = np.cumsum(step)
    return cs - cs[start][gid]


def analyse(npz: Path, hold: tuple[int, int]) -> dict[str, Any]:
    d = np.load(npz)
    lo, hi = 0, hold[1] - hold[0]  # ns from the hold's start (float64 keeps ns exact there)
    ssrc, arr = d["ssrc"].astype(np.int64), d["arrival"] - hold[0]
    if not len(arr):
        return {"streams": 0, "received_total": 0}
    order = np.lexsort((arr, ssrc))
    ssrc, arr, seq, ts = ssrc[order], arr[order], d["seq"][order], d["ts"][order]
    start, gid = _groups(ssrc)
    first = np.flatnonzero(start)
    rel_seq = _unwrap(seq, start, gid, 1 << 16)
    seq_span = np.maximum.reduceat(rel_seq, first) - np.minimum.reduceat(rel_seq, first) + 1
    unique_seq = len(np.unique(gid * (1 << 32) + rel_seq))
    slot = _unwrap(ts, start, gid, 1 << 32) // 160  # 20 ms of PCMU per slot
    step_ns = int(PTIME * 1e9)
    anchor = np.minimum.reduceat(arr - slot * step_ns, first)
    late_ns = arr - (anchor[gid] + slot * step_ns)
    in_hold = (arr >= lo) & (arr < hi)
    first_slot = np.maximum(np.ceil((lo - anchor) / step_ns), np.minimum.reduceat(slot, first))
    last_slot = np.minimum(np.floor((hi - 1 - anchor) / step_ns), np.maximum.reduceat(slot, first))
    expected = int(np.clip(last_slot - first_slot + 1, 0, None).sum())
    sched = anchor[gid] + slot * step_ns
    mine = (sched >= lo) & (sched < hi)
    uniq, idx = np.unique(gid[mine] * (1 << 40) + slot[mine], return_index=True)
    received = len(uniq)
    is_late = late_ns[mine][idx] > step_ns
    late = int(is_late.sum())
    # stalls of the sender show as many streams late at the same moment: late packets per
    # 10 ms of arrival time
    bins = np.unique(arr[mine][idx][is_late] // 10_000_000, return_counts=True)[1]
    same = np.r_[False, ~start[1:]] & in_hold & np.r_[False, in_hold[:-1]]
    gaps = (np.diff(arr, prepend=arr[0])[same]) / 1e6
    streams_hold = len(np.unique(gid[in_hold]))
    ports = len(np.unique(gid * (1 << 16) + d["sport"][order]))
    return {
        "streams": len(first), "streams_in_hold": streams_hold,
        "ssrc_with_several_ports": int(ports - len(first)),
        "received_total": len(arr),
        "seq_lost_total": int(seq_span.sum() - unique_seq),
        "duplicates_total": int(len(arr) - unique_seq),
        "expected": expected, "received": received, "missing": max(0, expected - received),
        "late_20ms": late, "late_bins_10ms": len(bins),
        "late_in_worst_bin": int(bins.max()) if len(bins) else 0,
        "late_max_ms": round(float(late_ns[mine].max()) / 1e6, 2) if mine.any() else None,
        "gap_p50_ms": _q(gaps, 50), "gap_p99_ms": _q(gaps, 99), "gap_max_ms": _q(gaps, 100),
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


def others_cpu(before: dict[int, float], after: dict[int, float], ours: set[int]) -> float:
    """CPU used by other processes between two snapshots (exited processes are missed)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items() if p not in ours)


class SleepProbe(threading.Thread):
    """How late a plain sleeping thread wakes (5 ms sleeps): what the machine's scheduler
    did to everyone during a step, for telling a disturbed step from a slow sender."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            time.sleep(0.005)
            self.late.append((time.monotonic() - t - 0.005) * 1000)

    def result(self) -> tuple[float | None, float | None]:
        self.stop.set()
        self.join()
        return _q(np.array(self.late), 99), _q(np.array(self.late), 100)


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
        tenant = await services.tenants.create_tenant(op, TenantCreate(
            name="media bench", contract_number=NUMBER, identity_verified=True,
            basic_device=DeviceCreate(
                kind=DeviceKind.DESK, username="mb1", password="media-bench-pw-1"
            ),
        ))  # fmt: skip
        t = np.arange(int(PROMPT_SECONDS * 8000)) / 8000
        pcm = (8000 * np.sin(2 * np.pi * (440 + 40 * np.sin(t)) * t)).astype("<i2").tobytes()
        info = await services.prompts.create_prompt(
            op, tenant.id, name="bench 45 s", audio=wav_bytes(pcm)
        )
        return tenant.id, info.id
    finally:
        await store.close()


@dataclass
class MediaProc:
    proc: subprocess.Popen[bytes]
    sip: tuple[str, int]
    http: int
    uri: str  # the signed hand-off for the bench prompt

    def metrics(self) -> Metrics:
        url = f"http://127.0.0.1:{self.http}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return Metrics(parse_metrics(r.read().decode()))


def start_media(work: Path, ports: str, nice: int = 0) -> MediaProc:
    from switch.handoff import HandOff, Service, Then
    from switch.proxy.diversion import MediaService

    data = work / "media-data"
    data.mkdir(parents=True)
    url = f"sqlite:///{data / 'media.db'}"
    tenant, prompt = asyncio.run(make_store(url))
    cfg = work / "media.toml"
    cfg.write_text(f'[media]\nsecret = "{SECRET}"\nrtp_ports = "{ports}"\n')
    sip_port = free_port()
    with open(work / "media.stdout", "wb") as out, open(work / "media.stderr", "wb") as err:
        proc = subprocess.Popen(
            [PY, "-m", "switch", "media", "--listen", f"127.0.0.1:{sip_port}", "--database",
             url, "--config", str(cfg), "--data", str(data), "--http", "127.0.0.1:0"],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, cwd=work,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )  # fmt: skip
    http = _wait_for(work / "media.stdout", "HTTP listening on http://127.0.0.1:", proc)
    handoff = HandOff(service=Service.ANNOUNCE, tenant=tenant, target=E164,
                      prompt=f"prompt:{prompt}", then=Then.HANGUP, caller=CALLER)  # fmt: skip
    service = MediaService.parse(f"sip:media@127.0.0.1:{sip_port}", SECRET.encode())
    return MediaProc(proc, ("127.0.0.1", sip_port), http, service.uri_for(handoff))


def _wait_for(path: Path, marker: str, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        text = path.read_text(errors="replace")
        if marker in text:
            return int(text.split(marker, 1)[1].split()[0].rstrip(")/"))
        time.sleep(0.1)
    raise RuntimeError(f"media did not start:\n{tail(path)}\n{tail(path.with_suffix('.stderr'))}")


# =========================================================================== one stream step
@dataclass
class StreamStep:
    streams: int
    held: bool = False
    established: int = 0
    failed_calls: int = 0
    hold_s: float = 0.0
    expected: int = 0
    received: int = 0
    missing: int = 0
    late_20ms: int = 0
    bad_pct: float | None = None
    late_max_ms: float | None = None
    gap_p50_ms: float | None = None
    gap_p99_ms: float | None = None
    gap_max_ms: float | None = None
    media_cpu_s: float = 0.0
    cpu_s_per_100_streams_min: float | None = None
    receiver_cpu_pct: float = 0.0
    loadgen_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    sent_by_media: int = 0
    received_total: int = 0
    socket_drops: int = 0
    backlog_drops: int = 0
    late_sends: int = 0
    late_bins_10ms: int = 0
    media_rss_mib: int = 0
    probe_p99_ms: float | None = None
    probe_max_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _line(proc: subprocess.Popen[str], word: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(word):
            return line[len(word) :].strip()
    raise RuntimeError(f"loadgen ended before {word}")


def run_stream_step(media: MediaProc, work: Path, n: int, hold: float, ramp: float) -> StreamStep:
    npz = work / f"rx-{n}-{time.time_ns()}.npz"
    me = [PY, "-m", "tests.bench.media_bench"]
    rx = subprocess.Popen([*me, "receiver", str(npz)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert rx.stdout is not None
    rtp_port = int(rx.stdout.readline().split()[0])
    m0, backlog0 = media.metrics(), softnet_drops()
    gen = subprocess.Popen(
        [*me, "loadgen", "--media", "{}:{}".format(*media.sip), "--uri", media.uri,
         "--rtp-port", str(rtp_port), "--calls", str(n), "--ramp", str(ramp), "--hold", str(hold)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    ours = {os.getpid(), media.proc.pid, rx.pid, gen.pid}
    step = StreamStep(n)
    try:
        t_lo = int(_line(gen, "HOLD_START"))
        c0, probe = all_cpu(), SleepProbe()
        probe.start()
        t_hi = int(_line(gen, "HOLD_END"))
        c1, step.media_rss_mib = all_cpu(), proc_rss_kib(media.proc.pid) // 1024
        step.probe_p99_ms, step.probe_max_ms = probe.result()
        done = json.loads(_line(gen, "DONE"))
        gen.wait(30)
        _drain(media)
        m1 = media.metrics()
    finally:
        stop_process(gen)  # type: ignore[arg-type]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(STOP, ("127.0.0.1", rtp_port))
        try:
            rx_out, _ = rx.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            rx.kill()
            raise
    rx_stats = json.loads(rx_out.strip().splitlines()[-1])
    a = analyse(npz, (t_lo, t_hi))
    npz.unlink()
    step.hold_s = round((t_hi - t_lo) / 1e9, 2)
    step.established, step.failed_calls = done["established"], done["failed"]
    for k in ("expected", "received", "missing", "late_20ms", "late_max_ms", "gap_p50_ms",
              "gap_p99_ms", "gap_max_ms", "received_total", "late_bins_10ms"):  # fmt: skip
        setattr(step, k, a.get(k, 0))
    cpu = {p: c1.get(p, 0.0) - c0.get(p, 0.0) for p in ours}
    step.media_cpu_s = round(cpu[media.proc.pid], 2)
    step.cpu_s_per_100_streams_min = round(cpu[media.proc.pid] / (n / 100) / (step.hold_s / 60), 3)
    step.receiver_cpu_pct = round(100 * cpu[rx.pid] / step.hold_s, 1)
    step.loadgen_cpu_s = round(cpu[gen.pid], 2)
    step.others_cpu_s = round(others_cpu(c0, c1, ours), 2)
    out = ("media_rtp_packets_total", {"direction": "out"})
    step.sent_by_media = int(m1.get_value(out[0], **out[1]) - m0.get_value(out[0], **out[1]))
    late = ("media_rtp_problems_total", {"kind": "late_send"})
    step.late_sends = int(m1.get_value(late[0], **late[1]) - m0.get_value(late[0], **late[1]))
    step.socket_drops, step.backlog_drops = rx_stats["socket_drops"], softnet_drops() - backlog0
    bad = step.missing + step.late_20ms
    step.bad_pct = round(100 * bad / step.expected, 4) if step.expected else None
    step.held = (
        step.established == n
        and step.failed_calls == 0
        and step.expected > 0
        and bad <= step.expected / 1000
    )
    step.detail = {**a, **done, "receiver": rx_stats}
    return step


def _drain(media: MediaProc) -> None:
    """Wait until the media process has ended every session (its RTP counters are added when
    a session ends)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if media.metrics().total("media_sessions_active") == 0:
            return
        time.sleep(0.2)


def run_streams(args: argparse.Namespace, work: Path) -> list[StreamStep]:
    media = start_media(work, args.rtp_ports, args.media_nice)
    log(f"media pid {media.proc.pid} on sip:{media.sip[0]}:{media.sip[1]}, hand-off {media.uri}")
    steps: list[StreamStep] = []
    try:
        plan = [int(s) for s in args.streams.split(",")]
        while plan:
            n = plan.pop(0)
            step = run_stream_step(media, work, n, args.hold, args.ramp)
            steps.append(step)
            log(f"{n} streams: {'held' if step.held else 'NOT held'} {summary(step)}")
            more = n + args.beyond
            if not plan and step.held and args.beyond and more <= args.max_streams:
                plan.append(more)  # past the planned steps: on while it holds (bounded)
            time.sleep(2)
    finally:
        stop_process(media.proc)  # type: ignore[arg-type]
    return steps


def summary(s: StreamStep) -> str:
    return (
        f"(calls {s.established}/{s.streams}, expected {s.expected}, missing {s.missing}, "
        f"late {s.late_20ms} in {s.late_bins_10ms} x 10 ms, probe max {s.probe_max_ms} ms, "
        f"gap p99 {s.gap_p99_ms} ms max {s.gap_max_ms} ms, media "
        f"{s.media_cpu_s} CPU-s = {s.cpu_s_per_100_streams_min}/100 streams/min, rx "
        f"{s.receiver_cpu_pct}%, others {s.others_cpu_s} CPU-s, sent {s.sent_by_media} "
        f"got {s.received_total}, drops {s.socket_drops}+{s.backlog_drops})"
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
    late_sends: float
    note: str = ""


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
            m1 = sw.metrics()
            ok = res.returncode == 0 and res.successful == calls and res.failed == 0
            step = CallStep(
                rate, calls, ok, res.successful, res.failed, round(elapsed, 1), round(cpu, 2),
                round(1000 * cpu / res.successful, 2) if res.successful else None,
                m1.total("sip_flood_dropped_total") - m0.total("sip_flood_dropped_total"),
                m1.get_value("media_rtp_problems_total", kind="late_send")
                - m0.get_value("media_rtp_problems_total", kind="late_send"),
                "" if ok else res.errors[:400],
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
def table(streams: list[StreamStep], calls: list[CallStep]) -> str:
    cols = ("streams", "held", "expected", "missing", "late_20ms", "late_bins_10ms", "bad_pct",
            "gap_p50_ms", "gap_p99_ms", "gap_max_ms", "cpu_s_per_100_streams_min",
            "media_cpu_s", "media_rss_mib", "receiver_cpu_pct", "others_cpu_s", "probe_max_ms",
            "sent_by_media",
            "received_total", "socket_drops", "backlog_drops")  # fmt: skip
    heads = ("N", "held", "expected", "missing", "late>20", "late@", "bad %", "gap p50",
             "gap p99", "gap max", "CPU-s/100/min", "media CPU-s", "RSS MiB", "rx CPU%",
             "others CPU-s", "probe max", "sent", "received", "sock drop",
             "backlog drop")  # fmt: skip
    lines = ["Announcement streams from one `softswitch media` process (hold window):"]
    rows = [heads] + [tuple(fmt(getattr(s, c)) for c in cols) for s in streams]
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    held = [s.streams for s in streams if s.held]
    lines.append(f"most streams held: {max(held) if held else 'none'}. Times in ms; late@: "
                 "10 ms moments with late packets; probe max: the worst oversleep of a 5 ms "
                 "sleep in another process during the hold (the machine's own stalls)")  # fmt: skip
    if calls:
        lines += ["", "Announce-then-hang-up through `softswitch serve` (embedded media):"]
        lines.append(f"{'calls/s':>8} {'ok':>4} {'done':>6} {'failed':>6} {'CPU-ms/call':>12} "
                     f"{'flood drops':>11} {'late sends':>10}")  # fmt: skip
        for c in calls:
            lines.append(f"{c.rate:>8} {fmt(c.ok):>4} {c.successful:>6} {c.failed:>6} "
                         f"{fmt(c.cpu_ms_per_call):>12} {c.flood_dropped:>11g} "
                         f"{c.late_sends:>10g}")  # fmt: skip
        ok = [c.rate for c in calls if c.ok]
        lines.append(f"highest rate with 0 failed calls: {max(ok) if ok else 'none'} calls/s")
    return "\n".join(lines)


def fmt(v: object) -> str:
    return "n/a" if v is None else ("yes" if v is True else "no" if v is False else str(v))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["receiver"]:
        return receiver_main(Path(argv[1]))
    if argv[:1] == ["loadgen"]:
        lp = argparse.ArgumentParser()
        for name in ("--media", "--uri"):
            lp.add_argument(name, required=True)
        for name in ("--rtp-port", "--calls"):
            lp.add_argument(name, type=int, required=True)
        lp.add_argument("--ramp", type=float, default=100.0)
        lp.add_argument("--hold", type=float, default=30.0)
        return asyncio.run(loadgen_main(lp.parse_args(argv[1:])))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="100,250,500,500", help="the stream steps")
    ap.add_argument("--beyond", type=int, default=250, help="then this many more while held")
    ap.add_argument("--max-streams", type=int, default=1250)  # ramp + hold < the 45 s prompt
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument("--ramp", type=float, default=100.0, help="calls/s (and BYEs/s)")
    ap.add_argument("--rtp-ports", default="30000-39999")
    ap.add_argument("--media-nice", type=int, default=0, help="nice value of the media process")
    ap.add_argument("--rates", default="5,10,20,40,80", help="switch steps, calls/s")
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--no-switch", action="store_true")
    ap.add_argument("--no-streams", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench-results"))
    args = ap.parse_args(argv)
    if not args.no_switch and shutil.which("sipp") is None:
        print("error: sipp not found (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="softswitch-media-bench-"))
    log(f"work directory {work}")
    streams: list[StreamStep] = []
    calls: list[CallStep] = []
    try:
        if not args.no_streams:
            streams = run_streams(args, work)
        if not args.no_switch:
            calls = run_switch(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(streams, calls)
    print("\n" + text)
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"media-bench-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({
        "started": started.isoformat(), "host": {"cpus": os.cpu_count(),
        "load_before": os.getloadavg()}, "hold_s": args.hold, "ramp_per_s": args.ramp,
        "prompt_s": PROMPT_SECONDS, "streams": [asdict(s) for s in streams],
        "switch_steps": [asdict(c) for c in calls], "table": text,
    }, indent=2))  # fmt: skip
    print(f"\nwritten {path}")
    return 0 if streams or calls else 1


if __name__ == "__main__":
    sys.exit(main())
