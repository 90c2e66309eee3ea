"""The route set seen from the proxy (RFC 3261 §16.4, §16.6 steps 6-7, §16.12): route
preprocessing with flow tokens, and the next hop of a request.

The proxy is transaction-stateful, not dialog-stateful: the route set lives in the endpoints
(our Record-Route, which every request of a dialog we record-routed carries back as a Route),
and the flows of registered devices live in the user part of that Record-Route (a flow token,
targets.FlowTokens). `preprocess_routes` says what the received route set tells about a
request: whether it carried a Route of ours at all, whether one held a valid flow token for
the request's Call-ID, and the flow it names. The proxy's rules for in-dialog requests
(proxy.py) are built on these three facts.

Several nodes sharing the flow secret (derived from `[auth] nonce_secret`) read each other's
tokens, which adds two facts: `path`, our Route carried a path token (targets.NodePaths: an
initial request another node routed to a device whose flow we hold), and `peer`, no Route of
ours but the first one is another node's with a valid token of this dialog (an in-dialog
request that reached us instead of that node: we pass it on to it). When that node is known
dead (`stand_in`: it stopped announcing itself, state/base.py, Processes), its Route is
treated as ours instead: popped, and its token read to deliver the request ourselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switch.sip.message import Headers, ParseError, Request, SipURI, TelURI, parse_name_addr
from switch.sip.target import Target

from .targets import FlowTokens, ResolveError

__all__ = ["Routed", "next_hop_uri", "preprocess_routes", "route_uri", "same_flow"]


@dataclass(frozen=True, slots=True)
class Routed:
    """What route preprocessing found. `ours`: a Route value of ours was present (we are in
    the request's route set). `token`: one of them carried a valid flow token of this
    Call-ID (the request belongs to a dialog we record-routed). `flow`: where the request
    must go when the token named the other end's flow (None: follow Route/Request-URI).
    `path`, `peer`: see the module docstring."""

    flow: Target | None = None
    token: bool = False
    ours: bool = False
    path: bool = False
    peer: bool = False


_NOT_OURS = Routed()
_OURS_NO_TOKEN = Routed(ours=True)
_PEER = Routed(peer=True)


def same_flow(a: Target, b: Target) -> bool:
    return a.host == b.host and a.port == b.port and a.transport == b.transport


def preprocess_routes(
    req: Request,
    source: Target,
    is_ours: Callable[[SipURI], bool],
    flows: FlowTokens,
    stand_in: Callable[[SipURI], bool] | None = None,
) -> Routed:
    """§16.4: undo a strict router's rewrite (our Record-Route value in the Request-URI:
    the real Request-URI is the last Route value), then remove every top Route value that
    is ours (two with RFC 5658 double Record-Route). `stand_in`: is this URI (another
    node's, with a flow token) one of a process known dead, whose dialogs we take over as
    if the Route were ours (its token says where the request goes)?"""
    h = req.headers
    user: str | None = None
    ours = False
    uri = req.parsed_uri
    if isinstance(uri, SipURI) and "Route" in h and is_ours(uri):
        ours, user = True, uri.user
        routes = h.get_all("Route")
        h.remove("Route")
        for r in routes[:-1]:
            h.add("Route", r)
        req.uri = str(route_uri(routes[-1]))
    # Parse only as far as our own values go, and pop them one by one: the other Route
    # fields stay as they are (no remove-and-re-add of the whole route set).
    while True:
        value = _first_route(h)
        if value is None:
            break
        first = route_uri(value)
        if not (isinstance(first, SipURI) and (is_ours(first) or _taken_over(first, stand_in))):
            break
        ours, user = True, user or first.user
        h.pop_first_value("Route")
    if not ours:
        return _PEER if _peer_route(h, req.call_id, flows) else _NOT_OURS
    decoded = flows.decode(user, req.call_id) if user is not None else None
    if decoded is None:
        if user is not None and req.to_tag is None:
            flow = flows.decode_path(user, req.uri)
            if flow is not None:
                return Routed(flow, True, True, path=True)
        return _OURS_NO_TOKEN
    return Routed(_other_end(decoded, source), True, True)


def _taken_over(uri: SipURI, stand_in: Callable[[SipURI], bool] | None) -> bool:
    return (
        stand_in is not None
        and uri.user is not None
        and uri.user.startswith("f-")
        and stand_in(uri)
    )


def _peer_route(h: Headers, call_id: str, flows: FlowTokens) -> bool:
    """Is the first Route another node's Record-Route of this dialog (a valid token)?"""
    value = _first_route(h)
    if value is None or "@" not in value:  # cheap: tokens are user parts
        return False
    try:
        uri = route_uri(value)
    except ParseError:
        return False
    user = uri.user if isinstance(uri, SipURI) else None
    return user is not None and flows.decode(user, call_id) is not None


def _first_route(h: Headers) -> str | None:
    """The first Route value (the first field, split only when it holds several)."""
    value = h.get("Route")
    if value is None or ("," not in value and value.strip()):
        return value
    values = h.get_all("Route")  # several values in the field (or an empty field)
    return values[0] if values else None


def _other_end(flows: tuple[Target | None, Target | None], source: Target) -> Target | None:
    """The flow of the dialog end the request is *not* coming from. A request from neither
    (the carrier, a device whose NAT binding changed) goes towards the callee's flow, else
    the caller's; None means: route by Route/Request-URI."""
    a, b = flows
    if a is not None and same_flow(source, a):
        return b
    if b is not None and same_flow(source, b):
        return a
    # Same host, another port or connection (a TCP reconnect, a NAT rebinding).
    if a is not None and source.host == a.host and (b is None or b.host != a.host):
        return b
    if b is not None and source.host == b.host and (a is None or a.host != b.host):
        return a
    return b or a


def route_uri(value: str) -> SipURI | TelURI:
    na = parse_name_addr(value)
    if not isinstance(na.uri, SipURI | TelURI):
        raise ParseError("bad Route value")
    return na.uri


def next_hop_uri(req: Request) -> SipURI:
    """§16.6 steps 6-7: the first Route, else the Request-URI. A first Route without `lr`
    is a strict router: it becomes the Request-URI and the old one goes last (edited in
    `req`). ResolveError(416) when the next hop is not a SIP URI."""
    routes = req.headers.name_addrs("Route")
    if routes:
        uri = routes[0].uri
        if isinstance(uri, SipURI) and "lr" not in uri.params:
            values = req.headers.get_all("Route")
            req.headers.remove("Route")
            for r in values[1:]:
                req.headers.add("Route", r)
            req.headers.add("Route", f"<{req.uri}>")
            req.uri = str(uri)
    else:
        uri = req.parsed_uri
    if not isinstance(uri, SipURI):
        raise ResolveError("no SIP next hop", 416)
    return uri
