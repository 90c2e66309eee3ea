"""A TCP relay in front of the real Redis that a test can break, running in a thread of its own
(so that synchronous tests driving a switch subprocess can use it too).

- `hold()`: a black hole - connections are still accepted, nothing is forwarded in either
  direction, the bytes are kept; `resume()` delivers what was held, then forwards again (a
  network that recovers delivers what it held: a command can reach Redis long after its
  sender gave up on it).
- `drop()`: every connection is closed and new ones are closed at once (Redis is gone);
  `resume()` accepts again. Nothing sent meanwhile ever arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

REDIS_PORT = 6379


@contextlib.contextmanager
def clean_redis_db(db: int) -> Iterator[redis.Redis]:
    """A client of the real Redis's database `db` with the switch's keys (softswitch:*)
    removed before and after: the database a test's switches use. Fails loudly when Redis
    is not there."""
    client = redis.Redis(port=REDIS_PORT, db=db, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at 127.0.0.1:{REDIS_PORT} is not reachable: {exc}")

    def clean() -> None:
        keys = list(client.scan_iter(match="softswitch:*", count=1000))
        if keys:
            client.delete(*keys)

    clean()
    try:
        yield client
    finally:
        clean()
        client.close()


class RedisRelay:
    def __init__(self, target_port: int = REDIS_PORT) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open: asyncio.Event | None = None
        self._dropping = False
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    def __enter__(self) -> RedisRelay:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()  # else its __del__ warns (an unraisable exception in pytest)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def hold(self) -> None:
        self._loop.call_soon_threadsafe(self._event().clear)

    def resume(self) -> None:
        def go() -> None:
            self._dropping = False
            self._event().set()

        self._loop.call_soon_threadsafe(go)

    def drop(self) -> None:
        self._call(self._drop())

    # ---------------------------------------------------------------- in the thread
    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _event(self) -> asyncio.Event:
        if self._open is None:
            self._open = asyncio.Event()
            self._open.set()
        return self._open

    async def _start(self) -> int:
        self._event()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        mine = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not mine]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drop(self) -> None:
        self._dropping = True
        for w in self._writers:
            w.close()
        self._writers.clear()

    async def _relay(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self._dropping:
            w.close()
            return
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [w, uw]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    await self._event().wait()  # held: kept until resume()
                    if self._dropping:
                        break
                    dst.write(data)
                    await dst.drain()
            dst.close()

        # Cancelled at stop: end quietly (asyncio's stream callback would log the cancellation
        # of a connection handler as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(r, uw), pipe(ur, w))
