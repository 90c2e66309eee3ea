"""RFC 3264 offer/answer for one G.711 audio stream with RFC 4733 telephone events.

The media user agent answers an INVITE's offer (`answer_offer`), or makes the offer itself when
the INVITE came without SDP and the ACK carries the answer (`make_offer` then `accept_answer`).
Either way the result for the glue is a `MediaPlan`: codec and payload types, where to send
RTP (or nothing while held), the packet time to send with, and our direction.

Rules applied (RFC 3264):
- §6: the answer has as many m= lines as the offer, in the same order; a stream we do not take
  (not audio, not RTP/AVP, a second audio stream, or no common codec) is answered with port 0.
  No acceptable stream at all is a 488 (`SdpError`, error id `sdp-no-common-codec`).
- §6.1: the codec is the offerer's FIRST listed one that we support (PCMU 0 / PCMA 8, static or
  dynamic with an rtpmap); the payload type numbers of the offer are echoed, telephone-event's
  dynamic number included. Directions: sendonly is answered recvonly, recvonly sendonly,
  inactive inactive, sendrecv with what we want.
- §8.4: hold. An offer marked sendonly or inactive, or carrying the RFC 2543 c= 0.0.0.0, holds
  the call: we do not send media to it.
- §5/§8: a new offer in the same session carries the same o= session id and a version one
  higher when anything changed (`LocalSdp`).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from .errors import SdpError
from .g711 import Codec
from .sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    address_type,
)

__all__ = [
    "Direction",
    "LocalSdp",
    "MediaPlan",
    "accept_answer",
    "answer_offer",
    "make_offer",
    "media_direction",
]

DEFAULT_PTIME = 20  # ms
TELEPHONE_EVENT = "telephone-event"
EVENTS_FMTP = "0-15"  # RFC 4733 §7.1.1: the DTMF events we understand
_PROTOS = ("RTP/AVP",)


class Direction(enum.Enum):
    """The direction attributes of RFC 3264 §5.1 (absent means sendrecv)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The direction as seen from the other end."""
        return Direction.of(sends=self.receives, receives=self.sends)

    def answer_to(self, offered: Direction) -> Direction:
        """Our direction (`self` is what we want) answering the offerer's (§6.1)."""
        theirs = offered.reversed()
        return Direction.of(
            sends=self.sends and theirs.sends, receives=self.receives and theirs.receives
        )


_DIRECTION_NAMES = frozenset(d.value for d in Direction)


def media_direction(media: MediaDescription, session: SessionDescription) -> Direction:
    """A stream's direction: media-level attribute, else session-level, else sendrecv."""
    for source in (media.attributes, session.attributes):
        for attr in source:
            if attr.value is None and attr.name in _DIRECTION_NAMES:
                return Direction(attr.name)
    return Direction.SENDRECV


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPlan:
    """What the user agent does with the negotiated audio stream.

    `remote` is None while the peer wants no RTP (hold by c= 0.0.0.0, or our direction does
    not send). `ptime` is the packet time to send with (the peer's a=ptime, else 20 ms).
    `on_hold` is True when the peer put the call on hold (RFC 3264 §8.4).
    """

    codec: Codec
    payload_type: int
    telephone_event: int | None
    remote: tuple[str, int] | None
    ptime: int
    direction: Direction
    on_hold: bool = False

    @property
    def sends(self) -> bool:
        return self.remote is not None and self.direction.sends

    @property
    def receives(self) -> bool:
        return self.direction.receives


