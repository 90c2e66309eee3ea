"""Worker processes: `softswitch serve --workers N` uses every core.

One process runs one event loop on one core. With `--workers N` the `serve` process becomes a
supervisor (it serves nothing itself) and N forked workers each run a whole node (switch,
REST API, embedded media) on the same configuration and shared state.

Default and refusal: one worker per core (the CPUs this process may run on) when the state
backend is shared (`[state] url = "redis://…"`), one on the embedded memory default; more
than one on memory state is refused (`WorkersError`): registrations, device locks and channel
leases kept in one process's memory would be invisible to the others.

Sockets: the supervisor binds every socket before it forks, and a restarted worker inherits
the sockets of the one it replaces. The private ports (ephemeral the first time) are kept in
`<data>/worker-ports.json` and taken again at the next start when free, so the dialogs
record-routed before a restart (kill -9 included) still reach the node.
switch/transport/siblings.py has the SIP side (the shared SIP port with SO_REUSEPORT, UDP
affinity by the kernel's hash, each worker's private Via port, TCP/TLS flows of another
worker reached through a loopback relay). HTTP likewise: one
SO_REUSEPORT listener per worker on the API address, so any worker answers the API.

Metrics: each worker also listens on a private loopback port, where it serves its own
registry. `GET /metrics` on any worker fetches the others' (`WorkerRuntime.node_metrics`) and
returns one exposition with every sample labelled `worker="i"`, plus `softswitch_workers`
(configured) and `softswitch_workers_scraped` (answered this scrape). Counters add up over
workers; gauges read from the shared state (`sip_registrations_active`) repeat the node's
figure in every worker (take the max).

Provisioning: every worker follows the store itself (PostgreSQL LISTEN/NOTIFY; SQLite: the
in-process notice for its own API writes and the version poll, ≤ 5 s, for the other workers'),
so every worker routes from the same snapshot. The supervisor opens the store once first
(migrations, seed import, the generated secrets: `flow-secret` keys the flow tokens of our
Record-Route in every worker, so any worker decodes a dialog's flows), so the workers never
race on them. The retention sweeps and the recordings keeper run in worker 0 only; each
worker has its own CDR spool file (`cdr-spool.w<i>.jsonl`).

Supervision: a worker that exits is restarted on the same sockets with a backoff (0.5 s,
doubling to 30 s while it keeps dying within 30 s of its start); its transactions in flight
are lost like a crashed node's, nothing else (registrations and leases are in the shared
state, the other workers keep serving). The generation (restarts of that slot) is part of its
connection ids, so a dead worker's flows are never mistaken for the new one's. SIGTERM/SIGINT
to the supervisor: every worker gets SIGTERM and a graceful stop (SIGKILL after 10 s); the
workers die with the supervisor (PR_SET_PDEATHSIG) if it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from switch.config import Config
from switch.metrics import Metrics
from switch.state.redis import default_node_id
from switch.transport.settings import TransportSettings
from switch.transport.siblings import PreBound, Siblings, bind_group

__all__ = [
    "WorkerRuntime",
    "WorkersError",
    "bind_workers",
    "check_workers",
    "default_workers",
    "listening_ports",
    "merge_expositions",
    "supervise",
]

log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_STABLE_AFTER = 30.0  # a worker that ran this long restarts after the first backoff again
_STOP_GRACE = 10.0
_READY_TIMEOUT = 90.0
_SCRAPE_TIMEOUT = 2.0
_PR_SET_PDEATHSIG = 1


class WorkersError(Exception):
    """A worker count the configuration cannot serve."""


def default_workers(state_url: str) -> int:
    """One per core on shared state, one on memory state."""
    if state_url == "memory":
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def check_workers(count: int, state_url: str) -> None:
    if count < 1:
        raise WorkersError(f"--workers must be at least 1, not {count}")
    if count > 1 and state_url == "memory":
        raise WorkersError(
            f"--workers {count} needs shared state: the memory state lives in one process;"
            ' set [state] url = "redis://…" or run one worker'
        )


# --------------------------------------------------------------------------- one worker
@dataclass
class WorkerRuntime:
    """What one worker is given: its sockets, its siblings, its place."""

    index: int
    count: int
    generation: int
    node_id: str
    sockets: PreBound
    siblings: Siblings
    http: socket.socket | None
    metrics_sockets: tuple[socket.socket, ...]
    _runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def metrics_ports(self) -> tuple[int, ...]:
        return tuple(int(s.getsockname()[1]) for s in self.metrics_sockets)

    async def start_http(self, runner: web.AppRunner, metrics: Metrics) -> None:
        """The shared API listener, and the private one the other workers scrape."""
        if self.http is not None:
            await web.SockSite(runner, self.http).start()
        own = web.Application()

        async def serve_own(request: web.Request) -> web.Response:
            return web.Response(body=metrics.render(), content_type="text/plain")

        own.router.add_get("/metrics", serve_own)
        private = web.AppRunner(own, access_log=None, handle_signals=False)
        await private.setup()
        await web.SockSite(private, self.metrics_sockets[self.index]).start()
        self._runners.append(private)

    async def node_metrics(self, own: Metrics) -> bytes:
        """Every worker's registry in one exposition (see the module docstring)."""
        texts = {self.index: own.render().decode()}
        others = [i for i in range(self.count) if i != self.index]
        timeout = aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            got = await asyncio.gather(*(self._scrape(session, i) for i in others))
        texts.update({i: text for i, text in zip(others, got, strict=True) if text is not None})
        return merge_expositions(texts, self.count)

    async def _scrape(self, session: aiohttp.ClientSession, index: int) -> str | None:
        url = f"http://127.0.0.1:{self.metrics_ports[index]}/metrics"
        try:
            async with session.get(url) as resp:
                return await resp.text() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None  # restarting: counted out in softswitch_workers_scraped

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()


