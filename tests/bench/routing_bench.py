"""Routing policy micro-benchmark: decisions per second of `routing.decide`.

    .venv/bin/python -m tests.bench.routing_bench [--seconds 3] [--tenants 1000]

The tenant under test has 10 IDs (2 desk phones, 1 ATA, 7 apps), 3 numbers (contract,
additional, toll-free), every option on the contract number and full after-hours schedules
(all four day kinds, a different action per half hour), among `--tenants` other tenants so the
snapshot's mappings are realistically large. The call mix covers every inbound and outbound
path at times spread over a fortnight, holidays included.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from provisioning.model import (
    SLOTS_PER_DAY,
    DayKind,
    DeviceKind,
    Forwarding,
    NumberKind,
    NumberOptions,
    SlotAction,
    Snapshot,
)
from routing import Call, LiveState, decide
from routing.testing import device, number, schedule, snapshot, tenant

CONTRACT, ADDITIONAL, TOLL_FREE = "+81312340000", "+81312340001", "+81120340000"
KINDS = [DeviceKind.DESK, DeviceKind.DESK, DeviceKind.ATA] + [DeviceKind.APP] * 7


def full_schedule(offset: int) -> dict[DayKind, dict[int, SlotAction]]:
    actions = (SlotAction.RING, SlotAction.ANNOUNCE, SlotAction.FORWARD)
    return {
        kind: {i: actions[(i + offset + k) % 3] for i in range(SLOTS_PER_DAY)}
        for k, kind in enumerate(DayKind)
    }


def build(others: int) -> Snapshot:
    holidays = [date(2026, 11, 23), date(2026, 11, 29)]
    tenants = [tenant("bench", holidays=holidays)]
    devices = [device(f"bench-{i}", tenant_id="bench", kind=k) for i, k in enumerate(KINDS)]
    ids = [d.id for d in devices]
    every = NumberOptions(after_hours=True, voicemail=True, forwarding=True, recording=True)
    numbers = [
        number(
            CONTRACT,
            ids,
            tenant_id="bench",
            options=every,
            app_ring_delay=4.0,
            after_hours=schedule(slots=full_schedule(0)),
            recording_notice=True,
            forwarding=Forwarding(target="09011112222"),
            label="Main",
            label_in_display_name=True,
        ),
        number(
            ADDITIONAL,
            ids[:5],
            tenant_id="bench",
            kind=NumberKind.ADDITIONAL,
            options=NumberOptions(after_hours=True, voicemail=True),
            after_hours=schedule(slots=full_schedule(1)),
        ),
        number(
            TOLL_FREE,
            ids[5:],
            tenant_id="bench",
            kind=NumberKind.TOLL_FREE,
            options=NumberOptions(after_hours=True),
            after_hours=schedule(slots=full_schedule(2)),
        ),
    ]
    for t in range(others):
        tid = f"o{t}"
        tenants.append(tenant(tid))
        e164 = f"+8135{t:07d}"
        devices += [device(f"{tid}-{i}", tenant_id=tid, presented_number=e164) for i in range(3)]
        numbers.append(number(e164, [f"{tid}-0", f"{tid}-1", f"{tid}-2"], tenant_id=tid))
    return snapshot(tenants, devices, numbers)


def workload(inbound_only: bool = False) -> list[tuple[Call, datetime]]:
    start = datetime(2026, 11, 16, tzinfo=UTC)
    times = [start + timedelta(minutes=17 * i) for i in range(1200)]  # two weeks
    inbound = [
        Call.inbound(call_id="in", dialled=d, caller_number="+81355550000")
        for d in ("0312340000", "+81312340001", "0120340000", "0399999999")
    ]
    outbound = [
        Call.from_device(call_id="out", device_id=f"bench-{i % 10}", dialled=d)
        for i, d in enumerate(
            (
                "0355550000",
                "09011112222",
                "1840570123456",
                "104",
                "110",
                "+12125551234",
                "user-bench-3",
                "0312340001",
            )
        )
    ]
    calls = inbound if inbound_only else inbound * 2 + outbound
    return [(c, t) for c, t in zip(itertools.cycle(calls), times * 3, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tenants", type=int, default=1000, help="other tenants in snapshot")
    parser.add_argument(
        "--inbound-only", action="store_true", help="only carrier calls to the tenant's numbers"
    )
    args = parser.parse_args()
    snap = build(args.tenants)
    live = LiveState(
        channels={"bench": 3}, registered=frozenset(f"bench-{i}" for i in range(0, 10, 2))
    )
    work = workload(args.inbound_only)
    rules: Counter[str] = Counter(decide(c, snap, live, t).rule for c, t in work)
    done, began = 0, time.perf_counter()
    deadline = began + args.seconds
    while time.perf_counter() < deadline:
        for call, now in work:
            decide(call, snap, live, now)
        done += len(work)
    elapsed = time.perf_counter() - began
    mix = "inbound only" if args.inbound_only else "inbound + outbound"
    print(f"routing decisions ({mix}), rules exercised: {len(rules)} ({', '.join(sorted(rules))})")
    print(
        f"{done} decisions in {elapsed:.2f} s: {done / elapsed:,.0f} decisions/s "
        f"({elapsed / done * 1e6:.1f} us/decision)"
    )


if __name__ == "__main__":
    main()
