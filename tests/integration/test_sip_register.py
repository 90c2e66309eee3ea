"""REGISTER with digest through the real switch, driven by SIPp (UDP, TCP, TLS), and the
one-device-per-ID rule."""

from __future__ import annotations

import re

import pytest

from .harness import SHA256_FIRST_CONFIG, DeviceSpec, SeedSpec
from .sipclient import SipClient, register

pytestmark = pytest.mark.integration

ALICE = DeviceSpec("alice", "alice-secret-1")
BOB = DeviceSpec("bob", "bob-secret-2")


def seed() -> SeedSpec:
    return SeedSpec(devices=[ALICE, BOB])


def responses(trace: str) -> list[str]:
    """Status lines of the responses SIPp received, in order."""
    return re.findall(r"message received \[\d+\] bytes :\s*\n\s*(SIP/2\.0 \d{3}[^\r\n]*)", trace)


# SIPp 3.6.1 from Debian is built without OpenSSL ("To use a TLS transport you must compile
# SIPp with OpenSSL"), so TLS REGISTER is driven by the stdlib client below instead.
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest(switch_proc, sipp, transport):
    sw = switch_proc(seed())
    before = sw.metrics()
    device = sipp(
        "register",
        remote=sw.addr(transport),
        transport=transport,
        credentials=[(ALICE.id, ALICE.password)],
        keys={"expires": "300"},
        timeout_s=10,
    )
    reg = device.run()
    assert reg.returncode == 0 and reg.successful == 1 and reg.failed == 0, reg.report()
    got = responses(reg.messages())
    assert [s.split()[1] for s in got] == ["401", "200"], (got, reg.report())
    trace = reg.messages()
    assert re.search(r"WWW-Authenticate:\s*Digest[^\r\n]*realm=\"softswitch.local\"", trace)
    assert re.search(r"Authorization:\s*Digest[^\r\n]*username=\"alice\"", trace)

    after = sw.metrics()
    for code in ("401", "200"):
        delta = after.get_value("sip_registrations_total", code=code) - before.get_value(
            "sip_registrations_total", code=code
        )
        assert delta == 1, (code, delta, sw.logs())

    # Unregister (Expires: 0) from the same address: authenticated again, 200.
    unreg = sipp(
        "register",
        remote=sw.addr(transport),
        transport=transport,
        local_port=device.local_port,
        credentials=[(ALICE.id, ALICE.password)],
        keys={"expires": "0"},
        timeout_s=10,
        name=f"unregister-{transport}",
    ).run()
    assert unreg.returncode == 0 and unreg.successful == 1, unreg.report()
    assert sw.alive(), sw.logs()


def test_wrong_password_is_refused(switch_proc, sipp):
    sw = switch_proc(seed())
    reg = sipp(
        "register",
        remote=sw.udp,
        credentials=[(ALICE.id, "not-the-password")],
        keys={"expires": "300"},
        timeout_s=6,
    ).run()
    # The scenario expects 200 after the challenge; a refusal must fail it.
    assert reg.successful == 0 and reg.returncode != 0, reg.report()
    codes = [s.split()[1] for s in responses(reg.messages())]
    assert codes[0] == "401" and codes[1:] and codes[1] in ("401", "403"), codes
    assert sw.metrics().total("sip_registrations_total", code="200") == 0


def test_second_device_refused_while_first_holds_the_id(switch_proc, sipp):
    sw = switch_proc(seed())
    device = sipp(
        "register",
        remote=sw.udp,
        credentials=[(ALICE.id, ALICE.password)],
        keys={"expires": "300"},
        timeout_s=10,
        name="first-device",
    )
    first = device.run()
    assert first.returncode == 0 and first.successful == 1, first.report()
    first_port = device.local_port

    # Another device (another address and Contact) with the right password: 403 + Warning.
    second = sipp(
        "register_refused",
        remote=sw.udp,
        local_ip="127.0.0.5",
        credentials=[(ALICE.id, ALICE.password)],
        timeout_s=10,
        name="second-device",
    ).run()
    assert second.returncode == 0 and second.successful == 1, second.report()
    trace = second.messages()
    m = re.search(r"SIP/2\.0 403[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*?Warning:\s*([^\r\n]+)", trace)
    assert m, f"no 403 with a Warning header\n{second.report()}"
    assert re.match(r"\d{3} \S+ \"", m.group(1)), f"Warning is not RFC 3261 20.43: {m.group(1)}"

    # The first device keeps its ID: it refreshes its binding from where it registered.
    refresh = sipp(
        "register",
        remote=sw.udp,
        local_port=first_port,
        credentials=[(ALICE.id, ALICE.password)],
        keys={"expires": "300"},
        timeout_s=10,
        name="first-device-refresh",
    ).run()
    assert refresh.returncode == 0 and refresh.successful == 1, refresh.report()

    # Another ID from the second address is not affected by alice's lock.
    other = sipp(
        "register",
        remote=sw.udp,
        local_ip="127.0.0.5",
        credentials=[(BOB.id, BOB.password)],
        keys={"expires": "300"},
        timeout_s=10,
        name="bob",
    ).run()
    assert other.returncode == 0 and other.successful == 1, other.report()
    assert sw.alive(), sw.logs()


def _offered(challenge) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        re.search(r"algorithm=([\w-]+)", v).group(1)  # type: ignore[union-attr]
        for v in challenge.all("WWW-Authenticate")
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_register_with_digest_stdlib_client_on_defaults(switch_proc, tls_cert, transport):
    """The switch on its defaults challenges with MD5 only (what every phone answers), over
    every transport, answered by a client that verifies the server certificate on TLS."""
    sw = switch_proc(seed())
    with SipClient(transport, sw.addr(transport), cafile=tls_cert[0], timeout=4) as c:
        challenge, final = register(c, user=ALICE.id, password=ALICE.password, algorithm="MD5")
        assert challenge is not None and challenge.status == 401, (challenge, sw.logs())
        assert _offered(challenge) == ["MD5"]
        assert final is not None and final.status == 200, (final and final.raw, sw.logs())
        contacts = final.all("Contact")
        assert any(f":{c.local[1]}" in v for v in contacts), final.raw
    m = sw.metrics()
    assert m.get_value("sip_registrations_total", code="200") == 1


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_option_sha256_first(switch_proc, tls_cert, transport, algorithm):
    """The `[auth] algorithms = ["SHA-256", "MD5"]` option: SHA-256 offered first (RFC 8760
    §2.4), and a client may answer either challenge."""
    sw = switch_proc(seed(), config_toml=SHA256_FIRST_CONFIG)
    with SipClient(transport, sw.addr(transport), cafile=tls_cert[0], timeout=4) as c:
        challenge, final = register(c, user=ALICE.id, password=ALICE.password, algorithm=algorithm)
        assert challenge is not None and challenge.status == 401, (challenge, sw.logs())
        assert _offered(challenge) == ["SHA-256", "MD5"]  # RFC 8760: the preferred one first
        assert final is not None and final.status == 200, (final and final.raw, sw.logs())
    m = sw.metrics()
    assert m.get_value("sip_registrations_total", code="200") == 1
