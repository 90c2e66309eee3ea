"""Redis commands and round trips per call (issue 11 §2): the switch on Redis state, calls
driven by SIPp, every command it sends counted with Redis MONITOR.

    python -m tests.bench.redis_calls_bench                  # 200 calls at 20/s
    python -m tests.bench.redis_calls_bench --calls 3000 --rate 200   # + CPU-s per 1,000 calls
    python -m tests.bench.redis_calls_bench --hold 3000      # each call up 3 s before its BYE

The call is `tests.bench.run`'s (SIPp UAC as the carrier -> switch -> SIPp UAS registered with
digest; INVITE-100-180-200-ACK-BYE, an inbound call answered at once then hung up; `--hold MS`
keeps it up that long before the BYE, as SIPp's `-d`), on a
switch of one worker whose state URL names a Redis DB of this bench's own (`--db`, 11), so
that MONITOR lines of other clients of the shared server are left out by their DB number.

Counted from the UAS's registration on, up to a second after the last call ended:
- round trips: each command a client connection sends outside MULTI/EXEC, plus one per
  MULTI...EXEC block (redis-py sends a transaction in one write and reads it in one);
- commands: those round trips' commands (MULTI/EXEC left out), and the commands Lua scripts
  ran inside Redis (MONITOR shows them as client "lua");
- per name, so that the background (the `expire` sweep, the operator end-request poll,
  connection set-up) can be told from what a call costs.
Per call = (counted - background) / calls, where background is what the same switch sends
during an equally long idle window before the calls.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from tests.bench.run import log, run_step
from tests.bench.workers_bench import SETUPS, register, start, step_seed
from tests.integration.harness import free_port

SETUP_NAMES = ("MULTI", "EXEC", "CLIENT", "SELECT", "HELLO", "PING")
CONNECTION = ("CLIENT", "SELECT", "HELLO")  # a new pooled connection's set-up


@dataclass
class Tally:
    """What MONITOR saw of one DB between `start()` and `stop()`."""

    db: int
    top: Counter[str] = field(default_factory=Counter)  # commands sent by clients
    lua: Counter[str] = field(default_factory=Counter)  # commands run by scripts
    trips: int = 0
    counting: bool = False
    _in_multi: set[str] = field(default_factory=set)

    def see(self, cmd: dict[str, Any]) -> None:
        if not self.counting or int(cmd["db"]) != self.db:
            return
        name = str(cmd["command"]).split(" ", 1)[0].strip('"').upper()
        if cmd.get("client_type") == "lua":
            self.lua[name] += 1
            return
        client = f"{cmd['client_address']}:{cmd['client_port']}"
        if name == "MULTI":
            self._in_multi.add(client)
        elif name in ("EXEC", "DISCARD"):
            self._in_multi.discard(client)
            self.trips += 1
        else:
            self.top[name] += 1
            if client not in self._in_multi:
                self.trips += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str], int]:
        return Counter(self.top), Counter(self.lua), self.trips


def monitor(tally: Tally, stop: threading.Event, ready: threading.Event) -> None:
    raw = Redis(host="127.0.0.1", port=6379, decode_responses=True)
    with raw.monitor() as m:
        ready.set()
        while not stop.is_set():
            tally.see(m.next_command())


def per_call(counted: Counter[str], idle: Counter[str], calls: int) -> dict[str, float]:
    return {
        k: round((counted[k] - idle.get(k, 0)) / calls, 2)
        for k in sorted(counted, key=lambda k: -counted[k])
        if counted[k] - idle.get(k, 0) > 0
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--db", type=int, default=11)
    ap.add_argument("--hold", type=int, default=0, help="ms between the ACK and the BYE")
    ap.add_argument("--no-monitor", action="store_true", help="CPU only (MONITOR costs Redis)")
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("error: sipp not found (scripts/ensure-test-deps.sh --bench)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="softswitch-redis-calls-"))
    tally = Tally(args.db)
    stop, ready = threading.Event(), threading.Event()
    if not args.no_monitor:
        threading.Thread(target=monitor, args=(tally, stop, ready), daemon=True).start()
        ready.wait(5)
    setup = next(s for s in SETUPS if s.workers == 1 and s.redis)
    tenant = f"rc{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/{args.db}"
    s = None
    target, sw = start(setup, work / "switch", step_seed(tenant), url)
    try:
        uas_port = free_port()
        register(target, work, uas_port, f"{tenant}-uas")
        seconds = args.calls / args.rate
        window = seconds + args.hold / 1000  # the calls window lasts the holds too
        time.sleep(1.0)
        tally.counting = not args.no_monitor  # idle window: what the switch sends anyway
        time.sleep(0 if args.no_monitor else window + 1.0)
        idle_top, idle_lua, idle_trips = tally.snapshot()
        tally.top, tally.lua, tally.trips = Counter(), Counter(), 0
        hold = ["-d", str(args.hold)] if args.hold else []
        s = run_step(target, work, uas_port, args.rate, seconds, latency=False, uac_extra=hold)
        time.sleep(1.0)  # the last BYEs' releases
        tally.counting = False
        top, lua, trips = tally.snapshot()
    finally:
        sw.stop()
        stop.set()
        if s is None or s.ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed step: {work} kept")
    calls = s.uac_successful or 1
    log(f"{s.uac_successful}/{s.calls} calls ok, {s.uac_failed} failed, {s.seconds} s; "
        f"switch {s.cpu_s_per_1000_calls} CPU-s per 1,000 calls at {args.rate}/s; "
        f"other cores busy {s.other_cores}")  # fmt: skip
    if args.no_monitor:
        return 0 if s.ok else 1
    conn = sum(top[k] for k in CONNECTION)
    print(f"idle window ({window + 1:.0f} s): {idle_trips} round trips, "
          f"{sum(idle_top.values())} commands + {sum(idle_lua.values())} in scripts: "
          f"{dict(idle_top)} {dict(idle_lua)}")  # fmt: skip
    print(f"calls window: {trips} round trips, {sum(top.values())} commands "
          f"({conn} connection set-up) + {sum(lua.values())} in scripts")  # fmt: skip
    rt = (trips - idle_trips - conn) / calls
    sent = (sum(top.values()) - sum(idle_top.values()) - conn) / calls
    inner = (sum(lua.values()) - sum(idle_lua.values())) / calls
    print(f"PER CALL: {rt:.2f} round trips, {sent:.2f} commands sent, "
          f"{inner:.2f} commands run by scripts, {sent + inner:.2f} commands in all")  # fmt: skip
    print(f"  sent per call:      {per_call(top, idle_top, calls)}")
    print(f"  in scripts per call: {per_call(lua, idle_lua, calls)}")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
