"""Conversion of an uploaded announcement to the stored format (8 kHz, 16-bit, mono WAV).

A tenant uploads whatever their computer or phone recorded: WAV of any rate, width or channel
count, FLAC, Ogg (Vorbis/Opus), MP3, or M4A/AAC from a phone. `convert_upload` sniffs the
format from the content (never from the file name), decodes it, mixes down to mono, resamples
to 8 kHz and returns a complete WAV file, or raises `AudioError` with a stable id:

    audio-too-large           more than `max_bytes` octets (checked before decoding)
    audio-unsupported-format  not one of the formats above
    audio-codec-unavailable   M4A/AAC but ffmpeg is not installed on this host
    audio-corrupt             the decoder failed, or the file is truncated
    audio-empty               no audio (shorter than 0.1 s)
    audio-silent              nothing but digital silence
    audio-too-long            longer than `max_seconds`

Decoding: libsndfile through `soundfile` (WAV/FLAC/Ogg/MP3), resampling with `soxr`; M4A/AAC
through the `ffmpeg` program (Debian package), run on a temporary file (an M4A's index may sit
at its end, which a pipe cannot seek to) with the demuxer forced to the sniffed one and only
the file protocol allowed. Work happens in memory and the result is returned whole: a refused
file never leaves partial output. This is blocking CPU work: run it in a worker thread.

Limits: the seeds state no limit for announcement uploads (only 10 MB per FAX upload, and at
most 10 uploaded files per number); 10 MiB and 60 s are this module's defaults.
"""

from __future__ import annotations

import enum
import io
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from .errors import AudioError
from .wav import RATE, wav_bytes

__all__ = [
    "MAX_SECONDS",
    "MAX_UPLOAD_BYTES",
    "Converted",
    "SourceFormat",
    "convert_upload",
    "sniff_format",
]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_SECONDS = 60.0
MIN_SECONDS = 0.1
SILENCE_PEAK = 1 / 32768  # below one 16-bit step everywhere: digital silence
FFMPEG_TIMEOUT = 60.0  # seconds of wall time for one conversion
_BLOCK = 65536  # frames decoded per read


class SourceFormat(enum.Enum):
    """Upload formats recognised by their first octets."""

    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"
    MP4 = "m4a"  # MPEG-4 container (M4A, MP4, 3GP from phones)
    AAC = "aac"  # raw ADTS AAC stream


@dataclass(frozen=True, slots=True, kw_only=True)
class Converted:
    """The stored file and what it was made from."""

    wav: bytes
    pcm: bytes
    seconds: float
    source_format: SourceFormat
    source_rate: int
    source_channels: int


