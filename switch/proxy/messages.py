"""Message checks and edits of the proxy that are not routing decisions: the request checks
of §16.3, Max-Forwards and the loop hash (§16.6), CANCEL construction (§9.1), challenge
aggregation (§16.7), our own replies, and the headers put on calls towards devices
(P-Called-Party-ID, our P-Asserted-Identity, the number's label). Pure functions over
`switch.sip.message` objects; what goes towards the carrier is in trunk.py and diversion.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Iterable

from provisioning.model import Device
from switch.sip.message import (
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    SipURI,
    TelURI,
    make_response,
)

__all__ = [
    "ALLOW",
    "Refusal",
    "aggregate_challenges",
    "called_party",
    "cancel_for",
    "check_request",
    "decrement_max_forwards",
    "device_identity",
    "local_answer",
    "loop_hash",
    "prefix_display",
    "reply_to",
]

# (status, reason, headers) of a reply the proxy sends instead of forwarding
Refusal = tuple[int, str | None, list[tuple[str, str]]]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE"
_KNOWN_METHODS = frozenset(m.strip() for m in ALLOW.split(",")) | {"REGISTER", "PUBLISH"}


# --------------------------------------------------------------------------- §16.3 checks
def check_request(
    request: Request, loop: str, is_local: Callable[[str, int | None], bool]
) -> Refusal | None:
    """§16.3 steps 3-5: Max-Forwards 0 -> 483; one of our Via branches ending in this
    request's loop hash (`loop`, see loop_hash) -> 482; Proxy-Require -> 420 with
    Unsupported (we support no option tags). None when the request may go on."""
    mf = request.headers.get("Max-Forwards")
    if mf is not None and mf.strip() == "0":
        return 483, None, []
    lh = "." + loop
    for via in request.headers.vias():
        b = via.branch
        if b and b.endswith(lh) and is_local(via.host, via.port):
            return 482, None, []
    required = request.headers.get_all("Proxy-Require")
    if required:
        return 420, None, [("Unsupported", ", ".join(required))]
    return None


def local_answer(method: str) -> Refusal:
    """The answer to a request addressed to the switch itself (no user part): OPTIONS is
    answered 200 with what we allow (no Supported header: the proxy itself implements no
    option tags), any other method we know 405, an unknown one 501."""
    if method == "OPTIONS":
        return 200, None, [("Allow", ALLOW), ("Accept", "application/sdp")]
    if method in _KNOWN_METHODS:
        return 405, None, [("Allow", "OPTIONS")]
    return 501, None, []


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


# --------------------------------------------------------------------------- §9.1, §16.7
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


def reply_to(
    request: Request,
    status: int,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Our own response to a request (a To tag on anything above 100: §8.2.6.2)."""
    tag = secrets.token_hex(4) if status > 100 else None
    resp = make_response(request, status, reason, to_tag=tag)
    for name, value in headers:
        resp.headers.add(name, value)
    return resp


# --------------------------------------------------------------------------- towards devices
def called_party(headers: Headers, number: str, realm: str) -> None:
    """RFC 3455 P-Called-Party-ID: which of the tenant's numbers was dialled (service rule:
    a device can tell which number a call came in on). Replaces any the caller sent."""
    headers.set("P-Called-Party-ID", f"<sip:{number}@{realm};user=phone>")


def device_identity(headers: Headers, device: Device, realm: str) -> None:
    """Our own P-Asserted-Identity for a call between the tenant's devices (RFC 3325: what
    the device sent was removed at the trust boundary)."""
    na = NameAddr(display=device.display_name, uri=SipURI(user=device.username, host=realm))
    headers.set("P-Asserted-Identity", str(na))


def prefix_display(headers: Headers, prefix: str) -> None:
    """Prepend the number's label to the caller's display name in From (the tenant's
    "show the number's label" setting). The From tag is kept."""
    na = headers.name_addr("From")
    if na is None:
        return
    uri = na.uri
    shown = na.display or (
        uri.user if isinstance(uri, SipURI) else uri.number if isinstance(uri, TelURI) else None
    )
    display = f"{prefix} {shown}" if shown else prefix
    headers.set("From", str(dataclasses.replace(na, display=display)))
