"""Routing decisions carried out by the real switch (subprocess) between real SIPp peers.

Topology (all loopback, as in test_sip_calls.py): devices are SIPp instances on 127.0.0.1
that register and stay on their address; the carrier is SIPp on 127.0.0.2 (the seed's
gateway allowed_sources); the gateway towards the outside world (forwarded and outbound
calls) is a SIPp UAS on 127.0.0.3; the media service (`[media] uri`) is a SIPp UAS on
127.0.0.1 standing in for the media server of the next issue: what arrives there (the
Request-URI with the prompt/mailbox parameters) is what these tests check.

Seeds are generated here (not with harness.SeedSpec, which has no options): every tenant
has exactly the IDs a test says, so its channels (= IDs) are known.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from .harness import CARRIER_IP, OUTSIDE_IP, REALM, free_port

pytestmark = pytest.mark.integration

CONTRACT = "0355500100"
CONTRACT_E164 = "+81355500100"
CALLER = "0312345678"
FORWARD_TARGET = "09011112222"


# --------------------------------------------------------------------------- seeds
@dataclass
class Dev:
    id: str
    kind: str = "desk"

    @property
    def password(self) -> str:
        return f"{self.id}-secret-routing"


@dataclass
class Tenant:
    devices: list[Dev]
    ring_group: list[str] | None = None
    number: dict[str, Any] = field(default_factory=dict)  # extra [[tenants.numbers]] keys
    options: dict[str, bool] = field(default_factory=dict)
    after_hours: dict[str, Any] | None = None
    forwarding: dict[str, Any] | None = None
    gw_port: int = 5060
    tenant_id: str = "t1"

    def toml(self) -> str:
        out = [
            f'realm = "{REALM}"', "",
            "[[gateways]]", 'id = "carrier"', f'host = "{OUTSIDE_IP}"', f"port = {self.gw_port}",
            'transport = "udp"', f'allowed_sources = ["{CARRIER_IP}"]', "",
            "[[tenants]]", f'id = "{self.tenant_id}"', 'timezone = "Asia/Tokyo"',
            "identity_verified = true", "",
        ]  # fmt: skip
        for d in self.devices:
            out += [
                "  [[tenants.devices]]", f'  id = "{d.id}"', f'  kind = "{d.kind}"',
                f'  password = "{d.password}"', f'  presented_number = "{CONTRACT}"', "",
            ]  # fmt: skip
        group = self.ring_group or [d.id for d in self.devices]
        out += [
            "  [[tenants.numbers]]", f'  number = "{CONTRACT}"', '  kind = "contract"',
            "  ring_group = [" + ", ".join(f'"{g}"' for g in group) + "]",
        ]  # fmt: skip
        out += [f"  {k} = {_toml(v)}" for k, v in self.number.items()]
        for name, table in (
            ("options", self.options),
            ("after_hours", self.after_hours),
            ("forwarding", self.forwarding),
        ):
            if table:
                out += [f"  [tenants.numbers.{name}]"]
                out += [f"  {k} = {_toml(v)}" for k, v in table.items()]
        return "\n".join(out) + "\n"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def media_config(port: int, extra: str = "") -> str:
    return f'[media]\nuri = "sip:media@127.0.0.1:{port}"\n{extra}'


# --------------------------------------------------------------------------- helpers
def register(sipp: Callable[..., Any], sw: Any, dev: Dev, port: int) -> None:
    res = sipp("register", remote=sw.udp, local_port=port,
               credentials=[(dev.id, dev.password)], keys={"expires": "300"}, timeout_s=8,
               name=f"register-{dev.id}").run()  # fmt: skip
    assert res.returncode == 0 and res.successful == 1, res.report()


def carrier(sipp: Callable[..., Any], sw: Any, scenario: str = "uac_call", *, calls: int = 1,
            hold_ms: int = 200, name: str = "carrier", timeout_s: float = 20,
            **kw: Any) -> Any:  # fmt: skip
    return sipp(scenario, remote=sw.udp, local_ip=CARRIER_IP, calls=calls, rate=20,
                service=CONTRACT, keys={"caller": CALLER}, timeout_s=timeout_s,
                extra=["-d", str(hold_ms)], name=name, **kw)  # fmt: skip


def invites(trace: str) -> list[str]:
    """Request lines of the INVITEs a SIPp instance received."""
    return re.findall(r"message received \[\d+\] bytes :\s*\n\s*(INVITE \S+) SIP/2\.0", trace)


def invite_times(trace: str) -> list[float]:
    """Arrival time (epoch seconds) of each INVITE in a SIPp -trace_msg file."""
    stamps = re.findall(
        r"-{10,} (\d{4}-\d\d-\d\d[ T][\d:.]+)\s*\n[^\n]*message received \[\d+\] bytes :"
        r"\s*\n\s*INVITE ",
        trace,
    )
    return [datetime.fromisoformat(s.replace(" ", "T")).timestamp() for s in stamps]


def first_invite(trace: str) -> str:
    start = trace.find("INVITE sip:")
    assert start >= 0, trace[:2000]
    return trace[start : trace.find("\n\n", start)]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def active(sw: Any) -> float:
    return float(sw.metrics().total("sip_calls_active"))  # summed over workers, if any


def decisions(sw: Any, rule: str) -> float:
    return float(sw.metrics().total("routing_decisions_total", rule=rule))


# --------------------------------------------------------------------------- tests
def test_fourth_call_of_three_ids_hears_busy_message_then_next_call_succeeds(
    switch_proc: Any, sipp: Any
) -> None:
    """3 IDs = 3 channels. Three calls up: the 4th is handed to the media service with the
    fixed busy prompt (no voicemail on the number); once one call hangs up, the next call
    rings the device again."""
    media_port, dev_port = free_port(), free_port()
    desk = Dev("desk1")
    seed = Tenant([desk, Dev("desk2"), Dev("app1", "app")], ring_group=["desk1"])
    sw = switch_proc(seed.toml(), config_toml=media_config(media_port))
    register(sipp, sw, desk, dev_port)
    device = sipp("uas", local_port=dev_port, calls=4, timeout_s=30, name="desk1").start()
    media = sipp("uas", local_port=media_port, calls=1, timeout_s=30, name="media").start()
    long_calls = carrier(sipp, sw, calls=2, hold_ms=9000, name="carrier-long").start()
    short_call = carrier(sipp, sw, calls=1, hold_ms=2500, name="carrier-short").start()
    wait_for(lambda: active(sw) == 3, 5, "three answered calls")

    fourth = carrier(sipp, sw, hold_ms=300, name="carrier-fourth").run()
    assert fourth.returncode == 0 and fourth.successful == 1, fourth.report() + sw.logs()
    assert decisions(sw, "inbound-channels-full") == 1

    sr = short_call.wait()
    assert sr.successful == 1, sr.report()
    wait_for(lambda: active(sw) == 2, 5, "the short call to end")
    fifth = carrier(sipp, sw, hold_ms=300, name="carrier-fifth").run()
    assert fifth.returncode == 0 and fifth.successful == 1, fifth.report()
    lr = long_calls.wait()
    dr, mr = device.wait(), media.wait()
    detail = "\n".join(r.report() for r in (lr, dr, mr)) + sw.logs()
    assert lr.successful == 2, detail
    assert dr.successful == 4 and len(invites(dr.messages())) == 4, detail
    (busy,) = invites(mr.messages())
    assert busy.startswith(f"INVITE sip:busy@127.0.0.1:{media_port};"), busy
    for param in ("prompt=busy", "then=hangup", "tenant=t1", "cause=486", f"caller={CALLER}"):
        assert f";{param}" in busy, busy
    assert re.search(r";target=\+81355500100", busy), busy


def test_desk_phone_rings_the_app_ring_delay_before_the_app(switch_proc: Any, sipp: Any) -> None:
    desk, app = Dev("desk1"), Dev("app1", "app")
    seed = Tenant([desk, app], number={"app_ring_delay": 2.0, "max_ring_time": 5.0})
    sw = switch_proc(seed.toml())
    p_desk, p_app = free_port(), free_port()
    register(sipp, sw, desk, p_desk)
    register(sipp, sw, app, p_app)
    d = sipp("uas_noanswer", local_port=p_desk, calls=1, timeout_s=15, name="desk1").start()
    a = sipp("uas_noanswer", local_port=p_app, calls=1, timeout_s=15, name="app1").start()
    ur = carrier(sipp, sw, "uac_expect_noanswer", name="carrier").run()
    dr, ar = d.wait(), a.wait()
    detail = "\n".join(r.report() for r in (ur, dr, ar))
    assert ur.returncode == 0 and ur.successful == 1, detail
    (t_desk,), (t_app,) = invite_times(dr.messages()), invite_times(ar.messages())
    assert 1.8 <= t_app - t_desk <= 3.0, (t_desk, t_app, detail)
    for trace in (dr.messages(), ar.messages()):  # both learn the dialled number
        assert re.search(
            rf"(?im)^P-Called-Party-ID:\s*<sip:\+81355500100@{REALM};user=phone>", trace
        ), trace[:2000]


@pytest.mark.parametrize("registered", [True, False])
def test_forwarding_on_reaches_gateway_as_tenant_number_and_no_device_rings(
    switch_proc: Any, sipp: Any, registered: bool
) -> None:
    """Forwarding ON: the gateway gets the call with the tenant number as identity; the
    registered desk phone never rings; with nobody registered it works just the same."""
    gw_port, dev_port = free_port(OUTSIDE_IP), free_port()
    desk = Dev("desk1")
    seed = Tenant(
        [desk],
        options={"forwarding": True, "voicemail": True},
        forwarding={"enabled": True, "target": FORWARD_TARGET},
        gw_port=gw_port,
    )
    sw = switch_proc(seed.toml())
    if registered:
        register(sipp, sw, desk, dev_port)
    device = sipp("uas", local_port=dev_port, calls=1, timeout_s=6, name="desk1").start()
    gw = sipp("uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=15,
              name="gateway").start()  # fmt: skip
    ur = carrier(sipp, sw, hold_ms=300).run()
    gr = gw.wait()
    dr = device.stop()
    detail = ur.report() + "\n" + gr.report() + "\n" + sw.logs()
    assert ur.returncode == 0 and ur.successful == 1, detail
    assert gr.successful == 1, detail
    invite = first_invite(gr.messages())
    assert invite.startswith(f"INVITE sip:{FORWARD_TARGET}@{OUTSIDE_IP}:{gw_port} "), invite
    assert re.search(r"(?im)^P-Asserted-Identity:\s*<sip:\+81355500100@", invite), invite
    frm = re.search(r"(?im)^From:(.*)$", invite)
    assert frm and f"sip:{CONTRACT}@" in frm.group(1) and CALLER not in frm.group(1), invite
    assert re.search(r"(?im)^History-Info:.*index=1\.1", invite), invite
    assert re.search(r"(?im)^Diversion:\s*<sip:0355500100@.*reason=unconditional", invite)
    assert invites(dr.messages()) == [], "a device rang while forwarding is ON"
    assert decisions(sw, "inbound-forwarding") == 1


def test_after_hours_slot_reaches_media_with_the_prompt(switch_proc: Any, sipp: Any) -> None:
    """Every slot of every day kind announces, so the test does not depend on the clock."""
    media_port = free_port()
    every = "A" * 48
    seed = Tenant(
        [Dev("desk1")],
        options={"after_hours": True, "voicemail": True},
        after_hours={
            "enabled": True, "announcement": "template-2",
            "weekday": every, "saturday": every, "sunday": every, "holiday": every,
        },
    )  # fmt: skip
    sw = switch_proc(seed.toml(), config_toml=media_config(media_port))
    media = sipp("uas", local_port=media_port, calls=1, timeout_s=15, name="media").start()
    ur = carrier(sipp, sw, hold_ms=300).run()
    mr = media.wait()
    assert ur.returncode == 0 and ur.successful == 1, ur.report() + mr.report() + sw.logs()
    (line,) = invites(mr.messages())
    assert line.startswith(f"INVITE sip:announce@127.0.0.1:{media_port};"), line
    for param in ("prompt=template-2", "then=voicemail", "tenant=t1"):
        assert f";{param}" in line, line
    assert re.search(r";mailbox=\+81355500100", line), line
    assert decisions(sw, "after-hours-announce") == 1


def test_emergency_number_is_refused_with_403(switch_proc: Any, sipp: Any) -> None:
    desk = Dev("desk1")
    sw = switch_proc(Tenant([desk]).toml())
    port = free_port()
    register(sipp, sw, desk, port)
    ur = sipp("routing/uac_auth_expect_403", remote=sw.udp, local_port=port, calls=1, rate=1,
              service="110", auth=(desk.id, desk.password), keys={"caller": desk.id},
              timeout_s=10).run()  # fmt: skip
    assert ur.returncode == 0 and ur.successful == 1, ur.report() + sw.logs()
    trace = ur.messages()
    assert "SIP/2.0 407" in trace and re.search(r"(?im)^Proxy-Authorization:\s*Digest", trace)
    assert re.search(r'(?im)^Warning:\s*399 \S+ ".*emergency', trace), trace[-2500:]
    assert decisions(sw, "outbound-emergency") == 1


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_killed_ends_do_not_leak_a_channel(switch_proc: Any, sipp: Any, state: str) -> None:
    """One ID = one channel; lease TTL 3 s for the test. A call is answered, then both ends
    die without BYE (SIGKILL). While the lease lives the next call is busy (it reaches the
    busy message); once it expires, a call rings the device again.

    (When only the phone dies, the realistic end is the caller's BYE: it passes through the
    switch and releases the lease at once even though the dead phone never answers it; the
    unit tests cover that path. This test covers the case nothing can release: both gone.)
    With Redis the lease lives in the shared backend (ids made unique: the server is shared
    with other tests).
    """
    media_port, dev_port = free_port(), free_port()
    config = media_config(media_port, "[proxy]\nchannel_ttl = 3.0\nlease_sweep = 0.5\n")
    unique = uuid.uuid4().hex[:8]
    desk, tenant_id = Dev(f"desk-{unique}"), f"t-{unique}"
    if state == "redis":
        config += '[state]\nurl = "redis://127.0.0.1:6379/0"\n'
    sw = switch_proc(Tenant([desk], tenant_id=tenant_id).toml(), config_toml=config)
    assert (state == "redis") == ("runtime state in redis" in sw.logs()), sw.logs()
    register(sipp, sw, desk, dev_port)
    doomed = sipp("uas", local_port=dev_port, calls=1, timeout_s=30, name="doomed").start()
    caller = carrier(sipp, sw, hold_ms=60_000, name="doomed-caller", timeout_s=70).start()
    wait_for(lambda: active(sw) == 1, 5, "the first call to be answered")
    for s in (doomed, caller):
        assert s.proc is not None
        s.proc.kill()  # SIGKILL: no BYE from anyone
        s.proc.wait(5)
    answered_at = time.monotonic()

    media = sipp("uas", local_port=media_port, calls=1, timeout_s=15, name="media").start()
    busy = carrier(sipp, sw, hold_ms=200, name="while-held").run()
    assert busy.successful == 1, busy.report() + sw.logs()
    assert invites(media.wait().messages())[0].startswith("INVITE sip:busy@")

    time.sleep(max(0.0, answered_at + 3.5 - time.monotonic()))  # the TTL runs out
    device = sipp("uas", local_port=dev_port, calls=1, timeout_s=15, name="desk1").start()
    later = carrier(sipp, sw, hold_ms=200, name="after-expiry").run()
    dr = device.wait()
    assert later.successful == 1, later.report() + dr.report() + sw.logs()
    assert dr.successful == 1 and len(invites(dr.messages())) == 1, dr.report()
    wait_for(lambda: active(sw) == 0, 5, "the expired call to leave sip_calls_active")


def test_no_answer_goes_to_voicemail_after_the_ring_time(switch_proc: Any, sipp: Any) -> None:
    """Voicemail ring time 5 s: the ringing desk phone is CANCELled and the call reaches the
    media service's voicemail (cause=408), which answers it."""
    media_port, dev_port = free_port(), free_port()
    desk = Dev("desk1")
    seed = Tenant([desk], options={"voicemail": True}, number={"voicemail_ring_time": 5})
    sw = switch_proc(seed.toml(), config_toml=media_config(media_port))
    register(sipp, sw, desk, dev_port)
    device = sipp("uas_noanswer", local_port=dev_port, calls=1, timeout_s=15, name="desk1")
    media = sipp("uas", local_port=media_port, calls=1, timeout_s=15, name="media").start()
    device.start()
    ur = carrier(sipp, sw, "routing/uac_call_forked", hold_ms=300).run()
    dr, mr = device.wait(), media.wait()
    detail = "\n".join(r.report() for r in (ur, dr, mr)) + sw.logs()
    assert ur.returncode == 0 and ur.successful == 1, detail
    assert dr.successful == 1 and "CANCEL sip:" in dr.messages(), detail
    (line,) = invites(mr.messages())
    assert line.startswith(f"INVITE sip:voicemail@127.0.0.1:{media_port};"), line
    for param in ("mailbox=+81355500100", "cause=408", f"caller={CALLER}"):
        assert f";{param}" in line, line
    (t_desk,), (t_vm,) = invite_times(dr.messages()), invite_times(mr.messages())
    assert 4.5 <= t_vm - t_desk <= 7.0, (t_desk, t_vm)


def test_outbound_call_presents_the_ids_number_at_the_gateway(switch_proc: Any, sipp: Any) -> None:
    gw_port, port = free_port(OUTSIDE_IP), free_port()
    app = Dev("app1", "app")
    sw = switch_proc(Tenant([app], gw_port=gw_port).toml())
    register(sipp, sw, app, port)
    gw = sipp("uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=15,
              name="gateway").start()  # fmt: skip
    ur = sipp("uac_auth_call", remote=sw.udp, local_port=port, calls=1, rate=1,
              service="0312345678", auth=(app.id, app.password), keys={"caller": app.id},
              timeout_s=15, extra=["-d", "200"]).run()  # fmt: skip
    gr = gw.wait()
    assert ur.successful == 1 and gr.successful == 1, ur.report() + gr.report() + sw.logs()
    invite = first_invite(gr.messages())
    assert invite.startswith(f"INVITE sip:0312345678@{OUTSIDE_IP}:{gw_port} "), invite
    assert re.search(r"(?im)^P-Asserted-Identity:\s*<sip:\+81355500100@", invite), invite
    assert "Proxy-Authorization" not in invite
    assert decisions(sw, "outbound") == 1
