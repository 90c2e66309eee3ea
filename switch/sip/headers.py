"""Header fields (RFC 3261 §7.3, §20): canonical names and compact forms, which headers are
comma-separated lists, and the ordered `Headers` container with its per-name parse cache.

The parsed value types (Via, NameAddr, CSeq), their parsers and the comma splitting live in
`values.py`; `Headers` calls them and caches what they return.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from ._grammar import ParseError
from .values import (
    CSeq,
    NameAddr,
    Via,
    new_via,
    parse_cseq,
    parse_name_addr,
    parse_via,
    remember_own_via,
    remember_via,
    split_header_values,
    split_strict,
)

# The value types and parsers are re-exported for the code that imports them from here
# (outside switch/sip); new code imports them from switch.sip.values.
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


# What Headers.prepend_own_via builds without parsing: a plain token branch and host name.
_TOKEN_ONLY_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_HOST_ONLY_RE = re.compile(r"[A-Za-z0-9.-]+")


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
        via = new_via(transport, host.lower(), port, {"branch": branch})
        remember_own_via(value, via)  # the responses echo it: found, not parsed
        cached = self._cache.pop("Via", None)
        if isinstance(cached, list):
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
        remember_via(text, via)  # the forwarded request's responses echo it
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
        return [part for v in values for part in split_strict(v, name)]
