"""How messages find their transactions, and where a server transaction answers (sans-IO).

Matching
--------
- Responses to client transactions (§17.1.3): branch of the top Via + CSeq method (the
  layer keys its client transactions by (branch, method) directly).
- Requests to server transactions (§17.2.3, `server_key`): with a magic-cookie branch,
  (branch, sent-by, method), where ACK looks for the INVITE; without one (RFC 2543 peers),
  the Request-URI, From tag, Call-ID, CSeq number, method and top Via (To tag not compared:
  an ACK carries the tag of our response, and INVITE retransmissions carry none).
- CANCEL is a transaction of its own; the INVITE server transaction it targets has the same
  key with method INVITE (§9.2).

Where responses go
------------------
Server transactions answer to `response_target`, computed per §18.2.2 / RFC 3581: the same
connection for streams, the source address for UDP with `rport`, else source host + Via
sent-by port. The TU may overwrite it. A transport error names a target: `same_flow` says
which transactions it ends (by `conn_id` when the target has one, else transport/host/port).
"""

from __future__ import annotations

from typing import Any

from .message import Request
from .target import MAGIC_COOKIE, Target
from .values import Via

__all__ = ["response_target", "same_flow", "server_key"]


def response_target(source: Target, via: Via) -> Target:
    """Where responses go (§18.2.2, RFC 3581): streams reuse the connection the request came
    on; UDP goes to the source address with `rport`, else the source host and the Via
    sent-by port."""
    if source.transport != "udp" or "rport" in via.params:
        return source
    port = via.port or 5060
    return source if port == source.port else Target("udp", source.host, port)


def server_key(request: Request, via: Via, method: str) -> tuple[Any, ...]:
    """§17.2.3 matching key; `method` is INVITE for an ACK or a CANCEL's target."""
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, via.port, method)
    # RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number, top Via (+ method).
    via_id = (via.transport, via.host, via.port, branch)
    return (
        "2543",
        request.uri,
        request.from_tag,
        request.call_id,
        request.cseq.seq,
        method,
        via_id,
    )


def same_flow(a: Target, b: Target) -> bool:
    """Whether `a` is the flow a transport error for `b` reports (§17.1.4, §17.2.4)."""
    if b.conn_id is not None:
        return a.conn_id == b.conn_id
    return a.transport == b.transport and a.host == b.host and a.port == b.port
