"""The same suite against both relays (embedded and rtpengine), over real sockets on
127.0.0.1: NgClient drives the relay, two Python RTP parties exchange tones through it
(440 Hz from the caller, 1000 Hz from the callee), and the recording is checked by ear
(Goertzel) and by clock."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from media.relay.client import NgClient
from media.relay.errors import NgRefused, NgTimeout, NgUnreachable
from media.relay.pcap import convert_spool
from media.relay.sink import DirectorySink
from media.sdp import rtp_destination
from media.wav import write_wav

from .harness import RelayProcess, RtpengineProcess, ToneParty, dominant, tone_pcm

pytestmark = pytest.mark.integration
Party = Callable[[float], ToneParty]

TALK = 3.0


def dest(sdp: bytes) -> tuple[str, int]:
    where = rtp_destination(sdp)
    assert where is not None, sdp
    return where


def channels(path: Path) -> tuple[bytes, bytes, float]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].tobytes(), frames[:, 1].tobytes(), len(frames) / 8000


def onset(pcm: bytes) -> float:
    """Seconds until the first loud sample."""
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 2000)
    assert loud.size, "channel is silent"
    return float(loud[0]) / 8000


async def establish(
    client: NgClient, cid: str, caller: ToneParty, callee: ToneParty, *, branch: str = "z9hG4bK-b1"
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Offer (recorded) and answer; (where the caller sends, where the callee sends)."""
    offer = await client.offer(
        call_id=cid,
        from_tag="ft-a",
        sdp=caller.sdp(),
        via_branch=branch,
        label="caller",
        record=True,
        metadata=f"call-id:{cid}|from-tag:ft-a",
    )
    answer = await client.answer(
        call_id=cid,
        from_tag="ft-a",
        to_tag="tt-b",
        sdp=callee.sdp(2),
        via_branch=branch,
        label="callee",
        metadata=f"call-id:{cid}|from-tag:ft-a|to-tag:tt-b",
    )
    return dest(answer), dest(offer)