def sniff_format(data: bytes) -> SourceFormat | None:
    """The upload's format from its magic numbers, or None."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return SourceFormat.WAV
    if head[:4] == b"fLaC":
        return SourceFormat.FLAC
    if head[:4] == b"OggS":
        return SourceFormat.OGG
    if head[4:8] == b"ftyp":
        return SourceFormat.MP4
    if head[:3] == b"ID3":
        return SourceFormat.MP3
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean ADTS AAC (ISO 13818-7), else MP1/2/3
        return SourceFormat.AAC if head[1] & 0x06 == 0 else SourceFormat.MP3
    return None


def convert_upload(
    data: bytes,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_seconds: float = MAX_SECONDS,
    ffmpeg: str | None = "ffmpeg",
) -> Converted:
    """Convert an uploaded audio file to the stored WAV format, or raise AudioError.

    `ffmpeg` is the program to run for M4A/AAC (looked up on PATH); None disables it.
    """
    if len(data) > max_bytes:
        raise AudioError(
            f"upload of {len(data)} octets exceeds {max_bytes}", error_id="audio-too-large"
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise AudioError(
            "not a WAV, FLAC, Ogg, MP3 or M4A/AAC file", error_id="audio-unsupported-format"
        )
    if fmt in (SourceFormat.MP4, SourceFormat.AAC):
        samples, rate, channels = _decode_ffmpeg(data, fmt, ffmpeg, max_seconds)
    else:
        samples, rate, channels = _decode_sndfile(data, fmt, max_seconds)
    pcm = _to_stored_pcm(samples, rate, max_seconds)
    return Converted(
        wav=wav_bytes(pcm),
        pcm=pcm,
        seconds=len(pcm) / 2 / RATE,
        source_format=fmt,
        source_rate=rate,
        source_channels=channels,
    )


# --------------------------------------------------------------------------- libsndfile
def _decode_sndfile(data: bytes, fmt: SourceFormat, max_seconds: float) -> tuple[Any, int, int]:
    """Mono float32 samples at the file's own rate, refusing files over `max_seconds`."""
    if fmt is SourceFormat.WAV:
        _check_wav_not_truncated(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sf:
            rate, channels, declared = sf.samplerate, sf.channels, sf.frames
            blocks = _read_blocks(sf, int(max_seconds * rate))
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot decode {fmt.value}: {exc}", error_id="audio-corrupt") from exc
    mono = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if declared > 0 and len(mono) < declared * 0.98:
        raise AudioError(
            f"{fmt.value} file is truncated ({len(mono)} of {declared} frames)",
            error_id="audio-corrupt",
        )
    return mono, rate, channels


def _read_blocks(sf: soundfile.SoundFile, limit: int) -> list[Any]:
    blocks: list[Any] = []
    total = 0
    while True:
        block = sf.read(_BLOCK, dtype="float32", always_2d=True)
        if not len(block):
            return blocks
        total += len(block)
        if total > limit + 1:
            raise AudioError(
                f"audio longer than {limit / sf.samplerate:.0f} s", error_id="audio-too-long"
            )
        blocks.append(block.mean(axis=1, dtype=np.float32))


def _check_wav_not_truncated(data: bytes) -> None:
    """libsndfile quietly reads what is there; a WAV whose data chunk is cut short is refused.

    Sizes 0 and 0xFFFFFFFF are what streaming writers leave when they never patched them.
    """
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"data":
            available = len(data) - offset - 8
            if size not in (0, 0xFFFFFFFF) and size > available + 1:
                raise AudioError(
                    f"WAV data chunk declares {size} octets, {available} present",
                    error_id="audio-corrupt",
                )
            return
        offset += 8 + size + (size & 1)


# --------------------------------------------------------------------------- ffmpeg
def _decode_ffmpeg(
    data: bytes, fmt: SourceFormat, program: str | None, max_seconds: float
) -> tuple[Any, int, int]:
    """Mono float32 samples at 8 kHz decoded by ffmpeg (M4A/AAC)."""
    path = shutil.which(program) if program else None
    if path is None:
        raise AudioError(
            f"{fmt.value} uploads need ffmpeg, which is not installed on this server",
            error_id="audio-codec-unavailable",
        )
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        source = Path(tmp) / f"in.{fmt.value}"
        source.write_bytes(data)
        raw = _run_ffmpeg(path, source, fmt, max_seconds)
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if len(samples) > max_seconds * RATE:
        raise AudioError(f"audio longer than {max_seconds:.0f} s", error_id="audio-too-long")
    return samples, RATE, 1


def _run_ffmpeg(program: str, source: Path, fmt: SourceFormat, max_seconds: float) -> bytes:
    demuxer = "mov" if fmt is SourceFormat.MP4 else "aac"
    command = [
        program,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-f",
        demuxer,
        "-i",
        str(source),
        "-vn",
        "-t",
        f"{max_seconds + 0.5:.3f}",  # decode a little past the limit, to tell it was passed
        "-ac",
        "1",
        "-ar",
        str(RATE),
        "-f",
        "s16le",
        "pipe:1",
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"ffmpeg failed: {exc}", error_id="audio-corrupt") from exc
    if done.returncode != 0 or done.stderr.strip():
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise AudioError(f"cannot decode {fmt.value}: {message}", error_id="audio-corrupt")
    return done.stdout


# --------------------------------------------------------------------------- to 8 kHz int16
def _to_stored_pcm(samples: Any, rate: int, max_seconds: float) -> bytes:
    seconds = len(samples) / rate if rate else 0.0
    if seconds < MIN_SECONDS:
        raise AudioError(f"upload holds {seconds:.2f} s of audio", error_id="audio-empty")
    if seconds > max_seconds:
        raise AudioError(
            f"audio of {seconds:.1f} s exceeds {max_seconds:.0f} s", error_id="audio-too-long"
        )
    if not np.isfinite(samples).all():
        raise AudioError("audio holds invalid (NaN/inf) samples", error_id="audio-corrupt")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError("the upload is silent", error_id="audio-silent")
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE, quality="HQ")
    scaled = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    pcm: bytes = scaled.tobytes()
    return pcm
