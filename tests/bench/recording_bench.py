"""Where the switch runs its embedded relay: as a child process (`[media] relay = "embedded"`)
or in its own event loop (`"inprocess"`). A benchmark, not a test.

    python -m tests.bench.recording_bench                   # 50 and 100 calls, 15 s each
    python -m tests.bench.recording_bench --levels 100 --seconds 20

For each mode, the real switch (`softswitch serve`) with a recording number; recorded calls
are set up at its relay over ng (the relay bench's paced generators: two 20 ms G.711 streams
per call, relay/one-way delay from kernel timestamps), while a prober sends the switch an
OPTIONS every 20 ms (answered by the proxy itself) and times the answers. Per step:
RTP loss, packets later than 20 ms, p99 one-way delay through the relay; the relay's and
the switch's CPU; the switch's SIP answer time p50/p99/max under that load.
"""

from __future__ import annotations

import argparse
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import (
    CARRIER_IP,
    REALM,
    SwitchProcess,
    percentile,
    proc_cpu_seconds,
)

from .relay_bench import Step, run_step


@dataclass
class _Relay:
    """What `relay_bench.run_step` needs of a relay."""

    kind: str
    ng: tuple[str, int]
    pid: int
    out: Path


@dataclass
class Prober:
    """OPTIONS to the switch every `interval` seconds from its own socket; RTTs in ms."""

    target: tuple[str, int]
    interval: float = 0.02
    rtts: list[float] = field(default_factory=list)
    lost: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        n = 0
        while not self._stop.is_set():
            n += 1
            msg = (
                f"OPTIONS sip:{self.target[0]}:{self.target[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe{n};rport\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:{self.target[0]}>\r\n"
                f"Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            sock.sendto(msg, self.target)
            try:
                while f"probe-{n}".encode() not in sock.recv(65535):
                    pass
                self.rtts.append((time.perf_counter() - t0) * 1000)
            except TimeoutError:
                self.lost += 1
            time.sleep(max(0.0, self.interval - (time.perf_counter() - t0)))
        sock.close()

    def stop(self) -> None:
        self._stop.set()


def seed() -> str:
    return "\n".join([
        f'realm = "{REALM}"',
        "[[gateways]]", 'id = "carrier"', 'host = "127.0.0.3"', "port = 5060",
        'transport = "udp"', f'allowed_sources = ["{CARRIER_IP}"]',
        "[[tenants]]", 'id = "t1"', 'timezone = "Asia/Tokyo"', "identity_verified = true",
        "  [[tenants.devices]]", '  id = "d1"', '  kind = "desk"',
        '  password = "d1-password"', '  presented_number = "0355500100"',
        "  [[tenants.numbers]]", '  number = "0355500100"', '  kind = "contract"',
        "  options = { recording = true }",
    ]) + "\n"  # fmt: skip


def _relay_of(sw: SwitchProcess, mode: str) -> _Relay:
    pattern = (
        r"relay process (\d+) at ng (\S+):(\d+)" if mode == "embedded"
        else r"relay (inprocess) at ng (\S+):(\d+)"
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.findall(pattern, sw.stderr_path.read_text(errors="replace"))
        if found:
            pid, host, port = found[-1]
            owner = sw.pid if pid == "inprocess" else int(pid)
            return _Relay(mode, (host, int(port)), owner, sw.data_dir / "recordings")
        time.sleep(0.2)
    raise RuntimeError(f"no relay in the switch's log:\n{sw.logs()}")


def measure(mode: str, calls: int, seconds: float, workdir: Path) -> tuple[Step, dict[str, float]]:
    config = f'[media]\nrelay = "{mode}"\nrelay_ports = "47400-47999"\n'
    sw = SwitchProcess(workdir / f"{mode}-{calls}", seed(), config_toml=config, tls=False)
    sw.start()
    try:
        relay = _relay_of(sw, mode)
        prober = Prober(("127.0.0.1", sw.sip_port))
        thread = threading.Thread(target=prober.run, daemon=True)
        switch0 = proc_cpu_seconds(sw.pid)
        thread.start()
        step = run_step(relay, calls, seconds, generators=2, tag=f"{mode}{calls}")  # type: ignore[arg-type]
        prober.stop()
        thread.join(5)
        switch_cpu = proc_cpu_seconds(sw.pid) - switch0
    finally:
        sw.stop()
    sip = {
        "p50": percentile(prober.rtts, 50),
        "p99": percentile(prober.rtts, 99),
        "max": max(prober.rtts, default=float("nan")),
        "lost": float(prober.lost),
        "switch_cpu": switch_cpu,
    }
    return step, sip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recording_bench")
    parser.add_argument("--levels", default="50,100")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--modes", default="embedded,inprocess")
    args = parser.parse_args(argv)
    print(
        f"{'mode':10} {'calls':>5} {'loss%':>6} {'late%':>6} {'p99 ms':>7}"
        f" {'relay CPU/call-min':>18} {'switch CPU s':>12} {'SIP p50/p99/max ms':>20}"
    )
    with tempfile.TemporaryDirectory(prefix="recbench-") as tmp:
        for calls in (int(x) for x in args.levels.split(",")):
            for mode in args.modes.split(","):
                step, sip = measure(mode, calls, args.seconds, Path(tmp))
                late = 100.0 * step.late / step.sent if step.sent else 0.0
                print(
                    f"{mode:10} {calls:>5} {step.loss_pct:>6.2f} {late:>6.2f} {step.p99_ms:>7.1f}"
                    f" {step.cpu_per_call_min:>18.3f} {sip['switch_cpu']:>12.2f}"
                    f" {sip['p50']:>6.2f}/{sip['p99']:>6.2f}/{sip['max']:>6.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
