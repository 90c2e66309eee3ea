"""Minimal RTCP: SR/RR/SDES/BYE."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import RtcpError
from media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_bye,
    build_sdes_cname,
    ntp_timestamp,
    parse_rtcp,
    report_block,
)
from media.rtp import ReceiverStats, is_rtcp

BLOCK = ReportBlock(
    ssrc=7, fraction_lost=25, cumulative_lost=-3, highest_seq=70000, jitter=80, lsr=5, dlsr=6
)


def test_receiver_report_compound_round_trip() -> None:
    data = ReceiverReport(ssrc=1, reports=(BLOCK,)).build() + build_sdes_cname(1, "ms@127.0.0.1")
    assert is_rtcp(data)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [ReceiverReport(ssrc=1, reports=(BLOCK,))]


def test_sender_report_layout() -> None:
    sr = SenderReport(ssrc=0xAABBCCDD, ntp=1 << 40, rtp_timestamp=160, packets=2, octets=320)
    data = sr.build()
    assert data[:4] == bytes((0x80, 200, 0, 6))  # V=2, RC=0, PT=200, length 6 words
    assert parse_rtcp(data + build_bye(0xAABBCCDD)) == [sr, Bye(ssrcs=(0xAABBCCDD,))]


def test_report_block_from_receiver_stats() -> None:
    stats = ReceiverStats()
    for i in [0, 1, 2, 5, 6]:
        stats.update(sequence=i, timestamp=160 * i, arrival=0.02 * i)
    block = report_block(stats, ssrc=42)
    assert (block.cumulative_lost, block.highest_seq, block.fraction_lost) == (2, 6, (2 << 8) // 6)


def test_round_trip_time() -> None:
    sent = ntp_timestamp(1000.0)
    lsr = (sent >> 16) & 0xFFFFFFFF
    block = ReportBlock(
        ssrc=1,
        fraction_lost=0,
        cumulative_lost=0,
        highest_seq=0,
        jitter=0,
        lsr=lsr,
        dlsr=65536 // 2,
    )  # the peer held it 0.5 s
    assert block.round_trip(ntp_timestamp(1000.75)) == pytest.approx(0.25, abs=1e-4)
    assert (
        BLOCK.round_trip(0) is not None
        and ReportBlock(
            ssrc=1, fraction_lost=0, cumulative_lost=0, highest_seq=0, jitter=0
        ).round_trip(sent)
        is None
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",
        b"\x40\xc9\x00\x00",  # version 1
        b"\x80\xc9\x00\x05" + bytes(8),  # length past the end
        b"\x81\xc9\x00\x01" + bytes(4),  # one block announced, none present
        b"\x80\xc8\x00\x01" + bytes(4),  # SR without sender info
        b"\xa0\xc9\x00\x01" + bytes(4),  # padding count 0
        b"\x82\xcb\x00\x01" + bytes(4),  # BYE of two SSRCs, one present
        ReceiverReport(ssrc=1).build() + b"\x80",
    ],
)
def test_malformed_rtcp(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(data)


def test_unknown_types_are_skipped() -> None:
    app = struct.pack("!BBH", 0x80, 204, 2) + b"\x00\x00\x00\x01name"
    assert parse_rtcp(app + ReceiverReport(ssrc=9).build()) == [ReceiverReport(ssrc=9)]


@given(st.binary(max_size=120))
def test_parser_raises_only_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass
    else:
        assert len(data) >= 4
