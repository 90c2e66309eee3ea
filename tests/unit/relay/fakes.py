"""Fakes of the relay core's own seams (port pool, recording sink) and SDP/RTP builders."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from media.g711 import Codec, encode
from media.relay.calls import Call
from media.relay.legs import Addr, Leg
from media.relay.sink import RecordingMeta

RELAY = "192.0.2.1"


def party_sdp(
    address: str, port: int, *, pts: str = "0 8 101", session: int = 1, extra: str = ""
) -> bytes:
    return (
        f"v=0\r\no=- {session} 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    ).encode()


def rtp(seq: int, ts: int, payload: bytes, *, pt: int = 0, ssrc: int = 7) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def tone_frame(codec: Codec, value: int) -> bytes:
    """160 samples of a constant level (enough to tell channels apart)."""
    return encode(codec, struct.pack("<160h", *([value] * 160)))


@dataclass
class FakePorts:
    address: str
    rtp_port: int
    sent: list[tuple[str, bytes, Addr]] = field(default_factory=list)
    closed: bool = False

    def send_rtp(self, data: bytes, dest: Addr) -> None:
        self.sent.append(("rtp", data, dest))

    def send_rtcp(self, data: bytes, dest: Addr) -> None:
        self.sent.append(("rtcp", data, dest))

    def close(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self, first: int = 40000, limit: int = 100) -> None:
        self.next = first
        self.limit = limit
        self.allocated: list[FakePorts] = []

    def allocate(self, call: Call, leg: Leg) -> None:
        if len([p for p in self.allocated if not p.closed]) >= self.limit:
            raise OSError("range exhausted")
        ports = FakePorts(RELAY, self.next)
        self.next += 2
        self.allocated.append(ports)
        leg.ports = ports

    def open(self) -> int:
        return len([p for p in self.allocated if not p.closed])


class FakeWriter:
    def __init__(self) -> None:
        self.pcm = bytearray()
        self.syncs = 0

    def write(self, pcm: bytes) -> None:
        self.pcm += pcm

    def sync(self) -> None:
        self.syncs += 1

    @property
    def data_size(self) -> int:
        return len(self.pcm)

    def channel(self, index: int) -> list[int]:
        n = len(self.pcm) // 2
        samples = struct.unpack(f"<{n}h", bytes(self.pcm))
        return list(samples[index::2])


class FakeSink:
    def __init__(self) -> None:
        self.opened: list[tuple[str, RecordingMeta, FakeWriter]] = []
        self.closed: list[tuple[FakeWriter, RecordingMeta]] = []
        self.discarded: list[tuple[FakeWriter, RecordingMeta]] = []

    def open(self, call_id: str, meta: RecordingMeta) -> FakeWriter:
        writer = FakeWriter()
        self.opened.append((call_id, meta, writer))
        return writer

    def close(self, writer: FakeWriter, meta: RecordingMeta) -> None:
        self.closed.append((writer, meta))

    def discard(self, writer: FakeWriter, meta: RecordingMeta) -> None:
        self.discarded.append((writer, meta))
