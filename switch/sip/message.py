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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

__all__ = [
    "ParseError",
    "Headers",
    "Request",
    "Response",
    "Message",
    "SipURI",
    "TelURI",
    "URI",
    "Via",
    "NameAddr",
    "CSeq",
    "canonical_name",
    "split_header_values",
]


class ParseError(Exception):
    """Malformed input. `status_hint` is the SIP status a server should answer with:
    400 (syntax), 413 (message too large), 416 (unsupported URI scheme), 505 (version),
    513 (message too large for UDP, outbound) … The parser raises only this exception."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


# --------------------------------------------------------------------------- URIs
@dataclass(frozen=True, slots=True, kw_only=True)
class SipURI:
    """sip: / sips: URI (RFC 3261 §19.1). `user` and `password` are stored *unescaped*;
    `host` is lower-cased, IPv6 references keep their brackets ("[2001:db8::1]").
    `params` keys are lower-cased; a flag parameter (";lr") maps to None."""

    scheme: str = "sip"  # "sip" or "sips"
    user: str | None = None
    password: str | None = None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # serialise with escaping as needed
        raise NotImplementedError

    def with_(self, **changes: object) -> SipURI:
        """A copy with some fields replaced (dataclasses.replace)."""
        raise NotImplementedError

    @property
    def host_port(self) -> tuple[str, int | None]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class TelURI:
    """tel: URI (RFC 3966): `number` without visual separators; `params` lower-cased keys."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        raise NotImplementedError


URI = SipURI | TelURI


def parse_uri(text: str) -> URI:
    """Parse a sip/sips/tel URI. Unknown schemes raise ParseError(status_hint=416);
    syntax errors raise ParseError(400)."""
    raise NotImplementedError


# --------------------------------------------------------------------------- header values
@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value (RFC 3261 §20.42): "SIP/2.0/UDP host:port;branch=…;rport"."""

    transport: str  # upper-case: UDP, TCP, TLS, SCTP, WS, WSS …
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError

    def with_params(self, **params: str | None) -> Via:
        """Copy with params added/replaced (e.g. received=…, rport=…)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """name-addr or addr-spec (From, To, Contact, Route, Record-Route, P-Asserted-Identity …).
    `uri` is the parsed URI; `params` are the header parameters after the URI (e.g. tag,
    expires, q, +sip.instance) with lower-cased keys. `display` is unquoted (None if absent).
    A Contact of "*" is represented by `NameAddr(uri=None, wildcard=True)`."""

    display: str | None = None
    uri: URI | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        raise NotImplementedError

    def __str__(self) -> str:  # always serialises with <> (name-addr form)
        raise NotImplementedError

    def with_params(self, **params: str | None) -> NameAddr:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    seq: int  # 0 <= seq < 2**31 (RFC 3261 §8.1.1.5); larger is a ParseError(400)
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_via(value: str) -> list[Via]:
    """All Via values in one field value (comma-separated)."""
    raise NotImplementedError


def parse_name_addr(value: str) -> NameAddr:
    """One name-addr / addr-spec value (no comma splitting)."""
    raise NotImplementedError


def parse_cseq(value: str) -> CSeq:
    raise NotImplementedError


# --------------------------------------------------------------------------- headers
def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: compact forms expanded ("v" -> "Via"),
    well-known names in their RFC spelling ("call-id" -> "Call-ID", "cseq" -> "CSeq",
    "www-authenticate" -> "WWW-Authenticate"), others title-cased by '-' parts."""
    raise NotImplementedError


def split_header_values(value: str) -> list[str]:
    """Split a list header's field value at top-level commas (not inside "…" or <…>),
    trimming each part."""
    raise NotImplementedError


class Headers:
    """Ordered header fields. Names are canonical; lookups are case-insensitive and accept
    compact forms. Values are `str`."""

    __slots__ = ("_fields", "_cache")

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        raise NotImplementedError

    def get(self, name: str, default: str | None = None) -> str | None:
        """First field value with this name (the raw field, not split)."""
        raise NotImplementedError

    def get_all(self, name: str) -> list[str]:
        """Every value with this name, in order: list headers (Via, Route, Record-Route,
        Contact, Allow, Supported, Require, …) are comma-split; others are one value per
        field (WWW-Authenticate, Authorization, Date, … are never split)."""
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (appended where the first one was, or at
        the end)."""
        raise NotImplementedError

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        raise NotImplementedError

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of that name (or at the top): Via,
        Record-Route."""
        raise NotImplementedError

    def remove(self, name: str) -> int:
        """Remove every field of this name; return how many."""
        raise NotImplementedError

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first *value* of a list header (the top Via, the first
        Route), leaving the other values of that field in place."""
        raise NotImplementedError

    def copy(self) -> Headers:
        raise NotImplementedError

    # Parsed, cached views (the cache entry for a name is dropped when that name changes).
    def vias(self) -> list[Via]:
        raise NotImplementedError

    def cseq(self) -> CSeq:
        raise NotImplementedError

    def name_addr(self, name: str) -> NameAddr | None:
        """From/To/… parsed (first value), None if absent."""
        raise NotImplementedError

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Contact/Route/Record-Route/Path … every value parsed."""
        raise NotImplementedError


# --------------------------------------------------------------------------- messages
@dataclass(slots=True, kw_only=True)
class Request:
    method: str
    uri: str  # the Request-URI as text; `parsed_uri` gives the parsed form
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def parsed_uri(self) -> URI:
        raise NotImplementedError

    # Shortcuts (raise ParseError(400) if the header is missing or malformed).
    @property
    def call_id(self) -> str:
        raise NotImplementedError

    @property
    def cseq(self) -> CSeq:
        raise NotImplementedError

    @property
    def top_via(self) -> Via:
        raise NotImplementedError

    @property
    def from_tag(self) -> str | None:
        raise NotImplementedError

    @property
    def to_tag(self) -> str | None:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length is always (re)written from len(body)."""
        raise NotImplementedError

    def copy(self) -> Request:
        raise NotImplementedError


@dataclass(slots=True, kw_only=True)
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def call_id(self) -> str:
        raise NotImplementedError

    @property
    def cseq(self) -> CSeq:
        raise NotImplementedError

    @property
    def top_via(self) -> Via:
        raise NotImplementedError

    @property
    def from_tag(self) -> str | None:
        raise NotImplementedError

    @property
    def to_tag(self) -> str | None:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def copy(self) -> Response:
        raise NotImplementedError


Message = Request | Response


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
    of a dialog-creating request the Record-Route; default reason phrases by code."""
    raise NotImplementedError
