"""Minimal RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME, BYE.

Enough for a media endpoint to be a polite RTP peer: send an SR (while sending) or RR with one
report block built from `ReceiverStats`, followed by the SDES CNAME every compound packet must
carry (§6.1), and read the peer's reports (loss, jitter, round-trip from LSR/DLSR) for metrics.
Other packet types in a compound packet are skipped. Malformed input raises `RtcpError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import RtcpError
from .rtp import ReceiverStats

__all__ = [
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "SenderReport",
    "build_bye",
    "build_sdes_cname",
    "ntp_timestamp",
    "parse_rtcp",
    "report_block",
]

SR, RR, SDES, BYE = 200, 201, 202, 203
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")


def ntp_timestamp(unix_seconds: float) -> int:
    """The 64-bit NTP timestamp (§4) of a Unix time."""
    return int((unix_seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & ((1 << 64) - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report block (§6.4.1)."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # delay since that SR, 1/65536 s

    def build(self) -> bytes:
        lost = (self.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
        return _BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )

    def round_trip(self, arrival_ntp: int) -> float | None:
        """Round-trip time in seconds (§6.4.1: A - LSR - DLSR), if the peer echoed an SR."""
        if self.lsr == 0:
            return None
        middle = (arrival_ntp >> 16) & 0xFFFFFFFF
        return ((middle - self.lsr - self.dlsr) & 0xFFFFFFFF) / 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    ssrc: int
    ntp: int
    rtp_timestamp: int
    packets: int
    octets: int
    reports: tuple[ReportBlock, ...] = ()

    def build(self) -> bytes:
        body = _SR_INFO.pack(self.ssrc, self.ntp, self.rtp_timestamp, self.packets, self.octets)
        return _packet(SR, len(self.reports), body + b"".join(r.build() for r in self.reports))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def build(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.build() for r in self.reports)
        return _packet(RR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    ssrcs: tuple[int, ...]


RtcpPacket = SenderReport | ReceiverReport | Bye


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    if count > 31 or len(body) % 4:
        raise RtcpError("RTCP packet with more than 31 items or a body not in whole words")
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk holding the CNAME item (§6.5.1)."""
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)  # the item list ends with a null octet, padded to a word
    return _packet(SDES, 1, chunk)


def build_bye(ssrc: int) -> bytes:
    return _packet(BYE, 1, struct.pack("!I", ssrc))


def report_block(stats: ReceiverStats, *, ssrc: int, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
    """The report block of what `stats` received from `ssrc` (consumes the loss interval)."""
    return ReportBlock(
        ssrc=ssrc,
        fraction_lost=stats.fraction_lost(),
        cumulative_lost=stats.lost,
        highest_seq=stats.extended_max_seq & 0xFFFFFFFF,
        jitter=int(stats.jitter),
        lsr=lsr,
        dlsr=dlsr,
    )


# --------------------------------------------------------------------------- parsing
def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """The SR, RR and BYE packets of a compound RTCP packet; other types are skipped."""
    out: list[RtcpPacket] = []
    offset = 0
    if len(data) < 4:
        raise RtcpError(f"{len(data)} octets is shorter than an RTCP header")
    while offset < len(data):
        if offset + 4 > len(data):
            raise RtcpError("trailing octets after the last RTCP packet")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        end = offset + 4 + 4 * words
        if first >> 6 != 2 or end > len(data):
            raise RtcpError(f"bad RTCP header at offset {offset}")
        packet = _parse_one(packet_type, first & 0x1F, _unpadded(data, offset, end, first))
        if packet is not None:
            out.append(packet)
        offset = end
    return out


def _unpadded(data: bytes, offset: int, end: int, first: int) -> bytes:
    body = data[offset + 4 : end]
    if first & 0x20:
        if not body or body[-1] == 0 or body[-1] > len(body):
            raise RtcpError("bad RTCP padding")
        body = body[: -body[-1]]
    return body


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket | None:
    if packet_type == SR:
        if len(body) < _SR_INFO.size:
            raise RtcpError("SR shorter than its sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        reports = _blocks(body[_SR_INFO.size :], count)
        return SenderReport(
            ssrc=ssrc,
            ntp=ntp,
            rtp_timestamp=rtp_ts,
            packets=packets,
            octets=octets,
            reports=reports,
        )
    if packet_type == RR:
        if len(body) < 4:
            raise RtcpError("RR without an SSRC")
        return ReceiverReport(
            ssrc=struct.unpack_from("!I", body)[0], reports=_blocks(body[4:], count)
        )
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise RtcpError("BYE shorter than its SSRC list")
        return Bye(ssrcs=struct.unpack_from(f"!{count}I", body))
    return None


def _blocks(body: bytes, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < count * _BLOCK.size:
        raise RtcpError(f"{count} report blocks do not fit {len(body)} octets")
    blocks = []
    for i in range(count):
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, i * _BLOCK.size)
        cumulative = int.from_bytes(lost, "big", signed=True)
        blocks.append(
            ReportBlock(
                ssrc=ssrc,
                fraction_lost=fraction,
                cumulative_lost=cumulative,
                highest_seq=highest,
                jitter=jitter,
                lsr=lsr,
                dlsr=dlsr,
            )
        )
    return tuple(blocks)
