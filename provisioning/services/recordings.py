"""Call recordings: the repository the switch registers finished recordings into, the tenant
operations of the REST API (list, one, delete, bulk delete, the rows of a bulk download) and
the retention sweep.

Storage seam: a recording's audio is a file (a two-channel WAV, ~115 MB per hour of call),
not a row. The rows hold its metadata and its `path`, relative to a `RecordingFiles` store.
`DirectoryFiles(root)` is the default: a directory (on several nodes, the same shared
filesystem mounted at the same place: README "Call recording"). Another storage (an S3
bucket) implements the same four calls.

Deletes remove the row first (in the transaction), then the files: a failure in between
leaves an orphan file, never a row without audio; orphans go with their day directory at
the next retention sweep (switch/recordings.py).

Service rules (docs/service-rules.md, "Call recording"): every call on a number with the
option is recorded, kept 30 days (`rules.RECORDING_RETENTION_DAYS`) with no size limit;
listed, downloaded in bulk and deleted in bulk from the customer page - tenant and operator
tokens only (devices have no API access at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from .. import rules
from ..errors import InvalidInput, NotFound
from ..records import NewRecording, RecordingInfo, RecordingQuery
from ..store.base import Store
from ..store.queries import recordings as q
from ..store.queries import tenants
from .base import (
    Page,
    Principal,
    decode_cursor,
    invalid_filter,
    new_id,
    page_limit,
    page_of,
    require_tenant,
)

__all__ = ["DirectoryFiles", "NoFiles", "RecordingFiles", "RecordingsRepo"]

log = logging.getLogger(__name__)

DELETE_BATCH = 500  # rows per transaction of a bulk delete / retention sweep
ARCHIVE_PAGE = 100  # rows read per transaction while a ZIP streams


class RecordingFiles(Protocol):
    """Where recordings' audio lives. Paths are relative ("2026/12/02/<call>.wav" or with a
    node prefix); every method may block briefly (a local or network filesystem): callers
    in the event loop run them in a thread."""

    def size(self, path: str) -> int:
        """Octets of the recording's audio file; OSError when it is gone."""
        ...

    def open(self, path: str) -> BinaryIO:
        """The audio for reading; OSError when it is gone."""
        ...

    def remove(self, path: str) -> None:
        """Remove the audio and whatever goes with it (the JSON sidecar); no error when it
        is already gone."""
        ...


