"""Two small runtime helpers shared by the transport glue, the transaction users and media:

- `run_eager(coro)`: run a coroutine synchronously up to its first real suspension, and only
  then make it a task. A transaction user that answers without awaiting (the memory state
  backend) costs no task at all; one that suspends (Redis) continues in a task.
- `FaultLog`: contain a failure while handling one message or one timer. The failure is
  counted by the caller and logged with its traceback at most once per interval per place, so
  that a flood of one bad datagram cannot flood the log (1,000 datagrams once wrote 2 MB of
  identical tracebacks).

No asyncio object is created at import time; both work inside any running loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["FaultLog", "run_eager"]

log = logging.getLogger(__name__)

_pending: set[asyncio.Task[None]] = set()


class FaultLog:
    """Rate-limited tracebacks: `record(where)` logs the current exception with its traceback
    if `where` has not logged one within `interval` seconds, else only at debug level. Returns
    whether it logged. Call it from an `except` block."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def record(self, where: str) -> bool:
        now = self._clock()
        last = self._last.get(where)
        if last is not None and now - last < self._interval:
            self._log.debug("%s failed (repeated)", where, exc_info=True)
            return False
        if len(self._last) > 256:  # places are few; never let junk grow it
            self._last.clear()
        self._last[where] = now
        self._log.exception(
            "%s failed (further failures there for %.0f s are only counted)",
            where,
            self._interval,
        )
        return True


_faults = FaultLog(log)


def run_eager(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coro` synchronously up to its first real suspension; only then make it a task.
    Returns the task, or None when the coroutine finished at once. Exceptions are logged
    (rate-limited) and never propagate to the caller."""
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    except Exception:
        _faults.record("transaction user")
        return None
    task = asyncio.get_running_loop().create_task(_resume(coro, first))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    # cancelled before its first step, the task never reached the coroutine: close it (its
    # finally blocks run); a no-op for one that ended
    task.add_done_callback(lambda _: coro.close())
    return task


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """The rest of a coroutine started by hand, in a task: the task waits for the future it
    yielded (or, for a bare yield, steps again soon), as if it had run it from the start."""
    try:
        await _continue(coro, yielded)
    except asyncio.CancelledError:
        raise
    except Exception:
        _faults.record("transaction user")


@types.coroutine
def _continue(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, None, None]:
    """Yield what the coroutine yielded to the task driving this (which then waits for that
    future, as it would for the coroutine's own await), then delegate to the coroutine:
    `yield from` resumes it with send(None) - Future.__await__ reads the result itself - and
    passes its further yields, sends and throws through. A throw at the first yield (the
    task cancelled meanwhile) goes into the coroutine, which then goes on being delegated to."""
    try:
        yield yielded
    except BaseException as exc:  # handed to the coroutine, as a task would
        try:
            yielded = coro.throw(exc)
        except StopIteration:
            return
        yield from _continue(coro, yielded)
        return
    yield from coro
