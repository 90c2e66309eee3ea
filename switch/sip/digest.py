"""HTTP Digest authentication for SIP, server side (RFC 7616, RFC 8760, RFC 3261 §22).

Theory of operation
-------------------
Nonces are stateless: `base64url(timestamp ‖ random ‖ HMAC-SHA256(secret, realm ‖ timestamp ‖
random)[:16])`. Any node holding the secret can check a nonce without shared state, and its
age is read from the nonce itself. A nonce that is authentic but older than `nonce_ttl`,
presented with a correct response, yields `AuthResult(ok=False, stale=True)`: the caller
re-challenges with `stale=true` and the client retries without asking the user (RFC 7616
§3.3).

Replay protection needs a little state: for every nonce in use, the highest nonce-count (nc)
accepted so far; a request with an nc not above it is refused (RFC 7616 §3.4 / §5.8). The
record is bounded: expired nonces are pruned (an expired nonce is stale anyway), and when the
record is full the oldest entries are evicted and every nonce no newer than an evicted one
becomes stale, so an eviction can never reopen a replay.

`now` is whatever clock the caller uses, but nonces carry it: nodes that share the secret
must pass wall-clock seconds (epoch) so that one node's nonce is fresh on another. The nc
record is per process: a replay to *another* node is caught only by nonce expiry.

Only qop=auth is accepted (RFC 2069-style responses without qop have no nc, hence no replay
protection). Unknown users go through the same computation against a dummy HA1 and get the
same result as a wrong password, so the answers do not reveal which users exist.
`verify` never raises on client input: a malformed header is `reason="malformed"`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AuthResult",
    "DigestAuthenticator",
    "digest_response",
    "ha1",
    "parse_digest_credentials",
]

_HASHES = frozenset({"MD5", "SHA-256"})
_NONCE_RAW = 8 + 8 + 16  # timestamp (double), random, truncated HMAC
_MAX_HEADER = 8192


def _normalise_algorithm(algorithm: str) -> str | None:
    upper = algorithm.upper()
    return upper if upper in _HASHES else None


def _h(algorithm: str, data: str) -> str:
    raw = data.encode("utf-8", "surrogatepass")
    if algorithm == "SHA-256":
        return hashlib.sha256(raw).hexdigest()
    return hashlib.md5(raw).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username ":" realm ":" password) in lower-case hex (RFC 7616 §3.4.2).
    `algorithm` is "MD5" or "SHA-256"; anything else raises ValueError."""
    alg = _normalise_algorithm(algorithm)
    if alg is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return _h(alg, f"{username}:{realm}:{password}")


