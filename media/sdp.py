"""A small SDP (RFC 4566) model for audio offers and answers, and raw helpers for a relay.

`parse_sdp` reads a session description into frozen values; `SessionDescription.serialize`
writes one back in the field order of RFC 4566 §5 (v o s i u e p c b t r z k a, then per media
m i c b k a). Lines of a type the model does not interpret are kept in order and written back.
Offer/answer (RFC 3264) lives in `media.negotiate`.

The relay helpers (`rtp_destination`, `rewrite_audio_address`) work on the raw body so that a
relay changes only the connection address and port of the audio stream and leaves every other
octet as the endpoint wrote it (line endings included).

Every error is an `SdpError` with `status_hint` 400 (the body is not usable SDP).
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field, replace

from .errors import SdpError

__all__ = [
    "Attribute",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "parse_sdp",
    "rewrite_audio_address",
    "rtp_destination",
]

MAX_SDP_SIZE = 16_384  # octets; an audio offer is a few hundred
MAX_MEDIA = 16  # m-lines
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"


def address_type(address: str) -> str:
    """`IP4` or `IP6` for a numeric address; host names are written as IP4 (RFC 4566 §5.7)."""
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>."""

    username: str = "-"
    session_id: int
    version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __post_init__(self) -> None:
        if self.session_id < 0 or self.version < 0:
            raise SdpError("o= session id and version must be non-negative")

    def line(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """c=<nettype> <addrtype> <connection-address> (RFC 4566 §5.7)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @property
    def is_hold(self) -> bool:
        """RFC 2543 hold, still sent by old phones (RFC 3264 §8.4): c= 0.0.0.0."""
        return self.address == "0.0.0.0"

    def line(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @classmethod
    def of(cls, address: str) -> Connection:
        return cls(address=address, addrtype=address_type(address))


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribute:
    """a=<name>[:<value>] (RFC 4566 §5.13)."""

    name: str
    value: str | None = None

    def line(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>] (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One m= section."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    other: tuple[tuple[str, str], ...] = ()  # i=, b=, k= lines, in order

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SdpError(f"m= port {self.port} out of range")
        if not self.formats:
            raise SdpError("m= line without formats")

    def attribute(self, name: str) -> str | None:
        """The value of the first attribute called `name` ("" for a flag), or None."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def rtpmaps(self) -> dict[int, RtpMap]:
        """The a=rtpmap lines by payload type; malformed ones are skipped."""
        maps: dict[int, RtpMap] = {}
        for attr in self.attributes:
            if attr.name == "rtpmap" and attr.value:
                rtpmap = _parse_rtpmap(attr.value)
                if rtpmap is not None:
                    maps.setdefault(rtpmap.payload_type, rtpmap)
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for attr in self.attributes:
            if attr.name == "fmtp" and attr.value and attr.value.startswith(prefix):
                return attr.value[len(prefix) :].strip()
        return None

    def lines(self) -> list[str]:
        count = "" if self.port_count is None else f"/{self.port_count}"
        out = [f"m={self.media} {self.port}{count} {self.proto} {' '.join(self.formats)}"]
        fields = [(kind, value) for kind, value in self.other]
        if self.connection is not None:
            fields.append(("c", self.connection.line()))
        fields.sort(key=lambda kv: _MEDIA_ORDER.index(kv[0]))
        out += [f"{kind}={value}" for kind, value in fields]
        return out + [f"a={attr.line()}" for attr in self.attributes]


def _parse_rtpmap(value: str) -> RtpMap | None:
    pt, _, rest = value.partition(" ")
    parts = rest.strip().split("/")
    if not pt.isdigit() or len(parts) < 2 or not parts[1].isdigit():
        return None
    channels = parts[2] if len(parts) > 2 else "1"
    if not channels.isdigit() or int(pt) > 127:
        return None
    return RtpMap(
        payload_type=int(pt), encoding=parts[0], clock_rate=int(parts[1]), channels=int(channels)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole session description."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[str, ...] = ("0 0",)
    attributes: tuple[Attribute, ...] = ()
    other: tuple[tuple[str, str], ...] = ()  # i u e p b r z k lines, in order
    media: tuple[MediaDescription, ...] = field(default=())

    def attribute(self, name: str) -> str | None:
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def serialize(self) -> bytes:
        """The body with CRLF line ends (RFC 4566 §5)."""
        fields = [("v", "0"), ("o", self.origin.line()), ("s", self.session_name or "-")]
        fields += list(self.other) + [("t", t) for t in self.timing]
        if self.connection is not None:
            fields.append(("c", self.connection.line()))
        fields.sort(key=lambda kv: _SESSION_ORDER.index(kv[0]))
        lines = [f"{kind}={value}" for kind, value in fields]
        lines += [f"a={attr.line()}" for attr in self.attributes]
        for media in self.media:
            lines += media.lines()
        return ("\r\n".join(lines) + "\r\n").encode()

    def with_media(self, media: tuple[MediaDescription, ...]) -> SessionDescription:
        return replace(self, media=media)


# --------------------------------------------------------------------------- parsing
def _split_lines(body: bytes | str) -> list[tuple[str, str]]:
    if len(body) > MAX_SDP_SIZE:
        raise SdpError(f"SDP body of {len(body)} octets exceeds {MAX_SDP_SIZE}")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise SdpError("SDP body is not UTF-8") from exc
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        out.append((line[0], line[2:]))
    return out


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse a session description, or raise SdpError (status hint 400)."""
    lines = _split_lines(body)
    if not lines or lines[0] != ("v", "0"):
        raise SdpError("SDP must start with v=0")
    starts = [i for i, (kind, _) in enumerate(lines) if kind == "m"]
    if len(starts) > MAX_MEDIA:
        raise SdpError(f"{len(starts)} m= lines, at most {MAX_MEDIA}")
    bounds = [*starts, len(lines)]
    media = tuple(_parse_media(lines[a:b]) for a, b in itertools.pairwise(bounds))
    return _parse_session(lines[1 : bounds[0]], media)


def _parse_session(
    lines: list[tuple[str, str]], media: tuple[MediaDescription, ...]
) -> SessionDescription:
    origin = connection = None
    name = "-"
    timing: list[str] = []
    attributes: list[Attribute] = []
    other: list[tuple[str, str]] = []
    for kind, value in lines:
        if kind == "o":
            origin = _parse_origin(value)
        elif kind == "s":
            name = value
        elif kind == "c":
            connection = _parse_connection(value)
        elif kind == "t":
            timing.append(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        elif kind in _SESSION_ORDER:
            other.append((kind, value))
    if origin is None:
        raise SdpError("SDP without an o= line")
    return SessionDescription(
        origin=origin,
        session_name=name,
        connection=connection,
        timing=tuple(timing) or ("0 0",),
        attributes=tuple(attributes),
        other=tuple(other),
        media=media,
    )


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6 or not parts[1].isdigit() or not parts[2].isdigit():
        raise SdpError(f"bad o= line: {value[:60]!r}")
    return Origin(
        username=parts[0],
        session_id=int(parts[1]),
        version=int(parts[2]),
        nettype=parts[3],
        addrtype=parts[4],
        address=parts[5],
    )


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"bad c= line: {value[:60]!r}")
    return Connection(nettype=parts[0], addrtype=parts[1], address=parts[2])


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not name:
        raise SdpError(f"bad a= line: {value[:60]!r}")
    return Attribute(name=name, value=rest if sep else None)


def _parse_media(lines: list[tuple[str, str]]) -> MediaDescription:
    media, port, count, proto, formats = _parse_m_line(lines[0][1])
    connection = None
    attributes: list[Attribute] = []
    other: list[tuple[str, str]] = []
    for kind, value in lines[1:]:
        if kind == "c":
            connection = _parse_connection(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        elif kind in "ibk":
            other.append((kind, value))
    return MediaDescription(
        media=media,
        port=port,
        port_count=count,
        proto=proto,
        formats=formats,
        connection=connection,
        attributes=tuple(attributes),
        other=tuple(other),
    )


def _parse_m_line(value: str) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line: {value[:60]!r}")
    port, _, count = parts[1].partition("/")
    if not port.isdigit() or (count and not count.isdigit()) or len(port) > 5:
        raise SdpError(f"bad m= port: {parts[1][:20]!r}")
    if int(port) > 65535:
        raise SdpError(f"m= port {port} out of range")
    return parts[0], int(port), int(count) if count else None, parts[2], tuple(parts[3:])


# --------------------------------------------------------------------------- relay helpers
def _audio_index(sdp: SessionDescription) -> int | None:
    for i, media in enumerate(sdp.media):
        if media.media == "audio" and media.port != 0:
            return i
    return None


def rtp_destination(body: bytes | str | SessionDescription) -> tuple[str, int] | None:
    """(address, port) the remote wants its audio RTP sent to; None when it wants none
    (no active audio stream, or a c= 0.0.0.0 hold)."""
    sdp = body if isinstance(body, SessionDescription) else parse_sdp(body)
    index = _audio_index(sdp)
    if index is None:
        return None
    media = sdp.media[index]
    connection = media.connection or sdp.connection
    if connection is None:
        raise SdpError("audio stream without a c= line at session or media level")
    return None if connection.is_hold else (connection.address, media.port)


def rewrite_audio_address(body: bytes, *, address: str, port: int) -> bytes:
    """Point the first active audio stream at (address, port), changing nothing else.

    The m= port and the c= line that applies to the audio stream are rewritten (the media-level
    one, else the session-level one when no other active stream relies on it, else a new
    media-level c= is inserted), and an RFC 3605 a=rtcp line follows to port + 1. A c= 0.0.0.0
    hold marker is left as it is so the hold reaches the other side.
    """
    sdp = parse_sdp(body)  # validates; the rewrite below works on the raw lines
    index = _audio_index(sdp)
    if index is None:
        return body
    lines = body.decode().splitlines(keepends=True)
    m_lines = [i for i, line in enumerate(lines) if line.startswith("m=")]
    start = m_lines[index]
    end = m_lines[index + 1] if index + 1 < len(m_lines) else len(lines)
    lines[start] = _with_port(lines[start], port)
    _rewrite_section(lines, start, end, address, port)
    if sdp.media[index].connection is None:
        _rewrite_session_connection(lines, sdp, index, address, start)
    return "".join(lines).encode()


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def _with_port(line: str, port: int) -> str:
    parts = line.rstrip("\r\n").split(" ")
    _, slash, count = parts[1].partition("/")
    parts[1] = f"{port}{slash}{count}"
    return " ".join(parts) + _ending(line)


def _connection_line(line: str, address: str) -> str:
    old = _parse_connection(line.rstrip("\r\n")[2:])
    if old.is_hold:
        return line
    return f"c={old.nettype} {address_type(address)} {address}{_ending(line)}"


def _rewrite_section(lines: list[str], start: int, end: int, address: str, port: int) -> None:
    for i in range(start + 1, end):
        if lines[i].startswith("c="):
            lines[i] = _connection_line(lines[i], address)
        elif lines[i].startswith("a=rtcp:"):
            rtcp = lines[i].rstrip("\r\n")[7:].split()
            tail = f" IN {address_type(address)} {address}" if len(rtcp) == 4 else ""
            lines[i] = f"a=rtcp:{port + 1}{tail}{_ending(lines[i])}"


def _rewrite_session_connection(
    lines: list[str], sdp: SessionDescription, index: int, address: str, start: int
) -> None:
    others_rely = any(
        m.port != 0 and m.connection is None for i, m in enumerate(sdp.media) if i != index
    )
    session_c = next((i for i in range(start) if lines[i].startswith("c=")), None)
    if session_c is not None and not others_rely:
        lines[session_c] = _connection_line(lines[session_c], address)
        return
    at = start + 1
    if at < len(lines) and lines[at].startswith("i="):
        at += 1  # RFC 4566 §5: m= i= c=
    hold = sdp.connection is not None and sdp.connection.is_hold
    target = "0.0.0.0" if hold else address
    ending = _ending(lines[start]) or "\r\n"
    lines.insert(at, f"c=IN {address_type(target)} {target}{ending}")
