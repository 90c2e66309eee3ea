"""rtpengine's ng control protocol: framing, typed requests, reply accessors. Sans-IO.

A message is `<cookie> <bencoded dictionary>` in one UDP datagram (sipwise/rtpengine README,
"The ng Control Protocol"). The cookie matches a reply to its request and marks
retransmissions: the relay answers a repeated cookie with the reply it already sent instead
of acting twice, so a client retransmits with the SAME cookie, and a client must use cookies
no earlier run of it used (a restarted proxy starting again at "1" would be handed stale
replies): `media.relay.transactions` prefixes a random token.

Every request dictionary has `command`; every reply has `result` (`ok`, `pong`, or `error`
with `error-reason`; `ok` may carry a `warning`). Requests are frozen dataclasses, one per
command, with `to_dict()` for the client and `parse_request()` for the embedded relay's
server; `Request` is their closed union. Keys this module does not model go through `options`
(client) untouched. Flags may be written with hyphens for spaces (README: "Spaces in each
string may be replaced by hyphens"); `parse_request` normalises them to lower case with
spaces.

Recording (README "record call", "metadata", "start recording"): `record_call=True` sends
`record call: yes`; `metadata` is a free string rtpengine appends to its metadata file and the
embedded relay copies into the JSON sidecar. The live fork (`subscribe request` /
`subscribe answer`) is modelled too, for a recorder that takes rtpengine's media live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .bencode import BencodeError, BValue, EncodableValue, decode, encode
from .errors import NgProtocolError, NgRefused, NgRequestError

__all__ = [
    "Answer",
    "BlockMedia",
    "Delete",
    "ListCalls",
    "Offer",
    "Ping",
    "PlayMedia",
    "Query",
    "Request",
    "StartRecording",
    "StopMedia",
    "StopRecording",
    "SubscribeAnswer",
    "SubscribeRequest",
    "UnblockMedia",
    "Unsubscribe",
    "check_reply",
    "decode_message",
    "encode_message",
    "parse_request",
    "reply_dict",
    "reply_int",
    "reply_list",
    "reply_str",
]

MAX_COOKIE = 64
MAX_ID = 512  # call-id, tags, branch: longer than any sane SIP token
MAX_SDP = 16_384
Options = tuple[tuple[str, EncodableValue], ...]


# --------------------------------------------------------------------------- framing
def encode_message(cookie: str, body: Mapping[str, EncodableValue]) -> bytes:
    """`<cookie> <bencoded body>`."""
    _check_cookie(cookie)
    return cookie.encode() + b" " + encode(body)


def decode_message(data: bytes) -> tuple[str, dict[str, BValue]]:
    """Split and decode one datagram, or raise NgProtocolError."""
    raw, space, body = data.partition(b" ")
    if not space:
        raise NgProtocolError("datagram without a cookie separator")
    try:
        cookie = raw.decode("ascii")
        _check_cookie(cookie)
        value = decode(body)
    except (UnicodeDecodeError, BencodeError) as exc:
        raise NgProtocolError(f"not an ng message: {exc}") from exc
    if not isinstance(value, dict):
        raise NgProtocolError("ng body is not a dictionary")
    return cookie, value


def _check_cookie(cookie: str) -> None:
    if not cookie or len(cookie) > MAX_COOKIE or not cookie.isprintable() or " " in cookie:
        raise NgProtocolError(f"bad cookie {cookie[:MAX_COOKIE]!r}")


# --------------------------------------------------------------------------- validation
def _ident(what: str, value: str) -> str:
    if not value or len(value) > MAX_ID or not value.isprintable():
        raise NgRequestError(f"bad {what} {value[:40]!r}")
    return value


def _opt_ident(what: str, value: str | None) -> None:
    if value is not None:
        _ident(what, value)


def _sdp(value: bytes) -> None:
    if not value or len(value) > MAX_SDP:
        raise NgRequestError(f"SDP of {len(value)} octets (1..{MAX_SDP})")


def _put(out: dict[str, EncodableValue], key: str, value: EncodableValue | None) -> None:
    if value is not None and value != ():
        out[key] = value


def _dialog_keys(
    call_id: str, from_tag: str | None, to_tag: str | None, via_branch: str | None
) -> dict[str, EncodableValue]:
    out: dict[str, EncodableValue] = {"call-id": call_id}
    _put(out, "from-tag", from_tag)
    _put(out, "to-tag", to_tag)
    _put(out, "via-branch", via_branch)
    return out


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    command: ClassVar[str] = "ping"

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command}


@dataclass(frozen=True, slots=True, kw_only=True)
class _OfferAnswer:
    """What offer and answer share: the SDP of the party named by from-tag (offer) or
    to-tag (answer), to be rewritten for the other party."""

    call_id: str
    from_tag: str
    sdp: bytes
    to_tag: str | None = None
    via_branch: str | None = None
    label: str | None = None
    flags: tuple[str, ...] = ()
    record_call: bool = False
    metadata: str | None = None
    options: Options = ()

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("from-tag", self.from_tag)
        _opt_ident("to-tag", self.to_tag)
        _opt_ident("via-branch", self.via_branch)
        _opt_ident("label", self.label)
        _sdp(self.sdp)

    def _body(self, command: str) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": command, "sdp": self.sdp}
        out.update(_dialog_keys(self.call_id, self.from_tag, self.to_tag, self.via_branch))
        _put(out, "label", self.label)
        _put(out, "flags", list(self.flags))
        _put(out, "record call", "yes" if self.record_call else None)
        _put(out, "metadata", self.metadata)
        out.update(self.options)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer(_OfferAnswer):
    command: ClassVar[str] = "offer"

    def to_dict(self) -> dict[str, EncodableValue]:
        return self._body(self.command)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer(_OfferAnswer):
    command: ClassVar[str] = "answer"

    def __post_init__(self) -> None:
        super(Answer, self).__post_init__()
        if self.to_tag is None:
            raise NgRequestError("answer without to-tag")

    def to_dict(self) -> dict[str, EncodableValue]:
        return self._body(self.command)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Without from-tag: the whole call. With via-branch: that branch only."""

    command: ClassVar[str] = "delete"
    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None
    via_branch: str | None = None
    delete_delay: int | None = None  # 0: now (rtpengine's default is 30 s)
    fatal: bool = False

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _opt_ident("from-tag", self.from_tag)
        _opt_ident("to-tag", self.to_tag)
        _opt_ident("via-branch", self.via_branch)
        if self.delete_delay is not None and self.delete_delay < 0:
            raise NgRequestError(f"negative delete delay {self.delete_delay}")

    def to_dict(self) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": self.command}
        out.update(_dialog_keys(self.call_id, self.from_tag, self.to_tag, self.via_branch))
        _put(out, "delete delay", self.delete_delay)
        _put(out, "flags", ["fatal"] if self.fatal else None)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    command: ClassVar[str] = "query"
    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)

    def to_dict(self) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": self.command}
        return out | _dialog_keys(self.call_id, self.from_tag, self.to_tag, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListCalls:
    command: ClassVar[str] = "list"
    limit: int = 32

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise NgRequestError("invalid limit, must be >= 0")

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command, "limit": self.limit}


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRecording:
    command: ClassVar[str] = "start recording"
    call_id: str
    from_tag: str | None = None
    metadata: str | None = None

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)

    def to_dict(self) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": self.command, "call-id": self.call_id}
        _put(out, "from-tag", self.from_tag)
        _put(out, "metadata", self.metadata)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRecording:
    command: ClassVar[str] = "stop recording"
    call_id: str

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command, "call-id": self.call_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayMedia:
    """Play a file to the participant named by `from_tag` (README "play media")."""

    command: ClassVar[str] = "play media"
    call_id: str
    from_tag: str
    file: str | None = None
    blob: bytes | None = None
    repeat_times: int | None = None

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("from-tag", self.from_tag)
        if (self.file is None) == (self.blob is None):
            raise NgRequestError("play media needs exactly one of file or blob")
        if self.repeat_times is not None and not 1 <= self.repeat_times <= 100:
            raise NgRequestError(f"repeat-times {self.repeat_times} out of 1..100")

    def to_dict(self) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": self.command}
        out |= _dialog_keys(self.call_id, self.from_tag, None, None)
        _put(out, "file", self.file)
        _put(out, "blob", self.blob)
        _put(out, "repeat-times", self.repeat_times)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StopMedia:
    command: ClassVar[str] = "stop media"
    call_id: str
    from_tag: str

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("from-tag", self.from_tag)

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command, "call-id": self.call_id, "from-tag": self.from_tag}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockMedia:
    """Stop forwarding the media SENT by the participant `from_tag` (README "block media";
    checked with rtpengine 10.5: the other party hears nothing of it, the rest goes on)."""

    command: ClassVar[str] = "block media"
    call_id: str
    from_tag: str

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("from-tag", self.from_tag)

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command, "call-id": self.call_id, "from-tag": self.from_tag}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnblockMedia(BlockMedia):
    command: ClassVar[str] = "unblock media"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeRequest:
    """Ask rtpengine for a sendonly copy of participants' media (the live fork)."""

    command: ClassVar[str] = "subscribe request"
    call_id: str
    from_tags: tuple[str, ...] = ()  # empty: every participant (flag `all`)
    to_tag: str | None = None
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        for tag in self.from_tags:
            _ident("from-tag", tag)

    def to_dict(self) -> dict[str, EncodableValue]:
        flags = [*self.flags, *(() if self.from_tags else ("all",))]
        out: dict[str, EncodableValue] = {"command": self.command, "call-id": self.call_id}
        _put(out, "from-tags", list(self.from_tags) or None)
        _put(out, "to-tag", self.to_tag)
        _put(out, "flags", flags or None)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeAnswer:
    command: ClassVar[str] = "subscribe answer"
    call_id: str
    to_tag: str
    sdp: bytes
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("to-tag", self.to_tag)
        _sdp(self.sdp)

    def to_dict(self) -> dict[str, EncodableValue]:
        out: dict[str, EncodableValue] = {"command": self.command, "sdp": self.sdp}
        out |= {"call-id": self.call_id, "to-tag": self.to_tag}
        _put(out, "flags", list(self.flags))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    command: ClassVar[str] = "unsubscribe"
    call_id: str
    to_tag: str

    def __post_init__(self) -> None:
        _ident("call-id", self.call_id)
        _ident("to-tag", self.to_tag)

    def to_dict(self) -> dict[str, EncodableValue]:
        return {"command": self.command, "call-id": self.call_id, "to-tag": self.to_tag}


