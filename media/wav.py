"""WAV files of the media service: 8 kHz, 16-bit PCM, mono (prompts, voicemail) or two
channels (call recordings: caller left, callee right).

- `read_wav` reads a file that must already be in the stored format (uploads of any other
  format go through `media.convert` first); anything else is an `AudioError`.
- `write_wav` writes a whole file atomically (temporary file, then rename).
- `WavWriter` streams a recording to disk as it happens: the header is written first with
  zero sizes, the RIFF and data sizes are patched at `close()` and, so that a crash leaves a
  readable file, at every `sync()`. It writes to `<name>.part` and renames on close, so
  nobody picks up a half-written recording.
- `interleave` makes two-channel frames from two mono ones.
"""

from __future__ import annotations

import io
import os
import struct
import wave
from pathlib import Path
from typing import BinaryIO

from ._audioop import audioop
from .errors import AudioError

__all__ = [
    "RATE",
    "SAMPLE_WIDTH",
    "WavWriter",
    "interleave",
    "read_wav",
    "wav_bytes",
    "write_wav",
]

RATE = 8000
SAMPLE_WIDTH = 2
_HEADER_SIZE = 44
_MAX_DATA = 0xFFFFFFFF - 36  # the RIFF size field is 32 bits


def read_wav(source: str | os.PathLike[str] | bytes) -> bytes:
    """The PCM of an 8 kHz 16-bit mono WAV (path or file bytes), or AudioError."""
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise AudioError(f"cannot open {source!r}: {exc}", error_id="audio-unreadable") from exc
    with handle:
        try:
            with wave.open(handle, "rb") as wav:
                fmt = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
                pcm = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError, struct.error) as exc:
            raise AudioError(f"not a PCM WAV file: {exc}", error_id="audio-corrupt") from exc
    if fmt != (1, SAMPLE_WIDTH, RATE):
        raise AudioError(
            f"WAV is {fmt[0]} channel(s), {8 * fmt[1]}-bit, {fmt[2]} Hz; "
            "expected mono 16-bit 8000 Hz",
            error_id="audio-wrong-format",
        )
    return pcm


def wav_bytes(pcm: bytes, *, channels: int = 1, rate: int = RATE) -> bytes:
    """A complete WAV file holding `pcm` (16-bit little-endian, interleaved)."""
    _check_frames(pcm, channels)
    return _header(len(pcm), channels, rate) + pcm


def write_wav(path: str | os.PathLike[str], pcm: bytes, *, channels: int = 1) -> None:
    """Write a whole WAV file atomically."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(wav_bytes(pcm, channels=channels))
    tmp.replace(target)


def interleave(left: bytes, right: bytes) -> bytes:
    """Two mono 16-bit frames as one stereo frame; the shorter side is padded with silence."""
    _check_frames(left, 1)
    _check_frames(right, 1)
    size = max(len(left), len(right))
    left = left.ljust(size, b"\x00")
    right = right.ljust(size, b"\x00")
    return audioop.add(
        audioop.tostereo(left, SAMPLE_WIDTH, 1, 0),
        audioop.tostereo(right, SAMPLE_WIDTH, 0, 1),
        SAMPLE_WIDTH,
    )


def _check_frames(pcm: bytes, channels: int) -> None:
    if channels not in (1, 2):
        raise AudioError(f"{channels} channels; only mono or stereo are written")
    if len(pcm) % (SAMPLE_WIDTH * channels):
        raise AudioError(f"{len(pcm)} octets is not whole {channels}-channel 16-bit frames")


def _header(data_size: int, channels: int, rate: int) -> bytes:
    """The 44-octet canonical header: RIFF, fmt (PCM, tag 1), data."""
    block = channels * SAMPLE_WIDTH
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 8 * SAMPLE_WIDTH)
        + b"data"
        + struct.pack("<I", data_size)
    )


class WavWriter:
    """A WAV file written as audio arrives; sizes patched on `sync()` and `close()`."""

    __slots__ = ("_file", "_part", "channels", "data_size", "path")

    def __init__(self, path: str | os.PathLike[str], *, channels: int = 1) -> None:
        _check_frames(b"", channels)
        self.path = Path(path)
        self.channels = channels
        self.data_size = 0
        self._part = self.path.with_name(self.path.name + ".part")
        self._file: BinaryIO | None = open(self._part, "wb")  # noqa: SIM115
        self._file.write(_header(0, channels, RATE))

    @property
    def frames(self) -> int:
        return self.data_size // (SAMPLE_WIDTH * self.channels)

    @property
    def seconds(self) -> float:
        return self.frames / RATE

    def write(self, pcm: bytes) -> None:
        """Append interleaved 16-bit frames."""
        _check_frames(pcm, self.channels)
        if self.data_size + len(pcm) > _MAX_DATA:
            raise AudioError("recording exceeds the 4 GiB WAV limit", error_id="audio-too-long")
        self._open().write(pcm)
        self.data_size += len(pcm)

    def write_silence(self, samples: int) -> None:
        """Append `samples` frames of silence on every channel."""
        chunk = 8000 * SAMPLE_WIDTH * self.channels
        remaining = samples * SAMPLE_WIDTH * self.channels
        while remaining > 0:
            self.write(bytes(min(chunk, remaining)))
            remaining -= chunk

    def sync(self) -> None:
        """Patch the sizes and flush, so the file on disk is a valid WAV up to here."""
        handle = self._open()
        end = handle.tell()
        handle.seek(4)
        handle.write(struct.pack("<I", 36 + self.data_size))
        handle.seek(40)
        handle.write(struct.pack("<I", self.data_size))
        handle.seek(end)
        handle.flush()

    def close(self) -> Path:
        """Patch the sizes, close, and move the file to its final name."""
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
            self._part.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (the recording is refused or the call failed)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._part.unlink(missing_ok=True)

    def _open(self) -> BinaryIO:
        if self._file is None:
            raise AudioError("WAV writer is closed", error_id="audio-writer-closed")
        return self._file

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
