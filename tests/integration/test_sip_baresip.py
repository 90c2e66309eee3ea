"""Calls between two real softphones (baresip 1.0) registered to the switch.

Each baresip runs headless (see `baresip_helpers.py`): no sound card, G.711 only, driven and
observed through ctrl_tcp. bob answers automatically (account answermode=auto); alice dials bob
by username, then hangs up. Once over UDP, once over TLS to the switch's TLS listener.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter

import pytest

from tests.peers import need

from .baresip_helpers import Baresip, TracedMessage
from .harness import DeviceSpec, SeedSpec, tail

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _baresip_installed() -> None:
    need(shutil.which("baresip") is not None, "baresip")


ALICE = DeviceSpec("alice", "alice-baresip-1", kind="app")
BOB = DeviceSpec("bob", "bob-baresip-2", kind="desk")


@pytest.fixture
def baresips(tmp_path):
    made: list[Baresip] = []

    def make(*a, **kw) -> Baresip:
        b = Baresip(tmp_path, *a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def wait_registered(sw, phones: list[Baresip], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sw.metrics().get_value("sip_registrations_total", code="200") >= len(phones):
            return
        time.sleep(0.2)
    logs = "\n".join(f"--- baresip {p.dev.id} ---\n{tail(p.log, 3000)}" for p in phones)
    raise AssertionError(
        f"{len(phones)} baresip registrations not seen in /metrics\n{sw.logs()}\n{logs}"
    )


def test_call_between_two_baresip_softphones(switch_proc, baresips):
    sw = switch_proc(SeedSpec(devices=[ALICE, BOB]))
    bob = baresips(BOB, sw.sip_port, auto_answer=True)
    alice = baresips(ALICE, sw.sip_port, auto_answer=False)
    bob.connect()
    alice.connect()
    wait_registered(sw, [bob, alice])
    m0 = sw.metrics()

    alice.command("dial", f"sip:{BOB.id}@127.0.0.1:{sw.sip_port}")
    alice.wait_event("CALL_ESTABLISHED", 10)
    bob.wait_event("CALL_ESTABLISHED", 10)
    time.sleep(0.5)
    alice.command("hangup")
    alice.wait_event("CALL_CLOSED", 8)
    bob.wait_event("CALL_CLOSED", 8)

    m1 = sw.metrics()
    for method in ("INVITE", "ACK", "BYE"):
        delta = m1.get_value("sip_requests_total", method=method) - m0.get_value(
            "sip_requests_total", method=method
        )
        assert delta >= 1, f"{method} did not pass through the switch ({delta})\n{sw.logs()}"
    # bob saw the switch's Record-Route on the INVITE (baresip's -s trace).
    bob_trace = bob.log.read_text(errors="replace")
    assert (
        f"@127.0.0.1:{sw.sip_port};lr" in bob_trace or f"127.0.0.1:{sw.sip_port};lr" in bob_trace
    ), tail(bob.log, 6000)
    assert sw.alive(), sw.logs()


def _summary(msgs: list[TracedMessage]) -> str:
    return "\n".join(f"{m.transport} {m.src} -> {m.dst}: {m.first_line}" for m in msgs)


def test_call_between_two_baresip_softphones_over_tls(switch_proc, baresips, tls_cert):
    """REGISTER, INVITE, ACK and BYE all over TLS to the switch's TLS listener.

    baresip is given the switch's self-signed certificate as `sip_cafile` (the test cert is its
    own CA). Caveat: baresip 1.0 loads that file but does not enforce server verification (it
    also completes the handshake with an unrelated CA file; `sip_verify_server` only exists in
    later releases), so this test shows TLS transport, not certificate checking.

    The switch has no per-transport request counter, so "over TLS" is shown by (a) its
    `sip_connections_active{transport="tls"}` gauge (one connection per phone while registered
    and during the call) and (b) both phones' SIP traces: every message they exchanged with the
    switch went TLS to/from its TLS port, none to its UDP/TCP port.
    """
    cert, _key = tls_cert
    sw = switch_proc(SeedSpec(devices=[ALICE, BOB]))
    assert sw.tls_port, sw.logs()
    tls = {"transport": "tls", "cafile": cert}
    bob = baresips(BOB, sw.tls_port, auto_answer=True, **tls)
    alice = baresips(ALICE, sw.tls_port, auto_answer=False, **tls)
    bob.connect()
    alice.connect()
    wait_registered(sw, [bob, alice])
    m_reg = sw.metrics()
    assert m_reg.get_value("sip_connections_active", transport="tls") >= 2, (
        f"registered, but the switch counts "
        f"{m_reg.get_value('sip_connections_active', transport='tls')} TLS connections\n"
        f"{sw.logs()}"
    )

    alice.command("dial", f"sip:{BOB.id}@127.0.0.1:{sw.tls_port};transport=tls")
    alice.wait_event("CALL_ESTABLISHED", 10)
    bob.wait_event("CALL_ESTABLISHED", 10)
    m_call = sw.metrics()
    assert m_call.get_value("sip_connections_active", transport="tls") >= 2, sw.logs()
    assert m_call.get_value("sip_calls_active") >= 1, sw.logs()
    time.sleep(0.5)
    alice.command("hangup")
    alice.wait_event("CALL_CLOSED", 8)
    bob.wait_event("CALL_CLOSED", 8)

    m_end = sw.metrics()
    for method in ("INVITE", "ACK", "BYE"):
        delta = m_end.get_value("sip_requests_total", method=method) - m_reg.get_value(
            "sip_requests_total", method=method
        )
        assert delta >= 1, f"{method} did not pass through the switch ({delta})\n{sw.logs()}"

    switch_tls = (sw.ip, sw.tls_port)
    for phone, sent, received in (
        (alice, {"REGISTER", "INVITE", "ACK", "BYE"}, set()),
        (bob, {"REGISTER"}, {"INVITE", "ACK", "BYE"}),
    ):
        msgs = phone.trace()
        detail = f"{phone.dev.id}'s SIP trace:\n{_summary(msgs)}\n{tail(phone.log, 4000)}"
        # Every message the phone sent or received went over TLS, to/from the TLS listener.
        assert msgs, detail
        assert {m.transport for m in msgs} == {"TLS"}, detail
        assert all(switch_tls in (m.src, m.dst) for m in msgs), detail
        out = Counter(m.method for m in msgs if m.dst == switch_tls and m.method)
        inc = Counter(m.method for m in msgs if m.src == switch_tls and m.method)
        assert sent <= out.keys(), detail
        assert received <= inc.keys(), detail
        # The REGISTER was answered 200 OK over the same TLS transport.
        assert any(m.src == switch_tls and m.first_line.startswith("SIP/2.0 200") for m in msgs), (
            detail
        )
    assert sw.alive(), sw.logs()


def test_newcomer_baresip_registers_and_calls_on_make_run_defaults(switch_proc, baresips):
    """What a newcomer does after `make run`: two baresip softphones with the README's demo
    credentials, on the switch exactly as `make run` starts it (the demo seed, no
    configuration file, so the default digest challenge). Both register and call each other.
    """
    from .harness import REPO

    sw = switch_proc((REPO / "deploy" / "demo-seed.toml").read_text(), tls=False)
    desk = baresips(DeviceSpec("demo-desk", "desk-secret-0100"), sw.sip_port, auto_answer=True)
    app = baresips(
        DeviceSpec("demo-app", "app-secret-0100", kind="app"), sw.sip_port, auto_answer=False
    )
    desk.connect()
    app.connect()
    wait_registered(sw, [desk, app])
    assert sw.metrics().total("sip_auth_failures_total") == 0
    app.command("dial", f"sip:demo-desk@127.0.0.1:{sw.sip_port}")
    app.wait_event("CALL_ESTABLISHED", 10)
    desk.wait_event("CALL_ESTABLISHED", 10)
    app.command("hangup")
    app.wait_event("CALL_CLOSED", 8)
    assert "Function not implemented" not in app.log.read_text(errors="replace")
