"""Next-hop resolution and flow tokens."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest

from switch.proxy.targets import (
    FlowTokens,
    NodePaths,
    Peers,
    ResolveError,
    Resolver,
    plans_for,
    uri_hop,
    via_target,
)
from switch.sip.message import SipURI, parse_uri
from switch.sip.parser import parse_message
from switch.sip.target import Target
from switch.state.base import Binding


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


# ----------------------------------------------------------------- paths (several nodes)
def _binding(path: str | None, source: Target) -> Binding:
    return Binding(
        device_id="desk1", contact="sip:desk1@192.0.2.50:5070;transport=tcp", instance_id=None,
        expires_at=1e10, source=source, call_id="reg-1", cseq=1, node="node-a", path=path,
    )  # fmt: skip


def test_path_tokens_name_the_flow_for_the_contact_only() -> None:
    tokens = FlowTokens(b"k" * 16)
    flow = Target("tcp", "192.0.2.50", 40000, conn_id=12)
    contact = "sip:desk1@192.0.2.50:5070;transport=tcp"
    tok = tokens.encode_path(flow, contact)
    assert tokens.decode_path(tok, contact) == flow
    assert tokens.decode_path(tok, "sip:desk2@192.0.2.50:5070") is None  # another contact
    assert tokens.decode(tok, contact) is None  # not a dialog's token...
    dialog = tokens.encode(None, flow, "call-1")
    assert tokens.decode_path(dialog, "call-1") is None  # ...nor the other way round
    assert FlowTokens(b"x" * 16).decode_path(tok, contact) is None


def test_node_paths_name_the_local_udp_uri_and_the_flow() -> None:
    tokens = FlowTokens(b"k" * 16)
    flow = Target("tcp", "192.0.2.50", 40000, conn_id=12)
    paths = NodePaths(tokens, lambda t: SipURI(host="10.0.0.1", port=5161, params={"lr": None}))
    path = paths(flow, "sip:desk1@x")
    assert path is not None
    uri = sip(path)
    assert (uri.host, uri.port, "lr" in uri.params) == ("10.0.0.1", 5161, True)
    assert tokens.decode_path(uri.user, "sip:desk1@x") == flow
    named = NodePaths(tokens, lambda t: SipURI(host="sip.example.jp", port=5060))
    assert named(flow, "sip:desk1@x") is None  # another node must not resolve names per call


@pytest.mark.parametrize(
    ("flow", "contact", "has_path"),
    [
        (Target("udp", "192.0.2.50", 5070), "sip:d@192.0.2.50:5070", False),  # reachable
        (Target("udp", "192.0.2.50", 5060), "sip:d@192.0.2.50", False),
        (Target("udp", "203.0.113.9", 40123), "sip:d@192.168.1.20:5060", True),  # NAT
        (Target("udp", "192.0.2.50", 40123), "sip:d@192.0.2.50:5060", True),  # port mapped
        (Target("udp", "192.0.2.50", 5070), "sip:d@192.0.2.50:5070;transport=tcp", True),
        (Target("tcp", "192.0.2.50", 40000, 3), "sip:d@192.0.2.50:40000;transport=tcp", True),
        (Target("tls", "192.0.2.50", 40000, 3), "sips:d@192.0.2.50:5061", True),
        (Target("udp", "192.0.2.50", 5070), "sip:d@phone.example:5070", True),  # a name
    ],
)  # fmt: skip
def test_only_flows_other_nodes_cannot_reach_get_a_path(
    flow: Target, contact: str, has_path: bool
) -> None:
    paths = NodePaths(FlowTokens(b"k" * 16), lambda t: SipURI(host="10.0.0.1", port=5161))
    assert (paths(flow, contact) is not None) is has_path


def test_plans_go_through_the_path_of_a_binding_another_node_holds() -> None:
    source = Target("tcp", "192.0.2.50", 40000)
    path = "sip:f-abc@10.0.0.2:5161;lr"
    plan, direct = plans_for(
        ("desk1",), {"desk1": [_binding(path, source), _binding(None, source)]}
    )
    hop = Target("udp", "10.0.0.2", 5161)
    assert (plan.target, plan.flow, plan.route) == (hop, hop, f"<{path}>")
    assert plan.uri == "sip:desk1@192.0.2.50:5070;transport=tcp" and plan.device_id == "desk1"
    assert (direct.target, direct.flow, direct.route) == (source, source, None)
    # a path that is not an IP literal SIP URI is not followed: the flow's address is tried
    (bad,) = plans_for(("desk1",), {"desk1": [_binding("sip:f-x@node-a.example;lr", source)]})
    assert (bad.target, bad.route) == (source, None)


def test_peers_say_which_processes_are_alive_and_paths_to_dead_ones_are_not_followed() -> None:
    peers = Peers()
    assert peers.alive("10.0.0.2", 5161)  # nothing announced yet: everyone counts as alive
    peers.update(["10.0.0.2:5161,10.0.0.2:5162", "[2001:db8::1]:5060"])
    assert peers.alive("10.0.0.2", 5161) and peers.alive("10.0.0.2", 5162)
    assert peers.alive("2001:db8::1", 5060) and peers.alive("[2001:db8::1]", 5060)
    assert not peers.alive("10.0.0.3", 5161)
    assert peers.gone(sip("sip:f-x@10.0.0.3:5161;lr"))
    assert not peers.gone(sip("sip:f-x@10.0.0.2:5162;transport=tcp;lr"))
    source = Target("tcp", "192.0.2.50", 40000)
    binding = _binding("sip:f-abc@10.0.0.2:5161;lr", source)
    (through,) = plans_for(("desk1",), {"desk1": [binding]}, peers)
    assert through.route is not None and through.target == Target("udp", "10.0.0.2", 5161)
    peers.update(["10.0.0.9:5161"])  # the holder stopped announcing itself
    (direct,) = plans_for(("desk1",), {"desk1": [binding]}, peers)
    assert (direct.target, direct.route) == (source, None)
