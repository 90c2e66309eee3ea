"""Proxy micro-benchmark: microseconds of proxy work per inbound call, sans-IO.

    .venv/bin/python -m tests.bench.proxy_microbench [--calls 20000] [--repeat 1] \
        [--cdrs off|on|both]

Each call is INVITE (carrier -> a tenant number ringing a desk phone and an app) -> 180 from
both, 200 from the desk phone (the app branch is CANCELled and answers 487) -> ACK -> BYE -> 200,
with the route set our Record-Route gave (as a real carrier sends it). The proxy runs with
the unit tests' fakes: a Sender that only records what it is given (no serialisation, no
sockets), a scheduler that never fires (no timer is due within a call), the memory state
backend and the unit tests' two-tenant snapshot.

Only the time spent inside the proxy's entry points (`on_request`, `on_response`, `on_ack`)
is counted, in CPU time of this process (`time.process_time`: other processes on a shared
machine do not inflate it; `--clock wall` uses `time.perf_counter`). Building and parsing the
peers' messages happens outside the clock, so the number is the proxy's own cost per call
(routing, forking, leases, message edits). The garbage collector runs with the switch's
settings (switch.wiring.tune_gc).

`--cdrs on` gives the proxy the call-record tracker (billing.cdr.CallRecords) and the CDR
writer's `submit` (switch/cdr_writer.py, not started: the bench empties its queue after each
call, outside the clock, as the writer's task would, and checks it got exactly one record per
call), as switch/node.py wires them; `both` (the default) measures without and with,
alternately, so the difference is the call path's cost of the records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from billing import default_tariffs
from billing.cdr import CallRecords
from switch.cdr_writer import CdrWriter, WriterSettings
from switch.metrics import Metrics
from switch.proxy.proxy import Proxy, ProxyConfig
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import Request, Response, make_response
from switch.sip.parser import parse_message
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import Binding
from switch.state.memory import MemoryState
from tests.unit.proxy.harness import (
    APP_FLOW,
    DESK_FLOW,
    GW_IP,
    GW_SRC,
    REALM,
    US,
    WALL,
    FakeSender,
    snapshot,
)

NUMBER = "0355500100"


class _Handle:
    __slots__ = ()

    def cancel(self) -> None:
        return None


_HANDLE = _Handle()


class LeanSender(FakeSender):
    """FakeSender without the serialise/parse round trip and with timers that never fire."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.last_requests: list[ClientTransaction] = []

    def now(self) -> float:
        return 1000.0

    def send_response(self, txn: ServerTransaction, response: Response) -> None:
        txn.last_response = response
        self.responses.append((txn, response))

    def send_request(
        self, request: Request, target: Target, user_data: object = None
    ) -> ClientTransaction:
        key = (request.top_via.branch or "", request.method)
        ctxn = ClientTransaction(key, request, target, user_data)
        self.last_requests.append(ctxn)
        return ctxn

    def send_stateless(self, message: Request | Response, target: Target) -> None:
        self.stateless.append((message, target))

    def call_later(self, delay: float, callback: Any) -> _Handle:
        return _HANDLE