Request = (
    Ping
    | Offer
    | Answer
    | Delete
    | Query
    | ListCalls
    | StartRecording
    | StopRecording
    | PlayMedia
    | StopMedia
    | BlockMedia
    | UnblockMedia
    | SubscribeRequest
    | SubscribeAnswer
    | Unsubscribe
)


# --------------------------------------------------------------------------- server side
def _field(body: Mapping[str, BValue], key: str) -> BValue | None:
    """A key as written, or with hyphens for spaces and vice versa (rtpengine accepts both)."""
    for name in (key, key.replace(" ", "-"), key.replace("-", " ")):
        if name in body:
            return body[name]
    return None


def _str(body: Mapping[str, BValue], key: str) -> str | None:
    value = _field(body, key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise NgRequestError(f"{key} is not a string")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise NgRequestError(f"{key} is not UTF-8") from exc


def _need(body: Mapping[str, BValue], key: str) -> str:
    value = _str(body, key)
    if value is None:
        raise NgRequestError(f"No {key} in message")
    return value


def _int(body: Mapping[str, BValue], key: str) -> int | None:
    value = _field(body, key)
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, bytes) and value.strip().lstrip(b"-").isdigit():
        return int(value)
    raise NgRequestError(f"{key} is not an integer")


def _flags(body: Mapping[str, BValue]) -> tuple[str, ...]:
    value = _field(body, "flags")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise NgRequestError("flags is not a list of strings")
    flags: list[str] = []
    for item in value:
        if not isinstance(item, bytes):
            raise NgRequestError("flags is not a list of strings")
        flags.append(item.decode(errors="replace").replace("-", " ").lower())
    return tuple(flags)


