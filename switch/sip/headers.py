"""Header fields (RFC 3261 §7.3, §20): canonical names and compact forms, list splitting, the
parsed value types the core needs (Via, NameAddr, CSeq) and the ordered `Headers` container
with its per-name parse cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from ._grammar import (
    QUOTED,
    TOKEN,
    Memo,
    ParseError,
    fast_constructor,
    parse_params,
    quote_string,
    unquote_string,
)
from .uri import HOST_RE, URI, AbsoluteURI, format_host_port, parse_any_uri

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "parse_cseq",
    "parse_name_addr",
    "parse_via",
    "split_header_values",
]


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# --------------------------------------------------------------------------- Via
@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value (RFC 3261 §20.42): "SIP/2.0/UDP host:port;branch=…;rport"."""

    transport: str  # upper-case: UDP, TCP, TLS, SCTP, WS, WSS …
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        sent_by = format_host_port(self.host, self.port)
        return f"SIP/2.0/{self.transport} {sent_by}{_format_params(self.params)}"

    def with_params(self, **params: str | None) -> Via:
        """Copy with params added/replaced (e.g. received=…, rport=…)."""
        # Not dataclasses.replace: this runs for every request received (§18.2.1 fix-up).
        return _new_via(self.transport, self.host, self.port, {**self.params, **params})


_new_via = fast_constructor(Via, ("transport", "host", "port", "params"))
_VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({TOKEN})[ \t]+"
    rf"(\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]|{HOST_RE.pattern})(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
    r"[ \t]*(;.*)?",
    re.IGNORECASE | re.DOTALL,
)


def _parse_one_via(value: str) -> Via:
    m = _VIA_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"bad Via {value!r}")
    transport, host, port, params = m.groups()
    port_num = int(port) if port is not None else None
    if port_num is not None and port_num > 65535:
        raise ParseError(f"Via: bad port {port!r}")
    return _new_via(
        transport.upper(), host.lower(), port_num, parse_params(params, "Via") if params else {}
    )


_via_memo: Memo[str, list[Via]] = Memo()
# What Headers.prepend_own_via builds without parsing: a plain token branch and host name.
_TOKEN_ONLY_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_HOST_ONLY_RE = re.compile(r"[A-Za-z0-9.-]+")


def parse_via(value: str) -> list[Via]:
    """All Via values in one field value (comma-separated). Memoised by text (the list
    returned is the caller's own)."""
    vias = _via_memo.get(value)
    if vias is None:
        vias = [_parse_one_via(v) for v in _split_strict(value, "Via")]
        _via_memo.put(value, vias)
    return vias.copy()


# --------------------------------------------------------------------------- NameAddr
@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """name-addr or addr-spec (From, To, Contact, Route, Record-Route, P-Asserted-Identity …).
    `uri` is the parsed URI; `params` are the header parameters after the URI (e.g. tag,
    expires, q, +sip.instance) with lower-cased keys. `display` is unquoted (None if absent).
    A Contact of "*" is represented by `NameAddr(uri=None, wildcard=True)`.

    `uri` may also be an `AbsoluteURI` (a scheme other than sip/sips/tel, legal outside the
    Request-URI)."""

    display: str | None = None
    uri: URI | AbsoluteURI | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:  # always serialises with <> (name-addr form)
        if self.wildcard:
            return "*"
        display = "" if self.display is None else quote_string(self.display) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"

    def with_params(self, **params: str | None) -> NameAddr:
        return _new_name_addr(self.display, self.uri, {**self.params, **params}, self.wildcard)


_new_name_addr = fast_constructor(NameAddr, ("display", "uri", "params", "wildcard"))
_QUOTED_RE = re.compile(QUOTED)
_DISPLAY_TOKENS_RE = re.compile(rf"{TOKEN}(?:[ \t]+{TOKEN})*")
_LWS = " \t"


_name_addr_memo: Memo[str, NameAddr] = Memo()


def parse_name_addr(value: str) -> NameAddr:
    """One name-addr / addr-spec value (no comma splitting). Memoised by text."""
    parsed = _name_addr_memo.get(value)
    if parsed is None:
        parsed = _parse_name_addr(value)
        _name_addr_memo.put(value, parsed)
    return parsed


