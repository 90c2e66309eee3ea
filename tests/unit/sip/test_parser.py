"""The wire parser: table-driven good and bad messages (each bad one with its status hint),
body framing, limits, the StreamFramer, and "garbage in" properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.sip.message import ParseError, Request, Response, SipURI
from switch.sip.parser import (
    KeepAlive,
    StreamFramer,
    is_keepalive,
    parse_head,
    parse_message,
    partial_of,
)
from switch.sip.values import CSeq, NameAddr, Via

from .conftest import INVITE_LINES, SDP, invite, wire


def _replace(header: str, line: str | None) -> tuple[str, ...]:
    """INVITE_LINES with the line starting with `header` replaced (or dropped if None)."""
    out = [line if ln.split(":")[0] == header else ln for ln in INVITE_LINES]
    return tuple(ln for ln in out if ln is not None)


def _start(line: str) -> tuple[str, ...]:
    return (line, *INVITE_LINES[1:])


# --------------------------------------------------------------------------- good
def test_parse_typical_invite() -> None:
    msg = parse_message(invite("Route: <sip:p1;lr>, <sip:p2;lr>"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.uri == "sip:bob@biloxi.example.com"
    assert msg.body == SDP.encode()
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(seq=314159, method="INVITE")
    assert msg.top_via == Via(
        transport="UDP", host="pc33.atlanta.example.com", params={"branch": "z9hG4bK776asdhds"}
    )
    assert msg.from_tag == "1928301774" and msg.to_tag is None
    assert msg.headers.name_addr("To") == NameAddr(
        display="Bob", uri=SipURI(user="bob", host="biloxi.example.com")
    )
    assert msg.parsed_uri == SipURI(user="bob", host="biloxi.example.com")
    assert msg.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]


GOOD: list[tuple[str, bytes]] = [
    (
        "compact-forms",
        wire(
            "OPTIONS sip:a@b SIP/2.0",
            "v: SIP/2.0/UDP h;branch=z9hG4bK1",
            "f: <sip:a@b>;tag=1",
            "t: sip:c@d",
            "i: x@y",
            "CSeq: 1 OPTIONS",
            "m: <sip:a@h>",
            "l: 0",
            "k: timer",
            "o: presence",
            "u: dialog",
            "r: <sip:x@y>",
            "b: <sip:z@y>",
            "x: 1800",
            "s: hi",
        ),
    ),
    (
        "folding-and-odd-case",
        wire(
            "OPTIONS sip:a@b SIP/2.0",
            "vIA : SIP/2.0/UDP h",
            " ;branch=z9hG4bK1",
            "FROM:",
            "\t<sip:a@b>;tag=1",
            "to: <sip:c@d>",
            "call-id: x",
            "cseq: 0009",
            "  OPTIONS",
            "max-forwards: 0070",
        ),
    ),
    (
        "extension-method-tokens",
        wire(
            "!interesting-Method0123456789_*+`.%indeed'~ sip:a@b SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x",
            "CSeq: 1 !interesting-Method0123456789_*+`.%indeed'~",
        ),
    ),
    (
        "escaped-method-is-just-a-token",
        wire(
            "RE%47IST%45R sip:a@b SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x",
            "CSeq: 1 RE%47IST%45R",
        ),
    ),
    (
        "tel-request-uri",
        wire(
            "INVITE tel:+4930123 SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <tel:+4930123>",
            "Call-ID: x",
            "CSeq: 1 INVITE",
        ),
    ),
    ("leading-crlf", b"\r\n\r\n" + invite()),
    ("no-content-length-udp", wire(*INVITE_LINES, body=SDP)),
    (
        "unknown-scheme-in-to",
        wire(
            "REGISTER sip:b SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <http://www.example.com>;tag=1",
            "To: isbn:2983792873",
            "Call-ID: x",
            "CSeq: 1 REGISTER",
            "Contact: <name:John_Smith>",
        ),
    ),
    (
        "contact-star",
        wire(
            "REGISTER sip:b SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x",
            "CSeq: 1 REGISTER",
            "Contact: *",
            "Expires: 0",
        ),
    ),
    (
        "huge-expires-is-only-big",
        wire(
            "REGISTER sip:b SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x",
            "CSeq: 1 REGISTER",
            "Expires: " + "9" * 40,
        ),
    ),
    (
        "response-empty-reason",
        wire(
            "SIP/2.0 100 ",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x",
            "CSeq: 1 INVITE",
        ),
    ),
    (
        "response-utf8-reason",
        wire(
            "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>;tag=2",
            "Call-ID: x",
            "CSeq: 1 INVITE",
        ),
    ),
    (
        "ipv6-everywhere",
        wire(
            "BYE sip:[2001:db8::10] SIP/2.0",
            "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bK1",
            "From: <sip:a@[2001:db8::1]>;tag=1",
            "To: sip:user@[2001:db8::10]",
            "Call-ID: x",
            "CSeq: 1 BYE",
        ),
    ),
    ("body-with-nul-and-bare-cr", invite(body="a\x00b\rc\nd")),
]


@pytest.mark.parametrize(("name", "data"), GOOD, ids=[g[0] for g in GOOD])
def test_good_messages_parse(name: str, data: bytes) -> None:
    msg = parse_message(data)
    assert msg.headers.vias()[0].branch in ("z9hG4bK1", "z9hG4bK776asdhds")
    # Re-serialising gives a message that parses to the same thing (the serializer always
    # writes Content-Length, so the expectation has one too).
    again = parse_message(msg.to_bytes())
    msg.headers.set("Content-Length", str(len(msg.body)))
    assert again == msg


def test_folding_is_unfolded() -> None:
    msg = parse_message(GOOD[1][1])
    assert msg.headers.get("Via") == "SIP/2.0/UDP h ;branch=z9hG4bK1"
    assert msg.headers.get("From") == "<sip:a@b>;tag=1"
    assert msg.cseq == CSeq(seq=9, method="OPTIONS")


def test_response_fields() -> None:
    msg = parse_message(GOOD[11][1])
    assert isinstance(msg, Response)
    assert msg.status == 200 and msg.reason == "= 2**3 * 5**2 но сто девяносто"
    assert msg.to_tag == "2"


def test_datagram_framing() -> None:
    # RFC 3261 §18.3: octets after Content-Length are ignored on a datagram
    msg = parse_message(invite() + b"INVITE sip:trailing SIP/2.0\r\n\r\n")
    assert msg.body == SDP.encode()
    # no Content-Length: the rest of the datagram is the body
    assert parse_message(wire(*INVITE_LINES, body="xyz")).body == b"xyz"


# --------------------------------------------------------------------------- bad
BAD: list[tuple[str, bytes, int]] = [
    ("version-7", wire(*_start("INVITE sip:bob@biloxi.example.com SIP/7.0")), 505),
    ("version-garbage", wire(*_start("INVITE sip:bob@biloxi.example.com HTTP/1.1")), 400),
    ("response-version", wire("SIP/3.0 200 OK", *INVITE_LINES[1:]), 505),
    ("unknown-ruri-scheme", wire(*_start("INVITE nobody:knows SIP/2.0")), 416),
    ("ruri-in-angle-brackets", wire(*_start("INVITE <sip:bob@b.example> SIP/2.0")), 400),
    ("lws-in-ruri", wire(*_start("INVITE sip:bob@b.example; lr SIP/2.0")), 400),
    ("two-spaces-start-line", wire(*_start("INVITE  sip:bob@b.example SIP/2.0")), 400),
    ("trailing-space-start-line", wire(*_start("INVITE sip:bob@b.example SIP/2.0 ")), 400),
    ("ipv6-without-brackets", wire(*_start("INVITE sip:2001:db8::10 SIP/2.0")), 400),
    ("headers-in-ruri", wire(*_start("INVITE sip:b@c?Route=%3Csip:x%3E SIP/2.0")), 400),
    ("bad-method-chars", wire(*_start("IN(VITE sip:bob@b.example SIP/2.0")), 400),
    ("status-too-big", wire("SIP/2.0 4294967301 big", *INVITE_LINES[1:]), 400),
    ("status-too-small", wire("SIP/2.0 099 small", *INVITE_LINES[1:]), 400),
    ("cseq-2-31", invite(lines=_replace("CSeq", f"CSeq: {2**31} INVITE")), 400),
    ("cseq-method-mismatch", invite(lines=_replace("CSeq", "CSeq: 1 OPTIONS")), 400),
    ("cseq-missing-method", invite(lines=_replace("CSeq", "CSeq: 1")), 400),
    ("max-forwards-256", invite("Max-Forwards: 256", lines=_replace("Max-Forwards", None)), 400),
    ("max-forwards-text", invite(lines=_replace("Max-Forwards", "Max-Forwards: lots")), 400),
    ("two-max-forwards", invite("Max-Forwards: 5"), 400),
    ("negative-content-length", wire(*INVITE_LINES, "Content-Length: -1"), 400),
    ("text-content-length", wire(*INVITE_LINES, "Content-Length: ten"), 400),
    ("two-content-lengths", wire(*INVITE_LINES, "l: 0", "Content-Length: 0"), 400),
    ("content-length-past-datagram", wire(*INVITE_LINES, "Content-Length: 9999", body=SDP), 400),
    ("unterminated-quote", invite(lines=_replace("To", 'To: "Bob <sip:bob@b.example>')), 400),
    ("spaces-in-addr-spec", invite(lines=_replace("To", "To: < sip:bob@b.example >")), 400),
    ("non-token-display", invite(lines=_replace("To", "To: Bob, Jr <sip:bob@b.example>")), 400),
    ("extraneous-semicolons-via", invite(lines=_replace("Via", "Via: SIP/2.0/UDP h;;,;,,")), 400),
    (
        "extraneous-semicolons-contact",
        invite(lines=_replace("Contact", "Contact: <sip:a@b>;;;")),
        400,
    ),
    (
        "empty-contact-element",
        invite(lines=_replace("Contact", "Contact: <sip:a@b>, ,<sip:c@d>")),
        400,
    ),
    (
        "escaped-header-addr-spec",
        invite(lines=_replace("Contact", "Contact: sip:a@b?Route=%3Csip:x%3E")),
        400,
    ),
    ("bad-expires", invite("Expires: soon"), 400),
    ("missing-via", invite(lines=_replace("Via", None)), 400),
    ("missing-from", invite(lines=_replace("From", None)), 400),
    ("missing-to", invite(lines=_replace("To", None)), 400),
    ("missing-call-id", invite(lines=_replace("Call-ID", None)), 400),
    ("missing-cseq", invite(lines=_replace("CSeq", None)), 400),
    ("two-to", invite("To: <sip:x@y>"), 400),
    ("two-call-ids", invite("i: other"), 400),
    ("call-id-with-space", invite(lines=_replace("Call-ID", "Call-ID: a b")), 400),
    ("header-without-colon", invite("NoColonHere"), 400),
    ("bad-header-name", invite("Bad Name: x"), 400),
    ("bare-lf-in-head", invite("X-A: 1\nX-B: 2"), 400),
    ("bare-cr-in-head", invite("X-A: 1\rX-B: 2"), 400),
    ("invalid-utf8-in-head", invite().replace(b"Bob", b"B\xffb"), 400),
    ("no-blank-line", invite().split(b"\r\n\r\n")[0], 400),
    ("empty", b"", 400),
    ("only-crlf", b"\r\n\r\n", 400),
]


@pytest.mark.parametrize(("name", "data", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_messages_raise_parse_error_with_status(name: str, data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == status, str(info.value)
    assert info.value.__cause__ is None  # a real diagnosis, not the safety net


def test_partial_message_for_a_400_reply() -> None:
    data = invite(lines=_replace("CSeq", "CSeq: 99999999999 INVITE"))
    with pytest.raises(ParseError) as info:
        parse_message(data)
    partial = partial_of(info.value)
    assert isinstance(partial, Request)
    assert partial.method == "INVITE"
    assert partial.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert partial.headers.get("CSeq") == "99999999999 INVITE"
    assert partial_of(ParseError("x")) is None


def test_partial_even_for_a_bad_request_line() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(wire(*_start("INVITE  sip:a@b SIP/2.0")))
    partial = partial_of(info.value)
    assert isinstance(partial, Request) and partial.headers.get("Via")


def test_size_and_header_limits() -> None:
    data = invite()
    with pytest.raises(ParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status_hint == 413
    assert parse_message(data, max_size=len(data)).body == SDP.encode()
    many = invite(*[f"X-H{i}: {i}" for i in range(20)])
    with pytest.raises(ParseError) as info:
        parse_message(many, max_headers=20)
    assert info.value.status_hint == 400
    assert len(parse_message(many, max_headers=40).headers) == len(INVITE_LINES) - 1 + 21


def test_stream_flag_demands_exact_content_length() -> None:
    assert parse_message(invite(), stream=True).body == SDP.encode()
    with pytest.raises(ParseError):
        parse_message(invite() + b"extra", stream=True)


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n") and is_keepalive(b"\r\n\r\n") and is_keepalive(b"\n")
    assert not is_keepalive(b"") and not is_keepalive(b"\r\nX") and not is_keepalive(invite())


# --------------------------------------------------------------------------- StreamFramer
def _drain(framer: StreamFramer) -> list[Request | Response | KeepAlive]:
    out = []
    while (item := framer.next()) is not None:
        out.append(item)
    return out


def test_framer_byte_by_byte() -> None:
    data = invite() + b"\r\n\r\n" + invite(body="x")
    framer, items = StreamFramer(), []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        items += _drain(framer)
    assert len(items) == 3
    assert isinstance(items[0], Request) and items[0].body == SDP.encode()
    assert items[1] == KeepAlive(ping=True)
    assert isinstance(items[2], Request) and items[2].body == b"x"


def test_framer_many_messages_in_one_feed() -> None:
    framer = StreamFramer()
    framer.feed(invite() * 3 + invite(body="")[:20])
    items = _drain(framer)
    assert len(items) == 3 and all(isinstance(i, Request) for i in items)
    framer.feed(invite(body="")[20:])
    last = _drain(framer)
    assert len(last) == 1 and isinstance(last[0], Request) and last[0].body == b""


def test_framer_keepalives() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n")
    assert _drain(framer) == [KeepAlive(ping=True)]
    framer.feed(b"\r\n")  # could be the start of a ping: wait
    assert _drain(framer) == []
    framer.feed(invite())
    items = _drain(framer)
    assert items[0] == KeepAlive(ping=False) and isinstance(items[1], Request)


def test_framer_oversize_head_is_413() -> None:
    framer = StreamFramer(max_size=100)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"a" * 200)
    with pytest.raises(ParseError) as info:
        framer.next()
    assert info.value.status_hint == 413
    with pytest.raises(ParseError):  # the stream stays broken
        framer.next()


def test_framer_oversize_body_is_413() -> None:
    framer = StreamFramer(max_size=1000)
    framer.feed(wire(*INVITE_LINES, "Content-Length: 5000"))
    with pytest.raises(ParseError) as info:
        framer.next()
    assert info.value.status_hint == 413


@pytest.mark.parametrize(
    "lengths", [("Content-Length: -999",), ("l: ten",), ("l: 5", "Content-Length: 13")]
)
def test_framer_bad_content_length_is_fatal(lengths: tuple[str, ...]) -> None:
    framer = StreamFramer()
    framer.feed(wire(*INVITE_LINES, *lengths, body="hello"))
    with pytest.raises(ParseError):
        framer.next()


def test_framer_without_content_length_means_empty_body() -> None:
    framer = StreamFramer()
    framer.feed(wire(*INVITE_LINES))
    items = _drain(framer)
    assert len(items) == 1 and isinstance(items[0], Request) and items[0].body == b""


def test_framer_bad_message_is_consumed_and_reported() -> None:
    framer = StreamFramer()
    framer.feed(invite(lines=_replace("CSeq", "CSeq: 1 BYE")) + invite())
    with pytest.raises(ParseError):
        framer.next()


# --------------------------------------------------------------------------- garbage in
def _only_parse_errors(data: bytes, **kwargs: object) -> None:
    try:
        parse_message(data, **kwargs)  # type: ignore[arg-type]
    except ParseError as exc:
        assert exc.__cause__ is None, f"safety net caught {exc.__cause__!r}"
        assert 400 <= exc.status_hint <= 599


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    _only_parse_errors(data)


_SEEDS = [invite(), GOOD[1][1], GOOD[7][1], GOOD[12][1], GOOD[10][1]]
_ALPHABET = b' \t\r\n:;,<>"\\%@[]=?/0123456789aZ\x00\xff\xc3-.*'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        byte = draw(st.sampled_from(list(_ALPHABET)))
        if op == "insert":
            data[pos:pos] = bytes([byte])
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "replace" and pos < len(data):
            data[pos] = byte
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_only_raise_parse_error(data: bytes) -> None:
    _only_parse_errors(data)
    _only_parse_errors(data, stream=True)


@settings(max_examples=200, deadline=None)
@given(mutated(), st.lists(st.integers(1, 50), max_size=10))
def test_framer_on_mutated_streams_only_raises_parse_error(data: bytes, chunks: list[int]) -> None:
    framer = StreamFramer()
    pos = 0
    try:
        for size in [*chunks, len(data)]:
            framer.feed(data[pos : pos + size])
            pos += size
            _drain(framer)
    except ParseError as exc:
        assert exc.__cause__ is None, f"safety net caught {exc.__cause__!r}"


# --------------------------------------------------------------------------- laziness
def test_parser_caches_the_eager_headers_and_leaves_the_rest_as_text() -> None:
    msg = parse_message(invite("Route: <sip:p1;lr>"))
    cache = msg.headers._cache
    assert {"Via", "CSeq", "From", "To", "Contact"} <= set(cache)
    assert "Route" not in cache
    assert msg.headers.vias() is cache["Via"]
    msg.headers.set("CSeq", "7 INVITE")
    assert "CSeq" not in cache and msg.cseq.seq == 7


def test_505_keeps_a_partial_request() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(wire(*_start("OPTIONS sip:a@b SIP/7.0")))
    assert info.value.status_hint == 505
    partial = partial_of(info.value)
    assert isinstance(partial, Request) and partial.method == "OPTIONS"


def test_416_only_when_everything_else_is_well_formed() -> None:
    data = wire("OPTIONS urn:x SIP/2.0", *INVITE_LINES[1:6], "CSeq: 1 OPTIONS")
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 416
    bad_cseq = wire("OPTIONS urn:x SIP/2.0", *INVITE_LINES[1:6], "CSeq: 1 INVITE")
    with pytest.raises(ParseError) as info:
        parse_message(bad_cseq)
    assert info.value.status_hint == 400


# --------------------------------------------------------------------------- parse_head
def test_parse_head_reads_the_start_line_and_raw_fields_only() -> None:
    """What the overload gate reads: the compact forms are named canonically, the values
    stay text until asked, and the body is not framed (a bad Content-Length is not seen)."""
    data = wire(
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "t: <sip:bob@biloxi.example.com>",
        "f: <sip:alice@atlanta.example.com>;tag=1928301774",
        "i: a84b4c76e66710",
        "CSeq: 314159 INVITE",
        "Content-Length: 99999",
    )
    head = parse_head(data)
    assert isinstance(head, Request) and head.method == "INVITE"
    assert head.headers.get("Via") == "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"
    assert head.top_via.branch == "z9hG4bK776asdhds"
    assert head.to_tag is None and head.call_id == "a84b4c76e66710"
    with pytest.raises(ParseError):
        parse_message(data)  # the full parse sees the Content-Length


@pytest.mark.parametrize(
    "data", [b"INVITE sip:a@b SIP/2.0\r\nVia: x", b"\xff\xfe\r\n\r\n", b"INVITE\r\nnocolon\r\n\r\n"]
)
def test_parse_head_raises_only_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_head(data)
