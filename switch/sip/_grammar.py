"""Shared grammar pieces (RFC 3261 §25.1): the ParseError type, character classes, precompiled
regular expressions and %-escaping. Everything the URI, header and wire parsers agree on lives
here so that there is one definition of "token" or "escaped" in the package.

No asyncio, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

__all__ = [
    "PARAM_SAFE",
    "PASSWORD_SAFE",
    "SIMPLE_PARAMS_RE",
    "TOKEN_RE",
    "USER_SAFE",
    "Memo",
    "ParseError",
    "escape",
    "parse_params",
    "quote_string",
    "unescape",
]


class ParseError(Exception):
    """Malformed input. `status_hint` is the SIP status a server should answer with:
    400 (syntax), 413 (message too large), 416 (unsupported URI scheme), 505 (version),
    513 (message too large for UDP, outbound) … The parser raises only this exception.

    `partial` is the message as far as it could be read (start line and raw header fields),
    or None; see `parser.partial_of`."""

    partial: Any

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.partial = None


# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = f"[{_TOKEN_CHARS}]+"
TOKEN_RE = re.compile(TOKEN)
QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'

# One generic parameter: SEMI pname [EQUAL pvalue], with SWS around ";" and "=" (§25.1).
# The value is a token, a host (IPv6 references, and the unbracketed IPv6 that RFC 3261's
# via-received admits, hence ":" "[" "]"), or a quoted string.
_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({QUOTED}|[{_TOKEN_CHARS}:\[\]]+))?[ \t]*"
)
SIMPLE_PARAMS_RE = re.compile(rf"(?:;{TOKEN}(?:=[{_TOKEN_CHARS}:\[\]]+)?)+")


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ";name=value;flag" header parameters (keys lower-cased, quotes kept on values).

    Empty parameters (";;") and garbage are a ParseError(400): RFC 4475 §3.1.2.1."""
    params: dict[str, str | None] = {}
    if SIMPLE_PARAMS_RE.fullmatch(text):
        # Fast path: no quoting, no whitespace; one regex validates the whole string.
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name.lower()] = value if eq else None
        return params
    pos, end = 0, len(text)
    while pos < end:
        m = _PARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ParseError(f"{what}: bad parameters {text!r}")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


# --------------------------------------------------------------------------- escaping
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UNRESERVED = _ALNUM + "-_.!~*'()"
USER_SAFE = frozenset(_UNRESERVED + "&=+$,;?/")
PASSWORD_SAFE = frozenset(_UNRESERVED + "&=+$,")
PARAM_SAFE = frozenset(_UNRESERVED + "[]/:&+$")
HEADER_SAFE = frozenset(_UNRESERVED + "[]/?:+$")

_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def unescape(text: str, what: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.2). Octets that are not UTF-8 survive as
    surrogate escapes so that `escape()` gives the same octets back."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise ParseError(f"{what}: bad %-escape in {text!r}")
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def escape(text: str, safe: frozenset[str]) -> str:
    """%-escape every character of `text` outside `safe` (UTF-8 octets)."""
    if safe.issuperset(text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def quote_string(text: str) -> str:
    """A quoted-string (§25.1) for `text`: '"' and '\\' and control octets become
    quoted-pairs. CR and LF cannot be represented and raise ValueError."""
    if "\r" in text or "\n" in text:
        raise ValueError("CR/LF cannot appear in a quoted-string")
    out = []
    for ch in text:
        if ch in '"\\' or (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
            out.append("\\")
        out.append(ch)
    return '"' + "".join(out) + '"'


def unquote_string(text: str) -> str:
    """Inverse of quote_string; `text` includes the surrounding quotes and is well-formed."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)


_T = TypeVar("_T")


def fast_constructor(cls: type[_T], names: tuple[str, ...]) -> Callable[..., _T]:
    """A positional constructor for a frozen slots dataclass that skips the generated
    keyword __init__ (about twice as fast; used only on the parser's hot path, with every
    field given). Generated like dataclasses generates __init__, with the slot setters
    unrolled."""
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = []
    for i, name in enumerate(names):
        env[f"set{i}"] = getattr(cls, name).__set__
        body.append(f"    set{i}(obj, {name})")
    src = f"def make({', '.join(names)}):\n    obj = new(cls)\n" + "\n".join(body)
    exec(src + "\n    return obj\n", env)
    make: Callable[..., _T] = env["make"]
    return make


_K = TypeVar("_K")
_V = TypeVar("_V")


class Memo(Generic[_K, _V]):
    """A bounded memo for pure parse functions (value text -> immutable parsed value).

    The same header text recurs on every message of a call (From, To, Contact, the caller's
    Via, Record-Route, the Request-URI), so a proxy would otherwise parse it 5-10 times. Only
    successful parses are stored: malformed input is parsed (and rejected) every time, so
    validation is exactly what it was. Two generations: when the young one is full it
    becomes the old one (the previous old one is dropped), and a hit in the old generation is
    promoted, which keeps recently used entries at about the cost of a dict lookup."""

    __slots__ = ("_limit", "_new", "_old")

    def __init__(self, limit: int = 8192) -> None:
        self._limit = limit
        self._new: dict[_K, _V] = {}
        self._old: dict[_K, _V] = {}

    def get(self, key: _K) -> _V | None:
        value = self._new.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: _K, value: _V) -> None:
        if len(self._new) >= self._limit:
            self._old = self._new
            self._new = {}
        self._new[key] = value

    def clear(self) -> None:
        self._new.clear()
        self._old.clear()
