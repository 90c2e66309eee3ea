"""What else used the machine during a benchmark step: the CPU of the whole machine from
/proc/stat, less the target's own processes and the SIPp processes the bench ran (reaped
children: RUSAGE_CHILDREN), over the step's wall time. On a shared 2-core machine a step that
ran beside a busy neighbour is slower for reasons that are not the target's; printing
`other_cores` next to each figure lets a reader discount a disturbed step."""

from __future__ import annotations

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


def _children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass(frozen=True, slots=True)
class StepLoad:
    seconds: float
    busy_cores: float  # the whole machine, in cores (2.0 = both cores busy)
    target_cores: float
    sipp_cores: float
    other_cores: float  # everything else: other helpers' tests, the kernel's share ...

    def describe(self) -> str:
        return (
            f"machine busy {self.busy_cores:.2f} cores: target {self.target_cores:.2f}, "
            f"SIPp {self.sipp_cores:.2f}, other {self.other_cores:.2f}"
        )


class CpuWatch:
    """`watch = CpuWatch()` at the step's start, `watch.stop(target_cpu_seconds)` at its end
    (after the SIPp processes were waited for)."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _busy_seconds()
        self._kids0 = _children_seconds()

    def stop(self, target_cpu_seconds: float) -> StepLoad:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        busy = _busy_seconds() - self._busy0
        sipp = _children_seconds() - self._kids0
        other = max(0.0, busy - target_cpu_seconds - sipp)
        return StepLoad(
            seconds=round(elapsed, 2),
            busy_cores=round(busy / elapsed, 2),
            target_cores=round(target_cpu_seconds / elapsed, 2),
            sipp_cores=round(sipp / elapsed, 2),
            other_cores=round(other / elapsed, 2),
        )
