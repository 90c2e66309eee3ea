"""WAV reading and writing."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st

from media.errors import AudioError
from media.wav import WavWriter, interleave, read_wav, wav_bytes, write_wav


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def test_write_then_read_with_stdlib_and_libsndfile(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    data = pcm(0, 1, -1, 32767, -32768)
    write_wav(path, data)
    assert read_wav(path) == data
    assert read_wav(path.read_bytes()) == data
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1,
            2,
            8000,
            5,
        )
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and samples.tolist() == [0, 1, -1, 32767, -32768]
    assert not (tmp_path / "a.wav.tmp").exists()


def test_read_refuses_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(bytes(8))
    with pytest.raises(AudioError) as info:
        read_wav(path)
    assert info.value.error_id == "audio-wrong-format"
    with pytest.raises(AudioError) as info:
        read_wav(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert info.value.error_id == "audio-corrupt"
    with pytest.raises(AudioError) as info:
        read_wav(tmp_path / "missing.wav")
    assert info.value.error_id == "audio-unreadable"


@given(st.binary(max_size=200))
def test_read_of_garbage_is_a_typed_error(data: bytes) -> None:
    try:
        read_wav(b"RIFF" + data)
    except AudioError:
        pass
    else:  # only a well-formed 8 kHz mono 16-bit WAV gets here
        assert data[4:8] == b"WAVE"


def test_interleave() -> None:
    stereo = interleave(pcm(1, 2, 3), pcm(-1, -2))
    assert struct.unpack("<6h", stereo) == (1, -1, 2, -2, 3, 0)
    with pytest.raises(AudioError):
        interleave(b"\x00", b"")


def test_stereo_wav_bytes_read_by_libsndfile(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    path.write_bytes(wav_bytes(interleave(pcm(100, 200), pcm(-5, -6)), channels=2))
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and samples.tolist() == [[100, -5], [200, -6]]
    with pytest.raises(AudioError):
        wav_bytes(pcm(1), channels=2)
    with pytest.raises(AudioError):
        wav_bytes(b"", channels=3)


def test_streaming_writer_patches_sizes_and_renames(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    writer = WavWriter(path, channels=2)
    part = tmp_path / "rec.wav.part"
    assert part.exists() and not path.exists()
    writer.write(interleave(pcm(*range(160)), pcm(*range(160))))
    writer.write_silence(8000 + 40)
    writer.sync()
    with wave.open(str(part)) as w:  # readable mid-call, e.g. after a crash
        assert w.getnframes() == 160 + 8040
    writer.write(interleave(pcm(7), pcm(8)))
    assert writer.close() == path and not part.exists()
    assert writer.seconds == pytest.approx((160 + 8040 + 1) / 8000)
    samples, _ = soundfile.read(path, dtype="int16")
    assert len(samples) == 8201 and samples[-1].tolist() == [7, 8]
    riff_size, data_size = (
        struct.unpack_from("<I", path.read_bytes(), 4)[0],
        struct.unpack_from("<I", path.read_bytes(), 40)[0],
    )
    assert data_size == 8201 * 4 and riff_size == data_size + 36
    writer.close()  # idempotent
    with pytest.raises(AudioError):
        writer.write(pcm(1, 2))


def test_streaming_writer_abort_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), WavWriter(tmp_path / "x.wav") as writer:
        writer.write(pcm(1))
        raise RuntimeError("call failed")
    assert list(tmp_path.iterdir()) == []
    with WavWriter(tmp_path / "y.wav") as writer:
        writer.write(pcm(1, 2, 3))
    assert read_wav(tmp_path / "y.wav") == pcm(1, 2, 3)
    odd = WavWriter(tmp_path / "z.wav")
    with pytest.raises(AudioError):
        odd.write(b"\x00")
    odd.abort()
    assert not (tmp_path / "z.wav.part").exists()
