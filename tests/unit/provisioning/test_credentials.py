"""provisioning.credentials keeps its own HA1 (provisioning imports nothing of the switch):
it must agree with the switch's digest code, or no provisioned password would ever log in."""

from __future__ import annotations

import hashlib

import pytest

from provisioning.credentials import ha1, ha1_pair
from switch.sip.digest import ha1 as switch_ha1

CASES = [
    ("alice", "softswitch.local", "password-1"),
    ("demo-app", "example.jp", "s3cret:with:colons"),
    ("山田", "レルム", "パスワード"),  # non-ASCII: UTF-8 before hashing
    ("u", "r", ""),
    ("lone", "surrogate", "\ud800x"),  # what a JSON body may carry
]


@pytest.mark.parametrize(("username", "realm", "password"), CASES)
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_ha1_agrees_with_the_switch(
    username: str, realm: str, password: str, algorithm: str
) -> None:
    assert ha1(username, realm, password, algorithm) == switch_ha1(  # type: ignore[arg-type]
        username, realm, password, algorithm
    )


def test_ha1_is_rfc_7616_a1_hashed() -> None:
    # RFC 7616 §3.4.2: A1 = username ":" realm ":" passwd, HA1 = H(A1)
    a1 = b"Mufasa:http-auth@example.org:Circle of Life"
    assert ha1("Mufasa", "http-auth@example.org", "Circle of Life", "MD5") == (
        hashlib.md5(a1).hexdigest()
    )
    assert ha1_pair("Mufasa", "http-auth@example.org", "Circle of Life") == (
        hashlib.md5(a1).hexdigest(),
        hashlib.sha256(a1).hexdigest(),
    )


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError):
        ha1("u", "r", "p", "SHA-512-256")  # type: ignore[arg-type]
