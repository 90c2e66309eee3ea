"""Shared sample messages and hypothesis strategies for the SIP message/parser tests."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from switch.sip.message import SipURI, TelURI
from switch.sip.values import NameAddr


def wire(*lines: str, body: str = "") -> bytes:
    """Join header lines with CRLF, add the blank line and the body."""
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


INVITE_LINES = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    'To: "Bob" <sip:bob@biloxi.example.com>',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
)
SDP = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def invite(*extra: str, body: str = SDP, lines: tuple[str, ...] = INVITE_LINES) -> bytes:
    return wire(*lines, *extra, f"Content-Length: {len(body.encode())}", body=body)


@pytest.fixture
def invite_bytes() -> bytes:
    return invite()


# --------------------------------------------------------------------------- strategies
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tokens = st.text(_ALNUM + "-.!%*_+`'~", min_size=1, max_size=12)
lower_tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10)
labels = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(1, 65535)
# Any text (no surrogates): escaping must carry it through a round trip.
free_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
param_values = st.none() | free_text

sip_uris = st.builds(
    SipURI,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | free_text,
    password=st.none(),
    host=hosts,
    port=ports,
    params=st.dictionaries(lower_tokens.filter(lambda s: "%" not in s), param_values, max_size=3),
    headers=st.dictionaries(tokens.filter(lambda s: "%" not in s), free_text, max_size=2),
)
sip_uris_with_password = st.builds(
    SipURI, user=free_text, password=free_text, host=hosts, port=ports
)
tel_uris = st.builds(
    TelURI,
    number=st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True),
    params=st.dictionaries(lower_tokens.filter(lambda s: "%" not in s), param_values, max_size=2),
)
header_param_values = st.none() | st.text(_ALNUM + "-.!%*_+`'~", min_size=1, max_size=10)
display_names = st.none() | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=15
)
name_addrs = st.builds(
    NameAddr,
    display=display_names,
    uri=st.one_of(sip_uris, tel_uris),
    params=st.dictionaries(tokens.map(str.lower), header_param_values, max_size=3),
)