def _request(
    method: str, uri: str, call_id: str, cseq: int, to_tag: str | None, route: list[str]
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {GW_IP}:5060;branch=z9hG4bK-{call_id}-{cseq}-{method}",
        f"From: <sip:0312345678@{GW_IP}>;tag=from-{call_id}",
        f"To: <sip:{NUMBER}@{US}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:carrier@{GW_IP}:5060>",
        *(f"Route: {r}" for r in route),
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def _response(ctxn: ClientTransaction, status: int, to_tag: str) -> Response:
    resp = make_response(ctxn.request, status, to_tag=to_tag)
    if status == 200 and ctxn.request.method == "INVITE":
        resp.headers.add("Contact", "<sip:desk1@192.168.1.20:5060>")
    msg = parse_message(resp.to_bytes())
    assert isinstance(msg, Response)
    return msg


class Bench:
    def __init__(self, cdrs: bool = False, calls: int = 0) -> None:
        self.sender = LeanSender()
        self.state = MemoryState()
        snap = snapshot()
        self.writer: CdrWriter | None = None
        records: dict[str, Any] = {}
        if cdrs:
            self.writer = CdrWriter(
                None,  # type: ignore[arg-type]  # never started: nothing is written
                spool_path=Path(tempfile.mkdtemp(prefix="cdr-bench-")) / "spool.jsonl",
                tariffs=default_tariffs(),
                timezone=lambda tenant: "Asia/Tokyo",
                settings=WriterSettings(max_queue=calls + 1000, batch_size=200),
            )
            records = {
                "call_records": CallRecords(node="bench"),
                "cdr_sink": self.writer.submit,
            }
        self.proxy = Proxy(
            sender=self.sender,
            snapshot=lambda: snap,
            state=self.state,
            authenticator=DigestAuthenticator(realm=REALM, secret=b"s" * 32),
            metrics=Metrics(),
            config=ProxyConfig(),
            wall_clock=lambda: WALL,
            **records,
        )
        self.inside = 0.0
        self.records = 0  # CDRs the writer was handed
        self.clock = time.process_time
        self._keys = itertools.count()

    async def register(self) -> None:
        for device, contact, flow in (
            ("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW),
            ("app1", "sip:app1@10.8.0.3:5080;transport=tcp", APP_FLOW),
        ):
            await self.state.put_binding(
                Binding(
                    device_id=device, contact=contact, instance_id=None,
                    expires_at=WALL + 10**6, source=flow, call_id=f"reg-{device}", cseq=1,
                )
            )  # fmt: skip

    async def request(self, req: Request) -> None:
        txn = ServerTransaction(("k", next(self._keys)), req, GW_SRC, req.top_via)
        t0 = self.clock()
        await self.proxy.on_request(txn, req, GW_SRC, None)
        self.inside += self.clock() - t0

    def respond(self, ctxn: ClientTransaction, status: int, to_tag: str) -> None:
        resp = _response(ctxn, status, to_tag)
        t0 = self.clock()
        self.proxy.on_response(ctxn, resp, ctxn.target)
        self.inside += self.clock() - t0

    async def ack(self, req: Request) -> None:
        t0 = self.clock()
        await self.proxy.on_ack(req, GW_SRC)
        self.inside += self.clock() - t0

    async def call(self, n: int) -> None:
        call_id = f"bench-{n}"
        sent = self.sender.last_requests
        sent.clear()
        await self.request(_request("INVITE", f"sip:{NUMBER}@{US}", call_id, 1, None, []))
        desk, app = sent
        self.respond(desk, 180, "desk")
        self.respond(app, 180, "app")
        self.respond(desk, 200, "desk")
        (cancel,) = sent[2:]
        self.respond(app, 487, "app")
        route = desk.request.headers.get_all("Record-Route")
        await self.ack(_request("ACK", desk.request.uri, call_id, 1, "desk", route))
        await self.request(_request("BYE", desk.request.uri, call_id, 2, "desk", route))
        (bye,) = (c for c in sent if c.request.method == "BYE")
        self.respond(bye, 200, "desk")
        statuses = [r.status for t, r in self.sender.responses if t.request.call_id == call_id]
        assert statuses == [180, 180, 200, 200], statuses
        assert cancel.request.method == "CANCEL" and bye.target == DESK_FLOW
        assert len(self.sender.stateless) == 1  # the ACK, forwarded
        self.sender.responses.clear()
        self.sender.stateless.clear()
        if self.writer is not None:  # as the writer's task would: the queue drained
            self.records += self.writer.queue_depth
            self.writer._queue.clear()  # the bench plays the writer's task


async def run(calls: int, clock: str, cdrs: bool = False) -> float:
    bench = Bench(cdrs, calls + 200)
    if clock == "wall":
        bench.clock = time.perf_counter
    await bench.register()
    for n in range(200):  # warm-up (caches, first-call imports)
        await bench.call(-n - 1)
    bench.inside = 0.0
    # The switch's garbage-collector settings (switch.wiring.tune_gc): start-up heap frozen,
    # young generation every 2,000 allocations.
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 5_000, 100)
    for n in range(calls):
        await bench.call(n)
    assert bench.proxy.calls.leases == 0, "a lease was not released"
    if bench.writer is not None:  # one record per call, none left open
        assert bench.records == calls + 200, bench.records
        assert bench.proxy.cdrs is not None and len(bench.proxy.cdrs.records) == 0
    gc.unfreeze()
    return bench.inside / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--cdrs", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.cdrs]
    results: dict[bool, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for mode in modes:
            results[mode].append(asyncio.run(run(args.calls, args.clock, mode)))
    for mode, values in results.items():
        label = "CDRs on " if mode else "CDRs off"
        for r in values:
            print(
                f"{label}: {r:.1f} us/call ({args.calls} calls: INVITE, 2x180, 200, ACK, BYE, 200)"
            )
        if len(values) > 1:
            print(f"{label}: median {statistics.median(values):.1f} us/call")
    if len(modes) == 2:
        off, on = (statistics.median(results[m]) for m in (False, True))
        print(f"CDRs cost {on - off:+.1f} us/call ({(on - off) / off:+.1%})")


if __name__ == "__main__":
    main()
