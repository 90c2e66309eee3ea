"""Whole-stack CPU per call, in process: what the switch does for one call from the datagrams it
receives to the datagrams it sends, without sockets and without other processes.

    .venv/bin/python -m tests.bench.stack_bench [--calls 20000] [--repeat 3] [--rate 500]

A call is INVITE-100-180-200-ACK-BYE-200 between a carrier gateway and one registered desk
phone (as tests/bench/profile_switch.py drives with SIPp). The switch's own objects handle it:
TransportManager (datagram in: flood admission, parse, Via fix-up; message out: serialise),
SipEndpoint, TransactionLayer, Proxy (memory state, the unit tests' two-tenant snapshot, no
CDRs). Only the UDP socket is replaced: `sendto` keeps the datagram, and the two peers (plain
Python, outside the clock) parse it and answer with datagrams fed to the switch's receive path
(`_on_datagram`), as the event loop would.

Time is virtual: the event loop's clock advances 1/rate s per call, so the transactions'
timers (retransmissions are never due; Timer K/J/L and the proxy's timers are) fire as they
would at that call rate, and the lingering transactions are as many as in the real switch.
Counted: CPU time (`time.process_time`) inside the switch's receive path and inside the event
loop's timer callbacks, per call. The garbage collector runs with the switch's settings
(switch.wiring.tune_gc). profile_switch.py gives the real process's figure, sendto, the event
loop and the CDR writer included.

On a shared machine CPU time still varies by ±15 % from run to run (the neighbours' load
slows this process too). To compare two versions of the code, count instructions instead,
which do not depend on the load (valgrind's callgrind, ~50x slower; run from the tree to
measure, the current directory comes first on sys.path):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m tests.bench.stack_bench --warmup 100 --calls 200 --repeat 1
    (the same with --calls 600)    ->  ("Collected" of 600 - of 200) / 400 = Ir per call

Repeated runs give the same count to within 0.01 %.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from switch.metrics import Metrics
from switch.proxy.proxy import Proxy, ProxyConfig
from switch.sip.digest import DigestAuthenticator
from switch.sip.transaction import TransactionLayer
from switch.state.base import Binding
from switch.state.memory import MemoryState
from switch.transport.endpoint import SipEndpoint
from switch.transport.manager import TransportManager
from switch.transport.settings import TransportSettings
from tests.unit.proxy.harness import DESK_FLOW, GW_IP, REALM, WALL, snapshot

NUMBER = "0355500100"
GW = (GW_IP, 5060)
DESK = (DESK_FLOW.host, DESK_FLOW.port)


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is set by the bench."""

    now = 1000.0

    def time(self) -> float:
        return self.now


