"""SIP digest credentials as the provisioning side stores them: HA1 hashes, never passwords.

RFC 7616 §3.4.2: A1 = username ":" realm ":" password, and HA1 = H(A1) in lower-case hex,
H being MD5 or SHA-256 (the two algorithms the switch offers, RFC 8760). The switch checks a
digest response against these hashes; the provisioning side only ever computes them, when a
password is set (API, CLI, seed file), and then forgets the password.

This is the provisioning layer's own copy of the formula (provisioning imports nothing of the
switch); `tests/unit/provisioning/test_credentials.py` checks that it agrees with the
switch's `switch.sip.digest.ha1`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["Algorithm", "HA1Pair", "ha1", "ha1_pair"]

Algorithm = Literal["MD5", "SHA-256"]
HA1Pair = tuple[str, str]  # (MD5, SHA-256)


def ha1(username: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """H(username ":" realm ":" password), lower-case hex (RFC 7616 §3.4.2)."""
    # "surrogatepass": a JSON body may carry a lone surrogate ("\ud800"); hash it as the
    # switch does rather than fail on it.
    a1 = f"{username}:{realm}:{password}".encode("utf-8", "surrogatepass")
    match algorithm:
        case "MD5":
            return hashlib.md5(a1).hexdigest()
        case "SHA-256":
            return hashlib.sha256(a1).hexdigest()
    raise ValueError(f"unsupported digest algorithm {algorithm!r}")


def ha1_pair(username: str, realm: str, password: str) -> HA1Pair:
    """Both hashes a device row keeps: (MD5, SHA-256)."""
    return ha1(username, realm, password, "MD5"), ha1(username, realm, password, "SHA-256")