def _parse_name_addr(value: str) -> NameAddr:
    text = value.strip(_LWS)
    if text == "*":
        return NameAddr(wildcard=True)
    display: str | None = None
    if text.startswith('"'):
        m = _QUOTED_RE.match(text)
        if m is None:
            raise ParseError(f"unterminated quoted string in {value!r}")
        display = unquote_string(m.group())
        rest = text[m.end() :].lstrip(_LWS)
        if not rest.startswith("<"):
            raise ParseError(f"quoted display name without <URI> in {value!r}")
        return _name_addr_form(display, rest, value)
    lt = text.find("<")
    semi = text.find(";")
    if lt >= 0 and (semi < 0 or lt < semi):
        # RFC 4475 §3.1.1.6 (lwsdisp): no LWS between the display token and "<" is tolerated.
        raw = text[:lt].rstrip(_LWS)
        if raw:
            if not _DISPLAY_TOKENS_RE.fullmatch(raw):
                raise ParseError(f"display name must be tokens or quoted: {raw!r}")
            display = raw
        return _name_addr_form(display, text[lt:], value)
    return _addr_spec_form(text, semi, value)


def _name_addr_form(display: str | None, rest: str, value: str) -> NameAddr:
    gt = rest.find(">")
    if gt < 0:
        raise ParseError(f"missing '>' in {value!r}")
    uri = parse_any_uri(rest[1:gt])
    tail = rest[gt + 1 :]
    params = parse_params(tail, "header") if tail.strip(_LWS) else {}
    return _new_name_addr(display, uri, params, False)


def _addr_spec_form(text: str, semi: int, value: str) -> NameAddr:
    # RFC 3261 §20.10: in addr-spec form the URI cannot hold ";", "," or "?"; parameters
    # after it belong to the header (RFC 4475 §3.3.12), and an escaped header is an error
    # (§3.1.2.13).
    raw = (text if semi < 0 else text[:semi]).rstrip(_LWS)
    if "?" in raw:
        raise ParseError(f"URI with headers must be in <> in {value!r}")
    uri = parse_any_uri(raw)
    params = parse_params(text[semi:], "header") if semi >= 0 else {}
    return _new_name_addr(None, uri, params, False)


# --------------------------------------------------------------------------- CSeq
@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    seq: int  # 0 <= seq < 2**31 (RFC 3261 §8.1.1.5); larger is a ParseError(400)
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_new_cseq = fast_constructor(CSeq, ("seq", "method"))
_CSEQ_RE = re.compile(rf"([0-9]{{1,20}})[ \t]+({TOKEN})")


_cseq_memo: Memo[str, CSeq] = Memo(1024)


def parse_cseq(value: str) -> CSeq:
    parsed = _cseq_memo.get(value)
    if parsed is None:
        parsed = _parse_cseq(value)
        _cseq_memo.put(value, parsed)
    return parsed


def _parse_cseq(value: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(value.strip(_LWS))
    if m is None:
        raise ParseError(f"bad CSeq {value!r}")
    seq = int(m.group(1))
    if seq >= 2**31:
        raise ParseError(f"CSeq number out of range: {seq}")
    return _new_cseq(seq, m.group(2))


# --------------------------------------------------------------------------- names
_COMPACT = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",  # RFC 4474
    "o": "Event",  # RFC 3265
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 3265
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 4474
}
_WELL_KNOWN = [
    "Call-ID", "CSeq", "WWW-Authenticate", "MIME-Version", "RAck", "RSeq", "SIP-ETag",
    "SIP-If-Match", "P-Asserted-Identity", "P-Preferred-Identity", "P-Charging-Vector",
    "Min-SE", "Session-Expires", "Record-Route", "Max-Forwards", "Content-Length",
    "Proxy-Authenticate", "Proxy-Authorization", "Authentication-Info", "Refer-To",
    "Referred-By", "Allow-Events", "Identity-Info", "Accept-Contact", "Reject-Contact",
    "Request-Disposition", "Service-Route", "History-Info", "Security-Client",
    "Security-Server", "Security-Verify", "P-Access-Network-Info", "P-Called-Party-ID",
    "P-Associated-URI", "P-Visited-Network-ID", "Content-ID", "Alert-Info", "Call-Info",
]  # fmt: skip
_CANONICAL: dict[str, str] = {n.lower(): n for n in _WELL_KNOWN}
_CANONICAL.update(_COMPACT)


