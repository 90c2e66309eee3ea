"""The API's audio helpers (WAV around stored PCM, byte ranges) and the upload conversion
seam of the prompt service (`AudioConverter`, `audio_refused`), without a store."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path

import pytest

import media.convert
from provisioning.api.audio import byte_range, wav_bytes
from provisioning.api.errors import ApiError
from provisioning.errors import TooLarge
from provisioning.services import AUDIO_ERROR_IDS, audio_refused
from provisioning.services.prompts import InvalidAudio, UnsupportedAudio


@pytest.mark.parametrize("pcm", [b"", b"\x01\x00", bytes(range(256)) * 125])
def test_wav_bytes_is_a_wav_the_stdlib_reads(pcm: bytes) -> None:
    data = wav_bytes(pcm)
    assert len(data) == 44 + len(pcm)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        assert w.getnframes() == len(pcm) // 2
        assert w.readframes(w.getnframes()) == pcm


def test_wav_bytes_other_shapes() -> None:
    with wave.open(io.BytesIO(wav_bytes(b"\0" * 24, rate=16000, channels=2))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 2, 6)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=90-500", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=99-99", 100, (99, 99)),
        ("bytes = 0 - 9", 100, (0, 9)),
        # ignored (RFC 9110 §14.2): other units, several ranges, invalid specifiers
        ("items=0-9", 100, None),
        ("bytes=0-9,20-29", 100, None),
        ("bytes=9-0", 100, None),
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=" + "9" * 40 + "-", 100, None),
        ("bytes=-5", 0, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable_range_is_416(header: str, size: int) -> None:
    with pytest.raises(ApiError) as e:
        byte_range(header, size)
    assert (e.value.status, e.value.error_id) == (416, "range-not-satisfiable")
    assert e.value.headers["Content-Range"] == f"bytes */{size}"


def test_audio_refusals_keep_the_converters_error_id() -> None:
    for error_id, status in AUDIO_ERROR_IDS.items():
        err = audio_refused(error_id, "because")
        assert (err.error_id, err.status, err.message) == (error_id, status, "because")
        assert set(err.to_dict()) == {"error_id", "message", "details"}
    assert isinstance(audio_refused("audio-too-large", "x"), TooLarge)
    assert isinstance(audio_refused("audio-codec-unavailable", "x"), UnsupportedAudio)
    assert isinstance(audio_refused("audio-corrupt", "x"), InvalidAudio)
    future = audio_refused("audio-something-new", "x")
    assert (future.error_id, future.status) == ("audio-something-new", 422)


def test_every_error_id_of_the_converter_is_mapped() -> None:
    """Drift guard: an id the media converter raises must have its documented status."""
    source = Path(media.convert.__file__).read_text(encoding="utf-8")
    raised = set(re.findall(r'error_id="(audio-[a-z-]+)"', source))
    assert raised and raised <= set(AUDIO_ERROR_IDS), raised - set(AUDIO_ERROR_IDS)
