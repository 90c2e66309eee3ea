"""Route preprocessing (RFC 3261 §16.4) and the loop hash, directly."""

from __future__ import annotations

import pytest

from switch.proxy.messages import loop_hash
from switch.proxy.routeset import preprocess_routes
from switch.proxy.targets import FlowTokens
from switch.sip.message import Headers, ParseError, Request, SipURI
from switch.sip.target import Target

US = "10.0.0.1"
SRC = Target("udp", "192.0.2.10", 5060)


def _ours(uri: SipURI) -> bool:
    return uri.host == US and (uri.user is None or uri.user.startswith("f-"))


def _req(routes: list[str], uri: str = "sip:bob@192.0.2.20") -> Request:
    fields = [("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx")]
    fields += [("Route", r) for r in routes]
    fields += [
        ("From", "<sip:a@x>;tag=1"),
        ("To", "<sip:b@y>;tag=2"),
        ("Call-ID", "c1"),
        ("CSeq", "1 BYE"),
    ]
    return Request(method="BYE", uri=uri, headers=Headers(fields))


@pytest.mark.parametrize(
    ("routes", "left"),
    [
        ([], []),
        ([f"<sip:{US};lr>"], []),
        ([f"<sip:{US};lr>", f"<sip:{US};transport=tcp;lr>"], []),
        ([f"<sip:{US};lr>, <sip:{US};transport=tcp;lr>, <sip:p@192.0.2.9;lr>"],
         ["<sip:p@192.0.2.9;lr>"]),
        ([f"<sip:{US};lr>", "<sip:192.0.2.9;lr>, <sip:192.0.2.8;lr>"],
         ["<sip:192.0.2.9;lr>, <sip:192.0.2.8;lr>"]),
        (["<sip:192.0.2.9;lr>", f"<sip:{US};lr>"], ["<sip:192.0.2.9;lr>", f"<sip:{US};lr>"]),
    ],
)  # fmt: skip
def test_only_our_top_route_values_are_removed(routes: list[str], left: list[str]) -> None:
    req = _req(routes)
    routed = preprocess_routes(req, SRC, _ours, FlowTokens(b"k" * 16))
    assert req.headers.get_fields("Route") == left
    assert routed.flow is None and not routed.token


def test_flow_token_in_our_route_names_the_other_end() -> None:
    tokens = FlowTokens(b"k" * 16)
    device = Target("udp", "203.0.113.5", 12345)
    tok = tokens.encode(device, None, "c1")
    req = _req([f"<sip:{tok}@{US};lr>", "<sip:192.0.2.9;lr>"])
    routed = preprocess_routes(req, device, _ours, tokens)
    assert routed.token and routed.flow is None  # from the device: towards the carrier
    assert req.headers.get_fields("Route") == ["<sip:192.0.2.9;lr>"]
    req = _req([f"<sip:{tok}@{US};lr>"])
    routed = preprocess_routes(req, SRC, _ours, tokens)
    assert routed.token and routed.flow == device


def test_bad_route_value_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        preprocess_routes(_req(["nonsense <>"]), SRC, _ours, FlowTokens())


def test_loop_hash_follows_route_and_uri() -> None:
    a = loop_hash(_req([f"<sip:{US};lr>"]))
    assert a == loop_hash(_req([f"<sip:{US};lr>"]))
    assert a != loop_hash(_req([f"<sip:{US};transport=tcp;lr>"]))
    assert a != loop_hash(_req([f"<sip:{US};lr>"], uri="sip:carol@192.0.2.20"))


# ----------------------------------------------------------------- several nodes
def test_another_nodes_route_with_a_token_of_this_dialog_is_a_peer_route() -> None:
    """A BYE that reached us with another node's Record-Route (same secret): passed on."""
    tokens = FlowTokens(b"k" * 16)
    tok = tokens.encode(None, Target("udp", "203.0.113.5", 12345), "c1")
    req = _req([f"<sip:{tok}@10.0.0.2:5161;lr>"])
    routed = preprocess_routes(req, SRC, _ours, tokens)
    assert routed.peer and not routed.ours and routed.flow is None
    assert req.headers.get_fields("Route") == [f"<sip:{tok}@10.0.0.2:5161;lr>"]  # kept
    other = tokens.encode(None, Target("udp", "203.0.113.5", 12345), "another-call")
    for route in (f"<sip:{other}@10.0.0.2;lr>", "<sip:f-forged@10.0.0.2;lr>",
                  "<sip:alice@10.0.0.2;lr>", "<sip:10.0.0.2;lr>"):  # fmt: skip
        routed = preprocess_routes(_req([route]), SRC, _ours, tokens)
        assert not routed.peer and not routed.ours, route
    stranger = FlowTokens(b"x" * 16)  # a node with another secret
    assert not preprocess_routes(_req([f"<sip:{tok}@10.0.0.2;lr>"]), SRC, _ours, stranger).peer


def _invite(route: str, uri: str) -> Request:
    fields = [
        ("Via", "SIP/2.0/UDP 10.0.0.2:5161;branch=z9hG4bKy"),
        ("Route", route),
        ("From", "<sip:0312345678@x>;tag=1"),
        ("To", "<sip:desk1@y>"),
        ("Call-ID", "c9"),
        ("CSeq", "1 INVITE"),
    ]
    return Request(method="INVITE", uri=uri, headers=Headers(fields))


def test_our_route_with_a_path_token_names_the_flow_of_an_initial_request() -> None:
    tokens = FlowTokens(b"k" * 16)
    flow = Target("tcp", "203.0.113.5", 40000, conn_id=3)
    contact = "sip:desk1@203.0.113.5:5070;transport=tcp"
    tok = tokens.encode_path(flow, contact)
    req = _invite(f"<sip:{tok}@{US};lr>", contact)
    routed = preprocess_routes(req, Target("udp", "10.0.0.2", 5161), _ours, tokens)
    assert routed.path and routed.ours and routed.flow == flow
    assert req.headers.get_fields("Route") == []
    # another Request-URI, or inside a dialog: not a path
    routed = preprocess_routes(_invite(f"<sip:{tok}@{US};lr>", "sip:x@y"), SRC, _ours, tokens)
    assert routed.ours and not routed.path and routed.flow is None
    bye = _req([f"<sip:{tok}@{US};lr>"], uri=contact)
    routed = preprocess_routes(bye, SRC, _ours, tokens)
    assert routed.ours and not routed.path and not routed.token


def test_a_dead_peers_route_is_taken_over_as_ours() -> None:
    """The node that record-routed the dialog is gone: its Routes (both of a double
    Record-Route) are popped here and its token says where the request goes."""
    tokens = FlowTokens(b"k" * 16)
    device = Target("udp", "203.0.113.5", 12345)
    tok = tokens.encode(None, device, "c1")
    routes = [f"<sip:{tok}@10.0.0.2:5161;lr>", f"<sip:{tok}@10.0.0.2:5162;transport=tcp;lr>"]
    req = _req(routes)
    routed = preprocess_routes(req, SRC, _ours, tokens, stand_in=lambda uri: True)
    assert routed.ours and routed.token and routed.flow == device and not routed.peer
    assert req.headers.get_fields("Route") == []
    # alive: passed on, not taken over; and a Route without a token is never taken over
    routed = preprocess_routes(_req(routes), SRC, _ours, tokens, stand_in=lambda uri: False)
    assert routed.peer and not routed.ours
    routed = preprocess_routes(_req(["<sip:10.0.0.2;lr>"]), SRC, _ours, tokens, lambda u: True)
    assert not routed.ours and not routed.peer