def digest_response(
    ha1_hex: str,
    *,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str,
    method: str,
    uri: str,
    algorithm: str = "MD5",
) -> str:
    """The request-digest for qop=auth (RFC 7616 §3.4.1):
    H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))."""
    alg = _normalise_algorithm(algorithm)
    if alg is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    ha2 = _h(alg, f"{method}:{uri}")
    return _h(alg, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of `verify`. `reason` (for logs and metrics, never for the peer):
    "", "malformed", "qop", "realm", "algorithm", "nonce", "opaque", "credentials",
    "stale", "replay"."""

    ok: bool
    username: str | None
    stale: bool = False
    reason: str = ""


# --------------------------------------------------------------------------- parsing
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WS = " \t\r\n"


class _Malformed(Exception):
    pass


def parse_digest_credentials(value: str) -> dict[str, str] | None:
    """Parse `Digest name=value, name="quoted \\"value\\"", …` into a dict with lower-cased
    names. None when the scheme is not Digest or the syntax is broken (duplicate names
    included). Never raises."""
    if len(value) > _MAX_HEADER:
        return None
    try:
        return _parse(value)
    except _Malformed:
        return None


def _parse(value: str) -> dict[str, str]:
    text = value.strip(_WS)
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest" or not rest.strip(_WS):
        raise _Malformed
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while True:
        i = _skip(rest, i, _WS)
        if i >= n:
            break
        name, i = _read_token(rest, i)
        i = _skip(rest, i, _WS)
        if i >= n or rest[i] != "=":
            raise _Malformed
        i = _skip(rest, i + 1, _WS)
        val, i = _read_value(rest, i)
        key = name.lower()
        if key in params:
            raise _Malformed
        params[key] = val
        i = _skip(rest, i, _WS)
        if i < n:
            if rest[i] != ",":
                raise _Malformed
            i += 1
    if not params:
        raise _Malformed
    return params


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _read_token(s: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(s) and s[i] in _TOKEN_CHARS:
        i += 1
    if i == start:
        raise _Malformed
    return s[start:i], i


def _read_value(s: str, i: int) -> tuple[str, int]:
    if i < len(s) and s[i] == '"':
        return _read_quoted(s, i + 1)
    start = i
    while i < len(s) and s[i] not in _WS and s[i] != ",":
        if s[i] == '"':
            raise _Malformed
        i += 1
    if i == start:
        raise _Malformed
    return s[start:i], i


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """A quoted-string body from i (after the opening quote); backslash escapes any char."""
    out: list[str] = []
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i >= len(s):
                break
            c = s[i]
        out.append(c)
        i += 1
    raise _Malformed  # unterminated


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- authenticator
class DigestAuthenticator:
    """Challenges and verifies Digest credentials for one realm. Time is a parameter."""

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = 100_000,
    ) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        algs = tuple(_normalise_algorithm(a) for a in algorithms)
        if not algs or any(a is None for a in algs):
            raise ValueError(f"unsupported algorithms {algorithms!r}")
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        # RFC 8760 §2.4 / RFC 7616 §3.7: the preferred (strongest) challenge first.
        self.algorithms = tuple(sorted((a for a in algs if a), key=lambda a: a != "SHA-256"))
        self._secret = secret
        self._opaque = hmac.new(secret, b"opaque:" + realm.encode(), "sha256").hexdigest()[:32]
        self._dummy_seed = hmac.new(secret, b"dummy-ha1", "sha256").hexdigest()
        self._max_tracked = max_tracked_nonces
        self._nc_seen: dict[str, tuple[float, int]] = {}  # nonce -> (issued at, highest nc)
        self._evicted_upto = float("-inf")  # nonces issued at or before this are stale

    # ------------------------------------------------------------------ challenge
    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, strongest first,
        all with the same fresh nonce."""
        nonce = self._make_nonce(now)
        tail = ", stale=true" if stale else ""
        return [
            f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, "
            f'opaque={_quote(self._opaque)}, algorithm={alg}, qop="auth"{tail}'
            for alg in self.algorithms
        ]

    def _make_nonce(self, now: float) -> str:
        head = struct.pack(">d", now) + os.urandom(8)
        return base64.urlsafe_b64encode(head + self._mac(head)).decode("ascii")

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, self.realm.encode() + b"\0" + head, "sha256").digest()[:16]

    def _nonce_time(self, nonce: str) -> float | None:
        """The issue time of an authentic nonce of ours, None for anything else."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_RAW or not hmac.compare_digest(raw[16:], self._mac(raw[:16])):
            return None
        issued: float = struct.unpack(">d", raw[:8])[0]
        return issued

    # ------------------------------------------------------------------ verify
    def verify(
        self,
        authorization: str,
        method: str,
        lookup_ha1: Callable[[str, str], str | None],
        now: float,
    ) -> AuthResult:
        """Check an Authorization / Proxy-Authorization value for a request `method`.
        `lookup_ha1(username, algorithm)` returns the stored HA1 hex, None if unknown."""
        params = parse_digest_credentials(authorization)
        if params is None:
            return AuthResult(False, None, reason="malformed")
        return self._verify(params, method, lookup_ha1, now)

    def _verify(
        self,
        p: dict[str, str],
        method: str,
        lookup_ha1: Callable[[str, str], str | None],
        now: float,
    ) -> AuthResult:
        required = ("username", "realm", "nonce", "uri", "response")
        if any(k not in p for k in required):
            return AuthResult(False, None, reason="malformed")
        user = p["username"]
        if p.get("qop") != "auth" or "cnonce" not in p or "nc" not in p:
            return AuthResult(False, user, reason="qop")
        nc = _parse_nc(p["nc"])
        if nc is None:
            return AuthResult(False, user, reason="malformed")
        if p["realm"] != self.realm:
            return AuthResult(False, user, reason="realm")
        alg = _normalise_algorithm(p.get("algorithm", "MD5"))
        if alg is None or alg not in self.algorithms:
            return AuthResult(False, user, reason="algorithm")
        issued = self._nonce_time(p["nonce"])
        if issued is None or issued > now + 1.0:
            return AuthResult(False, user, reason="nonce")  # forged, or not ours
        if "opaque" in p and not _same(p["opaque"], self._opaque):
            return AuthResult(False, user, reason="opaque")
        if not self._response_ok(p, alg, method, lookup_ha1):
            return AuthResult(False, user, reason="credentials")
        return self._check_freshness(p["nonce"], issued, nc, user, now)

    def _response_ok(
        self,
        p: dict[str, str],
        alg: str,
        method: str,
        lookup_ha1: Callable[[str, str], str | None],
    ) -> bool:
        """Compare the response; an unknown user is checked against a dummy HA1 so that the
        work and the answer are the same as for a wrong password."""
        stored = lookup_ha1(p["username"], alg)
        known = stored is not None
        ha1_hex = stored if stored is not None else _h(alg, self._dummy_seed + p["username"])
        expected = digest_response(
            ha1_hex.lower(),
            nonce=p["nonce"],
            nc=p["nc"],
            cnonce=p["cnonce"],
            qop="auth",
            method=method,
            uri=p["uri"],
            algorithm=alg,
        )
        given = p["response"].lower().encode("utf-8", "replace")
        return hmac.compare_digest(expected.encode("ascii"), given) and known

    def _check_freshness(
        self, nonce: str, issued: float, nc: int, user: str, now: float
    ) -> AuthResult:
        """Correct credentials: the nonce must still be fresh and the nc must grow."""
        if now - issued > self.nonce_ttl or issued <= self._evicted_upto:
            return AuthResult(False, user, stale=True, reason="stale")
        seen = self._nc_seen.get(nonce)
        if seen is not None and nc <= seen[1]:
            return AuthResult(False, user, reason="replay")
        self._nc_seen[nonce] = (issued, nc)
        if len(self._nc_seen) > self._max_tracked:
            self._prune(now)
        return AuthResult(True, user)

    def _prune(self, now: float) -> None:
        """Drop expired nonces; if still full, evict the oldest half (they become stale)."""
        ttl = self.nonce_ttl
        self._nc_seen = {k: v for k, v in self._nc_seen.items() if now - v[0] <= ttl}
        excess = len(self._nc_seen) - self._max_tracked // 2
        if excess > 0:
            ordered = sorted(self._nc_seen.items(), key=lambda kv: kv[1][0])
            for nonce, (issued, _) in ordered[:excess]:
                self._evicted_upto = max(self._evicted_upto, issued)
                del self._nc_seen[nonce]
            # Nonces issued at the same instant as an evicted one are stale too now.
            self._nc_seen = {k: v for k, v in self._nc_seen.items() if v[0] > self._evicted_upto}


def _parse_nc(value: str) -> int | None:
    """nc is exactly 8 hex digits (RFC 7616 §3.4)."""
    if len(value) != 8 or any(c not in "0123456789abcdefABCDEF" for c in value):
        return None
    return int(value, 16)


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of arbitrary text (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8"))
