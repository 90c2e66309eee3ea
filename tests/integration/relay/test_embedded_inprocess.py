"""The embedded relay as the switch will run it: in the same event loop (real loopback
sockets). What only the in-process API shows: the client's metrics hook, `stop()` finishing
recordings, the relay deleting idle calls itself, `play media`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from media.relay.client import NgClient
from media.relay.core import RelayConfig
from media.relay.embedded import EmbeddedRelay
from media.relay.errors import NgRefused
from media.sdp import rtp_destination
from media.ua.rtp_session import PortRange
from media.wav import write_wav

from .harness import ToneParty, dominant, tone_pcm

pytestmark = pytest.mark.integration
Party = Callable[[float], ToneParty]
PORTS = PortRange(47500, 47599)


def where(sdp: bytes) -> tuple[str, int]:
    dest = rtp_destination(sdp)
    assert dest is not None
    return dest


async def call(
    client: NgClient, cid: str, a: ToneParty, b: ToneParty
) -> tuple[tuple[str, int], tuple[str, int]]:
    offer = await client.offer(call_id=cid, from_tag="fa", sdp=a.sdp(), record=True)
    answer = await client.answer(call_id=cid, from_tag="fa", to_tag="tb", sdp=b.sdp(2))
    return where(answer), where(offer)


async def test_metrics_hook_sees_every_request(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    async with EmbeddedRelay(recordings=tmp_path, ports=PORTS) as relay:
        client = NgClient(
            relay.ng_address, observer=lambda cmd, outcome, s: seen.append((cmd, outcome))
        )
        async with client:
            await client.ping()
            with pytest.raises(NgRefused):
                await client.query(call_id="nope")
        assert client.stats.completed == 1 and client.stats.refused == 1
    assert seen == [("ping", "ok"), ("query", "refused")]


async def test_stop_finishes_recordings_in_progress(tmp_path: Path, party: Party) -> None:
    a, b = party(440.0), party(1000.0)
    async with (
        EmbeddedRelay(recordings=tmp_path, ports=PORTS) as relay,
        NgClient(relay.ng_address) as client,
    ):
        to_a, to_b = await call(client, "stopped", a, b)
        await asyncio.gather(a.talk(to_a, 1.0), b.talk(to_b, 1.0))
    [sidecar] = list(tmp_path.rglob("*.json"))
    meta = json.loads(sidecar.read_text())
    assert meta["call_id"] == "stopped" and meta["duration"] == pytest.approx(1.0, abs=0.3)
    assert not list(tmp_path.rglob("*.part"))


async def test_idle_call_is_deleted_by_the_relay_itself(tmp_path: Path, party: Party) -> None:
    a, b = party(440.0), party(1000.0)
    config = RelayConfig(idle_timeout=1.0)
    async with EmbeddedRelay(recordings=tmp_path, ports=PORTS, config=config) as relay:
        async with NgClient(relay.ng_address) as client:
            to_a, to_b = await call(client, "forgotten", a, b)
            await asyncio.gather(a.talk(to_a, 0.5), b.talk(to_b, 0.5))
            assert await client.list_calls() == ["forgotten"]
            await asyncio.sleep(2.0)  # no packets, no delete from the proxy
            assert await client.list_calls() == []
        assert relay.core.stats.expired_idle == 1
    assert len(list(tmp_path.rglob("*.wav"))) == 1


async def test_play_media_replaces_the_other_side_for_the_listener(
    tmp_path: Path, party: Party
) -> None:
    prompt = tmp_path / "media" / "notice.wav"
    prompt.parent.mkdir()
    write_wav(prompt, tone_pcm(600.0, 1.0))
    a, b = party(440.0), party(1000.0)
    async with (
        EmbeddedRelay(recordings=tmp_path / "rec", ports=PORTS, media_root=prompt.parent) as relay,
        NgClient(relay.ng_address) as client,
    ):
        to_a, to_b = await call(client, "notice", a, b)
        duration = await client.play_media(call_id="notice", from_tag="fa", file="notice.wav")
        assert duration == 1000
        await asyncio.gather(a.talk(to_a, 1.6), b.talk(to_b, 1.6))
        with pytest.raises(NgRefused, match="outside the media directory"):
            await client.play_media(call_id="notice", from_tag="fa", file="../../etc/passwd")
        await client.delete(call_id="notice")
    heard = np.frombuffer(bytes(a.heard), dtype="<i2")
    first, rest = heard[: 8000 * 9 // 10].tobytes(), heard[8000 * 11 // 10 :].tobytes()
    assert dominant(first, (600.0, 1000.0)) == 600.0  # the notice, not the callee
    assert dominant(rest, (600.0, 1000.0)) == 1000.0  # then the callee again
    assert dominant(bytes(b.heard)) == 440.0  # the callee's direction was not touched
