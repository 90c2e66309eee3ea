"""The stereo recorder keeps both channels on the wall clock: gaps, reordering, a silent side,
late starts; and its duration is the call's."""

from __future__ import annotations

import random

import pytest

from media.g711 import Codec
from media.relay.recorder import CALLEE, CALLER, StereoRecorder, codecs_from_sdp

from .fakes import FakeWriter, rtp, tone_frame

RATE = 8000


def level_at(samples: list[int], t: float) -> int:
    return samples[round(t * RATE)]


def feed(
    rec: StereoRecorder,
    channel: int,
    value: int,
    *,
    start: float,
    seconds: float,
    skip: frozenset[int] = frozenset(),
    jitter: float = 0.0,
    seed: int = 1,
    pt: int = 0,
) -> list[tuple[float, int, bytes]]:
    """(arrival, channel, datagram) of a 20 ms stream of constant level `value`."""
    rng = random.Random(seed)
    codec = Codec.PCMA if pt == 8 else Codec.PCMU
    out = []
    for i in range(round(seconds / 0.02)):
        if i in skip:
            continue
        arrival = start + 0.02 * i + rng.uniform(0, jitter)
        out.append(
            (
                arrival,
                channel,
                rtp(i, 1000 + 160 * i, tone_frame(codec, value), pt=pt, ssrc=channel + 5),
            )
        )
    return out


def play(rec: StereoRecorder, packets: list[tuple[float, int, bytes]], end: float) -> float:
    next_tick = 0.5
    for arrival, channel, data in sorted(packets):
        while next_tick <= arrival:
            rec.tick(next_tick)
            next_tick += 0.5
        rec.packet(channel, data, arrival)
    return rec.finish(end)


def test_two_streams_with_gaps_and_reordering_stay_on_the_wall_clock() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=100.0)
    caller = feed(
        rec, CALLER, 4000, start=100.5, seconds=4.0, skip=frozenset(range(50, 75)), jitter=0.03
    )
    callee = feed(rec, CALLEE, -4000, start=101.0, seconds=3.0, jitter=0.03, seed=2)
    duration = play(rec, caller + callee, end=105.0)
    left, right = writer.channel(0), writer.channel(1)
    assert duration == pytest.approx(5.0, abs=0.02) and len(left) == len(right) == 40000
    # the caller talks from 0.5 s, is silent (lost packets) 1.5-2.0 s, talks again to 4.5 s
    assert level_at(left, 0.4) == 0 and level_at(left, 0.6) > 3000
    assert level_at(left, 1.75) == 0 and level_at(left, 2.2) > 3000 and level_at(left, 4.6) == 0
    # the callee from 1.0 to 4.0 s, on the same clock
    assert level_at(right, 0.9) == 0 and level_at(right, 1.1) < -3000 and level_at(right, 4.1) == 0
    assert rec.stats(CALLER).packets == 175 and rec.buffer_stats(CALLER)["lost"] == 25


def test_one_side_silent_the_other_is_written_with_bounded_memory() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=0.0, lead=1.0)
    packets = feed(rec, CALLER, 3000, start=0.0, seconds=10.0)
    for arrival, channel, data in packets:
        rec.packet(channel, data, arrival)
        if round(arrival * 50) % 25 == 0:
            rec.tick(arrival)
            pending = max(len(ch.pending) for ch in rec.channels)
            assert pending <= 2 * RATE * 1.6  # lead + the tick interval, not the whole call
    assert rec.finish(10.0) == pytest.approx(10.0, abs=0.001)
    left, right = writer.channel(0), writer.channel(1)
    assert set(right) == {0} and level_at(left, 5.0) > 2000


def test_a_side_that_starts_late_is_aligned_not_shifted() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=0.0)
    caller = feed(rec, CALLER, 3000, start=0.0, seconds=6.0)
    callee = feed(rec, CALLEE, -3000, start=3.0, seconds=3.0)  # silent for 3 s (> lead)
    play(rec, caller + callee, end=6.0)
    right = writer.channel(1)
    assert level_at(right, 2.9) == 0 and level_at(right, 3.1) < -2000
    assert rec.stats(CALLEE).overtaken <= 160  # at most a frame of the first one was cut


def test_duration_is_the_call_time_even_when_nobody_talked() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=50.0)
    rec.tick(51.0)
    assert rec.finish(53.25) == pytest.approx(3.25, abs=1 / RATE)
    assert len(writer.channel(0)) == 26000 and set(writer.pcm) == {0}
    assert rec.finish(60.0) == pytest.approx(3.25, abs=1 / RATE)  # idempotent
    rec.packet(CALLER, rtp(1, 160, tone_frame(Codec.PCMU, 1)), 61.0)  # ignored after finish
    assert len(writer.channel(0)) == 26000


def test_sender_clock_running_fast_does_not_lengthen_the_file() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=0.0)
    # 4.04 s of audio timestamps sent within 4 s of wall clock
    packets = [
        (0.0198 * i, CALLER, rtp(i, 160 * i, tone_frame(Codec.PCMU, 1000))) for i in range(202)
    ]
    assert play(rec, packets, end=4.0) == pytest.approx(4.0, abs=0.02)


def test_pcma_by_static_and_dynamic_payload_types_and_unsupported_payloads() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=0.0, codecs=codecs_from_sdp({96: "pcma", 97: "opus"}))
    rec.packet(CALLER, rtp(0, 0, tone_frame(Codec.PCMA, 2000), pt=96), 0.0)
    rec.packet(CALLER, rtp(1, 160, b"\x01" * 40, pt=97), 0.02)  # opus: silence, counted
    rec.packet(CALLER, rtp(2, 320, tone_frame(Codec.PCMA, 2000), pt=8), 0.04)
    rec.packet(CALLER, rtp(3, 480, b"\x00\x00\x00\x00", pt=101), 0.06)  # an event: expected
    rec.packet(CALLER, b"\x80\xc8" + bytes(20), 0.07)  # RTCP on the RTP port: skipped
    rec.packet(CALLER, b"\x00\x01", 0.08)  # malformed
    rec.finish(0.1)
    left = writer.channel(0)
    assert level_at(left, 0.01) > 1500 and level_at(left, 0.03) == 0 and level_at(left, 0.05) > 1500
    stats = rec.stats(CALLER)
    assert stats.unsupported == 1 and stats.malformed == 1 and stats.codecs == {"PCMA"}
    assert stats.packets == 4


def test_tick_syncs_the_file_now_and_then() -> None:
    writer = FakeWriter()
    rec = StereoRecorder(writer, start=0.0, sync_every=5.0)
    for t in range(1, 12):
        rec.tick(float(t))
    assert writer.syncs == 2
    rec.finish(12.0)
    assert writer.syncs == 3
