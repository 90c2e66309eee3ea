"""One party's side of a relayed call (a `Leg`) and symmetric-RTP latching. Sans-IO.

A leg owns the RTP/RTCP port pair the relay advertised TO its party (the party sends there,
and the relay sends the other party's media to it FROM there, so a party behind NAT gets
packets from the address it sends to). `PortPair` is the seam to the glue, which binds the
sockets; this module only decides.

Latching (symmetric RTP, RFC 4961; rtpengine's "endpoint learning"): until a packet arrives
the relay sends where the party's SDP said; the first packet's source address becomes the
destination ("latched"), because behind NAT the SDP's address is the private one. After
that, packets from any other source are dropped and counted (`errors`), so a stray or
spoofed stream cannot take over — unless the latched source has been silent for
`relatch_after` seconds (the party's NAT binding changed, or it moved): then the next source
is learned. RTP and RTCP latch separately.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from ..errors import SdpError
from ..sdp import parse_sdp, rtp_destination

__all__ = ["Addr", "Latch", "Leg", "PortPair", "Side", "StreamStats", "parse_party_sdp"]

Addr = tuple[str, int]
RELATCH_AFTER = 2.0


class Side(enum.Enum):
    """A: the party whose offer created the call (one per call); B: a branch's party."""

    A = "A"
    B = "B"


class PortPair(Protocol):
    """The sockets of one leg (bound by the glue)."""

    @property
    def address(self) -> str: ...

    @property
    def rtp_port(self) -> int: ...

    def send_rtp(self, data: bytes, dest: Addr) -> None: ...

    def send_rtcp(self, data: bytes, dest: Addr) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Latch:
    """The learned source of one stream (see the module docstring)."""

    relatch_after: float = RELATCH_AFTER
    address: Addr | None = None
    last: float = float("-inf")

    def accept(self, source: Addr, now: float) -> bool:
        if source == self.address or self.address is None or now - self.last > self.relatch_after:
            self.address = source
            self.last = now
            return True
        return False


@dataclass(slots=True)
class StreamStats:
    packets: int = 0
    octets: int = 0
    errors: int = 0  # from a source other than the latched one
    last: float | None = None  # monotonic time of the last accepted packet


@dataclass(frozen=True, slots=True, kw_only=True)
class PartySdp:
    """What the relay needs from a party's SDP: where it wants RTP/RTCP, its payload types."""

    rtp: Addr | None  # None: no active audio or a c=0.0.0.0 hold
    rtcp: Addr | None
    rtpmaps: dict[int, str]
    events: frozenset[int]
    hold: bool
    formats: tuple[int, ...] = ()  # the m= line's payload types, in preference order


def parse_party_sdp(body: bytes) -> PartySdp:
    """Read a party's SDP (SdpError if it is not usable)."""
    sdp = parse_sdp(body)
    audio = next((m for m in sdp.media if m.media == "audio" and m.port != 0), None)
    if audio is None:
        raise SdpError("no active audio stream in the SDP")
    rtp = rtp_destination(sdp)
    maps = {pt: m.encoding for pt, m in audio.rtpmaps().items()}
    events = frozenset(pt for pt, name in maps.items() if name.lower() == "telephone-event")
    direction = next((a.name for a in audio.attributes if a.name in _DIRECTIONS), "sendrecv")
    rtcp = None if rtp is None else (rtp[0], _rtcp_port(audio.attribute("rtcp"), rtp[1]))
    return PartySdp(
        rtp=rtp,
        rtcp=rtcp,
        rtpmaps=maps,
        events=events,
        hold=rtp is None or direction != "sendrecv",
        formats=tuple(int(f) for f in audio.formats if f.isdigit() and int(f) < 128),
    )


_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


def _rtcp_port(attribute: str | None, rtp_port: int) -> int:
    """RFC 3605 a=rtcp:<port>, else RTP + 1 (RFC 3550 §11)."""
    if attribute:
        first = attribute.split()[0]
        if first.isdigit() and 0 < int(first) < 65536:
            return int(first)
    return rtp_port + 1


class Leg:
    """One party's side: its ports, where to send to it, what it sent (module docstring)."""

    __slots__ = (
        "blocked",
        "created",
        "index",
        "label",
        "peers",
        "ports",
        "rtcp",
        "rtcp_latch",
        "rtp",
        "rtp_latch",
        "sdp",
        "side",
        "tag",
    )

    def __init__(self, *, side: Side, tag: str | None, created: float, index: int) -> None:
        self.side = side
        self.tag = tag
        self.label: str | None = None
        self.created = created  # UNIX time, for `query`
        self.index = index  # numbers untagged legs in `query` output
        self.ports: PortPair | None = None
        self.sdp: PartySdp | None = None
        self.rtp_latch = Latch()
        self.rtcp_latch = Latch()
        self.rtp = StreamStats()
        self.rtcp = StreamStats()
        self.peers: tuple[Leg, ...] = ()  # where this party's media goes (set by the call)
        self.blocked = False  # `block media`: what this party sends is not forwarded

    def rtp_destination(self) -> Addr | None:
        """Where media for this party goes: the latched source, else its SDP; None on hold."""
        if self.sdp is None or self.sdp.rtp is None:
            return None
        return self.rtp_latch.address or self.sdp.rtp

    def rtcp_destination(self) -> Addr | None:
        if self.sdp is None or self.sdp.rtcp is None:
            return None
        return self.rtcp_latch.address or self.sdp.rtcp

    def accept_rtp(self, source: Addr, size: int, now: float) -> bool:
        return self._accept(self.rtp_latch, self.rtp, source, size, now)

    def accept_rtcp(self, source: Addr, size: int, now: float) -> bool:
        return self._accept(self.rtcp_latch, self.rtcp, source, size, now)

    @staticmethod
    def _accept(latch: Latch, stats: StreamStats, source: Addr, size: int, now: float) -> bool:
        if not latch.accept(source, now):
            stats.errors += 1
            return False
        stats.packets += 1
        stats.octets += size
        stats.last = now
        return True

    def last_packet(self) -> float | None:
        times = [t for t in (self.rtp.last, self.rtcp.last) if t is not None]
        return max(times) if times else None

    def close(self) -> None:
        if self.ports is not None:
            self.ports.close()
            self.ports = None
        self.peers = ()
