"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966; IPv6 references per RFC 5118).

Components are stored *unescaped* (user, password, parameter names and values, header names
and values) so that comparisons see the characters, not their spelling (§19.1.4: "%6C" and
"l" are the same). `str()` escapes again wherever the grammar demands it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from ._grammar import (
    HEADER_SAFE,
    PARAM_SAFE,
    PASSWORD_SAFE,
    USER_SAFE,
    Memo,
    ParseError,
    escape,
    fast_constructor,
    unescape,
)

__all__ = ["URI", "AbsoluteURI", "SipURI", "TelURI", "parse_any_uri", "parse_uri"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# userinfo characters: unreserved / escaped / user-unreserved, then ":" password.
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")
# hostname (labels may hold "_", seen in the wild) or IPv4address; IPv6 is handled apart.
HOST_RE = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?)*\.?"
)
# Tolerant on purpose: RFC 5118 §4.10 says to accept "[2001:db8:::192.0.2.1]".
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]")
_PARAMCHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
_HCHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*")
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")
_TEL_SEPARATORS = str.maketrans("", "", "-.()")


def _parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or int(text) > 65535:
        raise ParseError(f"{what}: bad port {text!r}")
    return int(text)


def parse_host_port(text: str, what: str) -> tuple[str, int | None]:
    """host [":" port] with IPv6 references in brackets; the host comes back lower-cased."""
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[: close + 1], text[close + 1 :]
        if close < 0 or not _IPV6_RE.fullmatch(host):
            raise ParseError(f"{what}: bad IPv6 reference {text!r}")
        if not rest:
            return host.lower(), None
        if rest[0] != ":":
            raise ParseError(f"{what}: garbage after IPv6 reference {text!r}")
        return host.lower(), _parse_port(rest[1:], what)
    host, colon, port = text.partition(":")
    if not HOST_RE.fullmatch(host):
        raise ParseError(f"{what}: bad host {host!r}")
    return host.lower(), (_parse_port(port, what) if colon else None)


def format_host_port(host: str, port: int | None) -> str:
    """host[:port]; a bare IPv6 address gets its brackets (RFC 3261 §19.1.1, RFC 5118)."""
    if ":" in host and host[:1] != "[":
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


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
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escape(self.user, USER_SAFE))
            if self.password is not None:
                parts += [":", escape(self.password, PASSWORD_SAFE)]
            parts.append("@")
        parts.append(format_host_port(self.host, self.port))
        for name, value in self.params.items():
            parts += [";", escape(name, PARAM_SAFE)]
            if value is not None:
                parts += ["=", escape(value, PARAM_SAFE)]
        sep = "?"
        for name, value in self.headers.items():
            parts += [sep, escape(name, HEADER_SAFE), "=", escape(value, HEADER_SAFE)]
            sep = "&"
        return "".join(parts)

    def with_(self, **changes: object) -> SipURI:
        """A copy with some fields replaced (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def transport(self) -> str | None:
        """The `transport` URI parameter, lower-cased (None if absent)."""
        value = self.params.get("transport")
        return value.lower() if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TelURI:
    """tel: URI (RFC 3966): `number` without visual separators; `params` lower-cased keys."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = ["tel:", self.number]
        for name, value in self.params.items():
            parts += [";", escape(name, PARAM_SAFE)]
            if value is not None:
                parts += ["=", escape(value, PARAM_SAFE)]
        return "".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsoluteURI:
    """Any other scheme ("isbn:…", "http://…", "urn:…"), kept opaque. Legal in To/From/Contact
    (RFC 3261 §25.1 absoluteURI); only a Request-URI with such a scheme is answered 416."""

    scheme: str  # lower-cased
    opaque: str  # everything after "scheme:"

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI = SipURI | TelURI
_new_sip = fast_constructor(
    SipURI, ("scheme", "user", "password", "host", "port", "params", "headers")
)


def _split_scheme(text: str) -> tuple[str, str]:
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(f"not a URI: {text!r}")
    return scheme.lower(), rest


