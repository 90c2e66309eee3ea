"""The shipped prompts: every file present, well-formed and audible; the spoken forms."""

from __future__ import annotations

import datetime as dt
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from media.errors import PromptError
from media.g711 import Codec, decode
from media.prompts import (
    AFTER_HOURS_TEMPLATES,
    MAX_COUNT,
    PromptLibrary,
    default_library,
    message_header,
    split_frames,
    spoken_count,
    spoken_date,
    spoken_digits,
    spoken_ordinal,
    spoken_time,
    summary,
)

LIB = default_library()
PROMPTS = LIB.directory
REQUIRED = {
    *AFTER_HOURS_TEMPLATES,
    "busy",
    "voicemail-greeting",
    "mailbox-full",
    "beep",
    "recording-notice",
    "vm-no-messages",
    "vm-deleted",
    "vm-saved",
    "vm-main-menu",
    "vm-message-menu",
}


def test_required_prompts_exist() -> None:
    assert LIB.names() >= REQUIRED


def test_every_entry_has_a_wav_and_every_wav_an_entry() -> None:
    wavs = {p.stem for p in PROMPTS.glob("*.wav")}
    assert wavs == set(LIB.names())
    assert (PROMPTS / "ATTRIBUTION.md").read_text().count("CC BY 3.0") + (
        PROMPTS / "ATTRIBUTION.md"
    ).read_text().count("Creative Commons Attribution 3.0") >= 2


def _mora(reading: str) -> int:
    small = set("ゃゅょぁぃぅぇぉャュョァィゥェォ")
    return sum(1 for ch in reading if "\u3040" <= ch <= "\u30ff" and ch not in small)


