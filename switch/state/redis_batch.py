"""Call refreshes held back and sent together (RedisState.refresh_call_later, base.py Calls).

Why: an answered call's record must say it is answered (the operator API's active calls, read
by every node) and its lease takes the TTL the answer negotiated (leases.py). Written at once,
that is a round trip of its own between the acquire and the release: 4 per call (issue 11 §2
allows 3). Nothing waits for it (the proxy forwards the 2xx first), so it is queued here and

- rides on the next MULTI/EXEC round trip the process makes anyway: the next call's
  `routing_lookup`, or the housekeeping's `ends_requested` poll (every second, switch/app.py),
  as one more command of that transaction (one script for every queued call: `REFRESH_CALLS`);
- or goes on its own `delay` seconds after it was queued when nothing carried it (a process
  without housekeeping: tests, tools), one round trip for all the queued calls.

So on a switch in service it costs no round trip at all; the operator view shows the answer
at most about a second late (`delay`, 2 s, at worst). A call released while its refresh waits
here takes the refresh out (`drop`): the release covers it, nothing is written twice.

Each queued refresh is exactly `refresh_call` (the same script, run once per call inside
`REFRESH_CALLS`): it extends a live lease and rewrites the record, and never takes a lease
that is gone again - a late refresh cannot resurrect a call released meanwhile by another
node or an operator. Its result (False: the lease was gone) reaches the caller as
`refresh_call`'s would; a failure of the round trip that carried it, as StateUnavailable.
A refresh queued again before it was sent replaces the queued one (the newer deadline and
record win; every caller gets the one result), and so does one sent at once meanwhile
(`at_once`: an older record must never land after a newer one, e.g. the answer's without
the `also` key that `also_count` has just written).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .base import StateUnavailable

__all__ = ["RefreshBatch", "Taken"]


@dataclass(slots=True)
class _Queued:
    keys: list[str]
    args: list[str]
    since: float  # loop time it was queued at
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)


@dataclass(slots=True)
class Taken:
    """Queued refreshes taken out to be sent: `keys` and `args` are REFRESH_CALLS's."""

    entries: list[_Queued]
    keys: list[str]
    args: list[str]


class RefreshBatch:
    """The queue (module docstring). `send(keys, args)` runs REFRESH_CALLS on its own round
    trip (RedisState wraps it like any operation: breaker, errors as StateUnavailable)."""

    def __init__(self, delay: float, send: Callable[[list[str], list[str]], Awaitable[Any]]):
        self.delay = delay
        self._send = send
        self._queued: dict[str, _Queued] = {}
        self._timer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, call_id: str, keys: list[str], args: list[str]) -> asyncio.Future[bool]:
        """Queue REFRESH_CALL(keys, args) of the call; the future gets its result."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        queued = self._queued.pop(call_id, None)  # re-queued: to the end, newest values
        waiters = [*queued.waiters, waiter] if queued is not None else [waiter]
        self._queued[call_id] = _Queued(keys, args, loop.time(), waiters)
        if self._timer is None or self._timer.done():
            self._timer = loop.create_task(self._send_later())
        return waiter

    def drop(self, call_id: str) -> None:
        """The call is being released: its queued refresh is moot (the lease is going)."""
        queued = self._queued.pop(call_id, None)
        if queued is not None:
            _settle(queued, False)

    async def at_once(self, call_id: str, send: Awaitable[Any]) -> bool:
        """A refresh of the call sent at once (`refresh_call`: `send`) has a newer record
        than one queued, which must not land after it: the queued one is taken out, and the
        outcome of `send` becomes its outcome too."""
        queued = self._queued.pop(call_id, None)
        try:
            done = bool(await send)
        except BaseException as exc:
            if queued is not None:
                _settle(queued, StateUnavailable(f"redis: refresh_call failed: {exc}"))
            raise
        if queued is not None:
            _settle(queued, done)
        return done

    async def execute(self, pipe: Any, script: str) -> list[Any]:
        """Execute an operation's MULTI/EXEC pipeline carrying what is queued as one more
        command (EVAL of `script`, REFRESH_CALLS: no NOSCRIPT inside a transaction). The
        outcome goes to the refreshes' callers and never fails the operation."""
        taken = self.take()
        if taken is not None:
            pipe.eval(script, len(taken.keys), *taken.keys, *taken.args)
        try:
            replies: list[Any] = await pipe.execute(raise_on_error=taken is None)
        except BaseException as exc:
            self.settle(taken, exc)
            raise
        if taken is not None:
            self.settle(taken, replies.pop())
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    def take(self) -> Taken | None:
        """Everything queued, to be sent now (by a carrier or by the timer); None if empty."""
        if not self._queued:
            return None
        entries = list(self._queued.values())
        self._queued.clear()
        keys: list[str] = []
        args: list[str] = [str(len(entries))]
        for e in entries:
            keys += e.keys
            args += [str(len(e.keys)), *e.args]
        return Taken(entries, keys, args)

    @staticmethod
    def settle(taken: Taken | None, outcome: Any) -> None:
        """Hand the reply of REFRESH_CALLS (a list, one result per call) or the exception of
        the round trip that carried it to the callers."""
        if taken is None:
            return
        if isinstance(outcome, BaseException) or not isinstance(outcome, list):
            error = StateUnavailable(f"redis: refresh_call_later failed: {outcome}")
            for e in taken.entries:
                _settle(e, error)
            return
        for e, result in zip(taken.entries, outcome, strict=True):
            _settle(e, bool(result))

    async def _send_later(self) -> None:
        """One timer while anything is queued: it sends the queue when its oldest entry has
        waited `delay` (in insertion order, the first), never younger ones on their own
        account - under load the carriers take everything long before that."""
        loop = asyncio.get_running_loop()
        while self._queued:
            wait = next(iter(self._queued.values())).since + self.delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            taken = self.take()
            assert taken is not None
            try:
                outcome: Any = await self._send(taken.keys, taken.args)
            except BaseException as exc:
                self.settle(taken, exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled (close): its callers were told
                continue
            self.settle(taken, outcome)

    async def close(self) -> None:
        """Stop the timer and send what is queued now (the backend is closing: a stopping
        node's answered calls still show as answered)."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._timer
            self._timer = None
        taken = self.take()
        if taken is None:
            return
        try:
            outcome: Any = await self._send(taken.keys, taken.args)
        except Exception as exc:
            outcome = exc
        self.settle(taken, outcome)


def _settle(queued: _Queued, outcome: bool | BaseException) -> None:
    for waiter in queued.waiters:
        if waiter.done():  # its caller went away
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