def _parse_uri_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS_RE.fullmatch(name) or (eq and not _PARAMCHARS_RE.fullmatch(value)):
            raise ParseError(f"{what}: bad URI parameter {part!r}")
        params[unescape(name, what).lower()] = unescape(value, what) if eq else None
    return params


def _parse_uri_headers(text: str, what: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not name or not _HCHARS_RE.fullmatch(name + value):
            raise ParseError(f"{what}: bad URI header {part!r}")
        headers[unescape(name, what)] = unescape(value, what)
    return headers


# The common shape (no escapes, no password, no headers) in one regex: the hot path.
_FAST_SIP_RE = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]+)@)?"
    rf"({HOST_RE.pattern}|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\])(?::([0-9]{{1,5}}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)"
)


def _parse_sip(scheme: str, rest: str) -> SipURI:
    m = _FAST_SIP_RE.fullmatch(rest)
    if m is not None:
        user, host, port, raw_params = m.groups()
        if port is None or int(port) < 65536:
            params: dict[str, str | None] = {}
            if raw_params:
                for part in raw_params[1:].split(";"):
                    name, eq, value = part.partition("=")
                    params[name.lower()] = value if eq else None
            port_num = int(port) if port is not None else None
            return _new_sip(scheme, user, None, host.lower(), port_num, params, {})
    return _parse_sip_slow(scheme, rest)


def _parse_sip_slow(scheme: str, rest: str) -> SipURI:
    _check_no_space(rest)
    what = f"{scheme} URI"
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        raw_user, colon, raw_pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(raw_user) or not _PASSWORD_RE.fullmatch(raw_pw):
            raise ParseError(f"{what}: bad userinfo {userinfo!r}")
        user = unescape(raw_user, what)
        password = unescape(raw_pw, what) if colon else None
    rest, qmark, raw_headers = rest.partition("?")
    hostport, semi, raw_params = rest.partition(";")
    host, port = parse_host_port(hostport, what)
    return SipURI(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_uri_params(raw_params, what) if semi else {},
        headers=_parse_uri_headers(raw_headers, what) if qmark else {},
    )


def _parse_tel(rest: str) -> TelURI:
    number, semi, raw_params = rest.partition(";")
    if not _TEL_NUMBER_RE.fullmatch(number):
        raise ParseError(f"tel URI: bad number {number!r}")
    params = _parse_uri_params(raw_params, "tel URI") if semi else {}
    return TelURI(number=number.translate(_TEL_SEPARATORS), params=params)


def _check_no_space(text: str) -> None:
    if not text or not text.isprintable() or " " in text:
        raise ParseError(f"bad URI {text!r}")


_uri_memo: Memo[str, URI] = Memo()
_any_uri_memo: Memo[str, URI | AbsoluteURI] = Memo()


def parse_uri(text: str) -> URI:
    """Parse a sip/sips/tel URI. Unknown schemes raise ParseError(status_hint=416);
    syntax errors raise ParseError(400). Memoised by text (errors are not)."""
    parsed = _uri_memo.get(text)
    if parsed is None:
        parsed = _parse_uri(text)
        _uri_memo.put(text, parsed)
    return parsed


def _parse_uri(text: str) -> URI:
    if text[:4] == "sip:":  # hot path; the fast regex admits no space or control octet
        return _parse_sip("sip", text[4:])
    _check_no_space(text)
    scheme, rest = _split_scheme(text)
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    raise ParseError(f"unsupported URI scheme {scheme!r}", 416)


def parse_any_uri(text: str) -> URI | AbsoluteURI:
    """Like parse_uri, but any other well-formed scheme gives an AbsoluteURI. Memoised."""
    parsed = _any_uri_memo.get(text)
    if parsed is None:
        parsed = _parse_any_uri(text)
        _any_uri_memo.put(text, parsed)
    return parsed


def _parse_any_uri(text: str) -> URI | AbsoluteURI:
    if text[:4] == "sip:":
        return _parse_sip("sip", text[4:])
    _check_no_space(text)
    scheme, rest = _split_scheme(text)
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if not rest:
        raise ParseError(f"empty URI after scheme {scheme!r}")
    return AbsoluteURI(scheme=scheme, opaque=rest)
