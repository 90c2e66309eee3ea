"""Real-peer test harness: the switch as a subprocess, SIPp runs, seeds, certificates, ports.

Shared by the integration tests (through fixtures in `conftest.py`) and by the benchmark
(`tests/bench/run.py`), so it has no pytest dependency. Everything here talks on loopback only
and every process it starts can be stopped (`stop()` is idempotent: SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "sipp"

# Distinct loopback addresses with a role each (RFC 5735: all of 127/8 is loopback on Linux).
SWITCH_IP = "127.0.0.1"
DEVICE_IP = "127.0.0.1"
CARRIER_IP = "127.0.0.2"  # the trusted carrier gateway (allowed_sources)
OUTSIDE_IP = "127.0.0.3"  # where the gateway's outbound calls go (a SIPp UAS)
STRANGER_IP = "127.0.0.4"  # an untrusted source

REALM = "softswitch.local"


# --------------------------------------------------------------------------- ports


_handed_out: set[tuple[str, int]] = set()


def free_port(ip: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True) -> int:
    """A port free for both UDP and TCP on `ip` right now (bind port 0, then release).

    The kernel picks it; we also check the other protocol and never hand the same port out
    twice in one process, which keeps parallel SIPp instances from colliding.
    """
    for _ in range(200):
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        try:
            first.bind((ip, 0))
            port = first.getsockname()[1]
            if tcp and udp:
                other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    other.bind((ip, port))
                except OSError:
                    continue
                finally:
                    other.close()
        finally:
            first.close()
        if (ip, port) not in _handed_out:
            _handed_out.add((ip, port))
            return port
    raise RuntimeError(f"no free port on {ip}")


# --------------------------------------------------------------------------- processes


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, wait `grace`, then SIGKILL. Safe to call twice or on a dead process."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc/PID/stat (clock ticks -> seconds)."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError:
        return f"<{path.name}: not written>"
    return data if len(data) <= limit else "…" + data[-limit:]


# --------------------------------------------------------------------------- TLS


def make_self_signed(directory: Path, cn: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate + key for 127.0.0.1 (SAN IP) with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            f"subjectAltName=IP:{cn},DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


# --------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    password: str
    kind: str = "desk"


@dataclass
class SeedSpec:
    """A minimal valid seed: one tenant, its devices, a contract number ringing them, a
    carrier gateway trusted from CARRIER_IP that sends outside calls to (gw_host, gw_port)."""

    devices: list[DeviceSpec]
    tenant: str = "t1"
    contract: str = "0355500100"
    ring_group: list[str] | None = None  # None: every device
    max_ring_time: float | None = None
    additional: list[tuple[str, list[str]]] = field(default_factory=list)
    gw_host: str = OUTSIDE_IP
    gw_port: int = 5060
    carrier_sources: Sequence[str] = (CARRIER_IP,)
    # IDs nobody registers, so the tenant has channels to spare: the switch allows as many
    # calls in progress per tenant as it has IDs (routing/policy.py), and tests run a few
    # calls at once.
    spare_ids: int = 8

    def toml(self) -> str:
        out = [f'realm = "{REALM}"', ""]
        srcs = ", ".join(f'"{s}"' for s in self.carrier_sources)
        out += [
            "[[gateways]]",
            'id = "carrier"',
            f'host = "{self.gw_host}"',
            f"port = {self.gw_port}",
            'transport = "udp"',
            f"allowed_sources = [{srcs}]",
            "",
            "[[tenants]]",
            f'id = "{self.tenant}"',
            'timezone = "Asia/Tokyo"',
            "identity_verified = true",
            "",
        ]
        for d in self.devices:
            out += [
                "  [[tenants.devices]]",
                f'  id = "{d.id}"',
                f'  kind = "{d.kind}"',
                f'  password = "{d.password}"',
                f'  presented_number = "{self.contract}"',
                "",
            ]
        group = self.ring_group if self.ring_group is not None else [d.id for d in self.devices]
        for i in range(1, self.spare_ids + 1):
            out += [
                "  [[tenants.devices]]",
                f'  id = "{self.tenant}-spare{i:02d}"',
                '  kind = "desk"',
                f'  password = "spare-{i:02d}-not-used"',
                f'  presented_number = "{self.contract}"',
                "",
            ]
        out += [
            "  [[tenants.numbers]]",
            f'  number = "{self.contract}"',
            '  kind = "contract"',
            "  ring_group = [" + ", ".join(f'"{g}"' for g in group) + "]",
        ]
        if self.max_ring_time is not None:
            out.append(f"  max_ring_time = {self.max_ring_time}")
        out.append("")
        for number, grp in self.additional:
            out += [
                "  [[tenants.numbers]]",
                f'  number = "{number}"',
                '  kind = "additional"',
                "  ring_group = [" + ", ".join(f'"{g}"' for g in grp) + "]",
                "",
            ]
        return "\n".join(out)


# --------------------------------------------------------------------------- the switch


_LISTEN = {
    "sip": re.compile(r"SIP listening on udp\+tcp (\S+):(\d+)"),
    "tls": re.compile(r"SIP listening on tls (\S+):(\d+)"),
    "http": re.compile(r"HTTP listening on http://(\S+):(\d+)"),
}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{a="b",…}': value} with labels sorted; also plain names."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(3), m.group(4)
        try:
            v = float(value)
        except ValueError:
            continue
        if labels:
            pairs = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
            key = name + "{" + ",".join(f'{k}="{val}"' for k, val in pairs) + "}"
        else:
            key = name
        out[key] = v
    return out


class Metrics(dict[str, float]):
    def get_value(self, name: str, **labels: str) -> float:
        if not labels:
            return self.get(name, 0.0)
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return self.get(key, 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every sample of `name` whose labels include `labels`."""
        want = [f'{k}="{v}"' for k, v in labels.items()]
        s = 0.0
        for key, v in self.items():
            base, _, rest = key.partition("{")
            if base == name and all(w in rest for w in want):
                s += v
        return s


