"""Where call recordings go: the `RecordingSink` seam and its directory implementation.

Both relays hand their recordings over the same way — the embedded relay as the call runs,
the rtpengine pcap converter after it — so the rest of the system sees one format:
a two-channel 8 kHz 16-bit WAV (caller left, callee right) and a JSON sidecar.

    writer = sink.open(call_id, meta)   # a PcmWriter (WavWriter): write(), sync()
    ...
    sink.close(writer, meta)            # final meta: end time, duration, sizes, stats
    sink.discard(writer, meta)          # instead of close: nothing worth keeping

`DirectorySink(root)` writes `<root>/<yyyy>/<mm>/<dd>/<call-id>.wav` and `.json` (date of
the call's start, UTC). The WAV is written as `<name>.wav.part` and renamed at close
(`media.wav.WavWriter`), the JSON through a temporary file and a rename, so whoever lists the
directory sees a recording only once it is complete, and its sidecar only after it. A call-id
is not a safe file name (RFC 3261 allows `/` and `%` in it): characters outside
`[A-Za-z0-9._@+-]` are percent-encoded, and a name already taken (the same Call-ID seen
again) gets `-2`, `-3`, … .

After a crash, `recover()` turns the `.part` files left behind into WAVs (header sizes
patched to what reached the disk) with a sidecar marked `recovered`.
"""

from __future__ import annotations

import json
import os
import struct
import time
import urllib.parse
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..wav import WavWriter
from .recorder import PcmWriter

__all__ = ["DirectorySink", "RecordingMeta", "RecordingSink", "safe_name"]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-")
MAX_NAME = 180


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingMeta:
    """What is known about a recording; the sink writes it as the JSON sidecar."""

    call_id: str
    from_tag: str
    started: float  # UNIX time
    relay: str  # "embedded" or "rtpengine"
    to_tag: str | None = None
    via_branch: str | None = None
    metadata: str | None = None  # the proxy's ng `metadata` string, verbatim
    ended: float | None = None
    duration: float | None = None  # seconds of audio in the file
    data_bytes: int | None = None  # octets of PCM in the WAV data chunk
    codecs: tuple[str, ...] = ()
    channels: tuple[str, str] = ("caller", "callee")
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("recording without a call-id")

    def finished(self, **changes: Any) -> RecordingMeta:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_iso"] = _iso(self.started)
        out["ended_iso"] = _iso(self.ended) if self.ended is not None else None
        out["channels"] = list(self.channels)
        out["codecs"] = list(self.codecs)
        return out


def _iso(t: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{whole}.{int(t * 1000) % 1000:03d}Z"


class RecordingSink(Protocol):
    def open(self, call_id: str, meta: RecordingMeta) -> PcmWriter: ...

    def close(self, writer: PcmWriter, meta: RecordingMeta) -> None: ...

    def discard(self, writer: PcmWriter, meta: RecordingMeta) -> None: ...


def safe_name(call_id: str) -> str:
    """A file name for a call-id: unsafe characters percent-encoded, length bounded."""
    out = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in call_id)
    out = out.lstrip(".") or "_"
    return out[:MAX_NAME]


class DirectorySink:
    """Recordings as files under a root directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._paths: dict[int, Path] = {}  # id(writer) -> final WAV path

    def open(self, call_id: str, meta: RecordingMeta) -> PcmWriter:
        day = time.gmtime(meta.started)
        folder = self.root / f"{day.tm_year:04d}" / f"{day.tm_mon:02d}" / f"{day.tm_mday:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = _free_path(folder, safe_name(call_id))
        writer = WavWriter(path, channels=2)
        self._paths[id(writer)] = path
        return writer

    def close(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        path = self._wav(writer).close()
        self._paths.pop(id(writer), None)
        sidecar = path.with_suffix(".json")
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps(meta.to_json(), ensure_ascii=False, indent=1, sort_keys=True))
        tmp.replace(sidecar)

    def discard(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        self._wav(writer).abort()
        self._paths.pop(id(writer), None)

    def recover(self) -> list[Path]:
        """After a crash: every `<name>.wav.part` left under the root becomes `<name>.wav`
        with its header sizes patched to the audio actually on disk (WavWriter patches them
        only at sync/close), and a sidecar saying `recovered`. Run it at start-up, before
        the relay takes calls (a `.part` of a call in progress must not be touched)."""
        done = []
        for part in sorted(self.root.rglob("*.wav.part")):
            wav = part.with_name(part.name.removesuffix(".part"))
            seconds = _patch_header(part)
            part.replace(wav)
            stat = wav.stat()
            meta = {
                "call_id": urllib.parse.unquote(wav.stem),
                "recovered": True,
                "duration": seconds,
                "ended": stat.st_mtime,
                "channels": ["caller", "callee"],
            }
            wav.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            done.append(wav)
        return done

    def path_of(self, writer: PcmWriter) -> Path | None:
        return self._paths.get(id(writer))

    @staticmethod
    def _wav(writer: PcmWriter) -> WavWriter:
        if not isinstance(writer, WavWriter):
            raise TypeError("DirectorySink.close() got a writer it did not open")
        return writer


def _patch_header(path: Path) -> float:
    """Set the RIFF and data sizes of a canonical 44-octet-header stereo WAV to its length."""
    size = path.stat().st_size
    data = max(0, size - 44) // 4 * 4
    with path.open("r+b") as handle:
        handle.truncate(44 + data)
        handle.seek(4)
        handle.write(struct.pack("<I", 36 + data))
        handle.seek(40)
        handle.write(struct.pack("<I", data))
    return data / 4 / 8000


def _free_path(folder: Path, stem: str) -> Path:
    """`<stem>.wav`, or `<stem>-2.wav`, … when taken (finished or still being written)."""
    for n in range(1, 10_000):
        name = stem if n == 1 else f"{stem}-{n}"
        wav = folder / f"{name}.wav"
        if not wav.exists() and not wav.with_name(wav.name + ".part").exists():
            return wav
    raise OSError(f"no free recording name for {stem!r} in {folder}")