class FakeUdp:
    """The UDP transport: keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False


class Bench:
    def __init__(self, loop: VirtualLoop) -> None:
        self.loop = loop
        self.cpu = 0.0  # CPU-s inside the switch
        self.clock = time.process_time

    async def setup(self) -> None:
        self.metrics = Metrics()
        self.layer = TransactionLayer()
        self.core = SipEndpoint(self.layer, self.metrics)
        self.transports = TransportManager(
            self.core, self.metrics, TransportSettings(flood_limit=0)
        )
        await self.transports.start(("127.0.0.1", 0), None, None)
        self.core.attach(self.transports)
        self.real_udp = self.transports._udp
        self.udp = FakeUdp()
        self.transports._udp = self.udp  # type: ignore[assignment]
        self.state = MemoryState()
        snap = snapshot()
        self.proxy = Proxy(
            sender=self.core,
            snapshot=lambda: snap,
            state=self.state,
            authenticator=DigestAuthenticator(realm=REALM, secret=b"s" * 32),
            metrics=self.metrics,
            config=ProxyConfig(),
            wall_clock=lambda: WALL + self.loop.now,
        )
        self.core.users.default = self.proxy
        await self.state.put_binding(
            Binding(
                device_id="desk1", contact="sip:desk1@192.168.1.20:5060", instance_id=None,
                expires_at=WALL + 10**7, source=DESK_FLOW, call_id="reg-desk1", cseq=1,
            )
        )  # fmt: skip
        self.host, self.port = self.transports.bound["udp"]

    def close(self) -> None:
        self.transports._udp = self.real_udp
        self.core.close()
        if self.real_udp is not None:
            self.real_udp.close()

    # ---------------------------------------------------------------- the switch
    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        t0 = self.clock()
        self.transports._on_datagram(data, addr)
        self.cpu += self.clock() - t0

    def take(self, addr: tuple[str, int]) -> list[Wire]:
        """What the switch sent to `addr` since the last look (the peer's work)."""
        out, keep = [], []
        for data, to in self.udp.sent:
            if to == addr:
                out.append(Wire(data))
            else:
                keep.append((data, to))
        self.udp.sent = keep
        return out

    async def tick(self, dt: float) -> None:
        """Advance the clock; the loop runs the timers now due (counted)."""
        self.loop.now += dt
        t0 = self.clock()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.cpu += self.clock() - t0

    # ---------------------------------------------------------------- the peers
    def _carrier_request(
        self, method: str, uri: str, n: int, cseq: int, to_tag: str | None, route: list[str]
    ) -> bytes:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {GW_IP}:5060;branch=z9hG4bK-{n}-{cseq}-{method};rport",
            f"From: <sip:0312345678@{GW_IP}>;tag=from-{n}",
            f"To: <sip:{NUMBER}@{self.host}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: bench-{n}@{GW_IP}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:carrier@{GW_IP}:5060>",
            *(f"Route: {r}" for r in route),
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _desk_answers(self, request: Wire, *statuses: int) -> None:
        for status in statuses:
            self.deliver(request.answer(status, "desk" if status > 100 else None), DESK)

    async def call(self, n: int, dt: float) -> None:
        invite = self._carrier_request("INVITE", f"sip:{NUMBER}@{self.host}", n, 1, None, [])
        self.deliver(invite, GW)
        (fwd,) = self.take(DESK)
        assert fwd.start.startswith("INVITE "), fwd.start
        self._desk_answers(fwd, 100, 180, 200)
        up = self.take(GW)
        statuses = [m.start[8:11] for m in up]
        assert statuses == ["100", "180", "200"], statuses
        ok = up[-1]
        route = ok.values("Record-Route")
        target = ok.values("Contact")[0].strip("<>")
        self.deliver(self._carrier_request("ACK", target, n, 1, "desk", route), GW)
        (ack,) = self.take(DESK)
        assert ack.start.startswith("ACK "), ack.start
        self.deliver(self._carrier_request("BYE", target, n, 2, "desk", route), GW)
        (bye,) = self.take(DESK)
        assert bye.start.startswith("BYE "), bye.start
        self._desk_answers(bye, 200)
        (bye_ok,) = self.take(GW)
        assert bye_ok.start.startswith("SIP/2.0 200 "), bye_ok.start
        await self.tick(dt)


class Wire:
    """A datagram as a peer reads it: start line and header lines, no parser of the switch
    (so that a change of the parser does not change the peers' share of the run)."""

    def __init__(self, data: bytes) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        self.start, *lines = head.split("\r\n")
        self.fields = [tuple(p.strip() for p in line.split(":", 1)) for line in lines]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n == name]

    def answer(self, status: int, to_tag: str | None) -> bytes:
        """A UAS's response to this request: Via, From, To (+ tag), Call-ID, CSeq copied,
        Record-Route and our Contact on a 1xx/2xx to INVITE."""
        invite = self.start.startswith("INVITE ")
        lines = [f"SIP/2.0 {status} {_REASONS[status]}"]
        for name, value in self.fields:
            if name == "To" and to_tag:
                lines.append(f"To: {value};tag={to_tag}")
            elif name in ("Via", "From", "To", "Call-ID", "CSeq") or (
                name == "Record-Route" and invite and status > 100
            ):
                lines.append(f"{name}: {value}")
        if invite and status > 100:
            lines.append("Contact: <sip:desk1@192.168.1.20:5060>")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


_REASONS = {100: "Trying", 180: "Ringing", 200: "OK"}


async def run(calls: int, rate: int, warmup: int = 500) -> float:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualLoop)
    bench = Bench(loop)
    await bench.setup()
    try:
        for n in range(warmup):  # warm-up, and the lingering transactions of a steady state
            await bench.call(-n - 1, 1 / rate)
        bench.cpu = 0.0
        gc.collect()
        gc.freeze()
        gc.set_threshold(2_000, 5_000, 100)
        for n in range(calls):
            await bench.call(n, 1 / rate)
        assert bench.proxy.calls.leases == 0, "a lease was not released"
        gc.unfreeze()
        return bench.cpu / calls * 1e6
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=int, default=500, help="calls/s of virtual time")
    parser.add_argument("--warmup", type=int, default=500, help="calls before the measured ones")
    args = parser.parse_args()
    results = []
    for _ in range(args.repeat):
        loop = VirtualLoop()
        try:
            results.append(loop.run_until_complete(run(args.calls, args.rate, args.warmup)))
        finally:
            loop.close()
        print(f"{results[-1]:.1f} us/call ({args.calls} calls)", flush=True)
    if len(results) > 1:
        print(f"median {statistics.median(results):.1f} us/call")


if __name__ == "__main__":
    main()
