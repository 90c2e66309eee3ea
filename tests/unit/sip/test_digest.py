"""Digest authentication, server side (switch/sip/digest.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.sip.digest import (
    AuthResult,
    DigestAuthenticator,
    digest_response,
    ha1,
    parse_digest_credentials,
)

# RFC 7616 §3.9.1 (the "Mufasa" example): qop=auth, nc=00000001, method GET.
RFC = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "uri": "/dir/index.html",
}
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"

REALM = "sip.example.com"
USERS = {"alice": "s3cret", "bob": "hunter2"}
SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_rfc7616_example_vectors(algorithm: str, expected: str) -> None:
    h = ha1(RFC["username"], RFC["realm"], RFC["password"], algorithm)
    got = digest_response(
        h,
        nonce=RFC["nonce"],
        nc="00000001",
        cnonce=RFC["cnonce"],
        qop="auth",
        method="GET",
        uri=RFC["uri"],
        algorithm=algorithm,
    )
    assert got == expected


def test_ha1_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValueError):
        ha1("a", "b", "c", "SHA-512-256")


# --------------------------------------------------------------------------- helpers
def lookup(username: str, algorithm: str) -> str | None:
    password = USERS.get(username)
    return None if password is None else ha1(username, REALM, password, algorithm)


def challenge_params(value: str) -> dict[str, str]:
    params = parse_digest_credentials(value)
    assert params is not None
    return params


def authorization(
    challenge: str,
    *,
    username: str = "alice",
    password: str = "s3cret",
    method: str = "REGISTER",
    uri: str = "sip:sip.example.com",
    nc: int = 1,
    cnonce: str = "0a4f113b",
    realm: str | None = None,
    extra: str = "",
) -> str:
    """What a UAC answers to `challenge` (RFC 7616 §3.4)."""
    c = challenge_params(challenge)
    alg = c["algorithm"]
    r = realm if realm is not None else c["realm"]
    nc_hex = f"{nc:08x}"
    response = digest_response(
        ha1(username, r, password, alg),
        nonce=c["nonce"],
        nc=nc_hex,
        cnonce=cnonce,
        qop="auth",
        method=method,
        uri=uri,
        algorithm=alg,
    )
    return (
        f'Digest username="{username}", realm="{r}", nonce="{c["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={alg}, qop=auth, nc={nc_hex}, '
        f'cnonce="{cnonce}", opaque="{c["opaque"]}"{extra}'
    )


@pytest.fixture
def auth() -> DigestAuthenticator:
    return DigestAuthenticator(realm=REALM, secret=SECRET, nonce_ttl=300.0)


# --------------------------------------------------------------------------- challenge
def test_challenge_offers_sha256_first_then_md5(auth: DigestAuthenticator) -> None:
    values = auth.challenge(1000.0)
    assert [challenge_params(v)["algorithm"] for v in values] == ["SHA-256", "MD5"]
    for v in values:
        p = challenge_params(v)
        assert p["realm"] == REALM
        assert p["qop"] == "auth"
        assert p["opaque"]
        assert "stale" not in p


def test_challenge_order_is_strongest_first_whatever_the_config() -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET, algorithms=("MD5", "SHA-256"))
    assert [challenge_params(v)["algorithm"] for v in a.challenge(0.0)] == ["SHA-256", "MD5"]


def test_stale_challenge(auth: DigestAuthenticator) -> None:
    assert all(challenge_params(v)["stale"] == "true" for v in auth.challenge(0.0, stale=True))


def test_nonces_are_fresh_each_time(auth: DigestAuthenticator) -> None:
    n1 = challenge_params(auth.challenge(5.0)[0])["nonce"]
    n2 = challenge_params(auth.challenge(5.0)[0])["nonce"]
    assert n1 != n2


def test_constructor_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(realm=REALM, secret=b"")
    with pytest.raises(ValueError):
        DigestAuthenticator(realm=REALM, secret=SECRET, algorithms=("SHA-1",))


# --------------------------------------------------------------------------- verify
@pytest.mark.parametrize("index", [0, 1])
def test_good_credentials_both_algorithms(auth: DigestAuthenticator, index: int) -> None:
    ch = auth.challenge(100.0)[index]
    result = auth.verify(authorization(ch), "REGISTER", lookup, 101.0)
    assert result == AuthResult(ok=True, username="alice")


def test_realm_realm_escapes_round_trip() -> None:
    realm = 'we "quote" \\ things'
    a = DigestAuthenticator(realm=realm, secret=SECRET)
    ch = a.challenge(0.0)[0]
    assert challenge_params(ch)["realm"] == realm
    esc = realm.replace("\\", "\\\\").replace('"', '\\"')
    c = challenge_params(ch)
    resp = digest_response(
        ha1("alice", realm, "pw", "SHA-256"),
        nonce=c["nonce"],
        nc="00000001",
        cnonce="x",
        qop="auth",
        method="INVITE",
        uri="sip:b@h",
        algorithm="SHA-256",
    )
    header = (
        f'Digest username="alice", realm="{esc}", nonce="{c["nonce"]}", uri="sip:b@h", '
        f'response="{resp}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="x"'
    )
    ok = a.verify(header, "INVITE", lambda u, alg: ha1(u, realm, "pw", alg), 1.0)
    assert ok.ok


def test_wrong_password(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    r = auth.verify(authorization(ch, password="nope"), "REGISTER", lookup, 1.0)
    assert (r.ok, r.stale, r.reason) == (False, False, "credentials")


def test_unknown_user_looks_like_wrong_password(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    unknown = auth.verify(authorization(ch, username="mallory"), "REGISTER", lookup, 1.0)
    wrong = auth.verify(authorization(ch, username="bob"), "REGISTER", lookup, 1.0)
    assert (unknown.ok, unknown.stale, unknown.reason) == (wrong.ok, wrong.stale, wrong.reason)
    assert unknown.reason == "credentials"


def test_unknown_user_even_with_dummy_guess_fails(auth: DigestAuthenticator) -> None:
    """An attacker cannot authenticate as an unknown user with any password."""
    ch = auth.challenge(0.0)[0]
    r = auth.verify(authorization(ch, username="ghost", password=""), "REGISTER", lookup, 1.0)
    assert not r.ok


def test_method_is_bound(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    r = auth.verify(authorization(ch, method="REGISTER"), "INVITE", lookup, 1.0)
    assert r.reason == "credentials"


def test_wrong_realm(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    r = auth.verify(authorization(ch, realm="evil.example"), "REGISTER", lookup, 1.0)
    assert (r.ok, r.reason) == (False, "realm")


def test_stale_nonce_with_fake_clock(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(1000.0)[0]
    header = authorization(ch)
    fresh = DigestAuthenticator(realm=REALM, secret=SECRET, nonce_ttl=300.0)
    assert fresh.verify(header, "REGISTER", lookup, 1300.0).ok  # exactly at the TTL
    r = auth.verify(header, "REGISTER", lookup, 1300.5)
    assert r == AuthResult(ok=False, username="alice", stale=True, reason="stale")


def test_stale_nonce_with_wrong_password_is_not_stale(auth: DigestAuthenticator) -> None:
    """stale=true only for correct credentials: it lets the client retry silently."""
    ch = auth.challenge(0.0)[0]
    r = auth.verify(authorization(ch, password="bad"), "REGISTER", lookup, 10_000.0)
    assert (r.stale, r.reason) == (False, "credentials")


def test_forged_nonce(auth: DigestAuthenticator) -> None:
    other = DigestAuthenticator(realm=REALM, secret=b"another secret")
    ch = other.challenge(0.0)[0]
    r = auth.verify(authorization(ch), "REGISTER", lookup, 1.0)
    assert (r.ok, r.reason) == (False, "nonce")


def test_tampered_nonce(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    nonce = challenge_params(ch)["nonce"]
    flipped = ("B" if nonce[3] == "A" else "A").join([nonce[:3], nonce[4:]])
    r = auth.verify(authorization(ch.replace(nonce, flipped)), "REGISTER", lookup, 1.0)
    assert r.reason == "nonce"


@pytest.mark.parametrize(
    "nonce", ["", "abc", "!!!!", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"]
)
def test_garbage_nonce(auth: DigestAuthenticator, nonce: str) -> None:
    ch = auth.challenge(0.0)[0]
    good = challenge_params(ch)["nonce"]
    r = auth.verify(authorization(ch).replace(good, nonce), "REGISTER", lookup, 1.0)
    assert not r.ok and r.reason in ("nonce", "malformed")


def test_nonce_from_the_future_is_refused(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(5000.0)[0]
    assert auth.verify(authorization(ch), "REGISTER", lookup, 100.0).reason == "nonce"


def test_nonce_bound_to_realm() -> None:
    a = DigestAuthenticator(realm="a.example", secret=SECRET)
    b = DigestAuthenticator(realm="b.example", secret=SECRET)
    ch = a.challenge(0.0)[0]
    header = authorization(ch, realm="b.example")
    assert b.verify(header, "REGISTER", lookup, 1.0).reason == "nonce"


def test_replayed_nc_is_refused(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    assert auth.verify(authorization(ch, nc=1), "REGISTER", lookup, 1.0).ok
    assert auth.verify(authorization(ch, nc=1), "REGISTER", lookup, 2.0).reason == "replay"
    assert auth.verify(authorization(ch, nc=2), "REGISTER", lookup, 3.0).ok
    assert auth.verify(authorization(ch, nc=1), "REGISTER", lookup, 4.0).reason == "replay"
    assert auth.verify(authorization(ch, nc=7), "REGISTER", lookup, 5.0).ok


def test_failed_attempts_do_not_advance_nc(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    bad = auth.verify(authorization(ch, nc=5, password="x"), "REGISTER", lookup, 1.0)
    assert not bad.ok
    assert auth.verify(authorization(ch, nc=1), "REGISTER", lookup, 2.0).ok


def test_bounded_nonce_record_never_reopens_a_replay() -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET, max_tracked_nonces=4)
    chs = [a.challenge(float(t))[0] for t in range(10)]
    for t, ch in enumerate(chs):
        assert a.verify(authorization(ch), "REGISTER", lookup, 10.0 + t).ok
    assert len(a._nc_seen) <= 4
    for t, ch in enumerate(chs):  # replays: refused as replay, or stale after an eviction
        r = a.verify(authorization(ch), "REGISTER", lookup, 20.0 + t)
        assert not r.ok and r.reason in ("replay", "stale")
    assert a.verify(authorization(chs[-1], nc=2), "REGISTER", lookup, 30.0).ok


def test_expired_nonces_are_pruned() -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET, nonce_ttl=10.0, max_tracked_nonces=2)
    for t in range(3):
        assert a.verify(authorization(a.challenge(100.0 * t)[0]), "REGISTER", lookup, 100.0 * t).ok
    assert len(a._nc_seen) <= 2


def test_qop_is_required(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    c = challenge_params(ch)
    header = (
        f'Digest username="alice", realm="{REALM}", nonce="{c["nonce"]}", '
        f'uri="sip:x", response="{"0" * 64}", algorithm=SHA-256'
    )
    assert auth.verify(header, "REGISTER", lookup, 1.0).reason == "qop"
    assert (
        auth.verify(
            header + ', qop="auth-int", nc=00000001, cnonce="c"', "REGISTER", lookup, 1.0
        ).reason
        == "qop"
    )


def test_algorithm_not_offered() -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET, algorithms=("SHA-256",))
    ch = a.challenge(0.0)[0]
    header = authorization(ch).replace("algorithm=SHA-256", "algorithm=MD5")
    assert a.verify(header, "REGISTER", lookup, 1.0).reason == "algorithm"


def test_missing_algorithm_means_md5(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[1]  # MD5
    header = authorization(ch).replace(", algorithm=MD5", "")
    assert auth.verify(header, "REGISTER", lookup, 1.0).ok


def test_wrong_opaque(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    opaque = challenge_params(ch)["opaque"]
    header = authorization(ch).replace(opaque, "tampered")
    assert auth.verify(header, "REGISTER", lookup, 1.0).reason == "opaque"


def test_case_insensitive_names_and_scheme(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    header = authorization(ch)
    header = "DIGEST " + header.removeprefix("Digest ").replace("username=", "UserName=")
    header = header.replace("response=", "RESPONSE=").replace(", ", " ,\t ")
    assert auth.verify(header, "REGISTER", lookup, 1.0).ok


def test_uppercase_hex_response_accepted(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    header = authorization(ch)
    p = challenge_params(header)
    header = header.replace(p["response"], p["response"].upper())
    assert auth.verify(header, "REGISTER", lookup, 1.0).ok


def test_unquoted_values_parse() -> None:
    p = parse_digest_credentials('Digest a=1, b="two, three", c=x\\y, d="q\\"uo\\\\te"')
    assert p == {"a": "1", "b": "two, three", "c": "x\\y", "d": 'q"uo\\te'}


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Digest",
        "Digest ",
        "Basic dXNlcjpwYXNz",
        'Digest username="alice"',  # missing fields
        'Digest username="alice", username="bob"',  # duplicate
        'Digest username="unterminated',
        "Digest username=",
        "Digest =x",
        "Digest a=b c=d",
        'Digest a="b"c',
        "Digest a=b,,",
        'Digest a=b"c',
        "x" * 10_000,
    ],
)
def test_malformed_headers(auth: DigestAuthenticator, header: str) -> None:
    r = auth.verify(header, "REGISTER", lookup, 1.0)
    assert (r.ok, r.reason) == (False, "malformed")


def test_missing_uri_is_malformed(auth: DigestAuthenticator) -> None:
    ch = auth.challenge(0.0)[0]
    header = authorization(ch, uri="sip:x").replace(', uri="sip:x"', "")
    assert auth.verify(header, "REGISTER", lookup, 1.0).reason == "malformed"


@pytest.mark.parametrize("nc", ["1", "0000000g", "000000001", ""])
def test_bad_nc_is_malformed(auth: DigestAuthenticator, nc: str) -> None:
    ch = auth.challenge(0.0)[0]
    header = authorization(ch).replace("nc=00000001", f"nc={nc}" if nc else 'nc=""')
    assert auth.verify(header, "REGISTER", lookup, 1.0).reason == "malformed"


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET)
    r = a.verify(text, "REGISTER", lookup, 1.0)
    assert not r.ok
    parse_digest_credentials(text)


_value = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[A-Za-z0-9+/=_-]{0,60}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "username",
                "realm",
                "nonce",
                "uri",
                "response",
                "qop",
                "nc",
                "cnonce",
                "opaque",
                "algorithm",
                "UserName",
                "x",
            ]
        ),
        _value,
    ),
    st.booleans(),
)
def test_structured_garbage_never_raises(params: dict[str, str], quote: bool) -> None:
    a = DigestAuthenticator(realm=REALM, secret=SECRET)

    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' if quote else v

    header = "Digest " + ", ".join(f"{k}={q(v)}" for k, v in params.items())
    r = a.verify(header, "REGISTER", lookup, 1.0)
    assert not r.ok
