"""Malformed input over real sockets: a broken request gets 400, garbage is dropped, and the
switch keeps answering well-formed requests afterwards (UDP and TCP)."""

from __future__ import annotations

import secrets

import pytest

from .harness import DeviceSpec, SeedSpec
from .sipclient import SipClient, options

pytestmark = pytest.mark.integration


def broken_request(client: SipClient, defect: str) -> bytes:
    """An OPTIONS that is well-formed except for one defect, with a Via we can be answered on."""
    host = f"{client.remote[0]}:{client.remote[1]}"
    via = (
        f"Via: SIP/2.0/{client.transport.upper()} {client.local[0]}:{client.local[1]}"
        f";branch=z9hG4bK-{secrets.token_hex(6)};rport"
    )
    headers = {
        "start": f"OPTIONS sip:{host} SIP/2.0",
        "via": via,
        "from": f"From: <sip:probe@{host}>;tag=bad1",
        "to": f"To: <sip:{host}>",
        "call-id": f"Call-ID: bad-{secrets.token_hex(6)}",
        "cseq": "CSeq: 1 OPTIONS",
        "mf": "Max-Forwards: 70",
        "cl": "Content-Length: 0",
    }
    if defect == "cseq":
        headers["cseq"] = "CSeq: one OPTIONS"  # RFC 3261 25.1: CSeq = 1*DIGIT LWS Method
    elif defect == "cseq-method-mismatch":
        headers["cseq"] = "CSeq: 1 INVITE"  # RFC 4475 3.1.2.16 (mismatch01)
    elif defect == "content-length":
        headers["cl"] = "Content-Length: x7"
    elif defect == "version":
        headers["start"] = f"OPTIONS sip:{host} SIP/7.0"  # RFC 4475 3.1.2.17: 505 preferred
    elif defect == "no-from":
        del headers["from"]
    else:
        raise AssertionError(defect)
    return ("\r\n".join(headers.values()) + "\r\n\r\n").encode()


@pytest.fixture
def sw(switch_proc):
    return switch_proc(SeedSpec(devices=[DeviceSpec("alice", "alice-pw-1")]))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("defect", ["cseq", "cseq-method-mismatch", "content-length", "no-from"])
def test_malformed_request_gets_400_and_switch_keeps_serving(sw, transport, defect):
    before = sw.metrics().total("sip_parse_errors_total")
    with SipClient(transport, sw.addr(transport), timeout=3) as c:
        try:
            r = c.request(broken_request(c, defect), timeout=3)
        except ConnectionError:
            r = None  # the switch closed the stream without answering
        if defect == "no-from" or (defect == "content-length" and transport == "tcp"):
            # A 400 must copy From (RFC 3261 8.2.6.2), which is missing; and a stream whose
            # Content-Length is unreadable has lost its framing (RFC 3261 18.3: close it).
            # So: 400, or silence / a closed connection.
            assert r is None or r.status == 400, r.raw
        else:
            assert r is not None, f"no answer to a request with a bad {defect}\n{sw.logs()}"
            assert r.status == 400, r.raw
        if transport == "udp":
            ok = options(c)
            assert ok is not None and ok.status < 700, f"no answer to OPTIONS after it\n{sw.logs()}"
        # Over TCP the switch may close a connection that carried garbage; a new one must work.
    with SipClient(transport, sw.addr(transport), timeout=3) as fresh:
        ok = options(fresh)
        assert ok is not None, sw.logs()
    assert sw.alive(), sw.logs()
    if defect != "cseq-method-mismatch":  # a semantic error, maybe not a parse error
        assert sw.metrics().total("sip_parse_errors_total") > before


def test_bad_version_is_rejected(sw):
    with SipClient("udp", sw.udp, timeout=3) as c:
        r = c.request(broken_request(c, "version"), timeout=3)
        # RFC 4475 3.1.2.17: 505 Version Not Supported preferred; any 4xx/5xx, or silence.
        assert r is None or 400 <= r.status < 600, r.raw
        assert options(c) is not None, sw.logs()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_garbage_is_dropped_and_switch_keeps_serving(sw, transport):
    with SipClient(transport, sw.addr(transport), timeout=1.5) as c:
        junk = [
            bytes(range(256)) * 4,
            b"\x00\x01\x02 not sip at all\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",  # a response nobody asked for
            b"INVITE\r\n\r\n",
            b"\r\n\r\n",  # keep-alive (RFC 5626 double CRLF)
        ]
        for blob in junk:
            if transport == "tcp":
                # a stream that lost framing is closed; use a fresh connection per blob
                with SipClient("tcp", sw.tcp, timeout=1.5) as t:
                    t.send(blob)
            else:
                c.send(blob)
    with SipClient(transport, sw.addr(transport), timeout=3) as fresh:
        ok = options(fresh)
        assert ok is not None and ok.status < 700, sw.logs()
    assert sw.alive(), sw.logs()


def test_oversized_udp_request_is_refused_not_fatal(sw):
    with SipClient("udp", sw.udp, timeout=3) as c:
        big = broken_request(c, "cseq").replace(
            b"CSeq: one OPTIONS", b"CSeq: 1 OPTIONS\r\nX-Pad: " + b"a" * 60000
        )
        c.send(big)
        c.recv(1.0)  # 413 / 400 / nothing: all acceptable; staying alive is the point
        assert options(c) is not None, sw.logs()
    assert sw.alive(), sw.logs()
