"""Overload control against the real switch, driven by SIPp: a test of the option
`[overload] max_pending_invites` (the default is no cap; the measured signals, loop lag and
UDP queue, are shown by the benchmark's overload step, tests/bench/run.py, because a noisy
machine cannot be overloaded on cue).

With the cap at 3 and three calls ringing (a SIPp UAS that answers after 6 s), the carrier's
new INVITEs are refused at once with 503 + Retry-After (no transaction, no routing), while an
established call's ACK and BYE still go through. Once the ringing calls are answered, new
calls are served again.
"""

from __future__ import annotations

import time

import pytest

from .harness import CARRIER_IP, DeviceSpec, SeedSpec, free_port

pytestmark = pytest.mark.integration

CONTRACT, RINGER_NUMBER = "0355500100", "0355500200"
DESK = DeviceSpec("desk1", "desk1-secret-x")
RINGER = DeviceSpec("ring1", "ring1-secret-x")
CAP = 3
CONFIG = f"[overload]\nmax_pending_invites = {CAP}\n"
REFUSED = 5
RING_MS, TALK_MS = 6000, 2000


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(120)
def test_max_pending_invites_refuses_new_calls_and_lets_dialogs_finish(switch_proc, sipp):
    seed = SeedSpec(devices=[DESK, RINGER], ring_group=[DESK.id])
    seed.additional = [(RINGER_NUMBER, [RINGER.id])]
    sw = switch_proc(seed, config_toml=CONFIG)

    def pending() -> float:
        return sw.metrics().get_value("sip_invites_pending")

    ports = {}
    for dev in (DESK, RINGER):
        ports[dev.id] = free_port()
        reg = sipp(
            "register", remote=sw.udp, local_port=ports[dev.id],
            credentials=[(dev.id, dev.password)],
            keys={"expires": "300"}, timeout_s=8, name=f"register-{dev.id}",
        ).run()  # fmt: skip
        assert reg.returncode == 0 and reg.successful == 1, reg.report()
    desk = sipp("uas", local_port=ports[DESK.id], calls=1 + CAP, timeout_s=60).start()
    ringer = sipp(
        "uas_ring", local_port=ports[RINGER.id], calls=CAP, timeout_s=60,
        extra=["-d", str(RING_MS)],
    ).start()  # fmt: skip

    def carrier(scenario: str, service: str, calls: int, name: str, talk_ms: int = 0):  # type: ignore[no-untyped-def]
        return sipp(
            scenario, remote=sw.udp, local_ip=CARRIER_IP, calls=calls, rate=50,
            service=service, keys={"caller": "0312345678"}, timeout_s=40, name=name,
            extra=["-d", str(talk_ms)],
        ).start()  # fmt: skip

    # An established call, hung up (BYE) while the cap is reached.
    talking = carrier("uac_call", CONTRACT, 1, "talking", talk_ms=TALK_MS)
    assert wait_for(lambda: sw.metrics().get_value("sip_calls_active") >= 1, 10)
    # Three calls ringing: the cap.
    ringing = carrier("uac_call", RINGER_NUMBER, CAP, "ringing")
    assert wait_for(lambda: pending() == CAP, 5), sw.metrics_text()
    # New calls: refused.
    refused = carrier("uac_call_or_503", CONTRACT, REFUSED, "refused").wait()
    assert refused.counter("FailedTimeoutOnRecv") == REFUSED, refused.report()
    assert refused.counter("FailedRegexpHdrNotFound") == 0, refused.report()
    assert refused.successful == 0 and refused.failed == REFUSED, refused.report()
    assert "Retry-After: 5" in refused.messages(), refused.messages()[-2000:]

    tr = talking.wait()
    assert tr.successful == 1 and tr.failed == 0, tr.report()  # ACK and BYE went through
    assert pending() == CAP, "the established call ended after the ringing calls"

    rr = ringing.wait()
    assert rr.successful == CAP and rr.failed == 0, rr.report()
    assert pending() == 0
    # Served again: new calls complete.
    after = carrier("uac_call_or_503", CONTRACT, CAP, "after").wait()
    assert after.successful == CAP and after.failed == 0, after.report()
    dr, rgr = desk.wait(), ringer.wait()
    assert dr.successful == 1 + CAP and rgr.successful == CAP, dr.report() + rgr.report()

    m = sw.metrics()
    assert m.get_value("sip_overload_rejected_total", reason="pending_invites") == REFUSED
    assert m.get_value("sip_overload_rejected_total", reason="load") == 0
    assert m.get_value("sip_responses_total", code="503", direction="sent") == REFUSED
    # The ACKs of the 503s were dropped before parsing: only the answered calls' ACKs (and
    # those a retransmitted 200 caused) reached the transaction layer.
    acks = m.get_value("sip_requests_total", method="ACK")
    resent = dr.counter("Retransmissions") + rgr.counter("Retransmissions")
    assert 1 + 2 * CAP <= acks <= 1 + 2 * CAP + resent, (acks, resent)
    assert "Traceback" not in sw.logs()
