"""Digest authentication of devices (RFC 3261 §22, RFC 7616, RFC 8760), one check for the
registrar (Authorization, answered 401 + WWW-Authenticate) and the proxy
(Proxy-Authorization, answered 407 + Proxy-Authenticate).

`authenticate(values, method, snapshot, authenticator, now)` takes the credential field
values of one request and returns either `Authenticated(device)` or a `Challenge`: the
challenge values to send and the failure reasons to count (`sip_auth_failures_total`).

- Credentials for another realm are skipped, not judged (§22.3: a proxy on the path may
  need them; the proxy passes them on, see `remove_our_credentials`).
- Ours are verified in order (switch.sip.digest: nonce, nc replay, response); the first that
  authenticates a device of the snapshot wins.
- A correct answer to an expired nonce is not a failure: the client retries at once with the
  `stale=true` challenge (RFC 7616 §3.3), so it is not counted. Every other failure is
  counted with its reason ("credentials", "nonce", "malformed" …).
- No credentials at all: a challenge, nothing counted.

`check(...)` is the same with the authentication guard (bans.py) around it: a request from a
banned source, or for an ID under guard from an unknown address, is `Refused` before any
digest work; a request that fails verification is counted against its source and username.

The HA1 of a device comes from the snapshot (`Device.ha1_md5`, `Device.ha1_sha256`), chosen
by the algorithm token of RFC 8760 §2 - "MD5", "MD5-sess", "SHA-256", "SHA-256-sess",
case-insensitive (RFC 7616 §3.4: tokens are case-insensitive); a "-sess" variant uses the
HA1 of its hash (the session key is derived from it with the nonces). `stored_ha1` is the one
lookup both the registrar and the proxy use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from provisioning.model import Device, Snapshot
from switch.sip.digest import DigestAuthenticator, parse_digest_credentials
from switch.sip.message import Headers

from .bans import AuthGuard, Refused

__all__ = [
    "AuthOutcome",
    "Authenticated",
    "Challenge",
    "GuardedOutcome",
    "Refused",
    "authenticate",
    "check",
    "credential_username",
    "ha1_lookup",
    "remove_our_credentials",
    "stored_ha1",
]

# RFC 8760 §2 algorithm tokens (upper-cased) -> the hash of the stored HA1
_HASH_OF = {"MD5": "MD5", "MD5-SESS": "MD5", "SHA-256": "SHA-256", "SHA-256-SESS": "SHA-256"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    device: Device


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Send these challenge values (one per algorithm) in a 401/407; count `failures`."""

    values: tuple[str, ...]
    failures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a challenge needs at least one challenge value")


AuthOutcome: TypeAlias = Authenticated | Challenge
GuardedOutcome: TypeAlias = Authenticated | Challenge | Refused


def stored_ha1(device: Device, algorithm: str) -> str | None:
    """The device's HA1 for an algorithm token (see the module docstring); None for a token
    that is not one of RFC 8760's."""
    match _HASH_OF.get(algorithm.upper()):
        case "MD5":
            return device.ha1_md5
        case "SHA-256":
            return device.ha1_sha256
        case _:
            return None


def ha1_lookup(snapshot: Snapshot) -> Callable[[str, str], str | None]:
    """`lookup_ha1(username, algorithm)` for DigestAuthenticator.verify over a snapshot."""

    def lookup(username: str, algorithm: str) -> str | None:
        device = snapshot.devices_by_username.get(username)
        return None if device is None else stored_ha1(device, algorithm)

    return lookup


def authenticate(
    values: Iterable[str],
    method: str,
    snapshot: Snapshot,
    authenticator: DigestAuthenticator,
    now: float,
) -> AuthOutcome:
    """See the module docstring. `now`: the authenticator's clock (wall-clock seconds)."""
    lookup = ha1_lookup(snapshot)
    stale = False
    failures: list[str] = []
    for value in values:
        params = parse_digest_credentials(value)
        if params is not None and params.get("realm") != authenticator.realm:
            continue  # another realm's credentials: not ours to judge
        result = authenticator.verify(value, method, lookup, now)
        if result.ok and result.username is not None:
            device = snapshot.devices_by_username.get(result.username)
            if device is not None:
                return Authenticated(device=device)
        if result.stale:
            stale = True
        else:
            failures.append(result.reason or "unknown")
    challenge = tuple(authenticator.challenge(now, stale=stale))
    return Challenge(values=challenge, failures=tuple(failures))


def credential_username(values: Iterable[str], realm: str) -> str | None:
    """The username of the first credentials for `realm` (unverified: for counting)."""
    for value in values:
        params = parse_digest_credentials(value)
        if params is not None and params.get("realm") == realm and params.get("username"):
            return params["username"]
    return None


async def check(
    values: Sequence[str],
    method: str,
    snapshot: Snapshot,
    authenticator: DigestAuthenticator,
    now: float,
    *,
    guard: AuthGuard | None,
    host: str,
) -> GuardedOutcome:
    """`authenticate` behind the guard (module docstring); `host`: the request's source
    address. Without a guard it is `authenticate`."""
    if guard is None:
        return authenticate(values, method, snapshot, authenticator, now)
    username = credential_username(values, authenticator.realm)
    refused = await guard.admit(host, username, snapshot, now)
    if refused is not None:
        return refused
    outcome = authenticate(values, method, snapshot, authenticator, now)
    if isinstance(outcome, Challenge) and outcome.failures:
        await guard.failed(host, username, now)
    return outcome


def remove_our_credentials(headers: Headers, realm: str) -> None:
    """§22.3: the Proxy-Authorization values of our realm are consumed by us; the others
    go on to the proxy they are meant for."""
    ours = f'realm="{realm}"'
    values = headers.get_fields("Proxy-Authorization")
    if values:
        headers.remove("Proxy-Authorization")
        for v in values:
            if ours not in v:
                headers.add("Proxy-Authorization", v)