@pytest.mark.parametrize("name", sorted(LIB.names()))
def test_prompt_file_is_8khz_mono_16bit_audible_and_plausibly_long(name: str) -> None:
    with wave.open(str(PROMPTS / f"{name}.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(samples**2)))
    assert rms > 1000, "silent or nearly"
    assert np.max(np.abs(samples)) < 32767, "clipped"
    entry = LIB.entries[name]
    seconds = len(samples) / 8000
    if entry["kind"] == "tts":
        mora = _mora(entry["say"])
        assert mora / 14 <= seconds <= mora / 5 + 0.5 * entry["say"].count("。") + 0.8
    else:
        assert seconds == pytest.approx(entry["seconds"] * (2 * entry.get("repeat", 1) - 1))


def _dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.argmax(np.abs(np.fft.rfft(x))) * 8000 / len(x))


def test_beep_is_a_1khz_half_second_tone() -> None:
    assert _dominant_hz(LIB.pcm("beep")) == pytest.approx(1000, abs=3)
    assert LIB.seconds("beep") == 0.5
    assert _dominant_hz(LIB.pcm("record-end-tone")) == pytest.approx(800, abs=5)


def test_frames_and_payloads_are_cached_20ms_units() -> None:
    lib = PromptLibrary()
    frames = lib.frames("busy")
    assert all(len(f) == 320 for f in frames)
    assert b"".join(frames)[: len(lib.pcm("busy"))] == lib.pcm("busy")
    assert len(frames) == math.ceil(len(lib.pcm("busy")) / 320)
    assert lib.frames("busy") is frames
    payloads = lib.payloads("busy", Codec.PCMA)
    assert len(payloads) == len(frames) and all(len(p) == 160 for p in payloads)
    assert lib.payloads("busy", Codec.PCMA) is payloads
    back = np.frombuffer(decode(Codec.PCMA, payloads[len(payloads) // 2]), dtype="<i2")
    original = np.frombuffer(frames[len(frames) // 2], dtype="<i2")
    assert np.max(np.abs(back.astype(int) - original.astype(int))) < 1100
    assert len(lib.frames("beep", frame_samples=240)) == math.ceil(4000 / 240)


def test_split_frames_pads_the_last() -> None:
    assert split_frames(struct.pack("<3h", 1, 2, 3), 2) == (
        struct.pack("<2h", 1, 2),
        struct.pack("<2h", 3, 0),
    )
    assert split_frames(b"") == ()
    with pytest.raises(PromptError):
        split_frames(b"\x00\x00", 0)


def test_unknown_prompt_is_a_typed_error() -> None:
    with pytest.raises(PromptError) as info:
        LIB.pcm("template-4")
    assert info.value.error_id == "prompt-unknown"
    with pytest.raises(PromptError):
        LIB.text("nope")


def test_texts() -> None:
    assert LIB.text("busy").startswith("ただいま回線が大変混み合っております")
    assert LIB.text("recording-notice") == "この通話は品質向上のため録音しております。"
    assert "営業時間外" in LIB.text("template-1")
    # the synthesiser input avoids the kanji it misreads
    assert all("営業時間" not in LIB.entries[t]["say"] for t in AFTER_HOURS_TEMPLATES)


def test_every_clip_the_builders_can_name_exists() -> None:
    names: set[str] = set()
    for n in range(1, MAX_COUNT + 1):
        names |= {*spoken_count(n), *spoken_ordinal(n)}
    for month in range(1, 13):
        for day in range(1, 32):
            names |= set(spoken_date(month, day))
    for hour in range(24):
        for minute in range(60):
            names |= set(spoken_time(hour, minute))
    names |= set(spoken_digits("0123456789"))
    names |= set(summary(3, 2)) | set(summary(0))
    names |= set(message_header(1, dt.datetime(2026, 12, 2, 14, 5), None))
    names |= set(message_header(1, dt.datetime(2026, 12, 2, 14, 5), "03-1234-5678"))
    assert names <= LIB.names()
    assert len(names) == 20 + 20 + 12 + 31 + 24 + 59 + 10 + 9  # minute-0: said as the hour


def test_spoken_forms() -> None:
    assert spoken_count(3) == ("count-3",)
    assert spoken_date(12, 2) + spoken_time(14, 5) == ("month-12", "day-2", "hour-14", "minute-5")
    assert spoken_time(9, 0) == ("hour-9",)
    assert spoken_digits("03-1234 (5)") == tuple(f"digit-{d}" for d in "0312345")
    assert summary(0, 0) == ("vm-no-messages",)
    assert summary(3) == ("vm-new-prefix", "count-3", "vm-count-suffix")
    assert summary(0, 2) == ("vm-saved-prefix", "count-2", "vm-count-suffix")
    header = message_header(2, dt.datetime(2026, 1, 1, 0, 30), "0312")
    assert header == (
        "ordinal-2",
        "vm-message-of",
        "vm-received",
        "month-1",
        "day-1",
        "hour-0",
        "minute-30",
        "vm-desu",
        "vm-caller",
        "digit-0",
        "digit-3",
        "digit-1",
        "digit-2",
        "vm-desu",
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: spoken_count(0),
        lambda: spoken_count(MAX_COUNT + 1),
        lambda: spoken_ordinal(-1),
        lambda: spoken_date(13, 1),
        lambda: spoken_date(1, 32),
        lambda: spoken_time(24, 0),
        lambda: spoken_time(0, 60),
        lambda: spoken_digits("+81312345678"),
        lambda: spoken_digits("\uff11\uff12\uff13"),  # full-width digits
        lambda: spoken_digits("--"),
    ],
)
def test_unsayable_values(call: object) -> None:
    with pytest.raises(PromptError) as info:
        call()  # type: ignore[operator]
    assert info.value.error_id == "prompt-unsayable"


def test_join_inserts_gaps() -> None:
    joined = LIB.join(["digit-1", "digit-2"], gap=0.1)
    assert len(joined) == len(LIB.pcm("digit-1")) + 1600 + len(LIB.pcm("digit-2"))


def test_library_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "texts.toml").write_text('["hello"]\nkind = "tts"\ntext = "x"\nsay = "x"\n')
    (tmp_path / "hello.wav").write_bytes((PROMPTS / "beep.wav").read_bytes())
    lib = PromptLibrary(tmp_path)
    assert lib.names() == {"hello"} and lib.pcm("hello") == LIB.pcm("beep")
