"""Dialog plumbing of the proxy: route-set preprocessing with flow tokens (RFC 3261 §16.4),
the message edits of §16.6/§16.7 that are not routing decisions (Max-Forwards, the loop hash,
CANCEL construction, challenge aggregation), and the bookkeeping of answered calls (the
`sip_calls_active` gauge and the tenant's channel lease).

The proxy is transaction-stateful, not dialog-stateful: an answered call is remembered only
by Call-ID (for the gauge and the lease) until a BYE passes through us; the route set lives in
the endpoints, and the flows of registered devices live in our Record-Route (flow tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from switch.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    SipURI,
    TelURI,
    parse_name_addr,
)
from switch.sip.target import Target

from .leases import ActiveCalls
from .targets import FlowTokens

__all__ = [
    "ActiveCalls",
    "Routed",
    "aggregate_challenges",
    "caller_identity",
    "cancel_for",
    "decrement_max_forwards",
    "loop_hash",
    "outcome_label",
    "preprocess_routes",
]


# --------------------------------------------------------------------------- route set
@dataclass(frozen=True, slots=True)
class Routed:
    """What route preprocessing found: `flow` is where an in-dialog request must go when our
    Record-Route carried a flow token (None: follow Route/Request-URI); `token` says that a
    valid token of ours was present (the request belongs to a dialog we record-routed)."""

    flow: Target | None = None
    token: bool = False


def same_flow(a: Target, b: Target) -> bool:
    return a.host == b.host and a.port == b.port and a.transport == b.transport


def preprocess_routes(
    req: Request,
    source: Target,
    is_ours: Callable[[SipURI], bool],
    flows: FlowTokens,
) -> Routed:
    """§16.4: undo a strict router's rewrite (our Record-Route value in the Request-URI:
    the real Request-URI is the last Route value), then remove every top Route value that
    is ours (two with RFC 5658 double Record-Route)."""
    h = req.headers
    user: str | None = None
    uri = req.parsed_uri
    if isinstance(uri, SipURI) and "Route" in h and is_ours(uri):
        user = uri.user
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
        if not (isinstance(first, SipURI) and is_ours(first)):
            break
        user = user or first.user
        h.pop_first_value("Route")
    if user is None:
        return Routed()
    decoded = flows.decode(user, req.call_id)
    if decoded is None:
        return Routed()
    return Routed(_other_end(decoded, source), True)


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


# --------------------------------------------------------------------------- message edits
def decrement_max_forwards(req: Request) -> None:
    """§16.6 step 3 (70 when absent)."""
    h = req.headers
    mf = h.get("Max-Forwards")
    if mf is None:
        h.set("Max-Forwards", "70")
        return
    try:
        value = int(mf)
    except ValueError as exc:
        raise ParseError("bad Max-Forwards") from exc
    h.set("Max-Forwards", str(max(0, value - 1)))


def loop_hash(request: Request) -> str:
    """§16.6 step 8 / RFC 5393: a hash of what stays the same when the same request comes
    back to us (a loop) and changes when it legitimately spirals (new Request-URI or Route).
    Our Via branches end in "." + this hash; the top Via is left out on purpose (it is the
    previous hop's, which differs on every turn of a loop)."""
    h = request.headers
    text = "\n".join(
        (
            request.uri,
            request.from_tag or "",
            request.to_tag or "",
            request.call_id,
            str(request.cseq.seq),
            # the Route fields as received (not split: same request, same text)
            ",".join(h.get_fields("Route")),
            h.get("Proxy-Require") or "",
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def cancel_for(request: Request) -> Request:
    """The CANCEL for a request we sent (§9.1): same Request-URI, Call-ID, From, To, CSeq
    number, the single Via (same branch) and the same Route."""
    h = request.headers
    fields = [("Via", h.get_all("Via")[0])]
    fields += [("Route", r) for r in h.get_all("Route")]
    fields += [
        ("Max-Forwards", "70"),
        ("From", h.get("From") or ""),
        ("To", h.get("To") or ""),
        ("Call-ID", h.get("Call-ID") or ""),
        ("CSeq", f"{request.cseq.seq} CANCEL"),
    ]
    return Request(method="CANCEL", uri=request.uri, headers=Headers(fields))


def aggregate_challenges(reply: Response, finals: Iterable[tuple[int, Response | None]]) -> None:
    """§16.7 step 7: every WWW-/Proxy-Authenticate of every 401/407 goes into the reply."""
    seen: set[str] = set()
    collected: list[tuple[str, str]] = []
    for status, resp in finals:
        if status not in (401, 407) or resp is None:
            continue
        for name in ("WWW-Authenticate", "Proxy-Authenticate"):
            for value in resp.headers.get_fields(name):
                if value not in seen:
                    seen.add(value)
                    collected.append((name, value))
    reply.headers.remove("WWW-Authenticate")
    reply.headers.remove("Proxy-Authenticate")
    for name, value in collected:
        reply.headers.add(name, value)


def caller_identity(req: Request) -> tuple[str | None, str | None]:
    """The caller's number and display name as the carrier presents them (PAI, else From)."""
    na = req.headers.name_addr("P-Asserted-Identity") or req.headers.name_addr("From")
    if na is None:
        return None, None
    uri = na.uri
    number = (
        uri.number if isinstance(uri, TelURI) else uri.user if isinstance(uri, SipURI) else None
    )
    return number, na.display


# --------------------------------------------------------------------------- answered calls
def outcome_label(status: int, cancelled: bool) -> str:
    """The `outcome` label of sip_calls_total for a call that ended without a 2xx."""
    if status == 487 or cancelled:
        return "cancelled"
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if 500 <= status < 600:
        return "failed"
    return "rejected"
