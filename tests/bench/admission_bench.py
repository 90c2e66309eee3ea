"""Micro-benchmark of the per-packet flood admission (a script, not a test):

    python -m tests.bench.admission_bench [--packets 2000000]

Prints ns/packet for
- `FloodGuard.admit` of a source under the limit (the cost every datagram pays), cycling
  over 200 sources as a busy switch sees them, and of one busy source;
- `FloodGuard.admit` of a blocked source (the drop path);
- `TransportManager._on_datagram` end to end for a blocked source (what a flood packet costs
  the switch in Python, after uvloop handed it over) against an admitted INVITE (parse,
  Via fix-up, delivery to a receiver that does nothing), with the guard on and off.
The figures include the Python loop calling the function (`empty loop` is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from switch.metrics import Metrics
from switch.sip.message import Request, Response
from switch.sip.target import Target
from switch.transport.flood import FloodGuard, FloodSettings
from switch.transport.manager import TransportManager, TransportSettings

from .parser_bench import INVITE


def per_call_ns(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def admit_loop(guard: FloodGuard, sources: list[str], n: int) -> float:
    admit = guard.admit
    rounds = max(1, n // len(sources))
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        for s in sources:
            admit(s)
    return (time.perf_counter_ns() - t0) / (rounds * len(sources))


def empty_loop(sources: list[str], n: int) -> float:
    rounds = max(1, n // len(sources))
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        for _s in sources:
            pass
    return (time.perf_counter_ns() - t0) / (rounds * len(sources))


class _Null:
    def on_message(self, message: Request | Response, source: Target) -> None:
        pass

    def on_send_error(self, target: Target) -> None:
        pass


async def manager_figures(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, limit in (("guard on", 600), ("guard off", 0)):
        tm = TransportManager(_Null(), Metrics(), TransportSettings(flood_limit=limit))
        key = f"_on_datagram, admitted INVITE ({label})"
        out[key] = per_call_ns(_admitted(tm, ("192.0.2.1", 5060)), n // 20)
        if limit:
            bad = ("192.0.2.66", 5060)
            for _ in range(limit + 1):
                tm._on_datagram(INVITE, bad)
            assert tm._guard.is_blocked(bad[0])
            out["_on_datagram, blocked source (dropped)"] = per_call_ns(_dropped(tm, bad), n)
        await tm.close()
    return out


def _admitted(tm: TransportManager, addr: tuple[str, int]) -> Callable[[], None]:
    """An admitted INVITE: parse + deliver (the guard's share is the difference on/off)."""

    def run() -> None:
        tm._on_datagram(INVITE, addr)
        tm._guard._counts.clear()  # stay under the limit however many runs

    return run


def _dropped(tm: TransportManager, addr: tuple[str, int]) -> Callable[[], None]:
    return lambda: tm._on_datagram(INVITE, addr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=2_000_000)
    n = ap.parse_args(argv).packets
    sources = [f"10.0.{i // 250}.{i % 250}" for i in range(200)]
    rows: dict[str, float] = {"empty loop": empty_loop(sources, n)}
    guard = FloodGuard(FloodSettings(limit=1 << 30), lambda e: None, 0.0)
    rows["admit, 200 sources under the limit"] = admit_loop(guard, sources, n)
    guard = FloodGuard(FloodSettings(limit=1 << 30), lambda e: None, 0.0)
    rows["admit, one busy source under the limit"] = admit_loop(guard, sources[:1], n)
    guard = FloodGuard(FloodSettings(limit=10), lambda e: None, 0.0)
    for _ in range(11):
        guard.admit(sources[0])
    rows["admit, blocked source (drop)"] = admit_loop(guard, sources[:1], n)
    rows.update(asyncio.run(manager_figures(n)))
    width = max(map(len, rows))
    for name, ns in rows.items():
        print(f"{name:<{width}}  {ns:9.1f} ns/packet")


if __name__ == "__main__":
    main()
