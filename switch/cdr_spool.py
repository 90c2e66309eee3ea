"""The CDR writer's spool: an append-only file of JSON lines, one record a line.

Blocking file I/O: the writer calls everything here in a worker thread
(`asyncio.to_thread`), except the overflow path of `submit`, which appends one line without
fsync (a buffered write into the page cache, microseconds). A `threading.Lock` serialises
appends and truncation; fsync runs outside it, so an overflow append never waits for a disk
flush.

Durability: `append(lines)` writes whole lines with one `write(2)` per call on an O_APPEND
descriptor and fsyncs (a batch is on disk when it returns). A crash can only tear the last
line; `open()` moves such a tail to the rejected file and cuts it off, so the spool is
always whole lines. `truncate_at(end)` empties the file only if nothing was appended after
`end` (the writer replayed up to there), under the lock.

`<spool>.rejected`: lines that could not be decoded and records the database refused, each
as `{"reason": …, "line": …}`, for an operator to look at. Never read back automatically.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

__all__ = ["Spool"]

_CHUNK = 1 << 16


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected")
        self.records = 0  # lines in the file (the cdr_spool_records gauge)
        self._lock = threading.Lock()
        self._fd: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open (create) the file, cut a torn last line, count the records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with self._lock:
            self._fd = fd
            self._cut_torn_tail(fd)
            self.records = self._count(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _cut_torn_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - _CHUNK)
        while start > 0 and b"\n" not in os.pread(fd, size - start, start):
            start = max(0, start - _CHUNK)
        block = os.pread(fd, size - start, start)
        cut = start + block.rfind(b"\n") + 1  # 0 when the file has no newline at all
        tail = os.pread(fd, size - cut, cut).decode("utf-8", "replace")
        self._reject(tail, "torn last line (a crash while it was written)")
        os.ftruncate(fd, cut)
        os.fsync(fd)

    @staticmethod
    def _count(fd: int) -> int:
        count, offset = 0, 0
        while chunk := os.pread(fd, _CHUNK, offset):
            count += chunk.count(b"\n")
            offset += len(chunk)
        return count

    # ------------------------------------------------------------------ writing
    def append(self, lines: list[str], *, sync: bool = True) -> None:
        """Append whole lines (no newline inside any); fsync unless `sync=False`."""
        if not lines:
            return
        data = "".join(f"{line}\n" for line in lines).encode("utf-8")
        with self._lock:
            fd = self._require()
            _write_all(fd, data)
            self.records += len(lines)
        if sync:
            os.fsync(fd)

    def truncate_at(self, end: int) -> bool:
        """Empty the file if it ends at `end` (nothing appended since); True if emptied."""
        with self._lock:
            fd = self._require()
            if os.fstat(fd).st_size != end:
                return False
            os.ftruncate(fd, 0)
            os.fsync(fd)
            self.records = 0
            return True

    def reject(self, line: str, reason: str) -> None:
        with self._lock:
            self._reject(line, reason)

    def _reject(self, line: str, reason: str) -> None:
        entry = json.dumps({"reason": reason, "line": line}, ensure_ascii=False) + "\n"
        with open(self.rejected_path, "a", encoding="utf-8") as f:
            f.write(entry)
            f.flush()
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ reading
    def read(self, offset: int, max_lines: int) -> tuple[list[str], int]:
        """Up to `max_lines` whole lines from byte `offset`, and the offset after them."""
        fd = self._require()
        buf = b""
        pos = offset
        while buf.count(b"\n") < max_lines:
            chunk = os.pread(fd, _CHUNK, pos)
            if not chunk:
                break
            buf += chunk
            pos += len(chunk)
        parts = buf.split(b"\n")[:-1][:max_lines]  # whole lines only
        used = sum(len(p) + 1 for p in parts)
        return [p.decode("utf-8", "replace") for p in parts], offset + used

    def _require(self) -> int:
        if self._fd is None:
            raise OSError(f"the CDR spool {self.path} is not open")
        return self._fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
