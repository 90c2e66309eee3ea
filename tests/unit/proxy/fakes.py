"""Test doubles for the proxy's seams: a fake clock/scheduler (no sleeps)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """call_later on a fake clock; `advance(dt)` fires what falls due, in order."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._heap: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeHandle:
        h = FakeHandle(self.time + delay, callback)
        heapq.heappush(self._heap, (h.when, next(self._seq), h))
        return h

    def pending(self) -> list[FakeHandle]:
        return sorted((h for _, _, h in self._heap if not h.cancelled), key=lambda h: h.when)

    def advance(self, dt: float) -> None:
        end = self.time + dt
        while self._heap and self._heap[0][0] <= end:
            when, _, h = heapq.heappop(self._heap)
            if h.cancelled:
                continue
            self.time = when
            h.callback()
        self.time = end
