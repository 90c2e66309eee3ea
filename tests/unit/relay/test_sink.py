"""The directory sink: layout, safe names, sidecar, discard, a crash-readable WAV."""

from __future__ import annotations

import json
import wave
from pathlib import Path

from media.relay.sink import DirectorySink, RecordingMeta, safe_name
from media.wav import WavWriter

STARTED = 1_700_000_000.5  # 2023-11-14T22:13:20.5Z


def meta(call_id: str = "abc@host") -> RecordingMeta:
    return RecordingMeta(call_id=call_id, from_tag="ft", started=STARTED, relay="embedded")


def test_recording_lands_under_its_date_with_a_sidecar(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    writer = sink.open("abc@host", meta())
    writer.write(bytes(4 * 800))
    part = tmp_path / "2023/11/14/abc@host.wav.part"
    assert part.exists() and not part.with_suffix("").exists()
    done = meta().finished(ended=STARTED + 0.1, duration=0.1, data_bytes=3200, stats={"x": 1})
    sink.close(writer, done)
    wav = tmp_path / "2023/11/14/abc@host.wav"
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 800)
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["call_id"] == "abc@host" and sidecar["duration"] == 0.1
    assert sidecar["started_iso"] == "2023-11-14T22:13:20.500Z"
    assert sidecar["channels"] == ["caller", "callee"] and sidecar["stats"] == {"x": 1}
    assert not part.exists()


def test_same_call_id_twice_gets_a_second_name(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    first = sink.open("dup", meta("dup"))
    second = sink.open("dup", meta("dup"))
    assert sink.path_of(first) != sink.path_of(second)
    assert str(sink.path_of(second)).endswith("dup-2.wav")
    sink.close(first, meta("dup"))
    sink.close(second, meta("dup"))
    assert sorted(p.name for p in tmp_path.rglob("*.wav")) == ["dup-2.wav", "dup.wav"]


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    writer = sink.open("gone", meta("gone"))
    writer.write(bytes(400))
    sink.discard(writer, meta("gone"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unsafe_call_ids_become_safe_names() -> None:
    assert safe_name("a/b\\c d%") == "a%2Fb%5Cc%20d%25"
    assert safe_name("../etc") == "%2Fetc"
    assert safe_name("..") == "_"
    assert safe_name("日本") == "%E6%97%A5%E6%9C%AC"
    assert len(safe_name("x" * 1000)) == 180


def test_synced_part_file_is_a_playable_wav(tmp_path: Path) -> None:
    """What a crash leaves behind: the .part file as of the last sync() reads as a WAV."""
    sink = DirectorySink(tmp_path)
    writer = sink.open("crash", meta("crash"))
    assert isinstance(writer, WavWriter)
    writer.write(bytes(4 * 8000))
    writer.sync()
    writer.write(bytes(4 * 100))  # after the sync: may be lost, must not break the file
    part = next(tmp_path.rglob("*.part"))
    with wave.open(str(part)) as w:
        assert w.getnframes() == 8000
    writer.abort()


def test_recover_turns_a_crashed_part_file_into_a_wav(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    writer = sink.open("a/b", meta("a/b"))
    assert isinstance(writer, WavWriter)
    writer.write(bytes(4 * 8000))
    writer.sync()
    writer.write(bytes(4 * 4000))  # written after the last sync
    raw = writer._file
    assert raw is not None
    raw.write(b"\x00\x00")  # and a torn frame: the process died in the middle of a write
    raw.flush()
    try:
        recovered = DirectorySink(tmp_path).recover()
    finally:
        raw.close()
    assert [p.name for p in recovered] == ["a%2Fb.wav"]
    with wave.open(str(recovered[0])) as w:
        assert w.getnframes() == 12000  # everything on disk, not only what was synced
    sidecar = json.loads(recovered[0].with_suffix(".json").read_text())
    assert sidecar == {
        "call_id": "a/b",
        "recovered": True,
        "duration": 1.5,
        "ended": sidecar["ended"],
        "channels": ["caller", "callee"],
    }
    assert not list(tmp_path.rglob("*.part"))
