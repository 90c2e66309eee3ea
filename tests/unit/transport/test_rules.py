"""RFC 3261 §18.2.1/§18.2.2 and RFC 3581 rules as tables."""

from __future__ import annotations

import pytest

from switch.sip.message import ParseError, Request
from switch.sip.parser import parse_message
from switch.sip.target import Target
from switch.transport.rules import error_response, fix_request_via, response_fallback

SRC = Target("udp", "203.0.113.5", 40123)


def request(via: str) -> Request:
    raw = (
        f"OPTIONS sip:x@example.com SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP 10.1.1.1\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        # sent-by host equals the source IP, no rport: untouched (§18.2.1)
        ("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1",
         "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1"),
        # host differs: received added
        ("SIP/2.0/UDP 192.168.0.2:5060;branch=z9hG4bK1",
         "SIP/2.0/UDP 192.168.0.2:5060;branch=z9hG4bK1;received=203.0.113.5"),
        # a domain name differs from any IP: received added
        ("SIP/2.0/UDP phone.example.com;branch=z9hG4bK1",
         "SIP/2.0/UDP phone.example.com;branch=z9hG4bK1;received=203.0.113.5"),
        # empty rport: filled, and received added even though the host is equal (RFC 3581 §4)
        ("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1;rport",
         "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1;rport=40123;received=203.0.113.5"),
        ("SIP/2.0/UDP 192.168.0.2;rport;branch=z9hG4bK1",
         "SIP/2.0/UDP 192.168.0.2;rport=40123;branch=z9hG4bK1;received=203.0.113.5"),
    ],
)  # fmt: skip
def test_received_and_rport(via: str, expected: str) -> None:
    req = request(via)
    fix_request_via(req, SRC)
    assert req.headers.get_all("Via") == [expected, "SIP/2.0/UDP 10.1.1.1"]
    assert req.top_via.params.get("branch") == "z9hG4bK1"


def test_ipv6_source_compares_without_brackets() -> None:
    req = request("SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK1")
    fix_request_via(req, Target("udp", "2001:db8::5", 5060))
    assert "received" not in req.top_via.params


@pytest.mark.parametrize(
    ("via", "transport", "target"),
    [
        # UDP, rport with a value: received + rport
        ("SIP/2.0/UDP 192.168.0.2:5070;rport=40123;received=203.0.113.5", "udp",
         Target("udp", "203.0.113.5", 40123)),
        # UDP, no rport: received + sent-by port
        ("SIP/2.0/UDP 192.168.0.2:5070;received=203.0.113.5", "udp",
         Target("udp", "203.0.113.5", 5070)),
        # UDP, no received, no port: sent-by host, default 5060
        ("SIP/2.0/UDP 192.168.0.2", "udp", Target("udp", "192.168.0.2", 5060)),
        # TCP without the connection: received + sent-by port (rport not used for streams)
        ("SIP/2.0/TCP 192.168.0.2:5080;rport=40123;received=203.0.113.5", "tcp",
         Target("tcp", "203.0.113.5", 5080)),
        # TLS default port 5061
        ("SIP/2.0/TLS phone.example.com", "tls", Target("tls", "phone.example.com", 5061)),
        # rport not filled in (empty): sent-by port
        ("SIP/2.0/UDP 192.168.0.2:5070;rport", "udp", Target("udp", "192.168.0.2", 5070)),
    ],
)  # fmt: skip
def test_response_fallback(via: str, transport: str, target: Target) -> None:
    req = request(via + ";branch=z9hG4bK1")
    assert response_fallback(req.top_via, transport) == target


def _error(raw: bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_message(raw)
    return info.value


def test_error_response_copies_the_request_headers() -> None:
    err = _error(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: abc\r\n\r\n"
    )
    resp = error_response(err)
    assert resp is not None and resp.status == 400
    assert [n for n, _ in resp.headers] == ["Via", "From", "To", "Call-ID", "CSeq", "Warning"]
    assert resp.headers.get("CSeq") == "abc"


def test_request_missing_call_id_from_to_gets_400_matchable_by_via_and_cseq() -> None:
    # RFC 4475 §3.3.1 (insuf.dat): "must not break; respond 400".
    err = _error(
        b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nContent-Length: 0\r\n\r\n"
    )
    resp = error_response(err)
    assert resp is not None and resp.status == 400
    assert [n for n, _ in resp.headers] == ["Via", "CSeq", "Warning"]
    assert resp.headers.get("Via") == "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"


def test_version_error_gets_505() -> None:
    err = _error(
        b"OPTIONS sip:x SIP/3.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    resp = error_response(err)
    assert resp is not None and resp.status == 505


@pytest.mark.parametrize(
    "raw",
    [
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCSeq: x\r\n\r\n",  # response
        b"ACK sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCSeq: x\r\n\r\n",  # ACK
        b"\x00\x01\x02 not sip at all",
        b"OPTIONS sip:x SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n",  # no Via to answer along
        b"GARBAGE\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n",  # Via alone: unmatchable
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nMax-Forwards: x\r\n\r\n",
    ],
)
def test_nothing_to_answer(raw: bytes) -> None:
    assert error_response(_error(raw)) is None
