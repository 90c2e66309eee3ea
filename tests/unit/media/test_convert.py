"""Upload conversion, on real files of each format generated here (none committed)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from media.convert import (
    MAX_SECONDS,
    Converted,
    SourceFormat,
    convert_upload,
    sniff_format,
)
from media.errors import AudioError
from media.wav import read_wav

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None, reason="ffmpeg (Debian package) is not installed: M4A/AAC untested"
)


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> Any:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def encode(samples: Any, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def encode_ffmpeg(tmp: Path, seconds: float, rate: int, ext: str, *extra: str) -> bytes:
    assert FFMPEG is not None
    source, target = tmp / "src.wav", tmp / f"out.{ext}"
    soundfile.write(source, tone(seconds, rate, 2), rate, subtype="PCM_16")
    command = [FFMPEG, "-loglevel", "error", "-y", "-i", str(source), "-c:a", "aac"]
    subprocess.run([*command, *extra, str(target)], check=True)
    return target.read_bytes()


def dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * 8000 / len(x))


def check_result(result: Converted, seconds: float, *, tolerance: float = 0.01) -> None:
    assert read_wav(result.wav) == result.pcm
    assert result.seconds == pytest.approx(seconds, abs=tolerance)
    assert abs(dominant_hz(result.pcm) - 440) < 5
    peak = np.max(np.abs(np.frombuffer(result.pcm, dtype="<i2")))
    assert 0.4 * 32767 < peak < 0.6 * 32767  # level kept, no clipping


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [
        (8000, 1, "PCM_16"),
        (44100, 2, "PCM_16"),
        (48000, 1, "PCM_24"),
        (16000, 2, "FLOAT"),
        (22050, 1, "PCM_U8"),
        (8000, 1, "ULAW"),
    ],
)
def test_wav_variants(rate: int, channels: int, subtype: str) -> None:
    data = encode(tone(1.5, rate, channels), rate, "WAV", subtype)
    result = convert_upload(data)
    assert (result.source_format, result.source_rate, result.source_channels) == (
        SourceFormat.WAV,
        rate,
        channels,
    )
    check_result(result, 1.5)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "tolerance"),
    [
        ("FLAC", "PCM_16", 44100, 0.01),
        ("OGG", "VORBIS", 44100, 0.01),
        ("OGG", "OPUS", 48000, 0.03),
        ("MP3", "MPEG_LAYER_III", 44100, 0.06),  # encoder delay and frame padding
    ],
)
def test_compressed_formats(fmt: str, subtype: str, rate: int, tolerance: float) -> None:
    result = convert_upload(encode(tone(2.0, rate, 2), rate, fmt, subtype))
    assert result.source_format.value == {"FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}[fmt]
    check_result(result, 2.0, tolerance=tolerance)


@needs_ffmpeg
def test_m4a_from_a_phone(tmp_path: Path) -> None:
    data = encode_ffmpeg(tmp_path, 2.0, 44100, "m4a")
    assert sniff_format(data) is SourceFormat.MP4
    check_result(convert_upload(data), 2.0, tolerance=0.06)


@needs_ffmpeg
def test_m4a_with_index_at_the_end(tmp_path: Path) -> None:
    data = encode_ffmpeg(tmp_path, 1.0, 48000, "m4a", "-movflags", "-faststart")
    assert data.find(b"moov") > data.find(b"mdat")  # what a phone's voice memo looks like
    check_result(convert_upload(data), 1.0, tolerance=0.06)


@needs_ffmpeg
def test_adts_aac(tmp_path: Path) -> None:
    data = encode_ffmpeg(tmp_path, 1.0, 44100, "aac")
    assert sniff_format(data) is SourceFormat.AAC
    check_result(convert_upload(data), 1.0, tolerance=0.06)


@needs_ffmpeg
def test_m4a_too_long_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as info:
        convert_upload(encode_ffmpeg(tmp_path, 3.0, 8000, "m4a"), max_seconds=2.0)
    assert info.value.error_id == "audio-too-long"
    data = encode_ffmpeg(tmp_path, 2.0, 44100, "m4a")
    with pytest.raises(AudioError) as info:
        convert_upload(data[: len(data) // 2])
    assert info.value.error_id == "audio-corrupt"


def test_m4a_without_ffmpeg_is_refused_clearly() -> None:
    fake_m4a = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + bytes(100)
    with pytest.raises(AudioError) as info:
        convert_upload(fake_m4a, ffmpeg=None)
    assert info.value.error_id == "audio-codec-unavailable"
    with pytest.raises(AudioError) as info:
        convert_upload(fake_m4a, ffmpeg="no-such-ffmpeg-program")
    assert info.value.error_id == "audio-codec-unavailable"


def test_too_long() -> None:
    data = encode(tone(MAX_SECONDS + 1, 8000), 8000, "WAV", "PCM_16")
    with pytest.raises(AudioError) as info:
        convert_upload(data)
    assert info.value.error_id == "audio-too-long"
    with pytest.raises(AudioError) as info:
        convert_upload(encode(tone(3.0, 44100), 44100, "FLAC", "PCM_16"), max_seconds=2.0)
    assert info.value.error_id == "audio-too-long"
    assert convert_upload(encode(tone(2.0, 8000), 8000, "WAV", "PCM_16"), max_seconds=2.0)


def test_too_large_is_checked_before_decoding() -> None:
    with pytest.raises(AudioError) as info:
        convert_upload(b"RIFF" + bytes(2000), max_bytes=1000)
    assert info.value.error_id == "audio-too-large"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"%PDF-1.4 ...", b"\x89PNG\r\n\x1a\n" + bytes(40), bytes(4096)],
)
def test_unsupported_formats(data: bytes) -> None:
    with pytest.raises(AudioError) as info:
        convert_upload(data)
    assert info.value.error_id == "audio-unsupported-format"


def test_empty_and_silent() -> None:
    with pytest.raises(AudioError) as info:
        convert_upload(encode(np.zeros(0), 8000, "WAV", "PCM_16"))
    assert info.value.error_id == "audio-empty"
    with pytest.raises(AudioError) as info:
        convert_upload(encode(tone(0.05, 8000), 8000, "WAV", "PCM_16"))
    assert info.value.error_id == "audio-empty"
    with pytest.raises(AudioError) as info:
        convert_upload(encode(np.zeros(8000), 8000, "WAV", "PCM_16"))
    assert info.value.error_id == "audio-silent"


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")],
)
def test_truncated_files_give_no_partial_output(fmt: str, subtype: str) -> None:
    data = encode(tone(2.0, 44100), 44100, fmt, subtype)
    with pytest.raises(AudioError) as info:
        convert_upload(data[: len(data) // 2])
    assert info.value.error_id == "audio-corrupt"


def test_garbage_after_a_valid_magic_is_refused() -> None:
    for magic in (b"fLaC", b"OggS", b"RIFF\x00\x00\x00\x00WAVE", b"ID3\x03\x00"):
        with pytest.raises(AudioError) as info:
            convert_upload(magic + bytes(range(256)) * 4)
        assert info.value.error_id in ("audio-corrupt", "audio-empty")


def test_sniffing() -> None:
    assert sniff_format(encode(tone(0.2, 8000), 8000, "WAV", "PCM_16")) is SourceFormat.WAV
    assert sniff_format(encode(tone(0.2, 8000), 8000, "FLAC", "PCM_16")) is SourceFormat.FLAC
    assert sniff_format(b"ID3\x04") is SourceFormat.MP3
    assert sniff_format(b"\xff\xfb\x90\x00") is SourceFormat.MP3
    assert sniff_format(b"\xff\xf1\x50\x80") is SourceFormat.AAC
    assert sniff_format(b"\xff") is None
