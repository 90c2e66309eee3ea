"""SIP message model (RFC 3261 §7): requests, responses, header fields and the parsed forms
of the header values the core needs (Via, name-addr, CSeq, URIs).

CONTRACT — other modules (transactions, digest, proxy, registrar) are written against the
names and signatures in this file. Implementations may change; the API may only grow.

Design:
- Messages are mutable containers (a proxy copies and edits them); parsed header *values*
  (Via, NameAddr, SipURI, CSeq) are frozen dataclasses.
- `Headers` keeps fields in wire order with canonical names ("v" -> "Via",
  "call-id" -> "Call-ID"). A field value is stored unfolded and trimmed. A header line with
  several comma-separated values is kept as one field; `get_all()` splits list headers
  correctly (commas inside quotes and <> do not split).
- Parsed forms are cached per header name inside `Headers` and dropped when that name is
  changed, so the hot path parses each Via/CSeq at most once.
- Everything here is sans-IO: no asyncio, no sockets, no clock.

The implementation is split: `_grammar` (ParseError, escaping, parameters), `uri` (SipURI,
TelURI, AbsoluteURI), `values` (Via, NameAddr, CSeq and their parsers), `headers` (canonical
names, Headers). Everything is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._grammar import ParseError
from .headers import Headers, canonical_name
from .uri import URI, AbsoluteURI, SipURI, TelURI, parse_any_uri, parse_uri
from .values import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via, split_header_values

__all__ = [
    "REASON_PHRASES",
    "URI",
    "AbsoluteURI",
    "CSeq",
    "Headers",
    "Message",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "SipURI",
    "TelURI",
    "Via",
    "canonical_name",
    "make_response",
    "parse_any_uri",
    "parse_cseq",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "split_header_values",
]


# --------------------------------------------------------------------------- messages
class _Shortcuts:
    """Accessors shared by Request and Response (they read `self.headers`)."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise ParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        return self.headers.cseq()

    @property
    def top_via(self) -> Via:
        vias = self.headers.vias()
        if not vias:
            raise ParseError("missing Via")
        return vias[0]

    @property
    def from_tag(self) -> str | None:
        return self._required("From").tag

    @property
    def to_tag(self) -> str | None:
        return self._required("To").tag

    def _required(self, name: str) -> NameAddr:
        value = self.headers.name_addr(name)
        if value is None:
            raise ParseError(f"missing {name}")
        return value


def _serialise(start: str, headers: Headers, body: bytes) -> bytes:
    # Content-Length is written where the first one was (or last), always from len(body).
    lines = [start]
    length = f"Content-Length: {len(body)}"
    placed = False
    for name, value in headers._fields:
        if name == "Content-Length":
            if not placed:
                lines.append(length)
                placed = True
        else:
            lines.append(f"{name}: {value}")
    if not placed:
        lines.append(length)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


@dataclass(slots=True, kw_only=True)
class Request(_Shortcuts):
    method: str
    uri: str  # the Request-URI as text; `parsed_uri` gives the parsed form
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    _uri_cache: tuple[str, URI] | None = field(default=None, repr=False, compare=False)

    @property
    def parsed_uri(self) -> URI:
        cached = self._uri_cache
        if cached is not None and cached[0] == self.uri:
            return cached[1]
        parsed = parse_uri(self.uri)
        self._uri_cache = (self.uri, parsed)
        return parsed

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length is always (re)written from len(body)."""
        return _serialise(f"{self.method} {self.uri} {self.version}", self.headers, self.body)

    def copy(self) -> Request:
        return Request(
            method=self.method,
            uri=self.uri,
            headers=self.headers.copy(),
            body=self.body,
            version=self.version,
            _uri_cache=self._uri_cache,
        )


@dataclass(slots=True, kw_only=True)
class Response(_Shortcuts):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        start = f"{self.version} {self.status} {self.reason}"
        return _serialise(start, self.headers, self.body)

    def copy(self) -> Response:
        return Response(
            status=self.status,
            reason=self.reason,
            headers=self.headers.copy(),
            body=self.body,
            version=self.version,
        )


Message = Request | Response

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip

_CLASS_REASONS = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}
# Methods that create a dialog: their 1xx/2xx copy Record-Route (RFC 3261 §12.1.1).
_DIALOG_CREATING = frozenset(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"])
_COPIED_PARSED = ("Via", "From", "To", "CSeq")


def _default_reason(status: int) -> str:
    return REASON_PHRASES.get(status) or _CLASS_REASONS.get(status // 100, "Global Failure")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """Build a response to `request` per RFC 3261 §8.2.6: copy Via (all values, in order),
    From, To (adding `to_tag` when given and To has none), Call-ID, CSeq, and for 1xx/2xx
    of a dialog-creating request the Record-Route; default reason phrases by code.

    Record-Route is copied for 101-299 (a 100 Trying creates no dialog). Copied fields keep
    their wire text. Works on a ParseError's `partial` request too (only
    the headers present are copied), so that a 400 can be built for a malformed request.
    `status` must be 100-699 (ValueError otherwise)."""
    if not 100 <= status <= 699:
        raise ValueError(f"status out of range: {status}")
    src = request.headers._fields
    out: list[tuple[str, str]] = [(n, v) for n, v in src if n == "Via"]
    for name in ("From", "To", "Call-ID", "CSeq"):
        out.extend((n, v) for n, v in src if n == name)
    if to_tag is not None:
        out = [(n, _with_to_tag(v, to_tag)) if n == "To" else (n, v) for n, v in out]
    if 100 < status < 300 and request.method in _DIALOG_CREATING:  # 100 is hop-by-hop
        out.extend((n, v) for n, v in src if n == "Record-Route")
    response_headers = Headers._trusted(out)
    # The copied fields are the request's, so are their parsed forms (no re-parse of the
    # Vias to send the response; the To only when no tag was added to it).
    cache = request.headers._cache
    if cache:
        copied = response_headers._cache
        for name in _COPIED_PARSED:
            value = cache.get(name)
            if value is not None:
                copied[name] = value.copy() if isinstance(value, list) else value
        if to_tag is not None:
            copied.pop("To", None)
    for name, value in headers or ():
        response_headers.add(name, value)
    return Response(
        status=status,
        reason=_default_reason(status) if reason is None else reason,
        headers=response_headers,
        body=body,
    )


def _with_to_tag(value: str, tag: str) -> str:
    try:
        has_tag = parse_name_addr(value).tag is not None
    except ParseError:
        return value  # a malformed To is echoed as it came (the 400 case)
    return value if has_tag else f"{value};tag={tag}"
