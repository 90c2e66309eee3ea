"""The recording reorder buffer."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from media.jitter import Audio, Chunk, RecordingBuffer, Silence


def frame(n: int) -> bytes:
    return bytes((n % 256,)) * 160


def push(
    buf: RecordingBuffer,
    seq: int,
    ts: int,
    at: float,
    *,
    ssrc: int = 1,
    payload: bytes | None = b"",
) -> list[Chunk]:
    data = frame(seq) if payload == b"" else payload
    return buf.push(
        ssrc=ssrc, sequence=seq % 65536, timestamp=ts % (1 << 32), payload=data, arrival=at
    )


def total(chunks: list[Chunk]) -> int:
    return sum(c.samples if isinstance(c, Silence) else len(c.payload) for c in chunks)


def payloads(chunks: list[Chunk]) -> list[int]:
    return [c.payload[0] for c in chunks if isinstance(c, Audio)]


def test_in_order_packets_pass_through_after_the_startup_wait() -> None:
    buf = RecordingBuffer(latency=0.1)
    out: list[Chunk] = []
    for i in range(10):
        out += push(buf, 100 + i, 5000 + 160 * i, i * 0.02)
        if i == 4:
            assert out == []  # collecting the first 100 ms
        if i >= 5:
            assert payloads(out)[-1] == 100 + i  # then each packet goes straight out
    assert payloads(out) == [(100 + i) % 256 for i in range(10)]
    assert not any(isinstance(c, Silence) for c in out)
    assert buf.written == 1600 and buf.stats.lost == 0


def test_overtaken_first_packet_is_not_lost() -> None:
    buf = RecordingBuffer(latency=0.1)
    out = push(buf, 6, 960, 0.0) + push(buf, 5, 800, 0.01) + buf.poll(0.2)
    assert payloads(out) == [5, 6] and buf.stats.late == 0


def test_reordered_packet_is_put_back_in_place() -> None:
    buf = RecordingBuffer()
    out = push(buf, 1, 160, 0.00) + push(buf, 3, 480, 0.04) + push(buf, 2, 320, 0.045)
    out += push(buf, 4, 640, 0.06) + buf.flush()
    assert payloads(out) == [1, 2, 3, 4] and buf.stats.lost == 0


def test_lost_packet_becomes_silence_after_the_latency() -> None:
    buf = RecordingBuffer(latency=0.1)
    out = push(buf, 1, 160, 0.00) + push(buf, 3, 480, 0.04) + buf.poll(0.1)
    assert payloads(out) == [1]  # start-up wait over, waiting for 2
    out += buf.poll(0.139)
    assert payloads(out) == [1]
    out += buf.poll(0.14)
    assert payloads(out) == [1, 3]
    assert Silence(samples=160) in out
    assert buf.stats.lost == 1 and total(out) == 480


def test_late_and_duplicate_packets_are_dropped_and_counted() -> None:
    buf = RecordingBuffer(latency=0.05)
    out = push(buf, 1, 160, 0.0) + push(buf, 3, 480, 0.04) + buf.poll(0.1)
    out += push(buf, 2, 320, 0.11)  # too late: 3 is already written
    out += push(buf, 3, 480, 0.12)  # duplicate of a written packet: also late
    out += push(buf, 5, 800, 0.13) + push(buf, 5, 800, 0.131)  # duplicate while held
    assert buf.stats.late == 2 and buf.stats.duplicates == 1
    assert payloads(out) == [1, 3]


def test_silence_suppression_gap_is_filled_from_timestamps() -> None:
    buf = RecordingBuffer()
    out = push(buf, 10, 0, 0.0) + push(buf, 11, 160 + 8000 * 3, 3.02)  # 3 s of DTX
    out += buf.flush()
    assert out[1] == Silence(samples=24000) and total(out) == 160 + 24000 + 160


def test_sequence_and_timestamp_wrap_around() -> None:
    buf = RecordingBuffer()
    out: list[Chunk] = []
    ts0 = (1 << 32) - 480
    for i in range(8):
        out += push(buf, 65532 + i, ts0 + 160 * i, i * 0.02)
    out += buf.flush()
    assert payloads(out) == [(65532 + i) % 65536 % 256 for i in range(8)]
    assert buf.stats.silence_samples == 0 and buf.stats.resyncs == 0


def test_leading_silence_and_trailing_pad_follow_the_wall_clock() -> None:
    buf = RecordingBuffer(start=10.0)
    out = push(buf, 1, 0, 10.5) + push(buf, 2, 160, 10.52)
    out += buf.flush(now=12.0)
    assert out[0] == Silence(samples=4000)
    assert total(out) == buf.written == 16000  # 2 s at 8 kHz


def test_ssrc_change_flushes_and_restarts_on_the_wall_clock() -> None:
    buf = RecordingBuffer(start=0.0)
    out = push(buf, 1, 0, 0.0) + push(buf, 3, 320, 0.04)  # 2 never comes
    out += push(buf, 9000, 777, 1.0, ssrc=2) + buf.flush()
    assert buf.stats.resyncs == 1 and buf.stats.lost == 1
    assert payloads(out) == [1, 3, 9000 % 256]
    assert total(out) == 8000 + 160  # the new source starts at 1.0 s


def test_timestamp_jump_without_ssrc_change_is_a_resync() -> None:
    buf = RecordingBuffer(start=0.0)
    out = push(buf, 1, 0, 0.0) + push(buf, 2, 160, 0.02)
    out += push(buf, 3, 123_456_789, 0.04)  # the sender restarted its clock
    out += push(buf, 4, 123_456_789 + 160, 0.06) + buf.flush()
    assert buf.stats.resyncs == 1
    assert payloads(out) == [1, 2, 3, 4] and total(out) == 640


def test_sequence_jump_is_a_resync() -> None:
    buf = RecordingBuffer(start=0.0)
    out = push(buf, 1, 0, 0.0) + push(buf, 20000, 160, 0.02) + push(buf, 20001, 320, 0.04)
    out += buf.flush()
    assert buf.stats.resyncs == 1 and payloads(out) == [1, 20000 % 256, 20001 % 256]


def test_capacity_bounds_what_is_held() -> None:
    buf = RecordingBuffer(capacity=5, latency=100.0)
    out = push(buf, 1, 0, 0.0)
    for i in range(3, 12):  # 2 is missing and latency never expires
        out += push(buf, i, 160 * (i - 1), 0.02 * i)
    assert buf.stats.overflows >= 1 and buf.stats.lost == 1
    assert len(payloads(out)) >= 9 - 5


def test_packets_without_audio_fill_their_sequence_number() -> None:
    buf = RecordingBuffer(latency=10.0)
    out = push(buf, 1, 0, 0.0)
    out += push(buf, 2, 160, 0.02, payload=None)  # a telephone-event packet
    out += push(buf, 3, 480, 0.06) + buf.poll(10.0)
    assert payloads(out) == [1, 3]  # nobody waited for 2 (no gap to give up on)
    assert buf.stats.lost == 0
    assert out[-2] == Silence(samples=320)


@given(
    st.integers(0, 65535),
    st.integers(0, (1 << 32) - 1),
    st.integers(20, 300),
    st.floats(0.0, 0.3),
    st.randoms(use_true_random=False),
)
def test_recording_length_matches_the_stream_under_loss_and_reorder(
    seq0: int, ts0: int, count: int, loss: float, rnd: random.Random
) -> None:
    sent = [(i, seq0 + i, ts0 + 160 * i, 0.02 * i) for i in range(count)]
    kept = [p for p in sent[1:-1] if rnd.random() >= loss]
    arrivals = [(i, s, t, at + rnd.uniform(0, 0.06)) for i, s, t, at in [sent[0], *kept, sent[-1]]]
    arrivals.sort(key=lambda p: p[3])
    buf = RecordingBuffer(latency=0.1)
    out: list[Chunk] = []
    for i, s, t, at in arrivals:
        out += push(buf, s, t, at, payload=i.to_bytes(2, "big") * 80)
    out += buf.flush()
    assert total(out) == 160 * count  # as long as the stream, despite loss and reordering
    written = [int.from_bytes(c.payload[:2], "big") for c in out if isinstance(c, Audio)]
    assert written == sorted(written)
    assert {0, count - 1} <= set(written)  # the first packet is never lost to reordering
    assert len(written) + buf.stats.lost + buf.stats.late == count