class LocalSdp:
    """Our side's o= line across one dialog: a fixed session id, a version that goes up by
    one whenever the description we send differs from the previous one (RFC 3264 §8)."""

    __slots__ = ("_last", "address", "session_id", "username", "version")

    def __init__(
        self, *, address: str, username: str = "-", rng: random.Random | None = None
    ) -> None:
        rng = rng or random.SystemRandom()
        self.address = address
        self.username = username
        # RFC 4566 §5.2 suggests an NTP timestamp; any number unique enough will do
        self.session_id = rng.getrandbits(62)
        self.version = self.session_id % 1_000_000
        self._last: bytes | None = None

    def describe(
        self, media: tuple[MediaDescription, ...], *, timing: tuple[str, ...] = ("0 0",)
    ) -> SessionDescription:
        """A session description of ours, version bumped only when the content changed."""
        sdp = SessionDescription(
            origin=self._origin(self.version),
            connection=Connection.of(self.address),
            timing=timing,
            media=media,
        )
        body = sdp.serialize()
        if self._last is not None and body != self._last:
            self.version += 1
            sdp = replace(sdp, origin=self._origin(self.version))
            body = sdp.serialize()
        self._last = body
        return sdp

    def _origin(self, version: int) -> Origin:
        return Origin(
            username=self.username,
            session_id=self.session_id,
            version=version,
            address=self.address,
            addrtype=address_type(self.address),
        )


# --------------------------------------------------------------------------- codec choice
def _codec_of(media: MediaDescription, fmt: str, supported: tuple[Codec, ...]) -> Codec | None:
    if not fmt.isdigit():
        return None
    rtpmap = media.rtpmaps().get(int(fmt))
    if rtpmap is None:  # static payload types need no rtpmap (RFC 3551 §6)
        return next((c for c in supported if c.value == int(fmt)), None)
    if rtpmap.clock_rate != 8000 or rtpmap.channels != 1:
        return None
    return next((c for c in supported if c.encoding_name == rtpmap.encoding.upper()), None)


def _first_codec(media: MediaDescription, supported: tuple[Codec, ...]) -> tuple[Codec, int] | None:
    for fmt in media.formats:
        codec = _codec_of(media, fmt, supported)
        if codec is not None:
            return codec, int(fmt)
    return None


def _telephone_event(media: MediaDescription) -> int | None:
    for pt, rtpmap in media.rtpmaps().items():
        named = rtpmap.encoding.lower() == TELEPHONE_EVENT and rtpmap.clock_rate == 8000
        if named and str(pt) in media.formats:
            return pt
    return None


def _ptime(media: MediaDescription) -> int:
    value = media.attribute("ptime")
    if value is None or not value.strip().isdigit():
        return DEFAULT_PTIME
    ptime = int(value.strip())
    # G.711 frames are any multiple of 10 ms; a silly value falls back to the default
    return ptime if 10 <= ptime <= 120 and ptime % 10 == 0 else DEFAULT_PTIME


# --------------------------------------------------------------------------- answering
def _audio_lines(
    codec: Codec, pt: int, event_pt: int | None, ptime: int, direction: Direction
) -> tuple[tuple[str, ...], tuple[Attribute, ...]]:
    formats = [str(pt)]
    attrs = [Attribute(name="rtpmap", value=f"{pt} {codec.encoding_name}/8000")]
    if event_pt is not None:
        formats.append(str(event_pt))
        attrs += [
            Attribute(name="rtpmap", value=f"{event_pt} {TELEPHONE_EVENT}/8000"),
            Attribute(name="fmtp", value=f"{event_pt} {EVENTS_FMTP}"),
        ]
    attrs += [Attribute(name="ptime", value=str(ptime)), Attribute(name=direction.value)]
    return tuple(formats), tuple(attrs)


def _rejected(media: MediaDescription) -> MediaDescription:
    """§6: a declined stream keeps its media, proto and formats, with port 0."""
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)


def _acceptable(media: MediaDescription) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto in _PROTOS


def answer_offer(
    offer: SessionDescription,
    *,
    local: LocalSdp,
    port: int,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
) -> tuple[SessionDescription, MediaPlan]:
    """Answer `offer` with one audio stream on our `port`; SdpError 488 if none can be taken."""
    plan: MediaPlan | None = None
    answered: list[MediaDescription] = []
    for media in offer.media:
        choice = _first_codec(media, codecs) if plan is None and _acceptable(media) else None
        if choice is None:
            answered.append(_rejected(media))
            continue
        plan = _plan_for_offer(offer, media, choice, direction)
        formats, attrs = _audio_lines(
            plan.codec, plan.payload_type, plan.telephone_event, ptime, plan.direction
        )
        answered.append(
            MediaDescription(
                media="audio", port=port, proto=media.proto, formats=formats, attributes=attrs
            )
        )
    if plan is None:
        raise SdpError(
            "no audio stream with PCMU or PCMA in the offer",
            error_id="sdp-no-common-codec",
            status_hint=488,
        )
    return local.describe(tuple(answered), timing=offer.timing), plan