def _yes(value: str | None) -> bool:
    return value is not None and value.lower() in ("yes", "on", "true", "1")


def _offer_answer(body: Mapping[str, BValue], cls: type[Offer] | type[Answer]) -> Request:
    flags = _flags(body)
    sdp = _field(body, "sdp")
    if not isinstance(sdp, bytes):
        raise NgRequestError("No SDP body in message")
    return cls(
        call_id=_need(body, "call-id"),
        from_tag=_need(body, "from-tag"),
        to_tag=_str(body, "to-tag") or None,
        via_branch=_str(body, "via-branch") or None,
        label=_str(body, "label") or None,
        sdp=sdp,
        flags=flags,
        record_call=_yes(_str(body, "record call")) or "record call" in flags,
        metadata=_str(body, "metadata"),
    )


def _delete(body: Mapping[str, BValue]) -> Request:
    return Delete(
        call_id=_need(body, "call-id"),
        from_tag=_str(body, "from-tag") or None,
        to_tag=_str(body, "to-tag") or None,
        via_branch=_str(body, "via-branch") or None,
        delete_delay=_int(body, "delete delay"),
        fatal="fatal" in _flags(body),
    )


def _play(body: Mapping[str, BValue]) -> Request:
    blob = _field(body, "blob")
    return PlayMedia(
        call_id=_need(body, "call-id"),
        from_tag=_need(body, "from-tag"),
        file=_str(body, "file"),
        blob=blob if isinstance(blob, bytes) else None,
        repeat_times=_int(body, "repeat-times"),
    )


