"""Toll-fraud caps through the real switch (README "Toll fraud"; routing/caps.py): a device
places outbound calls with SIPp until the daily cap refuses one with 403 and a Warning."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .harness import OUTSIDE_IP, free_port
from .test_routing_calls import Dev, Tenant, decisions, register

pytestmark = pytest.mark.integration

CAP = 3


def test_outbound_calls_until_the_daily_cap_refuses_one(switch_proc: Any, sipp: Any) -> None:
    gw_port, port = free_port(OUTSIDE_IP), free_port()
    desk = Dev("desk1")
    config = f"[security]\nmax_outbound_per_id_per_day = {CAP}\n"
    sw = switch_proc(Tenant([desk], gw_port=gw_port).toml(), config_toml=config)
    register(sipp, sw, desk, port)
    gw = sipp("uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=CAP, timeout_s=20,
              name="gateway").start()  # fmt: skip
    ok = sipp("uac_auth_call", remote=sw.udp, local_port=port, calls=CAP, rate=1,
              service="0312345678", auth=(desk.id, desk.password), keys={"caller": desk.id},
              timeout_s=20, extra=["-d", "200"]).run()  # fmt: skip
    gr = gw.wait()
    assert ok.successful == CAP and gr.successful == CAP, ok.report() + gr.report() + sw.logs()
    refused = sipp("routing/uac_auth_expect_403", remote=sw.udp, local_port=port, calls=1,
                   rate=1, service="0312345678", auth=(desk.id, desk.password),
                   keys={"caller": desk.id}, timeout_s=10, name="capped").run()  # fmt: skip
    assert refused.successful == 1, refused.report() + sw.logs()
    trace = refused.messages()
    assert re.search(r'(?im)^Warning:\s*399 \S+ ".*limit of 3 outgoing calls today', trace), trace[
        -2500:
    ]
    assert decisions(sw, "outbound") == CAP
    assert decisions(sw, "outbound-daily-cap") == 1
    m = sw.metrics()
    assert m.get_value("sip_outbound_capped_total", cap="outbound-daily-cap") == 1
    assert "outbound cap outbound-daily-cap: a call from ID desk1 refused" in sw.logs()
