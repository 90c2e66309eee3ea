"""RFC 4733 telephone events and SIP INFO DTMF bodies."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.dtmf import (
    DIGITS,
    DtmfDigit,
    DtmfReceiver,
    TelephoneEvent,
    digit_packets,
    parse_info_body,
    parse_telephone_event,
)
from media.errors import DtmfError
from media.rtp import RtpStream, parse_rtp

SIPP_PCAPS = Path("/usr/share/sip-tester")  # installed with sip-tester by ensure-test-deps.sh


def test_payload_layout_by_hand() -> None:
    # event 5, E=1, volume 10, duration 800  ->  05 8a 03 20
    event = TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.build() == bytes.fromhex("058a0320")
    assert parse_telephone_event(bytes.fromhex("058a0320")) == event
    assert parse_telephone_event(bytes.fromhex("0b0a00a0")) == TelephoneEvent(
        event=11, end=False, volume=10, duration=160
    )


def test_reserved_bit_is_ignored() -> None:
    assert parse_telephone_event(bytes.fromhex("01ca0000")).volume == 10  # R bit set


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_event_round_trip(code: int, end: bool, volume: int, duration: int) -> None:
    event = TelephoneEvent(event=code, end=end, volume=volume, duration=duration)
    assert parse_telephone_event(event.build()) == event


@pytest.mark.parametrize("payload", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_bad_payload_lengths(payload: bytes) -> None:
    with pytest.raises(DtmfError):
        parse_telephone_event(payload)


def test_digit_names() -> None:
    assert [TelephoneEvent(event=i).digit for i in (0, 9, 10, 11, 12, 15, 16)] == [
        "0",
        "9",
        "*",
        "#",
        "A",
        "D",
        None,
    ]


# --------------------------------------------------------------------------- sender
def test_series_for_a_100ms_digit() -> None:
    series = digit_packets("7", duration_ms=100)
    events = [parse_telephone_event(p.payload) for p in series]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [p.marker for p in series] == [True] + [False] * 6
    assert [p.offset for p in series] == [0, 160, 320, 480, 640, 800, 960]
    assert {e.event for e in events} == {7}


def test_series_of_one_interval_marks_the_first_end_packet() -> None:
    series = digit_packets("#", duration_ms=20)
    assert [p.marker for p in series] == [True, False, False]
    assert all(parse_telephone_event(p.payload).end for p in series)


@pytest.mark.parametrize(
    ("digit", "ms"), [("x", 100), ("", 100), ("12", 100), ("1", 5), ("1", 9000)]
)
def test_sender_refuses_bad_input(digit: str, ms: int) -> None:
    with pytest.raises(DtmfError):
        digit_packets(digit, duration_ms=ms)


def _send_digits(digits: str, stream: RtpStream) -> list[tuple[int, int, bool, bytes]]:
    """What the UA's glue does: stamp every series packet with the event's start timestamp."""
    out = []
    for digit in digits:
        start = stream.timestamp
        series = digit_packets(digit, duration_ms=120)
        for p in series:
            pkt = stream.event(p.payload, payload_type=101, timestamp=start, marker=p.marker)
            out.append((pkt.ssrc, pkt.timestamp, pkt.marker, pkt.payload))
        stream.pause(960 + 320)
    return out


def test_sender_and_receiver_agree_digit_by_digit() -> None:
    stream = RtpStream(rng=random.Random(4))
    receiver = DtmfReceiver()
    got = [
        receiver.receive(ssrc=s, timestamp=t, marker=m, payload=p)
        for s, t, m, p in _send_digits("0123456789*#ABCD", stream)
    ]
    assert "".join(d.digit for d in got if d is not None) == DIGITS


@given(st.text(alphabet=DIGITS, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_receiver_reports_each_event_once_despite_loss_and_reordering(
    digits: str, rnd: random.Random
) -> None:
    stream = RtpStream(rng=random.Random(0))
    packets = _send_digits(digits, stream)
    # lose up to all but one packet of each event, shuffle within a small window
    kept = []
    by_event: dict[int, list[tuple[int, int, bool, bytes]]] = {}
    for p in packets:
        by_event.setdefault(p[1], []).append(p)
    for group in by_event.values():
        survivors = [p for p in group if rnd.random() < 0.6] or [rnd.choice(group)]
        rnd.shuffle(survivors)
        kept.extend([*survivors, rnd.choice(group)])  # plus one retransmission
    receiver = DtmfReceiver()
    got = [receiver.receive(ssrc=s, timestamp=t, marker=m, payload=p) for s, t, m, p in kept]
    assert "".join(d.digit for d in got if d is not None) == digits


def test_same_digit_twice_is_two_events() -> None:
    stream = RtpStream(rng=random.Random(9))
    receiver = DtmfReceiver()
    got = [
        receiver.receive(ssrc=s, timestamp=t, marker=m, payload=p)
        for s, t, m, p in _send_digits("55", stream)
    ]
    assert [d.digit for d in got if d is not None] == ["5", "5"]


def test_long_press_segments_are_one_digit() -> None:
    # §2.5.1.3: after 0xFFFF units the sender starts a new segment: new timestamp, no marker.
    receiver = DtmfReceiver()
    seg1 = TelephoneEvent(event=3, duration=0xFFFF).build()
    seg2 = TelephoneEvent(event=3, duration=800).build()
    end = TelephoneEvent(event=3, end=True, duration=960).build()
    first = receiver.receive(ssrc=1, timestamp=1000, marker=True, payload=seg1)
    cont = receiver.receive(ssrc=1, timestamp=1000 + 0xFFFF, marker=False, payload=seg2)
    tail = receiver.receive(ssrc=1, timestamp=1000 + 0xFFFF, marker=False, payload=end)
    assert first == DtmfDigit(digit="3", duration_ms=8191) and cont is None and tail is None


def test_repeated_digit_with_lost_end_and_lost_marker_is_still_two_digits() -> None:
    receiver = DtmfReceiver()
    update = TelephoneEvent(event=5, duration=320).build()
    a = receiver.receive(ssrc=1, timestamp=1000, marker=True, payload=update)  # ends all lost
    b = receiver.receive(ssrc=1, timestamp=3000, marker=False, payload=update)  # marker lost
    assert a is not None and b is not None and a.digit == b.digit == "5"


def test_non_dtmf_and_malformed_events_are_counted() -> None:
    receiver = DtmfReceiver()
    assert (
        receiver.receive(ssrc=1, timestamp=0, marker=True, payload=TelephoneEvent(event=16).build())
        is None
    )
    assert receiver.receive(ssrc=1, timestamp=160, marker=True, payload=b"\x01") is None
    assert receiver.ignored == 2


def _rtp_from_pcap(path: Path) -> list[bytes]:
    """UDP payloads of an Ethernet pcap (link type 1) holding IPv4/UDP frames."""
    data = path.read_bytes()
    magic, *_, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and link == 1
    out, offset = [], 24
    while offset < len(data):
        incl = struct.unpack_from("<IIII", data, offset)[2]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        out.append(frame[14 + ihl + 8 :])
    return out


@pytest.mark.parametrize(
    ("name", "digit"), [(str(d), str(d)) for d in range(10)] + [("star", "*"), ("pound", "#")]
)
def test_sipp_rfc4733_captures_give_exactly_one_digit(name: str, digit: str) -> None:
    # Real packets recorded from a phone, shipped with SIPp (see docs/media-notes.md).
    path = SIPP_PCAPS / f"dtmf_2833_{name}.pcap"
    assert path.exists(), "sip-tester is missing: run scripts/ensure-test-deps.sh"
    receiver = DtmfReceiver()
    digits = []
    for raw in _rtp_from_pcap(path):
        packet = parse_rtp(raw)
        assert packet.payload_type == 101
        got = receiver.receive(
            ssrc=packet.ssrc,
            timestamp=packet.timestamp,
            marker=packet.marker,
            payload=packet.payload,
        )
        digits += [got.digit] if got else []
    assert digits == [digit]


# --------------------------------------------------------------------------- SIP INFO
@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        (
            "application/dtmf-relay",
            b"Signal=5\r\nDuration=160\r\n",
            DtmfDigit(digit="5", duration_ms=160),
        ),
        (
            "application/dtmf-relay",
            "Signal= *\nDuration= 250",
            DtmfDigit(digit="*", duration_ms=250),
        ),
        ("Application/DTMF-Relay; charset=x", "signal=11\r\n", DtmfDigit(digit="#")),
        (
            "application/dtmf-relay",
            "Signal=a\r\nDuration=100",
            DtmfDigit(digit="A", duration_ms=100),
        ),
        ("application/dtmf", b"7", DtmfDigit(digit="7")),
        ("application/dtmf", "10\r\n", DtmfDigit(digit="*")),
    ],
)
def test_info_bodies(ctype: str, body: bytes | str, expected: DtmfDigit) -> None:
    assert parse_info_body(ctype, body) == expected


@pytest.mark.parametrize(
    ("ctype", "body", "error_id"),
    [
        ("application/dtmf-relay", "Duration=160", "dtmf-malformed"),
        ("application/dtmf-relay", "Signal=Z\r\nDuration=160", "dtmf-malformed"),
        ("application/dtmf-relay", "Signal=1\r\nDuration=-5", "dtmf-malformed"),
        ("application/dtmf-relay", "Signal=1\r\nDuration=99999999999", "dtmf-malformed"),
        ("application/dtmf", "", "dtmf-malformed"),
        ("application/dtmf", "55", "dtmf-malformed"),
        ("text/plain", "5", "dtmf-unsupported-type"),
    ],
)
def test_bad_info_bodies(ctype: str, body: str, error_id: str) -> None:
    with pytest.raises(DtmfError) as info:
        parse_info_body(ctype, body)
    assert info.value.error_id == error_id


@given(st.text(max_size=60))
def test_info_parser_only_raises_dtmf_error(body: str) -> None:
    try:
        digit = parse_info_body("application/dtmf-relay", body)
    except DtmfError as exc:
        assert exc.error_id == "dtmf-malformed"
    else:
        assert digit.digit in DIGITS and "signal" in body.lower()