@lru_cache(maxsize=2048)
def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: compact forms expanded ("v" -> "Via"),
    well-known names in their RFC spelling ("call-id" -> "Call-ID", "cseq" -> "CSeq",
    "www-authenticate" -> "WWW-Authenticate"), others title-cased by '-' parts."""
    lower = name.lower()
    known = _CANONICAL.get(lower)
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in lower.split("-"))


# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1). Everything else is
# one value per field: the authentication headers in particular hold commas of their own.
LIST_HEADERS = frozenset(
    [
        "Via", "Route", "Record-Route", "Contact", "Path", "Service-Route", "Allow",
        "Supported", "Require", "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding",
        "Accept-Language", "Allow-Events", "Content-Encoding", "Content-Language",
        "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info", "Warning",
        "P-Asserted-Identity", "P-Preferred-Identity", "P-Associated-URI", "History-Info",
        "Reason", "Security-Client", "Security-Server", "Security-Verify", "Accept-Contact",
        "Reject-Contact", "Request-Disposition", "P-Visited-Network-ID",
    ]
)  # fmt: skip


def _split(value: str) -> list[str]:
    if "," not in value:
        return [value.strip(_LWS)]
    if '"' not in value and "<" not in value:
        return [part.strip(_LWS) for part in value.split(",")]
    parts: list[str] = []
    start = depth = 0
    in_quote = escaped = False
    for i, ch in enumerate(value):
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif ch == "," and not depth:
            parts.append(value[start:i].strip(_LWS))
            start = i + 1
    if in_quote:
        raise ParseError(f"unterminated quoted string in {value!r}")
    parts.append(value[start:].strip(_LWS))
    return parts


def _split_strict(value: str, what: str) -> list[str]:
    parts = _split(value)
    if "" in parts:
        raise ParseError(f"{what}: empty list element in {value!r}")
    return parts


def split_header_values(value: str) -> list[str]:
    """Split a list header's field value at top-level commas (not inside "…" or <…>),
    trimming each part. Empty elements are dropped; an unterminated quote is ParseError."""
    return [part for part in _split(value) if part]


# --------------------------------------------------------------------------- Headers
class Headers:
    """Ordered header fields. Names are canonical; lookups are case-insensitive and accept
    compact forms. Values are `str`.

    Mutators reject values holding CR or LF (ValueError): nothing may smuggle a header line
    through an edited value."""

    __slots__ = ("_cache", "_fields")

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = []
        self._cache: dict[str, object] = {}
        for name, value in fields or ():
            self.add(name, value)

    @classmethod
    def _trusted(cls, fields: list[tuple[str, str]]) -> Headers:
        """Adopt fields that are already canonical and clean (the parser's output)."""
        self = cls.__new__(cls)
        self._fields = fields
        self._cache = {}
        return self

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def get(self, name: str, default: str | None = None) -> str | None:
        """First field value with this name (the raw field, not split)."""
        name = canonical_name(name)
        for n, v in self._fields:
            if n == name:
                return v
        return default

    def get_fields(self, name: str) -> list[str]:
        """Every field value with this name, never split."""
        name = canonical_name(name)
        return [v for n, v in self._fields if n == name]

    def get_all(self, name: str) -> list[str]:
        """Every value with this name, in order: list headers (Via, Route, Record-Route,
        Contact, Allow, Supported, Require, …) are comma-split; others are one value per
        field (WWW-Authenticate, Authorization, Date, … are never split)."""
        name = canonical_name(name)
        values = [v for n, v in self._fields if n == name]
        if name not in LIST_HEADERS:
            return values
        return [part for v in values for part in split_header_values(v)]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = canonical_name(name)
        # A plain loop: any(<genexpr>) costs a generator per call (proxy: ~10 per call).
        for n, _ in self._fields:  # noqa: SIM110
            if n == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    @staticmethod
    def _check(value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in header value {value!r}")
        return value.strip(" \t")

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (appended where the first one was, or at
        the end)."""
        name, value = canonical_name(name), self._check(value)
        self._cache.pop(name, None)
        fields = self._fields
        first = -1
        for i, (n, _) in enumerate(fields):
            if n == name:
                if first >= 0:  # several: rebuild without the others
                    self._fields = [*fields[:first], (name, value)]
                    self._fields += [f for f in fields[first + 1 :] if f[0] != name]
                    return
                first = i
        if first < 0:
            fields.append((name, value))
        else:  # the usual case (Max-Forwards, a From rewrite): one field, replaced in place
            fields[first] = (name, value)

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        name = canonical_name(name)
        self._cache.pop(name, None)
        self._fields.append((name, self._check(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of that name (or at the top): Via,
        Record-Route."""
        name, value = canonical_name(name), self._check(value)
        self._prepend_cached(name, value)
        for i, (n, _) in enumerate(self._fields):
            if n == name:
                self._fields.insert(i, (name, value))
                return
        self._fields.insert(0, (name, value))

    def prepend_own_via(self, transport: str, host: str, port: int, branch: str) -> None:
        """Prepend the Via a proxy puts on a request it forwards,
        "SIP/2.0/<TRANSPORT> host:port;branch=<branch>", and keep the parsed Via list in step
        without parsing the new value back (it is built here from the same parts). An IPv6
        host or a branch that is not a plain token goes through `prepend` (parsed)."""
        transport = transport.upper()
        value = f"SIP/2.0/{transport} {host}:{port};branch={branch}"
        if ":" in host or not _TOKEN_ONLY_RE.fullmatch(branch) or not _HOST_ONLY_RE.fullmatch(host):
            self.prepend("Via", value)
            return
        cached = self._cache.pop("Via", None)
        if isinstance(cached, list):
            via = _new_via(transport, host.lower(), port, {"branch": branch})
            self._cache["Via"] = [via, *cached]
        fields = self._fields
        for i, (n, _) in enumerate(fields):
            if n == "Via":
                fields.insert(i, ("Via", value))
                return
        fields.insert(0, ("Via", value))

    def _prepend_cached(self, name: str, value: str) -> None:
        # A proxy prepends its Via to every request it forwards, and the transaction layer
        # reads the branch right after: parse only the new value, keep the rest.
        cached = self._cache.pop(name, None)
        if name == "Via" and isinstance(cached, list):
            try:  # noqa: SIM105 - suppress() would cost a context manager per call
                self._cache["Via"] = parse_via(value) + cached
            except ParseError:
                pass  # stays unparsed, as before: vias() reports it when asked

    def remove(self, name: str) -> int:
        """Remove every field of this name; return how many."""
        name = canonical_name(name)
        self._cache.pop(name, None)
        before = len(self._fields)
        self._fields = [(n, v) for n, v in self._fields if n != name]
        return before - len(self._fields)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first *value* of a list header (the top Via, the first
        Route), leaving the other values of that field in place."""
        name = canonical_name(name)
        for i, (n, v) in enumerate(self._fields):
            if n != name:
                continue
            values = split_header_values(v) if name in LIST_HEADERS else [v]
            if len(values) <= 1:
                del self._fields[i]
            else:
                self._fields[i] = (name, ", ".join(values[1:]))
            self._pop_cached(name)
            return values[0] if values else ""
        return None

    def replace_top_via(self, via: Via) -> None:
        """Replace the first Via value by `via` (the §18.2.1 received/rport fix-up) and keep
        the parsed Via list in step: the fields come out exactly as pop_first_value("Via")
        followed by prepend("Via", str(via)) would leave them. No Via at all: ParseError."""
        text = self._check(str(via))
        fields = self._fields
        for i, (n, v) in enumerate(fields):
            if n != "Via":
                continue
            values = split_header_values(v) if "," in v else [v]
            if len(values) <= 1:
                fields[i] = ("Via", text)
            else:
                fields[i] = ("Via", ", ".join(values[1:]))
                fields.insert(i, ("Via", text))
            cached = self._cache.get("Via")
            if isinstance(cached, list) and cached:
                self._cache["Via"] = [via, *cached[1:]]
            else:
                self._cache.pop("Via", None)
            return
        raise ParseError("missing Via")

    def _pop_cached(self, name: str) -> None:
        # Keep the parsed list in step instead of dropping it: a proxy pops the top Via of
        # every response it forwards, and re-parsing the rest would be wasted work.
        cached = self._cache.get(name)
        if isinstance(cached, list) and cached:
            self._cache[name] = cached[1:]
        else:
            self._cache.pop(name, None)

    def forget_parsed(self) -> None:
        """Drop the cached parsed forms (they are parsed again when asked for): for messages
        that are only kept to be resent, so that they hold no parsed objects. A new empty
        dict, not clear(): CPython does not track an empty new dict in the cyclic GC."""
        self._cache = {}

    def copy(self) -> Headers:
        new = Headers._trusted(list(self._fields))
        new._cache = dict(self._cache)  # parsed values are immutable: safe to share
        return new

    # Parsed, cached views (the cache entry for a name is dropped when that name changes).
    def vias(self) -> list[Via]:
        cached = self._cache.get("Via")
        if cached is None:
            cached = [via for n, v in self._fields if n == "Via" for via in parse_via(v)]
            self._cache["Via"] = cached
        return cached  # type: ignore[return-value]

    def cseq(self) -> CSeq:
        cached = self._cache.get("CSeq")
        if cached is None:
            value = self.get("CSeq")
            if value is None:
                raise ParseError("missing CSeq")
            cached = self._cache["CSeq"] = parse_cseq(value)
        return cached  # type: ignore[return-value]

    def name_addr(self, name: str) -> NameAddr | None:
        """From/To/… parsed (first value), None if absent."""
        values = self.name_addrs(name)
        return values[0] if values else None

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Contact/Route/Record-Route/Path … every value parsed."""
        name = canonical_name(name)
        cached = self._cache.get(name)
        if cached is None:
            cached = [parse_name_addr(v) for v in self._values_strict(name)]
            if name != "Via" and name != "CSeq":
                self._cache[name] = cached
        return cached  # type: ignore[return-value]

    def _values_strict(self, name: str) -> list[str]:
        values = [v for n, v in self._fields if n == name]
        if name not in LIST_HEADERS:
            return values
        return [part for v in values for part in _split_strict(v, name)]