def merge_expositions(texts: dict[int, str], configured: int) -> bytes:
    """Prometheus texts by worker index -> one text, each sample labelled worker="i"."""
    families: dict[str, Metric] = {}
    for index, text in sorted(texts.items()):
        for fam in text_string_to_metric_families(text):
            out = families.get(fam.name)
            if out is None:
                out = families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
            for s in fam.samples:
                labels = {**s.labels, "worker": str(index)}
                out.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
    workers = GaugeMetricFamily("softswitch_workers", "Worker processes configured")
    workers.add_metric([], configured)
    scraped = GaugeMetricFamily(
        "softswitch_workers_scraped", "Workers whose metrics this scrape contains"
    )
    scraped.add_metric([], len(texts))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), workers, scraped]))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


# --------------------------------------------------------------------------- binding
@dataclass(frozen=True)
class WorkerSockets:
    """Every socket of every worker, bound by the supervisor."""

    sip: list[PreBound]
    http: list[socket.socket] | None
    metrics: tuple[socket.socket, ...]
    token: bytes
    node_id: str

    @property
    def count(self) -> int:
        return len(self.sip)

    def runtime(self, index: int, generation: int, host: str) -> WorkerRuntime:
        private = tuple(pb.private_udp.getsockname()[:2] for pb in self.sip)
        tls = tuple(int(pb.private_tls.getsockname()[1]) for pb in self.sip if pb.private_tls)
        siblings = Siblings(
            index=index, generation=generation, private=private, token=self.token,
            local_hosts=frozenset({host, "127.0.0.1", "::1"}), private_tls=tls,
        )  # fmt: skip
        return WorkerRuntime(
            index=index, count=self.count, generation=generation, node_id=self.node_id,
            sockets=self.sip[index], siblings=siblings,
            http=self.http[index] if self.http is not None else None,
            metrics_sockets=self.metrics,
        )  # fmt: skip

    def all(self) -> list[socket.socket]:
        out: list[socket.socket] = [*self.metrics, *(self.http or [])]
        for pb in self.sip:
            out += [pb.udp, pb.tcp, pb.private_udp, pb.private_tcp]
            out += [s for s in (pb.tls, pb.private_tls) if s is not None]
        return out