class DirectoryFiles:
    """`RecordingFiles` over a directory: `path` is below `root` (never outside it)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def resolve(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root):
            raise OSError(f"recording path outside the recordings directory: {path!r}")
        return full

    def size(self, path: str) -> int:
        return self.resolve(path).stat().st_size

    def open(self, path: str) -> BinaryIO:
        return self.resolve(path).open("rb")

    def remove(self, path: str) -> None:
        wav = self.resolve(path)
        for each in (wav, wav.with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError):
                each.unlink()


DeleteListener = Callable[[str, list[RecordingInfo]], None]
"""Told (reason, what was deleted) after every delete: reason `api` or `retention`."""


class RecordingsRepo:
    """Recordings over a provisioning `Store` and a `RecordingFiles` (module docstring)."""

    def __init__(self, store: Store, files: RecordingFiles) -> None:
        self.store = store
        self.files = files
        self._listeners: list[DeleteListener] = []

    def on_delete(self, listener: DeleteListener) -> None:
        """Call `listener(reason, deleted)` after each delete (the switch's metrics)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ the switch's side
    async def register(self, recording: NewRecording, now: datetime) -> str | None:
        """Register a finished recording; its id, or None when its path is registered
        already or its tenant no longer exists (the caller then removes the file)."""
        recording_id = new_id("rec")
        async with self.store.data() as tx:
            if not await tenants.exists(tx, recording.tenant_id):
                return None
            if not await q.insert(tx, recording_id, recording, now):
                return None
        return recording_id

    async def known(self, paths: Iterable[str]) -> set[str]:
        async with self.store.read() as tx:
            return await q.known_paths(tx, tuple(paths))

    async def stored_bytes(self) -> int:
        async with self.store.read() as tx:
            return await q.stored_bytes(tx)

    async def expire(
        self, now: datetime, *, days: float = rules.RECORDING_RETENTION_DAYS, batch: int = 500
    ) -> list[RecordingInfo]:
        """Delete every recording of a call that started more than `days` before `now`
        (service rule: 30 days), rows then files; returns what was deleted."""
        cutoff = now.astimezone(UTC) - timedelta(days=days)
        expired: list[RecordingInfo] = []
        while True:
            async with self.store.data() as tx:
                gone = await q.delete_older_than(tx, cutoff, batch)
            await self._remove_files(gone, "retention")
            expired += gone
            if len(gone) < batch:
                return expired

    # ------------------------------------------------------------------ the API (per tenant)
    async def page(
        self,
        principal: Principal,
        tenant_id: str,
        query: RecordingQuery,
        *,
        limit: int = rules.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> Page[RecordingInfo]:
        principal.require_tenant(tenant_id)
        limit = page_limit(limit)
        keys = decode_cursor(cursor, 2)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            after = (keys[0], keys[1]) if keys else None
            rows = await q.page(tx, tenant_id, query, limit + 1, after)
        return page_of(rows, limit, lambda r: [_ts(r.started_at), r.id])

    async def get(self, principal: Principal, tenant_id: str, recording_id: str) -> RecordingInfo:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            found = await q.get(tx, tenant_id, recording_id)
        if found is None:
            raise NotFound("recording", recording_id)
        return found

    async def delete(self, principal: Principal, tenant_id: str, recording_id: str) -> None:
        principal.require_tenant(tenant_id)
        async with self.store.data() as tx:
            gone = await q.delete_ids(tx, tenant_id, (recording_id,))
        if not gone:
            raise NotFound("recording", recording_id)
        await self._remove_files(gone)

    async def delete_ids(
        self, principal: Principal, tenant_id: str, ids: tuple[str, ...]
    ) -> tuple[list[RecordingInfo], list[str]]:
        """(deleted, ids that are not the tenant's recordings)."""
        principal.require_tenant(tenant_id)
        async with self.store.data() as tx:
            await require_tenant(tx, tenant_id)
            gone = await q.delete_ids(tx, tenant_id, tuple(dict.fromkeys(ids)))
        await self._remove_files(gone)
        found = {r.id for r in gone}
        return gone, [i for i in dict.fromkeys(ids) if i not in found]

    async def delete_matching(
        self, principal: Principal, tenant_id: str, query: RecordingQuery
    ) -> int:
        """Delete every recording matching `query` (at least one filter: an empty filter
        would delete everything, which is never what a slip of the form meant); returns how
        many. Runs in batches, so a month of recordings never holds one long transaction."""
        principal.require_tenant(tenant_id)
        if query.empty:
            raise invalid_filter("filter", "at least one filter is required")
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
        count = 0
        while True:
            async with self.store.data() as tx:
                gone = await q.delete_matching(tx, tenant_id, query, DELETE_BATCH)
            await self._remove_files(gone)
            count += len(gone)
            if len(gone) < DELETE_BATCH:
                return count

    async def archive(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        ids: tuple[str, ...] | None = None,
        query: RecordingQuery | None = None,
    ) -> tuple[int, AsyncIterator[RecordingInfo]]:
        """What a bulk download holds: (how many, the recordings one by one, newest first).
        The count is checked against `rules.RECORDING_ARCHIVE_MAX` before anything streams
        (`too-many-recordings`); the rows are then read a page per short transaction, so a
        download of thousands never holds a transaction or a list of them all."""
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            if ids is not None:
                rows = await q.get_many(tx, tenant_id, tuple(dict.fromkeys(ids)))
                return len(rows), _iterate(rows)
            assert query is not None
            total = await q.count_matching(tx, tenant_id, query)
        if total > rules.RECORDING_ARCHIVE_MAX:
            raise InvalidInput(
                "too-many-recordings",
                f"{total} recordings match; one download holds at most "
                f"{rules.RECORDING_ARCHIVE_MAX} (narrow the dates)",
                {"matched": total, "limit": rules.RECORDING_ARCHIVE_MAX},
            )
        return total, self._pages(tenant_id, query, total)

    async def _pages(
        self, tenant_id: str, query: RecordingQuery, total: int
    ) -> AsyncIterator[RecordingInfo]:
        after: tuple[str, str] | None = None
        sent = 0
        while sent < total:
            async with self.store.read() as tx:
                rows = await q.page(tx, tenant_id, query, min(ARCHIVE_PAGE, total - sent), after)
            if not rows:
                return
            for row in rows:
                yield row
            sent += len(rows)
            after = (_ts(rows[-1].started_at), rows[-1].id)

    # ------------------------------------------------------------------ files
    async def _remove_files(self, gone: list[RecordingInfo], reason: str = "api") -> None:
        if not gone:
            return
        await asyncio.to_thread(self._remove_now, [r.path for r in gone])
        for listener in list(self._listeners):
            try:
                listener(reason, gone)
            except Exception:
                log.exception("recording delete listener failed")

    def _remove_now(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.files.remove(path)
            except OSError as exc:  # the row is gone: the file is an orphan, swept later
                log.warning("recording file %s not removed: %s", path, exc)


async def _iterate(rows: list[RecordingInfo]) -> AsyncIterator[RecordingInfo]:
    for row in rows:
        yield row


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NoFiles:
    """`RecordingFiles` when none is configured (an API without the switch's recordings
    directory): every recording's audio is missing, nothing to remove."""

    def size(self, path: str) -> int:
        raise FileNotFoundError(path)

    def open(self, path: str) -> BinaryIO:
        raise FileNotFoundError(path)

    def remove(self, path: str) -> None:
        return None
