"""Next-hop resolution and flow tokens."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest

from switch.proxy.targets import FlowTokens, ResolveError, Resolver, uri_hop, via_target
from switch.sip.message import SipURI, parse_uri
from switch.sip.parser import parse_message
from switch.sip.target import Target


def sip(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri


@pytest.mark.parametrize(
    ("uri", "hop"),
    [
        ("sip:192.0.2.1", ("udp", "192.0.2.1", 5060)),
        ("sip:192.0.2.1:5070;transport=TCP", ("tcp", "192.0.2.1", 5070)),
        ("sips:carrier.example", ("tls", "carrier.example", 5061)),
        ("sip:a@192.0.2.1;transport=tls", ("tls", "192.0.2.1", 5061)),
        ("sip:[2001:db8::1]:5080", ("udp", "[2001:db8::1]", 5080)),
    ],
)
def test_uri_hop(uri: str, hop: tuple[str, str, int]) -> None:
    assert uri_hop(sip(uri)) == hop


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ResolveError):
        uri_hop(sip("sip:192.0.2.1;transport=sctp"))


def test_via_target_prefers_received_and_rport() -> None:
    raw = (
        b"OPTIONS sip:x@192.0.2.9 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa;received=203.0.113.1;rport=40000\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@192.0.2.9>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert via_target(msg.top_via) == Target("udp", "203.0.113.1", 40000)


class FakeDNS:
    """Stands in for loop.getaddrinfo: no query leaves the machine in unit tests."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: object, **kw: object) -> list[tuple[object, ...]]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "not found")
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", (self.table[host], 0))]


async def test_resolver_passes_ip_literals_and_caches_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = FakeDNS({"carrier.test": "127.0.0.9"})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", dns)
    now = [0.0]
    r = Resolver(lambda: now[0], ttl=10.0)
    assert await r.address("192.0.2.7") == "192.0.2.7"
    assert await r.address("[::1]") == "::1"
    assert dns.calls == []
    target = await r.target(sip("sip:carrier.test:5070;transport=tcp"))
    assert target == Target("tcp", "127.0.0.9", 5070)
    await r.address("carrier.test")
    assert dns.calls == ["carrier.test"]  # cached
    now[0] = 11.0
    await r.address("carrier.test")
    assert dns.calls == ["carrier.test", "carrier.test"]  # expired after ttl


async def test_resolver_failure_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", FakeDNS({}))
    r = Resolver(lambda: 0.0)
    with pytest.raises(ResolveError) as err:
        await r.address("no-such-host.invalid")
    assert err.value.status_hint == 503


def test_flow_tokens_roundtrip_and_bind_to_call_id() -> None:
    tokens = FlowTokens(b"k" * 16)
    a = Target("udp", "203.0.113.5", 12345)
    b = Target("tcp", "203.0.113.6", 5555, conn_id=7)
    tok = tokens.encode(a, b, "call-1")
    assert tok.startswith("f-")
    assert sip(f"sip:{tok}@10.0.0.1;lr").user == tok  # a legal URI user part
    assert tokens.decode(tok, "call-1") == (a, b)
    assert tokens.decode(tok, "call-2") is None
    assert tokens.decode(tokens.encode(None, b, "c"), "c") == (None, b)
    assert FlowTokens(b"x" * 16).decode(tok, "call-1") is None  # another secret
    assert tokens.decode(tok[:-2] + "AA", "call-1") is None  # tampered
    assert tokens.decode("alice", "call-1") is None
    assert "203.0.113" not in base64.urlsafe_b64decode(tok[2:] + "==").decode("latin-1")


def test_flow_tokens_decode_cache_keeps_answers_per_call_id() -> None:
    tokens = FlowTokens(b"k" * 16)
    a = Target("udp", "203.0.113.5", 12345)
    long_b = Target("tls", "2001:db8:0:0:0:0:0:1234", 65000, conn_id=123456789)  # > 32 octets
    tok = tokens.encode(a, long_b, "call-1")
    for _ in range(3):  # answered from the cache after the first time: same answers
        assert tokens.decode(tok, "call-1") == (a, long_b)
        assert tokens.decode(tok, "call-2") is None
        assert tokens.decode(tok[:-2] + "AA", "call-1") is None
    for i in range(FlowTokens._CACHE_LIMIT + 10):  # bounded
        tokens.decode(f"f-{i}", "c")
    assert len(tokens._decoded) <= FlowTokens._CACHE_LIMIT
    assert tokens.decode(tok, "call-1") == (a, long_b)


def test_flow_tokens_encode_primes_the_decode_cache_with_the_same_answer() -> None:
    a = Target("udp", "203.0.113.5", 12345)
    b = Target("tcp", "203.0.113.6", 5555, conn_id=7)
    tokens = FlowTokens(b"k" * 16)
    tok = tokens.encode(a, b, "call-1")
    assert (tok, "call-1") in tokens._decoded
    fresh = FlowTokens(b"k" * 16)  # same secret, nothing cached: decoded for real
    assert tokens.decode(tok, "call-1") == fresh.decode(tok, "call-1") == (a, b)
    assert tokens.decode(tok, "call-2") is None