def _sockets_of(runtime: WorkerRuntime) -> list[socket.socket]:
    pb = runtime.sockets
    mine = [pb.udp, pb.tcp, pb.private_udp, pb.private_tcp, *runtime.metrics_sockets]
    mine += [s for s in (pb.tls, pb.private_tls) if s is not None]
    mine += [runtime.http] if runtime.http is not None else []
    return mine


def bind_workers(config: Config, count: int) -> WorkerSockets:
    """The shared SIP port, private ports, the API port (SO_REUSEPORT) and the private
    metrics ports of `count` workers. OSError when an address is taken."""
    settings = TransportSettings.from_config(config)
    tls_port = config.tls.port if config.tls is not None else None
    ports_file = config.data_dir / PORTS_FILE
    udp, tls = _previous_ports(ports_file, config.sip.host)
    sip = bind_group(
        config.sip.host, config.sip.port, tls_port, count, settings.udp_buffer_bytes,
        preferred=udp, preferred_tls=tls,
    )  # fmt: skip
    _keep_ports(ports_file, config.sip.host, sip)
    http = None
    if config.http is not None:
        first = _listener(config.http.host, config.http.port, reuse=True)
        port = first.getsockname()[1]
        http = [first, *(_listener(config.http.host, port, reuse=True) for _ in range(count - 1))]
    metrics = tuple(_listener("127.0.0.1", 0, reuse=False) for _ in range(count))
    return WorkerSockets(
        sip=sip, http=http, metrics=metrics, token=secrets.token_hex(16).encode(),
        node_id=default_node_id(),
    )  # fmt: skip


PORTS_FILE = "worker-ports.json"


