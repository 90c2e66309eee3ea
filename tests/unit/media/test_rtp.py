"""RTP packets, the sending stream and receiver statistics (RFC 3550)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import RtpError
from media.rtp import (
    ReceiverStats,
    RtpExtension,
    RtpPacket,
    RtpStream,
    is_rtcp,
    parse_rtp,
)

# A PCMU packet written out by hand: V=2, no P/X/CC; M=1, PT=0; seq 0x1234; ts 0xDEADBEEF;
# SSRC 0x01020304; payload ab cd.
HAND = bytes.fromhex("80 80 1234 deadbeef 01020304 abcd".replace(" ", ""))


def test_parse_hand_written_packet() -> None:
    packet = parse_rtp(HAND)
    assert packet == RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"\xab\xcd",
        marker=True,
    )
    assert packet.build() == HAND


def test_csrc_extension_and_padding_are_read() -> None:
    # V=2 P=1 X=1 CC=2, PT 8, then 2 CSRCs, an extension of 1 word, payload, 3 padding octets
    data = (
        bytes((0x80 | 0x20 | 0x10 | 2, 8))
        + struct.pack("!HII", 7, 160, 99)
        + struct.pack("!II", 11, 12)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\x20\x30\x40"
        + b"PAYLOAD"
        + b"\x00\x00\x03"
    )
    packet = parse_rtp(data)
    assert packet.csrcs == (11, 12)
    assert packet.extension == RtpExtension(profile=0xBEDE, data=b"\x10\x20\x30\x40")
    assert packet.payload == b"PAYLOAD"
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (8, 7, 160, 99)


def test_build_with_padding_round_trips() -> None:
    packet = RtpPacket(payload_type=8, sequence=1, timestamp=2, ssrc=3, payload=b"abcde")
    data = packet.build(pad_to=4)
    assert len(data) % 4 == 0 and data[0] & 0x20
    assert data[-1] == len(data) - 12 - 5
    assert parse_rtp(data) == packet
    assert packet.build(pad_to=1) == packet.build()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter"),
        (HAND[:11], "shorter"),
        (bytes((0x40,)) + HAND[1:], "version 1"),
        (bytes((0x00,)) + HAND[1:], "version 0"),
        (bytes((0x8F,)) + HAND[1:12] + b"\x00" * 8, "CSRC"),
        (bytes((0x90,)) + HAND[1:12] + b"\x00\x00", "extension"),
        (bytes((0x90,)) + HAND[1:12] + b"\x00\x00\x00\x05" + b"\x00" * 8, "extension"),
        (bytes((0xA0,)) + HAND[1:12] + b"ab\x00", "padding"),
        (bytes((0xA0,)) + HAND[1:12] + b"ab\x09", "padding"),
        (bytes((0xA0,)) + HAND[1:12], "padding"),
    ],
)
def test_malformed_packets_raise_typed_error(data: bytes, why: str) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    assert info.value.error_id == "rtp-malformed"
    assert why.split()[0].lower() in str(info.value).lower()


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert packet.build() == data or data[0] & 0x20  # unpadded packets rebuild exactly


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 5).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
)


@given(packets, st.sampled_from([0, 4, 8, 32]))
def test_build_parse_round_trip(packet: RtpPacket, pad_to: int) -> None:
    assert parse_rtp(packet.build(pad_to=pad_to)) == packet


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence": 1 << 16},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrcs": tuple(range(16))},
    ],
)
def test_invalid_fields_are_refused(kwargs: dict[str, int]) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(RtpError):
        RtpPacket(**(base | kwargs))  # type: ignore[arg-type]


def test_extension_must_be_whole_words() -> None:
    with pytest.raises(RtpError):
        RtpExtension(profile=1, data=b"abc")


def test_rtcp_demultiplexing() -> None:
    assert is_rtcp(bytes((0x80, 200)) + bytes(6))  # SR
    assert is_rtcp(bytes((0x81, 201)) + bytes(6))  # RR
    assert not is_rtcp(HAND)
    assert not is_rtcp(bytes((0x80, 0x80 | 101)))  # marker + PT 101: RTP
    assert not is_rtcp(b"\x80")


# --------------------------------------------------------------------------- RtpStream
def test_stream_sequence_timestamp_and_marker() -> None:
    stream = RtpStream(rng=random.Random(1))
    seq0, ts0 = stream.sequence, stream.timestamp
    first = stream.media(b"a" * 160, payload_type=0, samples=160)
    second = stream.media(b"b" * 160, payload_type=0, samples=160)
    assert (first.sequence, first.timestamp, first.marker) == (seq0, ts0, True)
    assert (second.sequence, second.timestamp, second.marker) == (
        (seq0 + 1) % 65536,
        (ts0 + 160) % (1 << 32),
        False,
    )
    assert first.ssrc == second.ssrc == stream.ssrc
    stream.pause(800)
    third = stream.media(b"c" * 160, payload_type=0, samples=160)
    assert third.marker and third.timestamp == (ts0 + 320 + 800) % (1 << 32)
    assert stream.packets_sent == 3


def test_stream_wraps_sequence_and_timestamp() -> None:
    class Fixed(random.Random):
        def getrandbits(self, k: int) -> int:
            return (1 << k) - 1

    stream = RtpStream(rng=Fixed())
    a = stream.media(b"x", payload_type=8, samples=160)
    b = stream.media(b"x", payload_type=8, samples=160)
    assert (a.sequence, b.sequence) == (65535, 0)
    assert (a.timestamp, b.timestamp) == (0xFFFFFFFF, 159)


def test_stream_events_keep_their_timestamp() -> None:
    stream = RtpStream(ssrc=5, rng=random.Random(2))
    ts = stream.timestamp
    e1 = stream.event(b"1234", payload_type=101, timestamp=ts, marker=True)
    e2 = stream.event(b"1234", payload_type=101, timestamp=ts, marker=False)
    assert e1.timestamp == e2.timestamp == ts == stream.timestamp
    assert e2.sequence == (e1.sequence + 1) % 65536 and e1.marker and not e2.marker


def test_stream_origins_are_random() -> None:
    streams = [RtpStream() for _ in range(8)]
    assert len({s.ssrc for s in streams}) == 8
    assert len({s.sequence for s in streams}) > 1


# --------------------------------------------------------------------------- ReceiverStats
def _feed(stats: ReceiverStats, seqs: list[int], *, ts_step: int = 160) -> list[bool]:
    return [
        stats.update(
            sequence=s % 65536, timestamp=(i * ts_step) % (1 << 32), arrival=i * 0.02
        ).valid
        for i, s in enumerate(seqs)
    ]


def test_probation_then_in_order() -> None:
    stats = ReceiverStats()
    assert _feed(stats, [100, 101, 102, 103]) == [False, True, True, True]
    assert (stats.expected, stats.received, stats.lost) == (3, 3, 0)
    assert stats.extended_max_seq == 103


def test_probation_restarts_on_a_gap() -> None:
    stats = ReceiverStats()
    assert _feed(stats, [10, 50, 51, 52]) == [False, False, True, True]
    assert stats.base_seq == 51


def test_wrap_around_extends_the_sequence() -> None:
    stats = ReceiverStats()
    _feed(stats, list(range(65530, 65536 + 10)))
    assert stats.cycles == 65536
    assert stats.extended_max_seq == 65536 + 9
    assert stats.lost == 0 and stats.received == stats.expected == 15


def test_loss_and_fraction_lost() -> None:
    stats = ReceiverStats()
    _feed(stats, [0, 1, 2, 5, 6, 7, 8, 9])  # 3 and 4 lost
    assert stats.expected == 9 and stats.received == 7 and stats.lost == 2
    assert stats.fraction_lost() == (2 << 8) // 9
    assert stats.fraction_lost() == 0  # nothing new since the last report


def test_packet_from_before_the_base_makes_loss_negative_like_a1() -> None:
    stats = ReceiverStats()
    _feed(stats, [9, 10, 11])
    assert stats.update(sequence=8, timestamp=0, arrival=1.0).valid
    assert stats.lost == -1  # A.3: "lost" may be negative; reported as a signed field


def test_reordered_packet_is_valid_and_duplicate_is_not() -> None:
    stats = ReceiverStats()
    _feed(stats, [0, 1, 2, 4])
    late = stats.update(sequence=3, timestamp=480, arrival=1.0)
    dup = stats.update(sequence=3, timestamp=480, arrival=1.01)
    dup_max = stats.update(sequence=4, timestamp=640, arrival=1.02)
    assert late.valid and late.extended_seq == 3
    assert not dup.valid and dup.duplicate and dup_max.duplicate
    assert stats.duplicates == 2 and stats.lost == 0


def test_restarted_source_is_resynchronised_on_two_sequential_packets() -> None:
    stats = ReceiverStats()
    _feed(stats, [0, 1, 2, 3])
    first = stats.update(sequence=40000, timestamp=0, arrival=1.0)
    second = stats.update(sequence=40001, timestamp=160, arrival=1.02)
    assert not first.valid and second.valid and second.restarted
    assert stats.base_seq == 40001 and stats.received == 1


def test_jitter_is_zero_for_constant_transit() -> None:
    stats = ReceiverStats()
    for i in range(50):
        stats.update(sequence=i, timestamp=1000 + 160 * i, arrival=7.0 + 0.02 * i)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_converges_to_the_delay_variation() -> None:
    # Every other packet is 10 ms late: |D| is 80 timestamp units each time (A.8), so the
    # estimate converges to 80.
    stats = ReceiverStats()
    for i in range(400):
        stats.update(sequence=i, timestamp=160 * i, arrival=0.02 * i + (0.01 if i % 2 else 0))
    assert stats.jitter == pytest.approx(80.0, rel=1e-3)


def test_jitter_survives_timestamp_wrap() -> None:
    stats = ReceiverStats()
    base = (1 << 32) - 800
    for i in range(30):
        stats.update(sequence=i, timestamp=(base + 160 * i) % (1 << 32), arrival=0.02 * i)
    assert stats.jitter == pytest.approx(0.0, abs=1e-3)


@given(st.lists(st.integers(0, 0xFFFF), max_size=300))
def test_stats_never_crash_and_stay_consistent(seqs: list[int]) -> None:
    stats = ReceiverStats()
    for i, seq in enumerate(seqs):
        stats.update(sequence=seq, timestamp=(seq * 160) % (1 << 32), arrival=i * 0.02)
    assert stats.received + stats.duplicates <= len(seqs)
    assert 0 <= stats.fraction_lost() <= 255
    assert stats.jitter >= 0


@given(
    seed=st.integers(0, 2**32),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["media", "pause"]), st.integers(1, 480), st.sampled_from([0, 8])
        ),
        max_size=60,
    ),
)
def test_media_bytes_is_media_then_build(seed: int, steps: list[tuple[str, int, int]]) -> None:
    """The fast path of paced streams gives the same bytes and leaves the stream in the same
    state as building the packet object (wrap-around of sequence and timestamp included)."""
    fast = RtpStream(rng=random.Random(seed))
    slow = RtpStream(rng=random.Random(seed))
    for kind, samples, pt in steps:
        if kind == "pause":
            fast.pause(samples)
            slow.pause(samples)
            continue
        payload = bytes(samples)
        assert (
            fast.media_bytes(payload, payload_type=pt, samples=samples)
            == slow.media(payload, payload_type=pt, samples=samples).build()
        )
        assert (fast.sequence, fast.timestamp) == (slow.sequence, slow.timestamp)
    assert fast.packets_sent == slow.packets_sent
