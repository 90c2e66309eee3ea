"""Prompt uploads converted at upload time, through HTTP, with the real converter wired exactly
as `softswitch serve` wires it (switch/node.py `Node._mount`), on SQLite and PostgreSQL.

Files are made here: a 44.1 kHz stereo 24-bit WAV and an MP3 with libsndfile (`soundfile`),
an M4A (AAC) with ffmpeg. Accepted files come back from `GET …/prompts/{id}/audio` as 8 kHz
16-bit mono WAV carrying the same tone; refused files answer their `audio-*` error_id and
the tenant's prompts are the same before and after.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from aiohttp import web

from provisioning.services import Principal, Services
from switch.config import Config
from switch.node import Node

from .conftest import BOTH_BACKENDS, Api

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)

TONE_HZ = 440.0


@pytest.fixture
async def api(service: Services, aiohttp_client: Any) -> Api:
    """The API as the node mounts it: its voicemail repository and its prompt converter."""
    node = Node(Config(), service.store)
    root = web.Application()
    node._mount(root, node.app)  # the composition root's own wiring
    client = await aiohttp_client(root)
    op = await service.tokens.create_token(Principal.operator(), scope="operator")
    return Api(client, node.services, op.token, root, node.app.metrics.registry)


def tone(seconds: float, rate: int, channels: int = 1, level: float = 0.5) -> Any:
    t = np.arange(int(seconds * rate)) / rate
    mono = level * np.sin(2 * np.pi * TONE_HZ * t)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def sndfile(data: Any, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_44k_stereo_24bit(seconds: float = 2.0) -> bytes:
    return sndfile(tone(seconds, 44100, channels=2), 44100, "WAV", "PCM_24")


def mp3(seconds: float = 2.0) -> bytes:
    return sndfile(tone(seconds, 44100), 44100, "MP3", "MPEG_LAYER_III")


def m4a(tmp_path: Path, seconds: float = 2.0) -> bytes:
    out = tmp_path / "phone.m4a"
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi"),
            *("-i", f"sine=frequency={TONE_HZ:g}:sample_rate=48000:duration={seconds}"),
            *("-c:a", "aac", "-b:a", "64k", str(out)),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


async def upload(api: Api, data: bytes, media: str, name: str = "x") -> Any:
    return await api.call(
        "POST", f"/v1/tenants/acme/prompts?name={name}", data=data, headers={"Content-Type": media}
    )


async def prompts(api: Api) -> list[dict[str, Any]]:
    r = await api.get("/v1/tenants/acme/prompts")
    assert r.status == 200, r.body
    return list(r.body["items"])


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def assert_stored_8k_mono(api: Api, created: dict[str, Any], seconds: float) -> None:
    resp = await api.client.get(
        f"/v1/tenants/acme/prompts/{created['id']}/audio",
        headers={"Authorization": f"Bearer {api.operator}"},
    )
    stored = await resp.read()
    assert resp.status == 200 and resp.content_type == "audio/wav"
    assert created["content_type"] == "audio/wav" and created["size"] == len(stored)
    with wave.open(io.BytesIO(stored)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        pcm = w.readframes(w.getnframes())
        # encoders pad MP3/AAC with a few milliseconds of priming and tail
        assert abs(w.getnframes() / 8000 - seconds) < 0.15, w.getnframes()
    assert abs(dominant_hz(pcm, 8000) - TONE_HZ) < 5


@pytest.mark.parametrize("kind", ["wav-44k-stereo-24bit", "mp3", "m4a"])
async def test_common_uploads_are_stored_as_8k_mono_wav(
    api: Api, kind: str, tmp_path: Path
) -> None:
    await api.tenant("acme")
    if kind == "m4a" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs it)")
    data, media = {
        "wav-44k-stereo-24bit": lambda: (wav_44k_stereo_24bit(), "audio/wav"),
        "mp3": lambda: (mp3(), "audio/mpeg"),
        "m4a": lambda: (m4a(tmp_path), "audio/mp4"),
    }[kind]()
    r = await upload(api, data, media, name=kind)
    assert r.status == 201, r.body
    assert r.body["name"] == kind
    await assert_stored_8k_mono(api, r.body, 2.0)
    assert [p["id"] for p in await prompts(api)] == [r.body["id"]]


async def test_the_content_decides_not_the_content_type(api: Api) -> None:
    await api.tenant("acme")
    r = await upload(api, mp3(), "application/octet-stream")
    assert r.status == 201, r.body
    await assert_stored_8k_mono(api, r.body, 2.0)


def text_file() -> bytes:
    return "営業時間のご案内\n".encode() * 50


def au_file() -> bytes:  # Sun .au: libsndfile knows it, the converter does not take it
    return sndfile(tone(1.0, 8000), 8000, "AU", "PCM_16")


def truncated_wav() -> bytes:
    whole = wav_44k_stereo_24bit(1.0)
    return whole[: len(whole) // 2]  # the header promises twice the data


def garbage_mp3() -> bytes:
    return mp3(1.0)[:200] + bytes(range(256)) * 40


REFUSED = {
    "empty": (lambda: b"", "audio/wav", 422, "audio-empty"),
    "no-frames": (
        lambda: sndfile(np.zeros(0), 8000, "WAV", "PCM_16"),
        "audio/wav",
        422,
        "audio-empty",
    ),
    "silent": (
        lambda: sndfile(np.zeros(8000), 8000, "WAV", "PCM_16"),
        "audio/wav",
        422,
        "audio-silent",
    ),
    "two-minutes": (
        lambda: sndfile(tone(120.0, 8000), 8000, "WAV", "PCM_16"),
        "audio/wav",
        422,
        "audio-too-long",
    ),
    "truncated-wav": (truncated_wav, "audio/wav", 422, "audio-corrupt"),
    "garbage-after-mp3-header": (garbage_mp3, "audio/mpeg", 422, "audio-corrupt"),
    "text": (text_file, "application/octet-stream", 415, "audio-unsupported-format"),
    "sun-au": (au_file, "audio/basic", 415, "audio-unsupported-format"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_bad_uploads_are_refused_and_nothing_is_stored(api: Api, case: str) -> None:
    await api.tenant("acme")
    kept = await upload(api, mp3(1.0), "audio/mpeg", name="kept")
    assert kept.status == 201, kept.body
    before = await prompts(api)
    make, media, status, error_id = REFUSED[case]
    r = await upload(api, make(), media, name=case)
    assert (r.status, r.error_id) == (status, error_id), r.body
    assert set(r.body) == {"error_id", "message", "details"}
    assert await prompts(api) == before
    assert (await api.get("/v1/openapi.json")).body["x-error-ids"][error_id] == status


async def test_the_prompt_limit_is_checked_before_converting(api: Api) -> None:
    await api.tenant("acme")
    for i in range(10):
        assert (await upload(api, mp3(0.5), "audio/mpeg", name=f"p{i}")).status == 201
    before = await prompts(api)
    r = await upload(api, b"not audio at all", "application/octet-stream", name="eleventh")
    assert (r.status, r.error_id) == (409, "too-many-prompts")
    assert await prompts(api) == before