def _previous_ports(path: Path, host: str) -> tuple[list[int], list[int]]:
    """The private ports the workers had in the previous run on this address (none if the
    file is missing, unreadable or for another address)."""
    try:
        saved = json.loads(path.read_text())
        if saved.get("host") != host:
            return [], []
        return [int(p) for p in saved["udp"]], [int(p) for p in saved.get("tls", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [], []


def _keep_ports(path: Path, host: str, sip: list[PreBound]) -> None:
    """Remember the private ports for the next run: dialogs record-routed now name them in
    their Record-Route, and must still reach the node after a restart (kill -9 included)."""
    udp = [int(pb.private_udp.getsockname()[1]) for pb in sip]
    tls = [int(pb.private_tls.getsockname()[1]) for pb in sip if pb.private_tls is not None]
    try:
        path.write_text(json.dumps({"host": host, "udp": udp, "tls": tls}))
    except OSError as exc:
        log.warning("cannot keep the workers' private ports in %s: %s", path, exc)


def _listener(host: str, port: int, *, reuse: bool) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(info[4])
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------- supervision
ServeOne = Callable[[WorkerRuntime, Callable[[], None]], int]  # (runtime, ready) -> exit code


@dataclass
class _Slot:
    index: int
    generation: int = 0
    process: BaseProcess | None = None
    started: float = 0.0
    failures: int = 0  # consecutive quick deaths: the backoff's exponent
    restart_at: float | None = None


class _Supervisor:
    def __init__(self, sockets: WorkerSockets, host: str, serve_one: ServeOne) -> None:
        self.sockets = sockets
        self.host = host
        self.serve_one = serve_one
        self.slots = [_Slot(i) for i in range(sockets.count)]
        self.ctx = multiprocessing.get_context("fork")
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()

    def spawn(self, slot: _Slot) -> Connection:
        ready_r, ready_w = self.ctx.Pipe(duplex=False)
        runtime = self.sockets.runtime(slot.index, slot.generation, self.host)
        proc = self.ctx.Process(
            target=_worker_main,
            args=(self.sockets, runtime, ready_w, self.serve_one),
            name=f"softswitch-worker-{slot.index}",
        )
        proc.start()
        ready_w.close()
        slot.process, slot.started, slot.restart_at = proc, time.monotonic(), None
        log.info("worker %d started (pid %s, generation %d)", slot.index, proc.pid, slot.generation)
        return ready_r

    def run(self, announce: Callable[[], None]) -> int:
        self._signals()
        pending = {self.spawn(slot): slot for slot in self.slots}
        code = self._await_ready(pending)
        if code is not None:
            self._stop_all()
            return code
        announce()
        while not self.stopping:
            self._step()
        self._stop_all()
        return 0

    def _signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _await_ready(self, pending: dict[Connection, _Slot]) -> int | None:
        """None once every worker is serving; else the exit code to end with."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while pending and not self.stopping:
            sentinels = {s.process.sentinel: s for s in self.slots if s.process is not None}
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("workers not ready within %.0f s", _READY_TIMEOUT)
                return 1
            for ready in wait([*pending, *sentinels, self._wake_r], left):
                if isinstance(ready, Connection):
                    pending.pop(ready)
                    with contextlib.suppress(EOFError, OSError):
                        ready.recv()  # EOF: it died, and its sentinel says so
                    ready.close()
                elif ready in sentinels:
                    slot = sentinels[ready]
                    assert slot.process is not None
                    slot.process.join()
                    code = slot.process.exitcode
                    log.error("worker %d exited while starting (%s)", slot.index, code)
                    return code if code is not None and code > 0 else 1
        return 1 if self.stopping and pending else None

    def _step(self) -> None:
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        timeout = max(0.0, min(due) - now) if due else None
        sentinels = {s.process.sentinel: s for s in self.slots if s.process is not None}
        ready = wait([*sentinels, self._wake_r], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        if self.stopping:
            return
        for key in ready:
            if key in sentinels:
                self._died(sentinels[key])
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= time.monotonic():
                slot.generation += 1
                self.spawn(slot).close()

    def _died(self, slot: _Slot) -> None:
        proc = slot.process
        assert proc is not None
        proc.join()
        slot.process = None
        lived = time.monotonic() - slot.started
        slot.failures = 0 if lived >= _STABLE_AFTER else slot.failures + 1
        delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** max(0, slot.failures - 1))
        slot.restart_at = time.monotonic() + delay
        log.warning(
            "worker %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
            slot.index, proc.pid, proc.exitcode, lived, delay,
        )  # fmt: skip

    def _stop_all(self) -> None:
        procs = [s.process for s in self.slots if s.process is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                if proc.pid is not None:
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                log.warning("worker pid %s did not stop in %.0f s: killed", proc.pid, _STOP_GRACE)
                proc.kill()
                proc.join()


def supervise(
    sockets: WorkerSockets, host: str, serve_one: ServeOne, announce: Callable[[], None]
) -> int:
    """Run the workers until SIGTERM/SIGINT (see the module docstring); the exit code."""
    return _Supervisor(sockets, host, serve_one).run(announce)


def _worker_main(
    sockets: WorkerSockets, runtime: WorkerRuntime, ready: Connection, serve_one: ServeOne
) -> None:
    """In the forked worker: default signal handling, die with the supervisor, keep only
    our own sockets, serve."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent()
    mine = {id(s) for s in _sockets_of(runtime)}
    for sock in sockets.all():
        if id(sock) not in mine:
            sock.close()

    def tell_ready() -> None:
        with contextlib.suppress(OSError):
            ready.send(runtime.index)
            ready.close()

    raise SystemExit(serve_one(runtime, tell_ready))


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def listening_ports(sockets: WorkerSockets) -> dict[str, tuple[str, int]]:
    """The shared addresses, for the `serve` lines."""
    pb = sockets.sip[0]
    out = {"udp": pb.udp.getsockname()[:2], "tcp": pb.tcp.getsockname()[:2]}
    if pb.tls is not None:
        out["tls"] = pb.tls.getsockname()[:2]
    if sockets.http is not None:
        out["http"] = sockets.http[0].getsockname()[:2]
    return out
