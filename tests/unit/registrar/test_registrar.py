"""Registrar logic with a fake clock, the memory state and a real digest authenticator."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from provisioning.model import Device, DeviceKind, Snapshot, Tenant, TenantStatus
from switch.metrics import Metrics
from switch.proxy.registrar import IN_USE_TEXT, Registrar, RegistrarPolicy
from switch.sip.digest import DigestAuthenticator, digest_response, ha1
from switch.sip.message import Headers, Request, Response
from switch.sip.parser import parse_message
from switch.sip.target import Target
from switch.state.memory import MemoryState

REALM = "test.realm"
SRC = Target("udp", "192.0.2.10", 40000)


def device(id_: str, password: str, tenant: str = "t1") -> Device:
    return Device(
        id=id_, tenant_id=tenant, username=id_, kind=DeviceKind.APP,
        ha1_md5=ha1(id_, REALM, password, "MD5"),
        ha1_sha256=ha1(id_, REALM, password, "SHA-256"),
        presented_number="+81355500100",
    )  # fmt: skip


def snapshot(status: TenantStatus = TenantStatus.ACTIVE) -> Snapshot:
    return Snapshot.build(
        version=1, realm=REALM,
        tenants=[Tenant(id="t1", name="T", status=status)],
        devices=[device("alice", "pw-a"), device("bob", "pw-b")],
        numbers=[], gateways=[],
    )  # fmt: skip


@dataclass
class Clock:
    t: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Env:
    def __init__(self, snap: Snapshot | None = None) -> None:
        self.clock = Clock()
        self.state = MemoryState()
        self.metrics = Metrics()
        self.auth = DigestAuthenticator(realm=REALM, secret=b"k" * 32, nonce_ttl=300)
        snap = snap or snapshot()
        self.reg = Registrar(
            state=self.state, snapshot=lambda: snap, authenticator=self.auth,
            policy=RegistrarPolicy(min_expires=60, max_expires=3600, default_expires=1800),
            metrics=self.metrics, clock=self.clock,
        )  # fmt: skip
        self.cseq = itertools.count(1)
        self.nc = itertools.count(1)

    async def register(
        self,
        user: str = "alice",
        password: str = "pw-a",
        *,
        contacts: list[str] | None = None,
        expires: int | None = None,
        call_id: str = "call-1",
        cseq: int | None = None,
        to_user: str | None = None,
        source: Target = SRC,
        nonce_from: Response | None = None,
        authenticate: bool = True,
        algorithm: str = "MD5",
    ) -> Response:
        """One REGISTER; with `authenticate`, first get a challenge (or use `nonce_from`)."""
        contacts = ["<sip:alice@192.168.1.5:5060>"] if contacts is None else contacts
        headers = [
            ("Via", "SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK" + str(next(self.nc))),
            ("From", f"<sip:{user}@{REALM}>;tag=f1"),
            ("To", f"<sip:{to_user or user}@{REALM}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq if cseq is not None else next(self.cseq)} REGISTER"),
            ("Max-Forwards", "70"),
        ]
        headers += [("Contact", c) for c in contacts]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        req = Request(method="REGISTER", uri=f"sip:{REALM}", headers=Headers(headers))
        req = _roundtrip(req)
        if not authenticate:
            return await self.reg.handle(req, source)
        challenge = nonce_from or await self.reg.handle(_roundtrip(req), source)
        assert challenge.status == 401
        req.headers.add("Authorization", self.credentials(challenge, user, password, algorithm))
        return await self.reg.handle(_roundtrip(req), source)

    def credentials(self, challenge: Response, user: str, password: str, alg: str) -> str:
        values = challenge.headers.get_all("WWW-Authenticate")
        www = next(v for v in values if f"algorithm={alg}" in v)
        nonce = www.split('nonce="')[1].split('"')[0]
        opaque = www.split('opaque="')[1].split('"')[0]
        nc = f"{next(self.nc):08x}"
        resp = digest_response(
            ha1(user, REALM, password, alg), nonce=nonce, nc=nc, cnonce="cn", qop="auth",
            method="REGISTER", uri=f"sip:{REALM}", algorithm=alg,
        )  # fmt: skip
        return (
            f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="sip:{REALM}", '
            f'response="{resp}", algorithm={alg}, qop=auth, nc={nc}, cnonce="cn", '
            f'opaque="{opaque}"'
        )


def _roundtrip(req: Request) -> Request:
    parsed = parse_message(req.to_bytes())
    assert isinstance(parsed, Request)
    return parsed


def contacts_of(resp: Response) -> list[str]:
    return resp.headers.get_all("Contact")


# --------------------------------------------------------------------------- auth
async def test_no_credentials_gets_challenge_for_both_algorithms() -> None:
    env = Env()
    resp = await env.register(authenticate=False)
    assert resp.status == 401
    www = resp.headers.get_all("WWW-Authenticate")
    assert len(www) == 2 and all(f'realm="{REALM}"' in v for v in www)
    assert resp.to_tag is not None


async def test_correct_password_registers_with_md5_and_sha256() -> None:
    env = Env()
    resp = await env.register()
    assert resp.status == 200
    assert contacts_of(resp) == ["<sip:alice@192.168.1.5:5060>;expires=1800"]
    resp = await env.register(algorithm="SHA-256")
    assert resp.status == 200
    assert await env.state.count() == 1


async def test_wrong_password_is_rechallenged_and_counted() -> None:
    env = Env()
    resp = await env.register(password="wrong")
    assert resp.status == 401
    assert "stale" not in resp.headers.get_all("WWW-Authenticate")[0]
    assert env.metrics.value("sip_auth_failures_total", {"reason": "credentials"}) == 1
    assert await env.state.count() == 0


async def test_unknown_user_gets_the_same_challenge_as_a_known_one() -> None:
    env = Env()
    unknown = await env.register("mallory", "x")
    wrong = await env.register("alice", "x")
    assert unknown.status == wrong.status == 401

    def shape(r: Response) -> list[tuple[str, str]]:
        skip = {"WWW-Authenticate", "Via", "From", "To", "Call-ID", "CSeq", "Date"}
        return [(n, v) for n, v in r.headers if n not in skip]

    assert shape(unknown) == shape(wrong)
    strip = [v.split("nonce=")[0] for v in unknown.headers.get_all("WWW-Authenticate")]
    assert strip == [v.split("nonce=")[0] for v in wrong.headers.get_all("WWW-Authenticate")]


async def test_expired_nonce_gets_stale_rechallenge() -> None:
    env = Env()
    first = await env.register(authenticate=False)
    env.clock.t += 301
    resp = await env.register(nonce_from=first)
    assert resp.status == 401
    assert all("stale=true" in v for v in resp.headers.get_all("WWW-Authenticate"))


async def test_to_user_must_be_the_authenticated_user() -> None:
    env = Env()
    resp = await env.register(to_user="bob")
    assert resp.status == 403
    assert await env.state.count() == 0


async def test_suspended_tenant_cannot_register() -> None:
    env = Env(snapshot(TenantStatus.SUSPENDED))
    assert (await env.register()).status == 403


# --------------------------------------------------------------------------- expiry
async def test_too_brief_gets_423_with_min_expires() -> None:
    env = Env()
    resp = await env.register(expires=30)
    assert resp.status == 423
    assert resp.headers.get("Min-Expires") == "60"
    resp = await env.register(contacts=["<sip:alice@192.168.1.5>;expires=10"])
    assert resp.status == 423


async def test_long_expiry_is_clamped_and_contact_param_wins() -> None:
    env = Env()
    resp = await env.register(contacts=["<sip:alice@192.168.1.5:5060>;expires=99999"])
    assert contacts_of(resp) == ["<sip:alice@192.168.1.5:5060>;expires=3600"]
    resp = await env.register(contacts=["<sip:alice@192.168.1.5:5060>;expires=120"], expires=900)
    assert contacts_of(resp) == ["<sip:alice@192.168.1.5:5060>;expires=120"]


async def test_binding_expires_with_time() -> None:
    env = Env()
    await env.register(expires=120)
    env.clock.t += 60
    assert [b.remaining(env.clock.t) for b in await env.reg.lookup("alice")] == [60]
    env.clock.t += 61
    assert await env.reg.lookup("alice") == []


# --------------------------------------------------------------------------- contacts
async def test_two_contacts_from_the_same_device_and_query() -> None:
    env = Env()
    resp = await env.register(
        contacts=["<sip:alice@192.168.1.5:5060>", "<sip:alice@192.168.1.5:5060;transport=tcp>"],
        expires=600,
    )
    assert resp.status == 200
    assert len(contacts_of(resp)) == 2
    query = await env.register(contacts=[])  # no Contact: just list the bindings
    assert query.status == 200 and len(contacts_of(query)) == 2


async def test_star_unbinds_all_and_frees_the_id() -> None:
    env = Env()
    await env.register(expires=600)
    resp = await env.register(contacts=["*"], expires=0)
    assert resp.status == 200 and contacts_of(resp) == []
    assert await env.state.count() == 0
    assert await env.state.device_owner("alice", env.clock.t) is None
    other = await env.register(contacts=["<sip:alice@10.9.9.9:5060>"], call_id="other")
    assert other.status == 200


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(["*"], 60), (["*"], None), (["*", "<sip:alice@192.168.1.5>"], 0)],
)
async def test_star_misuse_is_400(contacts: list[str], expires: int | None) -> None:
    env = Env()
    assert (await env.register(contacts=contacts, expires=expires)).status == 400


async def test_expires_zero_removes_one_contact() -> None:
    env = Env()
    a, b = "<sip:alice@192.168.1.5:5060>", "<sip:alice@192.168.1.5:5062>"
    await env.register(contacts=[a, b], expires=600)
    resp = await env.register(contacts=[b + ";expires=0"])
    assert contacts_of(resp) == [a + ";expires=600"]


async def test_out_of_order_cseq_for_same_call_id_is_rejected() -> None:
    env = Env()
    assert (await env.register(cseq=10, expires=600)).status == 200
    resp = await env.register(cseq=4, expires=300)
    assert resp.status == 400
    assert [b.cseq for b in await env.reg.lookup("alice")] == [10]


async def test_instance_id_is_stored_and_replaces_old_contact() -> None:
    env = Env()
    inst = '"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"'
    await env.register(contacts=[f"<sip:alice@192.168.1.5:5060>;+sip.instance={inst}"])
    resp = await env.register(contacts=[f"<sip:alice@192.168.1.77:5060>;+sip.instance={inst}"])
    assert resp.status == 200
    bindings = await env.reg.lookup("alice")
    assert [(b.contact, b.instance_id) for b in bindings] == [("sip:alice@192.168.1.77:5060", inst)]
    assert bindings[0].source == SRC


# --------------------------------------------------------------------------- one device per ID
async def test_second_device_is_refused_with_403_and_warning() -> None:
    env = Env()
    assert (await env.register(expires=600)).status == 200
    resp = await env.register(
        contacts=["<sip:alice@10.0.0.99:5060>"], call_id="phone-2",
        source=Target("udp", "198.51.100.7", 5060),
    )  # fmt: skip
    assert resp.status == 403
    assert resp.headers.get("Warning") == f'399 softswitch "{IN_USE_TEXT}"'
    assert [b.contact for b in await env.reg.lookup("alice")] == ["sip:alice@192.168.1.5:5060"]
    assert env.metrics.value("sip_auth_failures_total", {"reason": "id_in_use"}) == 1
    # ... and it cannot unregister the first device either
    star = await env.register(contacts=["*"], expires=0, call_id="phone-2")
    assert star.status == 403


async def test_same_device_refreshes_even_after_nat_rebind() -> None:
    env = Env()
    await env.register(expires=600)
    env.clock.t += 300
    rebound = Target("udp", "192.0.2.10", 41234)  # new NAT mapping, same Contact
    resp = await env.register(expires=600, source=rebound)
    assert resp.status == 200
    (b,) = await env.reg.lookup("alice")
    assert b.source == rebound and b.remaining(env.clock.t) == 600


async def test_id_is_free_after_every_binding_expired() -> None:
    env = Env()
    await env.register(expires=120)
    env.clock.t += 121
    resp = await env.register(contacts=["<sip:alice@10.0.0.99:5060>"], call_id="phone-2")
    assert resp.status == 200


async def test_operator_release_frees_the_id() -> None:
    env = Env()
    await env.register(expires=600)
    assert await env.reg.release_device("alice") == 1
    assert await env.reg.lookup("alice") == []
    resp = await env.register(contacts=["<sip:alice@10.0.0.99:5060>"], call_id="phone-2")
    assert resp.status == 200


async def test_ids_are_independent() -> None:
    env = Env()
    await env.register(expires=600)
    resp = await env.register("bob", "pw-b", contacts=["<sip:bob@10.0.0.99:5060>"], call_id="b")
    assert resp.status == 200


async def test_require_is_420() -> None:
    env = Env()
    req = _roundtrip(
        Request(
            method="REGISTER", uri=f"sip:{REALM}",
            headers=Headers([
                ("Via", "SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKr"),
                ("From", f"<sip:alice@{REALM}>;tag=1"), ("To", f"<sip:alice@{REALM}>"),
                ("Call-ID", "c"), ("CSeq", "1 REGISTER"), ("Require", "foo"),
            ]),
        )
    )  # fmt: skip
    resp = await env.reg.handle(req, SRC)
    assert resp.status == 420 and resp.headers.get("Unsupported") == "foo"
