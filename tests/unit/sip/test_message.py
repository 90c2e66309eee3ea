"""Header values (Via, name-addr, CSeq), the Headers container, messages, serialisation,
make_response, and hypothesis round trips of whole messages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.sip.headers import Headers, canonical_name
from switch.sip.message import (
    ParseError,
    Request,
    Response,
    SipURI,
    make_response,
    parse_uri,
)
from switch.sip.parser import parse_message
from switch.sip.uri import AbsoluteURI
from switch.sip.values import (
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_header_values,
)

from .conftest import hosts, name_addrs, ports, sip_uris, tel_uris, tokens

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("v", "Via"),
        ("V", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("e", "Content-Encoding"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("a", "Accept-Contact"),
        ("j", "Reject-Contact"),
        ("d", "Request-Disposition"),
        ("y", "Identity"),
        ("n", "Identity-Info"),
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("MaX-fOrWaRdS", "Max-Forwards"),
        ("record-route", "Record-Route"),
        ("x-custom-thing", "X-Custom-Thing"),
        ("NewFangledHeader", "Newfangledheader"),
        ("rack", "RAck"),
    ],
)
def test_canonical_name(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a, b,c", ["a", "b", "c"]),
        (
            '"Bell, Alexander" <sip:a@b>, <sip:c@d;x=1,2>',
            ['"Bell, Alexander" <sip:a@b>', "<sip:c@d;x=1,2>"],
        ),
        ('"quote \\" , still" <sip:a@b>, x', ['"quote \\" , still" <sip:a@b>', "x"]),
        ("one", ["one"]),
        ("a,,b, ", ["a", "b"]),
    ],
)
def test_split_header_values(value: str, parts: list[str]) -> None:
    assert split_header_values(value) == parts


def test_split_unterminated_quote_is_parse_error() -> None:
    with pytest.raises(ParseError):
        split_header_values('"open, <sip:a@b>')


# --------------------------------------------------------------------------- Via


def test_parse_via_values_and_params() -> None:
    vias = parse_via(
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP  /  2.0 / tcp  [2001:db8::1] ;"
        " received=2001:db8::9:255 ; branch = z9hG4bK2"
    )
    assert vias == [
        Via(
            transport="UDP",
            host="192.0.2.1",
            port=5060,
            params={"branch": "z9hG4bK1", "rport": None},
        ),
        Via(
            transport="TCP",
            host="[2001:db8::1]",
            params={"received": "2001:db8::9:255", "branch": "z9hG4bK2"},
        ),
    ]
    assert vias[0].branch == "z9hG4bK1"
    assert vias[1].sent_by == ("[2001:db8::1]", None)


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 192.0.2.15;;,;,,",  # RFC 4475 badinv01
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP host, ",
        "SIP/2.0/UDP ho st",
    ],
)
def test_parse_via_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


def test_via_str_and_with_params() -> None:
    via = Via(transport="UDP", host="h", port=5060, params={"branch": "z9hG4bKx", "rport": None})
    assert str(via) == "SIP/2.0/UDP h:5060;branch=z9hG4bKx;rport"
    updated = via.with_params(rport="5062", received="192.0.2.9")
    assert str(updated) == "SIP/2.0/UDP h:5060;branch=z9hG4bKx;rport=5062;received=192.0.2.9"
    assert via.params == {"branch": "z9hG4bKx", "rport": None}
    assert str(Via(transport="TCP", host="::1", port=5)) == "SIP/2.0/TCP [::1]:5"


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "X-NEW"]),
    host=hosts,
    port=ports,
    params=st.dictionaries(tokens.map(str.lower), st.none() | tokens, max_size=4),
)
def test_via_round_trip(
    transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    via = Via(transport=transport, host=host, port=port, params=params)
    assert parse_via(str(via)) == [via]


# --------------------------------------------------------------------------- name-addr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '"Alice" <sip:alice@a.example>;tag=1',
            NameAddr(
                display="Alice", uri=SipURI(user="alice", host="a.example"), params={"tag": "1"}
            ),
        ),
        ("<sip:a@b;lr>", NameAddr(uri=SipURI(user="a", host="b", params={"lr": None}))),
        # addr-spec: parameters after the URI belong to the header (RFC 4475 §3.3.12)
        (
            "sip:+1972@gw1.example.net;unknownparam",
            NameAddr(
                uri=SipURI(user="+1972", host="gw1.example.net"), params={"unknownparam": None}
            ),
        ),
        (
            "sip:a@b ;   tag    = 19n",
            NameAddr(uri=SipURI(user="a", host="b"), params={"tag": "19n"}),
        ),
        # lwsdisp: no LWS between display token and '<'
        (
            "caller<sip:caller@example.com>;tag=323",
            NameAddr(
                display="caller",
                uri=SipURI(user="caller", host="example.com"),
                params={"tag": "323"},
            ),
        ),
        (
            "J  Rosenberg <sip:j@e>",
            NameAddr(display="J  Rosenberg", uri=SipURI(user="j", host="e")),
        ),
        (
            '"J Rosenberg \\\\\\"" <sip:j@e>',
            NameAddr(display='J Rosenberg \\"', uri=SipURI(user="j", host="e")),
        ),
        ('"" <sip:j@e>', NameAddr(display="", uri=SipURI(user="j", host="e"))),
        ("*", NameAddr(wildcard=True)),
        ("<isbn:2983792873>", NameAddr(uri=AbsoluteURI(scheme="isbn", opaque="2983792873"))),
        ("isbn:2983792873", NameAddr(uri=AbsoluteURI(scheme="isbn", opaque="2983792873"))),
        (
            '<sip:a@b>;+sip.instance="<urn:uuid:1>";q=0.5',
            NameAddr(
                uri=SipURI(user="a", host="b"),
                params={"+sip.instance": '"<urn:uuid:1>"', "q": "0.5"},
            ),
        ),
    ],
)
def test_parse_name_addr(value: str, expected: NameAddr) -> None:
    assert parse_name_addr(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # quotbal: unterminated quote
        '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec: spaces in addr-spec
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn: non-token display
        '"Joe" <sip:joe@example.org>;;;;',  # badinv01: empty params
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct: headers need <>
        "<sip:a@b",
        '"x" sip:a@b',
        "<sip:a@b> junk",
        "",
        "sip:a b@c",
    ],
)
def test_parse_name_addr_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value)


def test_name_addr_str_quotes_display() -> None:
    na = NameAddr(display='a "b" \\ c', uri=SipURI(user="u", host="h"), params={"tag": "x"})
    assert str(na) == '"a \\"b\\" \\\\ c" <sip:u@h>;tag=x'
    assert na.tag == "x"
    assert str(NameAddr(wildcard=True)) == "*"
    assert na.with_params(tag="y").tag == "y"
    assert na.tag == "x"


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(name_addrs)
def test_name_addr_round_trip(na: NameAddr) -> None:
    assert parse_name_addr(str(na)) == na


# --------------------------------------------------------------------------- CSeq


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1 INVITE", CSeq(seq=1, method="INVITE")),
        ("0009   INVITE", CSeq(seq=9, method="INVITE")),
        (f"{2**31 - 1} BYE", CSeq(seq=2**31 - 1, method="BYE")),
    ],
)
def test_parse_cseq(value: str, expected: CSeq) -> None:
    assert parse_cseq(value) == expected
    assert parse_cseq(str(expected)) == expected


@pytest.mark.parametrize(
    "value",
    [f"{2**31} INVITE", "36893488147419103232 REGISTER", "INVITE", "1", "-1 BYE", "1 IN VITE"],
)
def test_parse_cseq_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_cseq(value)


# --------------------------------------------------------------------------- Headers


def _headers() -> Headers:
    return Headers(
        [
            ("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("Via", "SIP/2.0/TCP c;branch=z9hG4bK3"),
            ("f", "<sip:a@x>;tag=1"),
            ("To", "<sip:b@y>"),
            ("CSEQ", "5 INVITE"),
            ("Route", "<sip:p1;lr>, <sip:p2;lr>"),
            ("WWW-Authenticate", 'Digest realm="x", nonce="y"'),
        ]
    )


def test_headers_lookup_is_case_insensitive_and_compact() -> None:
    h = _headers()
    assert h.get("FROM") == h.get("f") == "<sip:a@x>;tag=1"
    assert "cseq" in h and "Call-ID" not in h
    assert h.get("Call-ID", "none") == "none"
    assert [n for n, _ in h] == ["Via", "Via", "From", "To", "CSeq", "Route", "WWW-Authenticate"]
    assert len(h) == 7


def test_get_all_splits_only_list_headers() -> None:
    h = _headers()
    assert h.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/TCP c;branch=z9hG4bK3",
    ]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="x", nonce="y"']
    assert h.get_all("Nope") == []


def test_parsed_views_are_cached_and_invalidated() -> None:
    h = _headers()
    vias = h.vias()
    assert [v.branch for v in vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert h.vias() is vias
    h.prepend("Via", "SIP/2.0/UDP proxy;branch=z9hG4bK0")
    assert [v.branch for v in h.vias()] == ["z9hG4bK0", "z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert h.cseq() == CSeq(seq=5, method="INVITE")
    h.set("CSeq", "6 INVITE")
    assert h.cseq().seq == 6
    from_ = h.name_addr("From")
    assert from_ is not None and from_.tag == "1"
    h.set("From", "<sip:a@x>;tag=2")
    assert h.name_addr("From") == NameAddr(uri=SipURI(user="a", host="x"), params={"tag": "2"})
    assert [str(r.uri) for r in h.name_addrs("Route")] == ["sip:p1;lr", "sip:p2;lr"]
    assert h.name_addr("Contact") is None


def test_pop_first_value_keeps_the_rest_and_the_cache_in_step() -> None:
    h = _headers()
    h.vias()
    assert h.pop_first_value("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.get_all("Via") == ["SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/TCP c;branch=z9hG4bK3"]
    assert [v.branch for v in h.vias()] == ["z9hG4bK2", "z9hG4bK3"]
    assert h.pop_first_value("Via") is not None
    assert [v.branch for v in h.vias()] == ["z9hG4bK3"]
    assert h.pop_first_value("route") == "<sip:p1;lr>"
    assert h.get("Route") == "<sip:p2;lr>"
    assert h.pop_first_value("Contact") is None


def test_set_add_remove_prepend_positions() -> None:
    h = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3"), ("X-C", "4")])
    h.set("x-A", "x")
    assert list(h) == [("X-A", "x"), ("X-B", "2"), ("X-C", "4")]
    h.add("X-B", "5")
    h.prepend("X-B", "0")
    assert list(h) == [("X-A", "x"), ("X-B", "0"), ("X-B", "2"), ("X-C", "4"), ("X-B", "5")]
    h.prepend("Record-Route", "<sip:p;lr>")
    assert next(iter(h)) == ("Record-Route", "<sip:p;lr>")
    assert h.remove("x-b") == 3
    assert h.remove("x-b") == 0
    h.set("New", "v")
    assert list(h)[-1] == ("New", "v")


def test_mutators_refuse_header_injection() -> None:
    h = Headers()
    for bad in ("a\r\nVia: evil", "a\nb", "a\rb"):
        with pytest.raises(ValueError):
            h.add("Subject", bad)
        with pytest.raises(ValueError):
            h.set("Subject", bad)


def test_copy_is_independent() -> None:
    h = _headers()
    h.vias()
    c = h.copy()
    c.pop_first_value("Via")
    assert len(h.vias()) == 3 and len(c.vias()) == 2
    assert h != c
    assert h == _headers()


# --------------------------------------------------------------------------- messages


def _request() -> Request:
    return Request(
        method="INVITE",
        uri="sip:bob@example.com",
        headers=Headers(
            [
                ("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1"),
                ("Via", "SIP/2.0/UDP b.example;branch=z9hG4bK0"),
                ("Record-Route", "<sip:p.example;lr>"),
                ("From", "<sip:alice@example.com>;tag=1"),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", "c1"),
                ("CSeq", "1 INVITE"),
                ("Max-Forwards", "70"),
                ("Content-Length", "999"),
                ("Content-Type", "text/plain"),
            ]
        ),
        body=b"hi",
    )


def test_request_shortcuts() -> None:
    req = _request()
    assert req.call_id == "c1"
    assert req.cseq == CSeq(seq=1, method="INVITE")
    assert req.top_via.branch == "z9hG4bK1"
    assert req.from_tag == "1"
    assert req.to_tag is None
    assert req.parsed_uri == SipURI(user="bob", host="example.com")
    req.uri = "sip:carol@example.com"  # the cached parse follows the text
    assert req.parsed_uri == SipURI(user="carol", host="example.com")


def test_shortcuts_raise_parse_error_when_missing() -> None:
    req = Request(method="OPTIONS", uri="sip:a@b", headers=Headers())
    for attr in ("call_id", "cseq", "top_via", "from_tag", "to_tag"):
        with pytest.raises(ParseError):
            getattr(req, attr)


def test_to_bytes_canonical_order_and_recomputed_content_length() -> None:
    data = _request().to_bytes()
    assert data == (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n"
        b"Via: SIP/2.0/UDP b.example;branch=z9hG4bK0\r\n"
        b"Record-Route: <sip:p.example;lr>\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: c1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 2\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"hi"
    )
    resp = Response(status=180, reason="Ringing", headers=Headers([("l", "5")]))
    assert resp.to_bytes() == b"SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n"
    assert (
        Response(status=200, reason="OK", headers=Headers())
        .to_bytes()
        .endswith(b"Content-Length: 0\r\n\r\n")
    )


def test_message_copy_is_deep_enough() -> None:
    req = _request()
    dup = req.copy()
    dup.headers.pop_first_value("Via")
    dup.uri = "sip:x@y"
    assert req.top_via.branch == "z9hG4bK1" and req.uri == "sip:bob@example.com"
    assert dup.top_via.branch == "z9hG4bK0"
    assert req.copy() == req
    resp = make_response(req, 200)
    assert resp.copy() == resp and resp.copy() is not resp


# --------------------------------------------------------------------------- make_response


def test_make_response_copies_per_rfc3261_8_2_6() -> None:
    resp = make_response(_request(), 200, to_tag="abc", headers=[("Contact", "<sip:b@c>")])
    assert resp.status == 200 and resp.reason == "OK"
    assert [n for n, _ in resp.headers] == [
        "Via",
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Record-Route",
        "Contact",
    ]
    assert resp.to_tag == "abc"
    assert resp.headers.get_all("Via") == _request().headers.get_all("Via")
    assert resp.cseq == CSeq(seq=1, method="INVITE")


def test_make_response_details() -> None:
    req = _request()
    assert make_response(req, 404).reason == "Not Found"
    assert make_response(req, 499).reason == "Client Error"
    assert make_response(req, 699).reason == "Global Failure"
    assert make_response(req, 486, "Busy Busy").reason == "Busy Busy"
    assert "Record-Route" not in make_response(req, 486).headers  # only 101-299
    assert "Record-Route" not in make_response(req, 100).headers
    assert "Record-Route" in make_response(req, 180).headers
    req.headers.set("To", "<sip:bob@example.com>;tag=existing")
    assert make_response(req, 200, to_tag="new").to_tag == "existing"
    bye = _request()
    bye.method = "BYE"
    bye.headers.set("CSeq", "2 BYE")
    assert "Record-Route" not in make_response(bye, 200).headers
    with pytest.raises(ValueError):
        make_response(req, 99)


def test_make_response_from_partial_of_a_bad_request() -> None:
    data = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b\r\n\r\n"
    with pytest.raises(ParseError) as info:
        parse_message(data)
    partial = info.value.partial
    assert isinstance(partial, Request)
    resp = make_response(partial, 400, to_tag="t")
    assert resp.headers.get("To") == "<sip:a@b"  # malformed: echoed as it came
    assert resp.headers.get("Via") == "SIP/2.0/UDP h;branch=z9hG4bK1"


# --------------------------------------------------------------------------- round trips

_header_values = (
    st.text(
        st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\r\n"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(tokens)
    from_ = draw(name_addrs).with_params(tag=draw(tokens))
    to = draw(name_addrs)
    vias = draw(
        st.lists(
            st.builds(
                Via,
                transport=st.sampled_from(["UDP", "TCP"]),
                host=st.just("h.example"),
                params=st.just({"branch": "z9hG4bK" + draw(tokens)}),
            ),
            min_size=1,
            max_size=3,
        )
    )
    fields = [("Via", str(v)) for v in vias]
    fields += [("From", str(from_)), ("To", str(to)), ("Call-ID", draw(tokens))]
    fields += [("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")]
    fields += [("Contact", str(c)) for c in draw(st.lists(name_addrs, max_size=2))]
    fields += draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t), _header_values), max_size=4))
    body = draw(st.binary(max_size=64))
    fields.append(("Content-Length", str(len(body))))
    ruri = draw(st.one_of(sip_uris.map(lambda u: u.with_(headers={})), tel_uris))
    uri = str(ruri)
    return Request(method=method, uri=uri, headers=Headers(fields), body=body)


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(requests())
def test_request_round_trip(req: Request) -> None:
    parsed = parse_message(req.to_bytes())
    assert parsed == req
    assert parsed.headers.vias() == req.headers.vias()
    assert parsed.headers.name_addrs("Contact") == req.headers.name_addrs("Contact")


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(
    status=st.integers(100, 699),
    reason=_header_values | st.just(""),
    body=st.binary(max_size=32),
    tag=tokens,
)
def test_response_round_trip(status: int, reason: str, body: bytes, tag: str) -> None:
    resp = make_response(_request(), status, reason, to_tag=tag, body=body)
    resp.headers.set("Content-Length", str(len(body)))
    parsed = parse_message(resp.to_bytes())
    assert parsed == resp
    assert isinstance(parsed, Response) and parsed.to_tag == tag


# --------------------------------------------------------------------------- garbage in
_garbage = st.text(st.sampled_from(list(' \t:;,<>"\\%@[]=?/0123456789aZsip.*-\x00é')), max_size=40)


@settings(max_examples=500, deadline=None)
@given(_garbage)
def test_value_parsers_only_raise_parse_error(text: str) -> None:
    """Route, Record-Route, Path … are parsed lazily, outside parse_message's safety net."""
    parsers: list[Callable[[str], object]] = [
        parse_uri,
        parse_name_addr,
        parse_via,
        parse_cseq,
        split_header_values,
    ]
    for parse in parsers:
        for candidate in (text, "sip:" + text, "<sip:" + text):
            with contextlib.suppress(ParseError):
                parse(candidate)