def _plan_for_offer(
    offer: SessionDescription,
    media: MediaDescription,
    choice: tuple[Codec, int],
    wanted: Direction,
) -> MediaPlan:
    connection = media.connection or offer.connection
    if connection is None:
        raise SdpError("offered audio stream has no c= line")
    offered = media_direction(media, offer)
    if connection.is_hold and offered.receives:
        offered = Direction.of(sends=offered.sends, receives=False)  # RFC 2543 hold
    ours = wanted.answer_to(offered)
    return MediaPlan(
        codec=choice[0],
        payload_type=choice[1],
        telephone_event=_telephone_event(media),
        remote=None if connection.is_hold or not ours.sends else (connection.address, media.port),
        ptime=_ptime(media),
        direction=ours,
        on_hold=connection.is_hold or not offered.receives,
    )


# --------------------------------------------------------------------------- offering
def make_offer(
    *,
    local: LocalSdp,
    port: int,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
    telephone_event: int | None = 101,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
) -> SessionDescription:
    """Our offer (for an INVITE without SDP, or a re-INVITE): one audio stream."""
    if not codecs:
        raise SdpError("an offer needs at least one codec")
    formats = [str(c.value) for c in codecs]
    attrs = [Attribute(name="rtpmap", value=f"{c.value} {c.encoding_name}/8000") for c in codecs]
    if telephone_event is not None:
        formats.append(str(telephone_event))
        attrs += [
            Attribute(name="rtpmap", value=f"{telephone_event} {TELEPHONE_EVENT}/8000"),
            Attribute(name="fmtp", value=f"{telephone_event} {EVENTS_FMTP}"),
        ]
    attrs += [Attribute(name="ptime", value=str(ptime)), Attribute(name=direction.value)]
    media = MediaDescription(
        media="audio", port=port, proto="RTP/AVP", formats=tuple(formats), attributes=tuple(attrs)
    )
    return local.describe((media,))


def accept_answer(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
) -> MediaPlan:
    """The plan from the answer to our own `offer` (§6: same m= lines, in order)."""
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines, the offer {len(offer.media)}",
            status_hint=488,
            error_id="sdp-bad-answer",
        )
    for ours, theirs in zip(offer.media, answer.media, strict=True):
        if ours.media == "audio" and ours.port != 0 and theirs.port != 0:
            return _plan_for_answer(media_direction(ours, offer), ours, theirs, answer, codecs)
    raise SdpError("the answer rejected the audio stream", error_id="sdp-rejected", status_hint=488)


def _plan_for_answer(
    offered_dir: Direction,
    ours: MediaDescription,
    theirs: MediaDescription,
    answer: SessionDescription,
    codecs: tuple[Codec, ...],
) -> MediaPlan:
    offered = tuple(c for c in codecs if str(c.value) in ours.formats) or codecs
    choice = _first_codec(theirs, offered)
    if choice is None:
        raise SdpError(
            "the answer has no codec we offered", error_id="sdp-bad-answer", status_hint=488
        )
    connection = theirs.connection or answer.connection
    if connection is None:
        raise SdpError(
            "answered audio stream has no c= line", error_id="sdp-bad-answer", status_hint=488
        )
    theirs_dir = media_direction(theirs, answer)
    ours_dir = Direction.of(
        sends=offered_dir.sends and theirs_dir.receives,
        receives=offered_dir.receives and theirs_dir.sends,
    )
    return MediaPlan(
        codec=choice[0],
        payload_type=choice[1],
        telephone_event=_telephone_event(theirs),
        remote=None
        if connection.is_hold or not ours_dir.sends
        else (connection.address, theirs.port),
        ptime=_ptime(theirs),
        direction=ours_dir,
        on_hold=connection.is_hold,
    )
