"""Floods from one source against the real switch on its defaults, driven by SIPp.

SIPp on 127.0.0.9 floods UDP INVITEs (a stranger calling the tenant's number) or REGISTERs
with a wrong password, at several times what the switch can process, while legitimate
traffic goes on at a low rate: carrier calls from 127.0.0.2 to a device (a SIPp UAS on
127.0.0.1) and registrations from 127.0.0.1. The flood source must be blocked (what it sends
dropped before parsing, `sip_flood_*` metrics), every legitimate call and registration must
succeed, and after the block time a single request from the flood source is answered again.

Defaults under test ([security]): flood_limit 600 per flood_window 2 s, flood_block 10 s.
"""

from __future__ import annotations

import secrets
import time

import pytest

from .harness import CARRIER_IP, DeviceSpec, SeedSpec, free_port
from .sipclient import SipClient, build_request

pytestmark = pytest.mark.integration

FLOODER = "127.0.0.9"
CONTRACT = "0355500100"
DESK = DeviceSpec("desk1", "desk1-secret-x")
PHONES = [DeviceSpec(f"p{i:02d}", f"p{i:02d}-secret") for i in range(1, 11)]
FLOOD_LIMIT, FLOOD_WINDOW, FLOOD_BLOCK = 600, 2.0, 10.0  # the defaults
FLOOD_RATE, FLOOD_MESSAGES = 12_000, 30_000
LEGIT_CALLS = 10


def options_from(source: str, sw) -> SipClient:  # type: ignore[no-untyped-def]
    return SipClient("udp", sw.udp, local_ip=source, timeout=0.5)


def answered(c: SipClient) -> bool:
    host = f"{c.remote[0]}:{c.remote[1]}"
    req = build_request(
        "OPTIONS", f"sip:{host}", transport="udp", local=c.local, from_user="probe",
        host=host, call_id=secrets.token_hex(8), cseq=1,
    )  # fmt: skip
    c.send(req)  # one request, no retransmission: dropped or answered
    r = c.recv(timeout=0.5)
    return r is not None and r.status == 200


def requests(sw, method: str) -> float:  # type: ignore[no-untyped-def]
    return sw.metrics().get_value("sip_requests_total", method=method)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["invite", "register"])
def test_flood_from_one_source_is_cut_while_others_are_served(switch_proc, sipp, kind):
    sw = switch_proc(SeedSpec(devices=[DESK, *PHONES], spare_ids=LEGIT_CALLS))
    desk_port = free_port()
    reg = sipp(
        "register", remote=sw.udp, local_port=desk_port, credentials=[(DESK.id, DESK.password)],
        keys={"expires": "300"}, timeout_s=8, name="register-desk",
    ).run()  # fmt: skip
    assert reg.returncode == 0 and reg.successful == 1, reg.report()
    method = kind.upper()
    before = requests(sw, method)

    if kind == "invite":
        flood = sipp(
            "flood_invite", remote=sw.udp, local_ip=FLOODER, service=CONTRACT,
            calls=FLOOD_MESSAGES, rate=FLOOD_RATE, timeout_s=15, trace_msg=False, name="flood",
        )  # fmt: skip
    else:
        flood = sipp(
            "flood_register", remote=sw.udp, local_ip=FLOODER, service=PHONES[0].id,
            auth=(PHONES[0].id, "guessed-wrong"), calls=FLOOD_MESSAGES, rate=FLOOD_RATE,
            timeout_s=15, trace_msg=False, name="flood",
        )  # fmt: skip
    uas = sipp("uas", local_port=desk_port, calls=LEGIT_CALLS, timeout_s=40).start()
    t_flood = time.monotonic()
    flood.start()
    time.sleep(0.5)  # the flood is on before the legitimate traffic starts
    carrier = sipp(
        "uac_call", remote=sw.udp, local_ip=CARRIER_IP, calls=LEGIT_CALLS, rate=2,
        service=CONTRACT, keys={"caller": "0312345678"}, timeout_s=30, name="carrier",
    ).start()  # fmt: skip
    phones = sipp(
        "register", remote=sw.udp, credentials=[(p.id, p.password) for p in PHONES],
        calls=len(PHONES), rate=2, keys={"expires": "300"}, timeout_s=30, name="phones",
    ).start()  # fmt: skip

    # Right after the flood, the flooder is still blocked.
    fr = flood.wait(grace=10)
    t_end = time.monotonic()
    flooder = options_from(FLOODER, sw)
    assert not answered(flooder), "the flood source is answered right after its flood"
    served_after = None
    while time.monotonic() - t_end < FLOOD_BLOCK + FLOOD_WINDOW + 5:
        if answered(flooder):
            served_after = time.monotonic() - t_end
            break
    flooder.close()

    cr, pr, ur = carrier.wait(), phones.wait(), uas.wait()
    m = sw.metrics()
    offered = fr.created if kind == "invite" else None
    reached = requests(sw, method) - before - (0 if kind == "invite" else 2 * len(PHONES))
    if kind == "invite":
        reached -= LEGIT_CALLS
    flood_secs = t_end - t_flood - (1.0 if kind == "register" else 0.0)  # last recv timeout
    dropped = m.get_value("sip_flood_dropped_total")
    blocks = m.get_value("sip_flood_blocks_total")
    again = "never" if served_after is None else f"{served_after:.1f} s"
    report = (
        f"{kind} flood: SIPp created {fr.created} in {flood_secs:.1f} s "
        f"({fr.created / max(flood_secs, 0.001):.0f}/s offered); reached the parser "
        f"{reached:.0f} ({reached / max(flood_secs, 0.001):.0f}/s over the flood); dropped "
        f"unparsed {dropped:.0f}; blocks {blocks:.0f}; legit calls {cr.successful}/"
        f"{LEGIT_CALLS}, registrations {pr.successful}/{len(PHONES)}; flood source served "
        f"again {again} after SIPp ended"
    )
    print(report)

    # Legitimate traffic: every call and every registration.
    assert cr.returncode == 0 and cr.successful == LEGIT_CALLS and cr.failed == 0, cr.report()
    assert ur.successful == LEGIT_CALLS, ur.report()
    assert pr.returncode == 0 and pr.successful == len(PHONES) and pr.failed == 0, pr.report()
    # The flood: several times capacity offered, blocked once, dropped before parsing.
    assert fr.created >= FLOOD_MESSAGES * 0.9, fr.report()
    if offered is not None:
        assert offered / flood_secs >= 2000, report
    assert blocks >= 1, report
    assert dropped >= FLOOD_MESSAGES * 0.8, report
    assert reached <= 2 * FLOOD_LIMIT, report  # what got through before (each) block
    assert m.get_value("sip_flood_blocked_sources") == 0  # over by now
    # Served again once calm: the block time after the window last exceeded the limit.
    assert served_after is not None, report
    assert served_after <= FLOOD_BLOCK + FLOOD_WINDOW + 2, report
    log = sw.proc.stdout_path.read_text() + sw.proc.stderr_path.read_text()
    assert log.count(f"SIP flood from {FLOODER}:") == blocks, log[-3000:]  # once per block
    assert "Traceback" not in log
    assert sw.alive(), sw.logs()