# SIPp 3.6.1 computes only MD5 (and AKA) digests and answers the *first* challenge it is
# given; the switch offers SHA-256 first (RFC 8760), so SIPp aborts with "createAuthHeader:
# authentication must use MD5 or AKAv1-MD5". Tests driving SIPp therefore run the switch with
# The switch's own option to offer SHA-256 first (the default offers MD5 only).
SHA256_FIRST_CONFIG = '\n[auth]\nalgorithms = ["SHA-256", "MD5"]\n'


class SwitchProcess:
    """`softswitch serve` on ephemeral ports; `start()` waits for its listen lines."""

    def __init__(
        self,
        workdir: Path,
        seed_toml: str,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        config_toml: str | None = None,
        ip: str = SWITCH_IP,
        sip_port: int = 0,
        tls: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.seed_path = workdir / "seed.toml"
        self.seed_path.write_text(seed_toml)
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.stdout_path = workdir / "switch.stdout"
        self.stderr_path = workdir / "switch.stderr"
        self.ip = ip
        python = os.environ.get("SOFTSWITCH_PYTHON", str(REPO / ".venv" / "bin" / "python"))
        launcher = ["-m", "switch"]
        self.args = [
            python,
            *launcher,
            "serve",
            "--sip",
            f"{ip}:{sip_port}",
            "--http",
            f"{ip}:0",
            "--seed",
            str(self.seed_path),
            "--data",
            str(self.data_dir),
        ]
        if tls:
            assert cert is not None and key is not None, "TLS needs a certificate and key"
            self.args += ["--tls", f"{ip}:0", "--tls-cert", str(cert), "--tls-key", str(key)]
        if config_toml is not None:
            cfg = workdir / "switch.toml"
            cfg.write_text(config_toml)
            self.args += ["--config", str(cfg)]
        self.args += list(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.sip_port = 0
        self.tls_port = 0
        self.http_port = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> SwitchProcess:
        out = open(self.stdout_path, "wb")  # noqa: SIM115 - the child owns it
        err = open(self.stderr_path, "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        finally:
            out.close()
            err.close()
        want = {"sip", "http"} | ({"tls"} if "--tls" in self.args else set())
        deadline = time.monotonic() + timeout
        found: dict[str, int] = {}
        while time.monotonic() < deadline:
            text = self.stdout_path.read_text(errors="replace")
            for name, rx in _LISTEN.items():
                m = rx.search(text)
                if m:
                    found[name] = int(m.group(2))
            if want <= found.keys():
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not want <= found.keys():
            rc = self.proc.poll()
            self.stop()
            raise RuntimeError(
                f"switch did not report {sorted(want - found.keys())} within {timeout}s "
                f"(exit code {rc})\ncommand: {' '.join(self.args)}\n"
                f"--- stdout ---\n{tail(self.stdout_path)}\n"
                f"--- stderr ---\n{tail(self.stderr_path)}"
            )
        self.sip_port = found["sip"]
        self.tls_port = found.get("tls", 0)
        self.http_port = found["http"]
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics_text(self, timeout: float = 5.0) -> str:
        url = f"http://{self.ip}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()

    def metrics(self) -> Metrics:
        return Metrics(parse_metrics(self.metrics_text()))

    def cpu_seconds(self) -> float:
        """The switch's CPU: the process and, with --workers, its worker processes (those
        alive now: a worker that died took its CPU time with it)."""
        total = proc_cpu_seconds(self.pid)
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        return total

    def worker_pids(self) -> list[int]:
        """The switch's worker processes (`--workers`), from /proc; [] when it has none."""
        return children_of(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def logs(self) -> str:
        return (
            f"--- switch stdout ---\n{tail(self.stdout_path)}\n"
            f"--- switch stderr ---\n{tail(self.stderr_path)}"
        )

    def stop(self) -> int | None:
        stop_process(self.proc)
        return None if self.proc is None else self.proc.returncode


# --------------------------------------------------------------------------- SIPp


TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1", "tls": "l1"}


@dataclass
class SippResult:
    name: str
    returncode: int
    stats: dict[str, str]
    errors: str
    screen: str
    messages_path: Path
    rtts: dict[str, list[float]]  # rtd name/number -> response times in ms
    command: list[str]

    def counter(self, name: str) -> int:
        """A cumulative counter from the -trace_stat CSV, e.g. 'SuccessfulCall'."""
        raw = self.stats.get(f"{name}(C)", self.stats.get(name, ""))
        try:
            return int(float(raw))
        except ValueError:
            return -1

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall")

    @property
    def created(self) -> int:
        return self.counter("TotalCallCreated")

    def messages(self) -> str:
        return tail(self.messages_path, 200_000)

    def report(self) -> str:
        """Everything a failing assertion should show."""
        keys = (
            "TotalCallCreated",
            "SuccessfulCall",
            "FailedCall",
            "FailedTimeoutOnRecv",
            "FailedUnexpectedMessage",
            "FailedMaxUDPRetrans",
            "FailedCallRejected",
            "FailedTcpConnect",
            "Retransmissions",
            "DeadCallMsgs",
            "OutOfCallMsgs",
        )
        counts = ", ".join(f"{k}={self.counter(k)}" for k in keys)
        return (
            f"SIPp {self.name}: exit {self.returncode}; {counts}\n"
            f"command: {' '.join(self.command)}\n"
            f"--- error log ---\n{self.errors or '(empty)'}\n"
            f"--- screen ---\n{self.screen}\n"
            f"--- message trace (tail) ---\n{tail(self.messages_path, 6000)}"
        )


class Sipp:
    """One SIPp process in the background. Build, `start()`, then `wait()` or `stop()`."""

    def __init__(
        self,
        scenario: str | Path,
        workdir: Path,
        *,
        remote: tuple[str, int] | None,
        local_ip: str = "127.0.0.1",
        local_port: int | None = None,
        transport: str = "udp",
        calls: int = 1,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        timeout_s: float = 20,
        service: str | None = None,
        auth: tuple[str, str] | None = None,
        users_csv: Iterable[Sequence[str]] | None = None,
        credentials: Iterable[tuple[str, str]] | None = None,
        keys: Mapping[str, str] | None = None,
        lost: int | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        trace_msg: bool = True,
        trace_rtt: bool = False,
        name: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        scen = Path(scenario)
        if not scen.is_absolute():
            scen = SCENARIOS / (
                str(scenario) if str(scenario).endswith(".xml") else f"{scenario}.xml"
            )
        self.scenario = scen
        self.name = name or scen.stem
        self.dir = workdir / f"sipp-{self.name}"
        suffix = 1
        while self.dir.exists():
            suffix += 1
            self.dir = workdir / f"sipp-{self.name}-{suffix}"
        self.dir.mkdir(parents=True)
        self.local_ip = local_ip
        self.local_port = local_port if local_port is not None else free_port(local_ip)
        self.transport = transport
        self.timeout_s = timeout_s
        d = self.dir
        cmd = [
            shutil.which("sipp") or "sipp",
            "-sf",
            str(scen),
            "-i",
            local_ip,
            "-p",
            str(self.local_port),
            "-t",
            TRANSPORT_FLAG[transport],
            "-m",
            str(calls),
            "-timeout",
            f"{timeout_s:g}s",
            "-nostdin",
            "-buff_size",
            "4194304",
            "-trace_err",
            "-error_file",
            str(d / "errors.log"),
            "-trace_stat",
            "-stf",
            str(d / "stat.csv"),
            "-fd",
            "1",
            "-trace_screen",
            "-screen_file",
            str(d / "screen.log"),
        ]
        if remote is not None:
            cmd.append(f"{remote[0]}:{remote[1]}")
        if trace_msg:
            cmd += ["-trace_msg", "-message_file", str(d / "messages.log")]
        if trace_rtt:
            cmd += ["-trace_rtt", "-rtt_freq", "1"]
        if rate is not None:
            cmd += ["-r", f"{rate:g}"]
            if rate_period_ms is not None:
                cmd += ["-rp", str(rate_period_ms)]
        if limit is not None:
            cmd += ["-l", str(limit)]
        if service is not None:
            cmd += ["-s", service]
        if auth is not None:
            cmd += ["-au", auth[0], "-ap", auth[1]]
        if credentials is not None:
            # field0 = user, field1 = SIPp's [authentication] keyword, expanded when injected
            users_csv = [(u, f"[authentication username={u} password={p}]") for u, p in credentials]
        if users_csv is not None:
            inf = d / "users.csv"
            with open(inf, "w", newline="") as f:
                f.write("SEQUENTIAL\n")
                w = csv.writer(f, delimiter=";", lineterminator="\n")
                for row in users_csv:
                    w.writerow(row)
            cmd += ["-inf", str(inf)]
        for k, v in (keys or {}).items():
            cmd += ["-key", k, v]
        if lost is not None:
            cmd += ["-lost", str(lost)]
        if transport == "tls" and tls_cert is not None and tls_key is not None:
            cmd += ["-tls_cert", str(tls_cert), "-tls_key", str(tls_key)]
        cmd += list(extra)
        self.command = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        out = open(self.dir / "stdout.log", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        return self

    def run(self, grace: float = 10.0) -> SippResult:
        return self.start().wait(grace)

    def wait(self, grace: float = 10.0) -> SippResult:
        """Wait for SIPp to end by itself (-m reached or -timeout), plus `grace` seconds."""
        assert self.proc is not None, "start() first"
        try:
            self.proc.wait(self.timeout_s + grace)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        return self.result()

    def stop(self) -> SippResult:
        if self.proc is not None:
            stop_process(self.proc, grace=3)
        return self.result()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def result(self) -> SippResult:
        rc = self.proc.returncode if self.proc is not None else None
        stats: dict[str, str] = {}
        stat = self.dir / "stat.csv"
        if stat.exists():
            lines = [ln for ln in stat.read_text(errors="replace").splitlines() if ln.strip()]
            if len(lines) >= 2:
                header = lines[0].split(";")
                stats = dict(zip(header, lines[-1].split(";"), strict=False))
        rtts: dict[str, list[float]] = {}
        for f in list(self.dir.glob("*_rtt.csv")) + list(
            self.scenario.parent.glob(
                f"{self.scenario.stem}_{self.proc.pid if self.proc else 0}_rtt.csv"
            )
        ):
            for ln in f.read_text(errors="replace").splitlines():
                parts = ln.split(";")
                if len(parts) >= 3 and not parts[0].startswith("Date"):
                    with contextlib.suppress(ValueError):
                        rtts.setdefault(parts[2].strip(), []).append(float(parts[1]))
            if f.parent != self.dir:
                with contextlib.suppress(OSError):
                    shutil.move(str(f), self.dir / f.name)
        screen = tail(self.dir / "screen.log", 3000)
        if screen.startswith("<"):
            screen = tail(self.dir / "stdout.log", 3000)
        return SippResult(
            name=self.name,
            returncode=-999 if rc is None else rc,
            stats=stats,
            errors=tail(self.dir / "errors.log", 6000)
            if (self.dir / "errors.log").exists()
            else "",
            screen=screen,
            messages_path=self.dir / "messages.log",
            rtts=rtts,
            command=self.command,
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no data."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


if __name__ == "__main__":  # pragma: no cover - manual helper: print a demo seed
    spec = SeedSpec(devices=[DeviceSpec("alice", "pw-alice"), DeviceSpec("bob", "pw-bob")])
    sys.stdout.write(spec.toml())
