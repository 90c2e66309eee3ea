"""What else used the machine during a benchmark step: the CPU of the whole machine from
/proc/stat, less everything the bench itself ran (this process and its descendants: the
target, the SIPp processes — live ones from /proc, finished ones from RUSAGE_CHILDREN), over
the step's wall time. On a shared 2-core machine a step that ran beside a busy neighbour is
slower for reasons that are not the target's; printing `other_cores` next to each figure lets
a reader discount a disturbed step."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass

__all__ = ["CpuWatch", "StepLoad"]

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy since boot (not idle, not iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def _own_seconds() -> float:
    """CPU-seconds of this process, its live descendants and its reaped children."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, utime+stime)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
            rest = raw[raw.rindex(")") + 2 :].split()
            stats[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, []))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + ru.ru_utime + ru.ru_stime


@dataclass(frozen=True, slots=True)
class StepLoad:
    seconds: float
    busy_cores: float  # the whole machine, in cores (2.0 = both cores busy)
    bench_cores: float  # the target, SIPp and the bench itself
    other_cores: float  # everything else: other helpers' tests, the kernel's share ...

    def describe(self) -> str:
        return (
            f"machine busy {self.busy_cores:.2f} cores: bench (target + SIPp) "
            f"{self.bench_cores:.2f}, other {self.other_cores:.2f}"
        )


class CpuWatch:
    """`watch = CpuWatch()` at the step's start, `watch.stop()` at its end."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _busy_seconds()
        self._own0 = _own_seconds()

    def stop(self) -> StepLoad:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        busy = _busy_seconds() - self._busy0
        own = _own_seconds() - self._own0
        return StepLoad(
            seconds=round(elapsed, 2),
            busy_cores=round(busy / elapsed, 2),
            bench_cores=round(own / elapsed, 2),
            other_cores=round(max(0.0, busy - own) / elapsed, 2),
        )
