"""Pure transport rules: what the transport does to a received request's Via, and where a
response goes. No asyncio, no sockets; the tables in tests/unit/transport pin them down.

RFC 3261 §18.2.1 / RFC 3581 §4 (receiving a request):
  * the top Via gets `received=<source IP>` when its sent-by host differs from the source
    IP; and whenever `rport` is present, `received` is added even if equal (RFC 3581 §4);
  * an empty `rport` is filled with the source port.

RFC 3261 §18.2.2 / RFC 3581 §4 (sending a response), from the top Via:
  * reliable transport: the connection the request came on while it is open; otherwise a
    new connection to `received` (else the sent-by host) and the sent-by port (default 5060,
    5061 for TLS);
  * UDP with `rport=<n>`: `received` (else sent-by host) and port n;
  * UDP otherwise: `received` (else sent-by host) and the sent-by port (default 5060).
  `maddr` (multicast) is not supported: the response goes to the unicast rules above.
"""

from __future__ import annotations

from switch.sip.message import ParseError, Request, Response, Via, make_response
from switch.sip.parser import partial_of
from switch.sip.target import Target

__all__ = [
    "DEFAULT_PORTS",
    "error_response",
    "fix_request_via",
    "response_fallback",
    "via_received",
]

_NEEDED = ("Via", "CSeq")  # what a client needs to match a response (§17.1.3)
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def via_received(via: Via, source: Target) -> Via:
    """The top Via as it must look after reception from `source` (unchanged if no rule
    applies, so callers can test identity)."""
    changes: dict[str, str | None] = {}
    has_rport = "rport" in via.params
    if has_rport or _bare(via.host).lower() != source.host.lower():
        changes["received"] = source.host
    if has_rport and via.params["rport"] is None:
        changes["rport"] = str(source.port)
    if not changes or all(via.params.get(k) == v for k, v in changes.items()):
        return via
    return via.with_params(**changes)


def fix_request_via(request: Request, source: Target) -> None:
    """Apply §18.2.1 / RFC 3581 to the request's top Via in place. Raises ParseError when
    the request has no parseable Via (the caller treats it as a bad request)."""
    via = request.top_via
    fixed = via_received(via, source)
    if fixed is not via:
        request.headers.replace_top_via(fixed)


def response_fallback(via: Via, transport: str) -> Target:
    """Where a response goes without a usable connection (§18.2.2 + RFC 3581), from the top
    Via of the response. `transport` is the lower-case transport the request came over."""
    host = via.params.get("received") or _bare(via.host)
    rport = via.params.get("rport")
    if transport == "udp" and rport:
        try:
            return Target(transport, host, int(rport))
        except ValueError:
            pass  # a malformed rport: fall back to sent-by
    return Target(transport, host, via.port or DEFAULT_PORTS.get(transport, 5060))


def error_response(error: ParseError) -> Response | None:
    """The stateless answer to an unparseable request (its status hint, the request's
    Via/From/To/Call-ID/CSeq copied as they came, those present), or None when there is
    nothing to answer: a response, an ACK, not even a request line, or no Via or CSeq. A
    client matches a response to its transaction by the top Via branch and the CSeq method
    (§17.1.3), so those two make the answer matchable; RFC 4475 §3.3.1 (a request missing
    Call-ID, From and To) asks for exactly this 400."""
    partial = partial_of(error)
    if not isinstance(partial, Request):
        return None
    if any(partial.headers.get(name) is None for name in _NEEDED):
        return None  # no route back, or nothing the peer could match the answer to
    if partial.method == "ACK":
        return None  # never answer an ACK (§17.2.1: ACK has no response)
    status = error.status_hint if 400 <= error.status_hint <= 699 else 400
    return make_response(partial, status, headers=[("Warning", f'399 - "{_ascii(error)}"')])


def _ascii(error: ParseError) -> str:
    text = str(error).replace('"', "'").replace("\\", "/")
    return "".join(c for c in text if 32 <= ord(c) < 127)[:120]