async def test_parties_hear_each_other_and_the_call_is_recorded(
    relay: RelayProcess, party: Party
) -> None:
    cid = f"rec-{uuid.uuid4().hex[:8]}@127.0.0.1"
    caller, callee = party(440.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        started = time.time()
        to_relay_a, to_relay_b = await establish(client, cid, caller, callee)
        talk_at = time.time() - started
        await asyncio.gather(caller.talk(to_relay_a, TALK), callee.talk(to_relay_b, TALK))
        await asyncio.sleep(0.1)
        caller.drain()
        callee.drain()
        totals = (await client.query(call_id=cid))["totals"]
        await client.delete(call_id=cid)
        ended = time.time()
        assert cid not in await client.list_calls()
        with pytest.raises(NgRefused, match="Unknown call-id"):
            await client.query(call_id=cid)

    assert dominant(bytes(caller.heard)) == 1000.0  # the caller heard the callee
    assert dominant(bytes(callee.heard)) == 440.0
    assert caller.received >= 0.95 * callee.sent and callee.received >= 0.95 * caller.sent
    assert caller.sources == {to_relay_a} and callee.sources == {to_relay_b}  # symmetric
    assert isinstance(totals, dict)
    rtp = totals["RTP"]
    assert isinstance(rtp, dict) and isinstance(rtp["packets"], int)
    assert rtp["packets"] >= 0.95 * (caller.sent + callee.sent)

    recordings = relay.recordings()
    assert len(recordings) == 1, relay.logs()
    wav, meta = recordings[0]
    left, right, seconds = channels(wav)
    assert dominant(left) == 440.0 and dominant(right) == 1000.0
    assert abs(seconds - (ended - started)) < 0.3, (seconds, ended - started)
    assert abs(onset(left) - talk_at) < 0.1 and abs(onset(right) - talk_at) < 0.1
    assert abs(onset(left) - onset(right)) < 0.05  # both channels on one clock
    assert meta["call_id"] == cid and meta["relay"] == relay.kind
    assert meta["codecs"] == ["PCMU"]
    assert str(meta["metadata"]).startswith(f"call-id:{cid}")


async def test_one_branch_deleted_the_other_keeps_working(
    relay: RelayProcess, party: Party
) -> None:
    cid = f"fork-{uuid.uuid4().hex[:8]}@127.0.0.1"
    caller, first, second = party(440.0), party(1000.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        offer1 = await client.offer(
            call_id=cid,
            from_tag="ft-a",
            sdp=caller.sdp(),
            via_branch="br-1",
            label="caller",
            record=True,
        )
        offer2 = await client.offer(
            call_id=cid, from_tag="ft-a", sdp=caller.sdp(), via_branch="br-2", label="caller"
        )
        assert dest(offer1) != dest(offer2)  # one port pair per branch
        answer = await client.answer(
            call_id=cid,
            from_tag="ft-a",
            to_tag="tt-2",
            sdp=second.sdp(3),
            via_branch="br-2",
            label="callee",
        )
        await client.delete(call_id=cid, from_tag="ft-a", via_branch="br-1")
        assert cid in await client.list_calls()
        await asyncio.gather(caller.talk(dest(answer), 2.0), second.talk(dest(offer2), 2.0))
        await asyncio.sleep(0.1)
        for party in (caller, first, second):
            party.drain()
        await client.delete(call_id=cid)
        assert cid not in await client.list_calls()

    assert dominant(bytes(caller.heard)) == 1000.0 and dominant(bytes(second.heard)) == 440.0
    assert first.received == 0
    recordings = relay.recordings()
    assert len(recordings) == 1
    left, right, _ = channels(recordings[0][0])
    assert dominant(left) == 440.0 and dominant(right) == 1000.0


async def test_late_offer_keeps_the_caller_on_the_left(relay: RelayProcess, party: Party) -> None:
    """INVITE without SDP: the 200 carries the callee's offer, the ACK the caller's answer.
    ng's from-tag names the offerer, so the offer has from-tag = the callee's tag; the
    labels tell both relays (and the pcap converter) who is who."""
    cid = f"late-{uuid.uuid4().hex[:8]}"
    caller, callee = party(440.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        to_caller = await client.offer(
            call_id=cid, from_tag="tt-b", sdp=callee.sdp(2), label="callee", record=True
        )
        to_callee = await client.answer(
            call_id=cid, from_tag="tt-b", to_tag="ft-a", sdp=caller.sdp(), label="caller"
        )
        await asyncio.gather(caller.talk(dest(to_caller), 2.0), callee.talk(dest(to_callee), 2.0))
        await asyncio.sleep(0.1)
        caller.drain()
        callee.drain()
        await client.delete(call_id=cid)
    assert dominant(bytes(caller.heard)) == 1000.0 and dominant(bytes(callee.heard)) == 440.0
    [(wav, _)] = relay.recordings()
    left, right, _ = channels(wav)
    assert dominant(left) == 440.0 and dominant(right) == 1000.0


async def test_relay_restart_fails_fast_then_recovers(relay: RelayProcess, party: Party) -> None:
    caller, callee = party(440.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        await establish(client, "before-restart", caller, callee)
        relay.kill()  # a crash, not a clean stop
        t0 = time.monotonic()
        with pytest.raises((NgUnreachable, NgTimeout)):
            await client.query(call_id="before-restart")
        assert time.monotonic() - t0 < 1.5
        relay.start()
        await client.ping()  # the same client recovers
        with pytest.raises(NgRefused, match="Unknown call-id"):
            await client.query(call_id="before-restart")  # the state died with the process
        await establish(client, "after-restart", party(440.0), party(1000.0))
        await client.delete(call_id="after-restart")


async def test_unreachable_relay_fails_fast(party: Party) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    closed_port = holder.getsockname()[1]
    holder.close()  # nothing listens there now: ICMP port unreachable
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # bound, never answers: the client must time out
    try:
        for port, error in ((closed_port, NgUnreachable), (silent.getsockname()[1], NgTimeout)):
            async with NgClient(("127.0.0.1", port)) as client:
                t0 = time.monotonic()
                with pytest.raises(error):
                    await client.offer(call_id="x", from_tag="y", sdp=party(440.0).sdp())
                assert time.monotonic() - t0 < 1.5
    finally:
        silent.close()


async def test_recording_notice_plays_to_the_caller_alone(
    relay: RelayProcess, party: Party
) -> None:
    """The recording notice as the proxy will send it to either relay: `block media` on the
    callee, `play media` to the caller (from-tag), `unblock media` after the reply's
    `duration`. The caller hears the notice and only then the callee; the callee hears the
    caller throughout; the recording keeps what both parties said."""
    prompt = relay.workdir / "notice.wav"
    write_wav(prompt, tone_pcm(600.0, 1.0))
    caller, callee = party(440.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        to_relay_a, to_relay_b = await establish(client, "notice", caller, callee)
        await client.block_media(call_id="notice", from_tag="tt-b")
        duration = await client.play_media(call_id="notice", from_tag="ft-a", file=str(prompt))
        assert duration == 1000

        async def unblock_later() -> None:
            await asyncio.sleep(duration / 1000)
            await client.unblock_media(call_id="notice", from_tag="tt-b")

        await asyncio.gather(
            caller.talk(to_relay_a, 2.0), callee.talk(to_relay_b, 2.0), unblock_later()
        )
        await asyncio.sleep(0.1)
        caller.drain()
        await client.delete(call_id="notice")
    heard = np.frombuffer(bytes(caller.heard), dtype="<i2")
    assert dominant(heard[: 8000 * 9 // 10].tobytes(), (600.0, 1000.0)) == 600.0
    assert dominant(heard[8000 * 12 // 10 :].tobytes(), (600.0, 1000.0)) == 1000.0
    assert dominant(bytes(callee.heard)) == 440.0  # the notice went to the caller only
    [(wav, _)] = relay.recordings()
    left, right, _ = channels(wav)
    assert dominant(left) == 440.0 and dominant(right) == 1000.0


async def test_a_relay_crash_leaves_a_playable_recording(
    relay: RelayProcess, party: Party, tmp_path: Path
) -> None:
    """kill -9 mid-call. rtpengine: its pcap is converted from the /tmp metadata (the orphan
    path of convert_spool). Embedded: the restarted relay recovers the `.part` WAV (synced
    every second in this harness). Either way most of the call survives."""
    cid = f"crash-{uuid.uuid4().hex[:8]}"
    caller, callee = party(440.0), party(1000.0)
    async with NgClient(relay.ng) as client:
        started = time.time()
        to_relay_a, to_relay_b = await establish(client, cid, caller, callee)
        await asyncio.gather(caller.talk(to_relay_a, 3.0), callee.talk(to_relay_b, 3.0))
        relay.kill()
        lasted = time.time() - started
    if isinstance(relay, RtpengineProcess):
        result = convert_spool(
            relay.spool, DirectorySink(relay.out), orphan_after=0.0, now=time.time() + 1
        )
        assert result.orphans == 1 and result.converted == 1
    else:
        assert list(relay.out.rglob("*.wav.part"))
        relay.start()  # recovers at start-up
    [(wav, meta)] = relay.recordings()
    left, right, seconds = channels(wav)
    assert lasted - 1.6 < seconds <= lasted + 0.1, (seconds, lasted)
    assert dominant(left) == 440.0 and dominant(right) == 1000.0
    assert meta.get("recovered") is True or meta["relay"] == "rtpengine"
