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
    return task


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Drive a coroutine that was started by hand, as asyncio.Task would: wait for the
    future it yielded, then send(None) (Future.__await__ reads the result itself)."""
    try:
        while True:  # bounded by the coroutine's own life: each pass is one of its awaits
            if isinstance(yielded, asyncio.Future):
                yielded._asyncio_future_blocking = False
                try:
                    await asyncio.wait([yielded])
                except asyncio.CancelledError:
                    yielded = coro.throw(asyncio.CancelledError())
                    continue
            else:  # a bare yield (asyncio.sleep(0))
                await _yield_once()
            yielded = coro.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        coro.close()
        raise
    except Exception:
        _faults.record("transaction user")


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    yield
