"""The one digest check of the registrar and the proxy (switch/proxy/auth.py), directly."""

from __future__ import annotations

import itertools

import pytest

from provisioning.model import Device, DeviceKind, Snapshot, Tenant
from switch.proxy.auth import (
    Authenticated,
    Challenge,
    authenticate,
    remove_our_credentials,
    stored_ha1,
)
from switch.sip.digest import DigestAuthenticator, digest_response, ha1
from switch.sip.message import Headers

REALM = "auth.test"
NOW = 1_800_000_000.0
_nc = itertools.count(1)


def _device() -> Device:
    return Device(
        id="d1", tenant_id="t1", username="alice", kind=DeviceKind.APP,
        ha1_md5=ha1("alice", REALM, "pw", "MD5"),
        ha1_sha256=ha1("alice", REALM, "pw", "SHA-256"),
        presented_number="+81355500100",
    )  # fmt: skip


SNAP = Snapshot.build(
    version=1, realm=REALM, tenants=[Tenant(id="t1", name="T")], devices=[_device()],
    numbers=[], gateways=[],
)  # fmt: skip


def _auth() -> DigestAuthenticator:
    return DigestAuthenticator(realm=REALM, secret=b"k" * 32, algorithms=("SHA-256", "MD5"))


def credentials(
    auth: DigestAuthenticator,
    *,
    algorithm: str = "MD5",
    password: str = "pw",
    realm: str = REALM,
    issued: float = NOW,
    token: str | None = None,
) -> str:
    challenge = next(c for c in auth.challenge(issued) if f"algorithm={algorithm}" in c)
    nonce = challenge.split('nonce="')[1].split('"')[0]
    nc = f"{next(_nc):08x}"
    resp = digest_response(
        ha1("alice", realm, password, algorithm), nonce=nonce, nc=nc, cnonce="cn",
        qop="auth", method="INVITE", uri="sip:x@y", algorithm=algorithm,
    )  # fmt: skip
    return (
        f'Digest username="alice", realm="{realm}", nonce="{nonce}", uri="sip:x@y", '
        f'response="{resp}", algorithm={token or algorithm}, qop=auth, nc={nc}, cnonce="cn"'
    )


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ("MD5", "ha1_md5"), ("md5", "ha1_md5"), ("MD5-sess", "ha1_md5"),
        ("md5-SESS", "ha1_md5"), ("SHA-256", "ha1_sha256"), ("sha-256", "ha1_sha256"),
        ("SHA-256-sess", "ha1_sha256"), ("Sha-256-Sess", "ha1_sha256"),
    ],
)  # fmt: skip
def test_rfc8760_tokens_choose_the_stored_ha1(token: str, field: str) -> None:
    device = _device()
    assert stored_ha1(device, token) == getattr(device, field)


@pytest.mark.parametrize("token", ["SHA-512-256", "SHA-256x", "SHA", "", "MD5-sess-x"])
def test_other_tokens_have_no_ha1(token: str) -> None:
    assert stored_ha1(_device(), token) is None


@pytest.mark.parametrize(("algorithm", "token"), [("MD5", "md5"), ("SHA-256", "sha-256")])
def test_correct_credentials_authenticate_the_device(algorithm: str, token: str) -> None:
    auth = _auth()
    value = credentials(auth, algorithm=algorithm, token=token)
    outcome = authenticate([value], "INVITE", SNAP, auth, NOW)
    assert outcome == Authenticated(device=SNAP.devices["d1"])


def test_wrong_password_is_a_counted_failure_and_a_fresh_challenge() -> None:
    auth = _auth()
    outcome = authenticate([credentials(auth, password="no")], "INVITE", SNAP, auth, NOW)
    assert isinstance(outcome, Challenge) and outcome.failures == ("credentials",)
    assert len(outcome.values) == 2 and not any("stale" in v for v in outcome.values)


def test_no_credentials_is_a_challenge_and_nothing_counted() -> None:
    outcome = authenticate([], "INVITE", SNAP, _auth(), NOW)
    assert isinstance(outcome, Challenge) and outcome.failures == ()


def test_other_realms_credentials_are_skipped_not_judged() -> None:
    auth = _auth()
    foreign = credentials(auth, realm="carrier.example")
    outcome = authenticate([foreign], "INVITE", SNAP, auth, NOW)
    assert isinstance(outcome, Challenge) and outcome.failures == ()
    # ... and ours after them still count
    outcome = authenticate([foreign, credentials(auth)], "INVITE", SNAP, auth, NOW)
    assert isinstance(outcome, Authenticated)


def test_expired_nonce_is_a_stale_challenge_not_a_failure() -> None:
    auth = _auth()
    old = credentials(auth, issued=NOW - auth.nonce_ttl - 10)
    outcome = authenticate([old], "INVITE", SNAP, auth, NOW)
    assert isinstance(outcome, Challenge) and outcome.failures == ()
    assert all("stale=true" in v for v in outcome.values)


def test_malformed_credentials_are_counted() -> None:
    outcome = authenticate(["Digest nonsense"], "INVITE", SNAP, _auth(), NOW)
    assert isinstance(outcome, Challenge) and outcome.failures == ("malformed",)


def test_only_our_proxy_authorization_is_consumed() -> None:
    headers = Headers(
        [
            ("Proxy-Authorization", f'Digest username="a", realm="{REALM}", nonce="1"'),
            ("Proxy-Authorization", 'Digest username="a", realm="other", nonce="2"'),
        ]
    )
    remove_our_credentials(headers, REALM)
    assert headers.get_fields("Proxy-Authorization") == [
        'Digest username="a", realm="other", nonce="2"'
    ]
