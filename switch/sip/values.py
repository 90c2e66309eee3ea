"""Header field values (RFC 3261 §7.3, §20, §25.1): the parsed value types the core needs
(Via, NameAddr, CSeq), their parsers, parameter formatting and the splitting of list header
values at top-level commas.

The values are frozen dataclasses: a message caches them per header name (see `Headers` in
`headers.py`) and copies of a message share them. The parsers are memoised by value text (the
same From, To, Via and CSeq text recurs on every message of a call); only successful parses are
remembered, so malformed input is rejected every time. Every error is a ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from ._grammar import (
    QUOTED,
    SIMPLE_PARAMS_RE,
    TOKEN,
    TOKEN_RE,
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
    "NameAddr",
    "Via",
    "format_params",
    "new_via",
    "parse_cseq",
    "parse_name_addr",
    "parse_via",
    "remember_own_via",
    "remember_via",
    "split_header_values",
    "split_strict",
]


_LWS = " \t"  # the linear white space left around values and list elements


def format_params(params: dict[str, str | None]) -> str:
    """ ";name=value;flag" for header parameters (values written as stored: quotes kept)."""
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
        return f"SIP/2.0/{self.transport} {sent_by}{format_params(self.params)}"

    def with_params(self, **params: str | None) -> Via:
        """Copy with params added/replaced (e.g. received=…, rport=…)."""
        # Not dataclasses.replace: this runs for every request received (§18.2.1 fix-up).
        return new_via(self.transport, self.host, self.port, {**self.params, **params})


# Positional Via(transport, host, port, params), skipping the keyword __init__: the hot path
# builds one per forwarded request (Headers.prepend_own_via, Via.with_params).
new_via = fast_constructor(Via, ("transport", "host", "port", "params"))
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
    return new_via(
        transport.upper(), host.lower(), port_num, parse_params(params, "Via") if params else {}
    )


_via_memo: Memo[str, list[Via]] = Memo()


def remember_own_via(text: str, via: Via) -> None:
    """Record that `text`, the Via a proxy puts on a request it forwards
    (`Headers.prepend_own_via`: "SIP/2.0/<TRANSPORT> host:port;branch=<token>", `via` built
    from the same parts), parses to `via`, so that the responses echoing it find it in the
    memo instead of parsing it again. Only when parsing it would give `via` back (a valid
    host name or IPv4 address, a port in range); anything else is simply not recorded."""
    if _plain_sent_by(via.transport, via.host) and 0 <= (via.port or 0) <= 65535:
        _via_memo.put(text, [via])


def remember_via(text: str, via: Via) -> None:
    """Record that the field value `text`, written by us from `via` (a received Via after
    the §18.2.1 fix-up, `Headers.replace_top_via`), parses to `via`, so that the responses
    to the forwarded request, which echo it, find it in the memo instead of parsing it again.
    Only for the plain form whose parse is known to give `via` back: a host name or IPv4
    address, a port in range, an upper-case transport, unquoted token parameters with
    lower-case names (anything else is simply not recorded)."""
    semi = text.find(";")
    port = via.port
    if (
        semi < 0
        or (port is not None and not 0 <= port <= 65535)
        or not _plain_sent_by(via.transport, via.host)
        or SIMPLE_PARAMS_RE.fullmatch(text, semi) is None
    ):
        return
    for key in via.params:
        if key != key.lower():
            return
    _via_memo.put(text, [via])


@lru_cache(maxsize=1024)
def _plain_sent_by(transport: str, host: str) -> bool:
    # Our own Vias' few (transport, host) pairs, and the peers' sent-by: checked once each.
    return (
        TOKEN_RE.fullmatch(transport) is not None
        and transport == transport.upper()
        and ":" not in host
        and HOST_RE.fullmatch(host) is not None
        and host == host.lower()
    )


def parse_via(value: str) -> list[Via]:
    """All Via values in one field value (comma-separated). Memoised by text (the list
    returned is the caller's own)."""
    vias = _via_memo.get(value)
    if vias is None:
        vias = [_parse_one_via(v) for v in split_strict(value, "Via")]
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
        return f"{display}<{self.uri}>{format_params(self.params)}"

    def with_params(self, **params: str | None) -> NameAddr:
        return _new_name_addr(self.display, self.uri, {**self.params, **params}, self.wildcard)


_new_name_addr = fast_constructor(NameAddr, ("display", "uri", "params", "wildcard"))
_QUOTED_RE = re.compile(QUOTED)
_DISPLAY_TOKENS_RE = re.compile(rf"{TOKEN}(?:[ \t]+{TOKEN})*")


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


# --------------------------------------------------------------------------- splitting
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


def split_strict(value: str, what: str) -> list[str]:
    """Split a list header's field value for parsing: an empty element is a ParseError."""
    parts = _split(value)
    if "" in parts:
        raise ParseError(f"{what}: empty list element in {value!r}")
    return parts


def split_header_values(value: str) -> list[str]:
    """Split a list header's field value at top-level commas (not inside "…" or <…>),
    trimming each part. Empty elements are dropped; an unterminated quote is ParseError."""
    return [part for part in _split(value) if part]
