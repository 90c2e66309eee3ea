"""URIs: sip/sips/tel parsing, %-escapes, IPv6 references, serialisation round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from switch.sip.message import ParseError, SipURI, TelURI, parse_uri
from switch.sip.uri import AbsoluteURI, parse_any_uri

from .conftest import sip_uris, sip_uris_with_password, tel_uris

GOOD = [
    ("sip:alice@example.com", SipURI(user="alice", host="example.com")),
    ("SIP:Alice@EXAMPLE.com:5070", SipURI(user="Alice", host="example.com", port=5070)),
    (
        "sips:bob:secret@[2001:DB8::1]:5061",
        SipURI(scheme="sips", user="bob", password="secret", host="[2001:db8::1]", port=5061),
    ),
    (
        "sip:example.com;lr;transport=TCP",
        SipURI(host="example.com", params={"lr": None, "transport": "TCP"}),
    ),
    ("sip:host;MADDR=[::1]", SipURI(host="host", params={"maddr": "[::1]"})),
    # RFC 4475 §3.1.1.9: ';' inside the user part; '%40' is an escaped '@'
    (
        "sip:user;par=u%40example.net@example.com",
        SipURI(user="user;par=u@example.net", host="example.com"),
    ),
    # RFC 4475 §3.1.1.3 / §3.1.1.4: escapes decode, %00 does not truncate
    ("sip:%75se%72@example.com", SipURI(user="user", host="example.com")),
    ("sip:null-%00-null@example.com", SipURI(user="null-\x00-null", host="example.com")),
    (
        "sip:cal%6Cer@h;%6C%72;n%61me=v%61lue%25%34%31",
        SipURI(user="caller", host="h", params={"lr": None, "name": "value%41"}),
    ),
    (
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        SipURI(user="user", host="example.com", headers={"Route": "<sip:sip.example.com>"}),
    ),
    (
        "sip:a@h?subject=x&priority=urgent",
        SipURI(user="a", host="h", headers={"subject": "x", "priority": "urgent"}),
    ),
    # RFC 5118 §4.3: the 5070 is inside the brackets, so it is part of the address
    ("sip:[2001:db8::10:5070]", SipURI(host="[2001:db8::10:5070]")),
    ("sip:[2001:db8::10]:5070", SipURI(host="[2001:db8::10]", port=5070)),
    ("sip:user@[2001:db8:::192.0.2.1]", SipURI(user="user", host="[2001:db8:::192.0.2.1]")),
    (
        "sip:192.0.2.1:5060;user=phone",
        SipURI(host="192.0.2.1", port=5060, params={"user": "phone"}),
    ),
    ("tel:+1-201-555-0123;ext=12", TelURI(number="+12015550123", params={"ext": "12"})),
    (
        "tel:7042;phone-context=example.com",
        TelURI(number="7042", params={"phone-context": "example.com"}),
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse_good(text: str, expected: SipURI | TelURI) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_str_round_trip(text: str, expected: SipURI | TelURI) -> None:
    assert parse_uri(str(expected)) == expected


def test_unusual_userinfo_from_rfc4475_intmeth() -> None:
    text = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


BAD = [
    ("", 400),
    ("alice@example.com", 400),
    ("<sip:alice@example.com>", 400),
    ("sip:", 400),
    ("sip:@example.com", 400),
    ("sip:alice@", 400),
    ("sip:alice@exa mple.com", 400),
    ("sip:alice@example.com; lr", 400),
    ("sip:2001:db8::10", 400),  # RFC 5118 §4.2: IPv6 without brackets
    ("sip:[2001:db8::10", 400),
    ("sip:[2001:db8::10]x", 400),
    ("sip:host:70000", 400),
    ("sip:host:", 400),
    ("sip:host:5o60", 400),
    ("sip:a%zzb@host", 400),  # bad escape
    ("sip:a%4@host", 400),
    ("sip:host;;lr", 400),
    ("sip:host;=x", 400),
    ("sip:host?noval", 400),
    ("sip:a@b@c", 400),
    ("sip:ho$t", 400),
    ("tel:", 400),
    ("tel:abc-xyz", 400),
    ("http://example.com/", 416),
    ("nobodyKnowsThisScheme:totallyopaquecontent", 416),
    ("soap.beep://192.0.2.103:3002", 416),
]


@pytest.mark.parametrize(("text", "status"), BAD)
def test_parse_bad(text: str, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == status


def test_any_uri_keeps_unknown_schemes_opaque() -> None:
    assert parse_any_uri("isbn:2983792873") == AbsoluteURI(scheme="isbn", opaque="2983792873")
    assert str(parse_any_uri("HTTP://www.example.com")) == "http://www.example.com"
    assert parse_any_uri("sip:a@b") == SipURI(user="a", host="b")
    with pytest.raises(ParseError):
        parse_any_uri("isbn:")


def test_escaping_on_output() -> None:
    uri = SipURI(
        user="a b@c", password="p:w", host="h", params={"x y": "1;2"}, headers={"H": "a&b"}
    )
    assert str(uri) == "sip:a%20b%40c:p%3Aw@h;x%20y=1%3B2?H=a%26b"
    assert str(SipURI(user="\x00\u00e9", host="h")) == "sip:%00%C3%A9@h"


def test_helpers() -> None:
    uri = SipURI(host="h", port=5, params={"transport": "TCP"})
    assert uri.host_port == ("h", 5)
    assert uri.transport == "tcp"
    assert uri.with_(port=6) == SipURI(host="h", port=6, params={"transport": "TCP"})
    assert uri.port == 5  # frozen: with_ made a copy
    assert str(SipURI(host="2001:db8::1", port=5060)) == "sip:[2001:db8::1]:5060"


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(sip_uris)
def test_sip_uri_round_trip(uri: SipURI) -> None:
    assert parse_uri(str(uri)) == uri


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(sip_uris_with_password)
def test_sip_uri_with_password_round_trip(uri: SipURI) -> None:
    assert parse_uri(str(uri)) == uri


@settings(deadline=None)  # CI machines are shared: no per-example deadline
@given(tel_uris)
def test_tel_uri_round_trip(uri: TelURI) -> None:
    assert parse_uri(str(uri)) == uri
