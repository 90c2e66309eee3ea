"""Faults contained over real sockets: nothing one message causes may stop the switch's
transaction timers (issue: one carrier BYE towards an IPv6 literal froze every retransmission
and timeout until the next packet arrived), and a flood of one bad datagram is counted, not
logged as one traceback each."""

from __future__ import annotations

import secrets
import time

import pytest

from .harness import CARRIER_IP, DeviceSpec, SeedSpec
from .sipclient import SipClient

pytestmark = pytest.mark.integration


def _carrier_request(
    c: SipClient, method: str, ruri: str, *, to_tag: str | None, route: str | None = None
) -> bytes:
    host = f"{c.remote[0]}:{c.remote[1]}"
    to = f"To: <sip:0355500100@{host}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {c.local[0]}:{c.local[1]};branch=z9hG4bK-{secrets.token_hex(6)}",
        f"From: <sip:0312345678@{c.local[0]}>;tag=c-{secrets.token_hex(3)}",
        to,
        f"Call-ID: fault-{secrets.token_hex(6)}",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        *([f"Route: {route}"] if route else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _responses(c: SipClient, seconds: float, method: str | None = None) -> list[int]:
    """Statuses received within `seconds` (only those whose CSeq names `method`, if given)."""
    got: list[int] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        r = c.recv(timeout=left)
        if r is not None and (method is None or (r.get("CSeq") or "").endswith(method)):
            got.append(r.status)
    return got


def test_unsendable_destination_does_not_freeze_transaction_timers(switch_proc):
    sw = switch_proc(SeedSpec(devices=[DeviceSpec("alice", "alice-pw-1")]))
    with SipClient("udp", sw.udp, local_ip=CARRIER_IP) as c:
        # An in-dialog BYE from the trusted carrier towards an address the UDP socket cannot
        # send to (an IPv6 literal on an IPv4 socket): the send fails; its client transaction
        # must time out like any other send failure, and the timers must keep running. The
        # BYE carries our Record-Route as its Route, as in a dialog the switch proxied (one
        # without would be answered 404 Not Here and never sent).
        route = f"<sip:{sw.ip}:{sw.sip_port};lr>"
        c.send(_carrier_request(c, "BYE", "sip:x@[2001:db8::10]", to_tag="far", route=route))
        assert _responses(c, 1.2, "BYE") == [408]  # past Timer E's first firing (T1 = 0.5 s)
        # A call to an unknown number: 404, which the switch must retransmit (Timer G) while
        # no ACK comes. Retransmissions prove the single loop timer is still armed.
        c.send(_carrier_request(c, "INVITE", f"sip:0399990000@{sw.ip}", to_tag=None))
        statuses = _responses(c, 2.5, "INVITE")
    finals = [s for s in statuses if s >= 200]
    assert finals and finals[0] == 404, statuses
    assert len(finals) >= 2, f"no retransmission of the 404 (timers frozen?): {statuses}"
    assert sw.alive()
    assert "Traceback" not in sw.logs(), sw.logs()


def test_stray_responses_with_a_hostname_via_are_counted_not_logged(switch_proc):
    sw = switch_proc(SeedSpec(devices=[DeviceSpec("alice", "alice-pw-1")]))
    with SipClient("udp", sw.udp, local_ip=CARRIER_IP) as c:
        for i in range(200):
            c.send(
                (
                    "SIP/2.0 200 OK\r\n"
                    f"Via: SIP/2.0/UDP {sw.ip}:{sw.sip_port};branch=z9hG4bK-stray{i}\r\n"
                    f"Via: SIP/2.0/UDP reflect.example.invalid:5060;branch=z9hG4bK-v{i}\r\n"
                    "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n"
                    f"Call-ID: stray-{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
        time.sleep(1.0)
        # the switch still answers
        c.send(_carrier_request(c, "OPTIONS", f"sip:{sw.ip}:{sw.sip_port}", to_tag=None))
        assert 200 in _responses(c, 2.0)
    logs = sw.logs()
    assert logs.count("Traceback") <= 1, logs
    assert len(logs) < 20_000, f"{len(logs)} bytes of log for 200 stray datagrams"
