"""Recording methods compared at one concurrency (`python -m tests.bench.relay_bench
--recording --levels 100 --seconds 20`): what recording costs with each relay, and whether
the WAVs come out right.

- rtpengine, no recording;
- rtpengine + pcap (`record call: yes`), then `media.relay.pcap.convert_spool` on every call
  (its CPU measured in this process);
- rtpengine + live fork: `subscribe request` (from-tags caller and callee) and `subscribe
  answer` per call, rtpengine sending a copy of both directions to a recorder process
  (`live_recorder_main`: the same StereoRecorder and DirectorySink, one socket per
  direction), whose CPU is added;
- the embedded relay without and with recording.

For every recorded call the WAV is checked: caller tone (440 Hz) left, callee tone (1000 Hz)
right, and its duration is reported.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from media.relay.client import NgClient
from media.relay.pcap import convert_spool
from media.relay.recorder import StereoRecorder
from media.relay.sink import DirectorySink, RecordingMeta
from tests.bench.relay_bench import Step, run_step
from tests.integration.relay.harness import EmbeddedProcess, RtpengineProcess, dominant


# =========================================================================== live recorder
def live_recorder_main(calls: int, out: str) -> None:
    """Child process: 2 sockets per call (caller, callee), ports printed; records from "go"
    until "stop" on stdin, then prints its counters."""
    socks = []
    for _ in range(2 * calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    sys.stdin.readline()  # "go"
    sink = DirectorySink(out)
    start, wall = time.monotonic(), time.time()
    recorders = []
    for i in range(calls):
        meta = RecordingMeta(
            call_id=f"live-{i}", from_tag="a", started=wall, relay="rtpengine-fork"
        )
        recorders.append((StereoRecorder(sink.open(meta.call_id, meta), start=start), meta))
    packets = _record_until_stop(socks, [r for r, _ in recorders])
    now = time.monotonic()
    for rec, meta in recorders:
        duration = rec.finish(now)
        sink.close(rec.writer, meta.finished(ended=time.time(), duration=duration))
    print(json.dumps({"packets": packets}), flush=True)


def _record_until_stop(socks: list[socket.socket], recorders: list[StereoRecorder]) -> int:
    poller = select.epoll()
    index = {s.fileno(): i for i, s in enumerate(socks)}
    for fd in index:
        poller.register(fd, select.EPOLLIN)
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    packets, next_tick = 0, time.monotonic() + 0.5
    while True:
        for fd, _ in poller.poll(0.1):
            if fd == sys.stdin.fileno():
                return packets
            i = index[fd]
            try:
                data = socks[i].recv(4096)
            except BlockingIOError:
                continue
            packets += 1
            recorders[i // 2].packet(i % 2, data, time.monotonic())
        if (now := time.monotonic()) >= next_tick:
            for rec in recorders:
                rec.tick(now)
            next_tick = now + 0.5


def _answer_sdp(port_a: int, port_b: int) -> bytes:
    media = "".join(
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n"
        for port in (port_a, port_b)
    )
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}".encode()
    )


def _subscriber(calls: int, ports: list[int], tag: str):  # type: ignore[no-untyped-def]
    async def subscribe(client: NgClient) -> None:
        for i in range(calls):
            cid = f"bench-{tag}-{i}"
            reply = await client.subscribe_request(
                call_id=cid, from_tags=("a", "b"), to_tag=f"rec-{i}"
            )
            assert reply.get("sdp"), reply
            await client.subscribe_answer(
                call_id=cid, to_tag=f"rec-{i}", sdp=_answer_sdp(ports[2 * i], ports[2 * i + 1])
            )

    return subscribe


# =========================================================================== checks
def _check(folder: Path, sample: int = 20) -> tuple[int, int, list[float]]:
    """(right, checked, durations) over a sample of the WAVs in `folder`."""
    wavs = sorted(folder.rglob("*.wav"))[:sample]
    good, durations = 0, []
    for path in wavs:
        with wave.open(str(path)) as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        durations.append(len(frames) / 8000)
        left, right = frames[:, 0].tobytes(), frames[:, 1].tobytes()
        good += dominant(left) == 440.0 and dominant(right) == 1000.0
    return good, len(wavs), durations


def _row(
    name: str, step: Step, extra_cpu: float, check: tuple[int, int, list[float]] | None
) -> dict[str, object]:
    minutes = step.calls * step.seconds / 60
    row: dict[str, object] = {
        "method": name,
        "loss%": round(step.loss_pct, 3),
        "late": step.late,
        "relay s/call-min": round(step.relay_cpu / minutes, 4),
        "recorder s/call-min": round(extra_cpu / minutes, 4),
        "total s/call-min": round((step.relay_cpu + extra_cpu) / minutes, 4),
        "other cpu": round(step.other_cpu, 2),
    }
    if check is not None:
        good, checked, durations = check
        row["wav ok"] = f"{good}/{checked}"
        row["wav s"] = f"{min(durations):.2f}-{max(durations):.2f}" if durations else "-"
    return row


# =========================================================================== the comparison
def compare(calls: int, seconds: float, generators: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="relay-rec-"))
    rtpe = RtpengineProcess(work / "rtpengine", (38000, 41999))
    emb = EmbeddedProcess(work / "embedded", (34000, 37999))
    rows = []
    try:
        for relay in (rtpe, emb):
            relay.start()
        rows.append(
            _row(
                "rtpengine, none",
                run_step(rtpe, calls, seconds, generators, "r0", record=False),
                0.0,
                None,
            )
        )
        rows.append(_pcap(rtpe, calls, seconds, generators))
        rows.append(_live(rtpe, calls, seconds, generators, work / "live"))
        rows.append(
            _row(
                "embedded, none",
                run_step(emb, calls, seconds, generators, "e0", record=False),
                0.0,
                None,
            )
        )
        step = run_step(emb, calls, seconds, generators, "e1", record=True)
        time.sleep(0.5)
        rows.append(_row("embedded, WAV", step, 0.0, _check(emb.out)))
    finally:
        for relay in (rtpe, emb):
            relay.stop()
        shutil.rmtree(work, ignore_errors=True)
    _table(rows)
    return 0


def _pcap(
    relay: RtpengineProcess, calls: int, seconds: float, generators: int
) -> dict[str, object]:
    step = run_step(relay, calls, seconds, generators, "r1", record=True)
    time.sleep(0.5)
    cpu0 = time.process_time()
    result = convert_spool(relay.spool, DirectorySink(relay.out))
    spent = time.process_time() - cpu0
    assert result.converted == calls - step.failed_setups, result
    row = _row("rtpengine, pcap+convert", step, spent, _check(relay.out))
    shutil.rmtree(relay.out, ignore_errors=True)
    relay.out.mkdir()
    return row


def _live(
    relay: RtpengineProcess, calls: int, seconds: float, generators: int, out: Path
) -> dict[str, object]:
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.bench.relay_recording import live_recorder_main as m;"
            " m(int(sys.argv[1]), sys.argv[2])",
            str(calls),
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recorder.stdin is not None and recorder.stdout is not None
    ports = json.loads(recorder.stdout.readline())["ports"]
    recorder.stdin.write("go\n")
    recorder.stdin.flush()
    try:
        step = run_step(
            relay, calls, seconds, generators, "r2", record=False,
            after_setup=_subscriber(calls, ports, "r2"), helper_pid=recorder.pid,
        )  # fmt: skip
        recorder.stdin.write("stop\n")
        recorder.stdin.flush()
        recorder.stdout.readline()
        recorder.wait(60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(5)
    return _row("rtpengine, live fork", step, step.helper_cpu, _check(out))


def _table(rows: list[dict[str, object]]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    widths = {k: max(len(k), *(len(str(r.get(k, "-"))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(str(row.get(k, "-")).ljust(widths[k]) for k in keys))
