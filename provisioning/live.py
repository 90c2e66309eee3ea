"""The live routing snapshot: built from the store, rebuilt on every committed change.

Theory of operation
-------------------
Every committed write bumps `meta.version` and announces it (PostgreSQL
`NOTIFY softswitch_changes, '<version>'`, delivered on commit to every LISTENing process;
SQLite: an in-process callback after the commit). `LiveSnapshot` marks itself dirty when it
hears a version newer than the one it serves, waits `coalesce` seconds so a burst of
changes costs one rebuild, then rebuilds with `build_snapshot` (one consistent read: the
snapshot's version is the version of the data it contains) and pushes the new Snapshot to its
subscribers. A change therefore reaches the switch well within a second.

Failure: if the store is unreachable, the last snapshot stays (calls keep routing), rebuilds
are retried with exponential backoff, the LISTEN connection reconnects by itself and, once
back, reports "something may have changed", which triggers a rebuild that picks up whatever
other processes committed meanwhile. As a safety net (and the only cross-process signal for
SQLite), the version is also polled every `poll_interval` seconds.

For the switch (what to compare between two snapshots): `dropped_devices(old, new)` lists the
IDs whose registrations/device lock must be dropped. It is pure and lives in the model layer
(`provisioning.diff`); it is re-exported here for the switch's existing import, as are
`import_seed` and `seed_if_empty` (`provisioning.services.seeding`).

Usage::

    store = await open_store(url)
    live = LiveSnapshot(store)
    await live.start()                  # first snapshot built (or Snapshot.empty() if down)
    live.subscribe(switch.set_snapshot) # called with each new Snapshot
    snapshot = live.current()
    ...
    await live.stop(); await store.close()
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress

from .diff import dropped_devices
from .errors import StoreUnavailable
from .model import Snapshot
from .services.seeding import import_seed, seed_if_empty
from .store import open_store
from .store.base import ChangeWatch, Store
from .store.queries.snapshot import load_everything

__all__ = [
    "LiveSnapshot",
    "build_snapshot",
    "dropped_devices",
    "import_seed",
    "seed_if_empty",
    "store_source",
]

log = logging.getLogger(__name__)

SnapshotCallback = Callable[[Snapshot], Awaitable[None] | None]


async def build_snapshot(store: Store) -> Snapshot:
    """The whole routing picture from one consistent read. Raises StoreUnavailable."""
    async with store.read() as tx:
        e = await load_everything(tx)
    return Snapshot.build(
        version=e.version,
        realm=e.realm,
        tenants=e.tenants,
        devices=e.devices,
        numbers=e.numbers,
        gateways=e.gateways,
    )


class LiveSnapshot:
    """The current Snapshot of a store, kept fresh. See the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = 5.0,
        coalesce: float = 0.05,
        max_backoff: float = 5.0,
        initial: Snapshot | None = None,
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._coalesce = coalesce
        self._max_backoff = max_backoff
        self._current = initial or Snapshot.empty()
        self._subscribers: list[SnapshotCallback] = []
        self._dirty = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: ChangeWatch | None = None
        self._built = False  # the current snapshot came from the store (not `initial`)
        self.rebuilds = 0
        self.last_error: str | None = None

    # ---- public

    def current(self) -> Snapshot:
        return self._current

    def subscribe(self, callback: SnapshotCallback) -> Callable[[], None]:
        """`callback(snapshot)` after each rebuild that changed the version (sync or async).
        Returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def start(self) -> None:
        """Builds the first snapshot (keeps `initial`/empty and retries if the store is
        down), then listens for changes and polls the version."""
        try:
            self._current = await build_snapshot(self._store)
            self._built = True
            self.last_error = None
        except StoreUnavailable as exc:
            log.warning("store unavailable at start, serving the initial snapshot: %s", exc)
            self.last_error = str(exc)
            self._dirty.set()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._rebuild_loop(), name="snapshot-rebuild"),
            loop.create_task(self._poll_loop(), name="snapshot-poll"),
        ]
        self._watch = await self._store.watch(self._on_change)

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def refresh(self) -> Snapshot:
        """Rebuild now (raises StoreUnavailable)."""
        await self._install(await build_snapshot(self._store))
        return self._current

    async def updates(self) -> AsyncIterator[Snapshot]:
        """The current snapshot, then every new one (only the latest if several arrived
        while the consumer was busy)."""
        queue: asyncio.Queue[Snapshot] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            yield self._current
            while True:
                snapshot = await queue.get()
                while not queue.empty():
                    snapshot = queue.get_nowait()
                yield snapshot
        finally:
            unsubscribe()

    async def wait_for(self, version: int, timeout: float) -> Snapshot:
        """The snapshot once its version is ≥ `version` (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._current.version >= version)
        return self._current

    # ---- internals

    def _on_change(self, version: int | None) -> None:
        if version is None or version != self._current.version:
            self._dirty.set()

    async def _rebuild_loop(self) -> None:
        backoff = 0.1
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._coalesce)
            self._dirty.clear()
            try:
                # A reconnect says "maybe changed": a one-row read avoids a needless rebuild.
                if self._built and await self._store.version() == self._current.version:
                    continue
                snapshot = await build_snapshot(self._store)
            except StoreUnavailable as exc:
                self.last_error = str(exc)
                log.warning(
                    "snapshot rebuild failed, keeping version %d: %s", self._current.version, exc
                )
                # Back off, but wake at once on a change signal (a NOTIFY, an in-process
                # commit, the LISTEN connection coming back): the store is evidently back.
                self._dirty.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._dirty.set()
                continue
            backoff = 0.1
            self.last_error = None
            await self._install(snapshot)

    async def _install(self, snapshot: Snapshot) -> None:
        if snapshot.version == self._current.version and self._built:
            return
        self._current = snapshot
        self._built = True
        self.rebuilds += 1
        async with self._changed:
            self._changed.notify_all()
        for cb in list(self._subscribers):
            try:
                result = cb(snapshot)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("snapshot subscriber failed")

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                version = await self._store.version()
            except StoreUnavailable as exc:
                self.last_error = str(exc)
                self._dirty.set()  # the rebuild loop retries with backoff
                continue
            if version != self._current.version:
                self._dirty.set()


def store_source(
    store_or_url: Store | str, *, poll_interval: float = 5.0, coalesce: float = 0.05
) -> Callable[[], AsyncIterator[Snapshot]]:
    """A `switch.app.SnapshotSource`: the store's snapshot, then one per committed change.
    Given a URL it opens (and finally closes) its own store; given a Store it shares it (the
    embedded default: the REST API and the switch on one SQLite file in one process).
    """

    async def source() -> AsyncIterator[Snapshot]:
        owned = isinstance(store_or_url, str)
        store = await open_store(store_or_url) if isinstance(store_or_url, str) else store_or_url
        live = LiveSnapshot(store, poll_interval=poll_interval, coalesce=coalesce)
        try:
            await live.start()
            async for snapshot in live.updates():
                yield snapshot
        finally:
            await live.stop()
            if owned:
                await store.close()

    return source