# --------------------------------------------------------------------------- hot-path caches
def test_replace_top_via_keeps_fields_and_cache_in_step() -> None:
    h = _headers()
    vias = h.vias()
    fixed = vias[0].with_params(received="192.0.2.1")
    h.replace_top_via(fixed)
    # exactly what pop_first_value + prepend left before: the fixed value on its own line
    assert h.get_fields("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/TCP c;branch=z9hG4bK3",
    ]
    assert h.vias()[0] is fixed and h.vias()[1:] == vias[1:]
    assert h.vias() == Headers(list(h)).vias()  # the cache says what a re-parse says
    single = Headers([("Via", "SIP/2.0/UDP a;rport"), ("To", "<sip:b@x>")])
    single.replace_top_via(single.vias()[0].with_params(rport="5"))
    assert list(single) == [("Via", "SIP/2.0/UDP a;rport=5"), ("To", "<sip:b@x>")]
    assert single.vias()[0].params == {"rport": "5"}
    with pytest.raises(ParseError):
        Headers([("To", "<sip:b@x>")]).replace_top_via(fixed)


def test_memoised_parses_give_equal_values_and_private_lists() -> None:
    text = "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"
    first, second = parse_via(text), parse_via(text)
    assert first == second and first is not second  # each caller owns its list
    first.pop()
    assert len(parse_via(text)) == 2
    assert parse_name_addr("<sip:a@x>;tag=1") == parse_name_addr("<sip:a@x>;tag=1")
    assert parse_uri("sip:a@x;lr") == parse_uri("sip:a@x;lr")
    # errors are not memoised: bad input fails every time
    for _ in range(2):
        with pytest.raises(ParseError):
            parse_via("SIP/2.0/UDP a;;branch=1")
        with pytest.raises(ParseError):
            parse_uri("http://example.com")