def parse_request(body: Mapping[str, BValue]) -> Request:
    """The typed request of a decoded dictionary, or NgRequestError (its message becomes the
    `error-reason`, worded like rtpengine's where it has one)."""
    command = _str(body, "command")
    match command:
        case "ping":
            return Ping()
        case "offer":
            return _offer_answer(body, Offer)
        case "answer":
            return _offer_answer(body, Answer)
        case "delete":
            return _delete(body)
        case "query":
            return Query(
                call_id=_need(body, "call-id"),
                from_tag=_str(body, "from-tag"),
                to_tag=_str(body, "to-tag"),
            )
        case "list":
            return ListCalls(limit=_int(body, "limit") or 32)
        case "start recording":
            call_id, meta = _need(body, "call-id"), _str(body, "metadata")
            return StartRecording(call_id=call_id, metadata=meta)
        case "stop recording":
            return StopRecording(call_id=_need(body, "call-id"))
        case "play media":
            return _play(body)
        case "stop media":
            return StopMedia(call_id=_need(body, "call-id"), from_tag=_need(body, "from-tag"))
        case "block media":
            return BlockMedia(call_id=_need(body, "call-id"), from_tag=_need(body, "from-tag"))
        case "unblock media":
            return UnblockMedia(call_id=_need(body, "call-id"), from_tag=_need(body, "from-tag"))
        case None:
            raise NgRequestError("No command in message")
        case _:
            raise NgRequestError("Unrecognized command")


# --------------------------------------------------------------------------- replies
def check_reply(reply: dict[str, BValue], command: str = "") -> dict[str, BValue]:
    """The reply if `result` is ok or pong; NgRefused for `error`; NgProtocolError otherwise."""
    result = reply.get("result")
    if result in (b"ok", b"pong"):
        return reply
    if result == b"error":
        reason = reply.get("error-reason", b"(no error-reason)")
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise NgRefused(text, command=command)
    raise NgProtocolError(f"reply without a valid result: {result!r}")


def reply_str(reply: Mapping[str, BValue], key: str) -> str | None:
    value = reply.get(key)
    return value.decode(errors="replace") if isinstance(value, bytes) else None


def reply_int(reply: Mapping[str, BValue], key: str) -> int | None:
    value = reply.get(key)
    return value if isinstance(value, int) else None


def reply_dict(reply: Mapping[str, BValue], key: str) -> dict[str, BValue]:
    value = reply.get(key)
    return value if isinstance(value, dict) else {}


def reply_list(reply: Mapping[str, BValue], key: str) -> list[BValue]:
    value = reply.get(key)
    return value if isinstance(value, list) else []