def test_memo_is_bounded_and_keeps_recent_entries() -> None:
    from switch.sip._grammar import Memo

    memo: Memo[str, int] = Memo(4)
    for i in range(4):
        memo.put(str(i), i)
    assert memo.get("0") == 0  # promoted from the old generation when the young one fills
    for i in range(4, 12):
        memo.put(str(i), i)
    assert memo.get("1") is None
    assert memo.get("11") == 11
    assert len(memo._new) <= 4 and len(memo._old) <= 4


def test_make_response_shares_the_parsed_fields_coherently() -> None:
    req = parse_message(
        b"INVITE sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP p1;branch=z9hG4bK1, SIP/2.0/UDP p2;branch=z9hG4bK2\r\n"
        b"From: <sip:a@example.com>;tag=f\r\nTo: <sip:b@example.com>\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="t1")
    reparsed = parse_message(resp.to_bytes())
    assert resp.headers.vias() == reparsed.headers.vias()
    assert resp.headers.vias() is not req.headers.vias()
    assert resp.to_tag == "t1" and resp.from_tag == "f" and resp.cseq == reparsed.cseq
    resp.headers.pop_first_value("Via")
    assert [v.host for v in req.headers.vias()] == ["p1", "p2"]  # the request's is intact
    assert [v.host for v in resp.headers.vias()] == ["p2"]


def test_set_and_prepend_keep_fields_and_cache_coherent() -> None:
    h = _headers()
    h.vias()
    h.prepend("Via", "SIP/2.0/UDP p;branch=z9hG4bK0")
    assert [v.branch for v in h.vias()] == ["z9hG4bK0", "z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert h.vias() == Headers(list(h)).vias()
    h.prepend("Via", "not a via")  # accepted as text (as before), reported when parsed
    with pytest.raises(ParseError):
        h.vias()
    h = Headers([("X-A", "1"), ("Max-Forwards", "70"), ("X-B", "2"), ("Max-Forwards", "9")])
    h.set("max-forwards", "69")
    assert list(h) == [("X-A", "1"), ("Max-Forwards", "69"), ("X-B", "2")]
    h.set("Max-Forwards", "68")
    assert list(h) == [("X-A", "1"), ("Max-Forwards", "68"), ("X-B", "2")]
    h.set("X-C", "3")
    assert list(h)[-1] == ("X-C", "3")


@pytest.mark.parametrize(
    ("transport", "host", "port", "branch"),
    [
        ("udp", "10.0.0.1", 5060, "z9hG4bKabc.0123ef"),
        ("tcp", "Proxy.Example.NET", 5070, "z9hG4bK-x_y"),
        ("tls", "2001:db8::1", 5061, "z9hG4bKv6"),  # IPv6: the parsing path
        ("udp", "10.0.0.1", 5060, 'z9hG4bK"quoted"'),  # not a token: the parsing path
    ],
)
@pytest.mark.parametrize("parsed_before", [False, True])
def test_prepend_own_via_is_prepend_without_the_parse(
    transport: str, host: str, port: int, branch: str, parsed_before: bool
) -> None:
    fields = [
        ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
        ("Via", "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2"),
        ("To", "<sip:b@x>"),
    ]
    fast, slow = Headers(fields), Headers(fields)
    if parsed_before:
        fast.vias()
        slow.vias()
    fast.prepend_own_via(transport, host, port, branch)
    slow.prepend("Via", f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch}")
    assert list(fast) == list(slow)
    if ":" not in host and '"' not in branch:
        assert fast.vias() == slow.vias()
        assert fast.vias()[0].branch == branch and fast.vias()[0].port == port
        assert Headers(list(fast)).vias() == fast.vias()  # what a fresh parse gives
