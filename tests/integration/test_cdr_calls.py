"""Every call through the real switch leaves exactly one CDR (issue 10 §1, §5): SIPp peers call
through `softswitch serve` on its defaults (the SQLite store under the data directory, the
embedded media service, CDRs on), and the record is read back through the REST API (the
call history) with the right fields, and its charge through the month's statement.

Topology as in test_routing_calls.py (whose seed builder this module uses): devices are SIPp
on 127.0.0.1, the carrier SIPp on 127.0.0.2, the gateway towards the outside world (outbound
and forwarded calls) a SIPp UAS on 127.0.0.3.

Charges (service-rules.md, billing/tariffs.toml), in tenths of a yen as the API gives them:
an app's call ¥20 per started 30 s; a desk phone's or an ATA's ¥8 per started 3 min to a
landline, ¥17.5 per started minute to a mobile; a forwarded leg to a mobile ¥17.5 per started
minute, never covered by the plan; an app on the 10-minute plan pays nothing for a call under
10 minutes to a landline; inbound calls and voicemail cost the tenant nothing. Every call here
is answered for about 2 s, so one unit is charged.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from media.prompts import default_library

from .e2e_helpers import (
    Api,
    create_pg_database,
    drop_pg_database,
    operator_token,
    pg_url,
)
from .harness import CARRIER_IP, OUTSIDE_IP, free_port
from .test_routing_calls import CALLER, CONTRACT, FORWARD_TARGET, Dev, Tenant, carrier, register

pytestmark = pytest.mark.integration

E164 = "+81355500100"
LANDLINE = "0312345678"  # what devices dial out
MOBILE = "09011112222"
HOLD_MS = 2000


# --------------------------------------------------------------------------- helpers
def api_of(sw: Any, database_url: str | None = None) -> Api:
    token = (
        operator_token(database_url=database_url)
        if database_url
        else operator_token(data_dir=sw.proc.data_dir)
    )
    return Api(f"http://{sw.ip}:{sw.http_port}/v1", token)


def the_one_cdr(api: Api, sw: Any, tenant: str = "t1") -> dict[str, Any]:
    """The tenant's call history once the writer has stored something; exactly one item,
    checked again after a few more batch intervals (a second record would be late, not
    absent)."""
    deadline = time.monotonic() + 10
    while True:
        got = api.get(f"/tenants/{tenant}/calls")
        assert got.status == 200, got
        if got.body["items"]:
            break
        assert time.monotonic() < deadline, f"no CDR stored\n{sw.logs()}"
        time.sleep(0.1)
    time.sleep(0.5)  # ten batch intervals: anything else the call left is stored by now
    items = api.get(f"/tenants/{tenant}/calls").body["items"]
    assert len(items) == 1, items
    return dict(items[0])


def statement_total(api: Api, tenant: str = "t1") -> dict[str, Any]:
    got = api.get(f"/tenants/{tenant}/statements/current")
    assert got.status == 200, got
    assert got.body["open"] is True and got.body["unrated_calls"] == 0, got.body
    return dict(got.body["total"])


def check_charge(api: Api, cdr: dict[str, Any], tenths: int) -> None:
    assert cdr["charge_tenths"] == tenths, cdr
    total = statement_total(api)
    assert (total["calls"], total["charge_tenths"]) == (1, tenths), total


def answered_for_the_hold(cdr: dict[str, Any]) -> None:
    assert cdr["outcome"] == "answered" and cdr["sip_status"] == 200, cdr
    assert cdr["answered_at"] is not None and cdr["end_reason"] == "bye", cdr
    # -d 2000 between the ACK and the BYE; a started second counts
    assert HOLD_MS // 1000 <= cdr["billable_seconds"] <= HOLD_MS // 1000 + 2, cdr


# --------------------------------------------------------------------------- inbound
@pytest.fixture(scope="module")
def pg_database() -> Any:
    name = create_pg_database()
    try:
        yield name
    finally:
        drop_pg_database(name)


def _answered_inbound(switch_proc: Any, sipp: Any, database_url: str | None) -> None:
    dev_port = free_port()
    desk = Dev("desk1")
    seed = Tenant([desk, Dev("spare1"), Dev("spare2")], ring_group=["desk1"])
    extra = ["--database", database_url] if database_url else []
    sw = switch_proc(seed.toml(), extra_args=extra)
    register(sipp, sw, desk, dev_port)
    device = sipp("uas", local_port=dev_port, calls=1, timeout_s=15, name="desk1").start()
    ur = carrier(sipp, sw, hold_ms=HOLD_MS).run()
    dr = device.wait()
    assert ur.successful == 1 and dr.successful == 1, ur.report() + dr.report() + sw.logs()
    api = api_of(sw, database_url)
    cdr = the_one_cdr(api, sw)
    answered_for_the_hold(cdr)
    assert (cdr["direction"], cdr["number"], cdr["dialled"]) == ("inbound", E164, CONTRACT), cdr
    assert (cdr["caller"], cdr["caller_device"]) == (CALLER, None), cdr
    assert cdr["rang"] == ["desk1"], cdr
    assert (cdr["answered_device"], cdr["answered_device_kind"]) == ("desk1", "desk"), cdr
    assert cdr["rule"] == "inbound-ring" and cdr["tariff_version"], cdr
    check_charge(api, cdr, 0)


def test_answered_inbound_call_leaves_one_cdr(switch_proc: Any, sipp: Any) -> None:
    _answered_inbound(switch_proc, sipp, None)


@pytest.mark.postgres
def test_answered_inbound_call_leaves_one_cdr_on_the_postgresql_store(
    switch_proc: Any, sipp: Any, pg_database: str
) -> None:
    """The `--database` option: the same call, the CDR written into PostgreSQL (COPY)."""
    _answered_inbound(switch_proc, sipp, pg_url(pg_database))


@pytest.mark.parametrize(
    ("device_scenario", "caller_scenario", "outcome", "status", "reason"),
    [
        pytest.param("uas_busy", "uac_expect_busy", "busy", 486, None, id="busy"),
        pytest.param("uas_noanswer", "uac_cancel", "cancelled", 487, "cancel", id="cancel"),
    ],
)
def test_unanswered_inbound_call_leaves_one_cdr(
    switch_proc: Any,
    sipp: Any,
    device_scenario: str,
    caller_scenario: str,
    outcome: str,
    status: int,
    reason: str | None,
) -> None:
    """No voicemail on the number: the device's 486 reaches the caller; the caller's CANCEL
    ends a ringing call (487)."""
    dev_port = free_port()
    desk = Dev("desk1")
    sw = switch_proc(Tenant([desk, Dev("spare1")], ring_group=["desk1"]).toml())
    register(sipp, sw, desk, dev_port)
    device = sipp(device_scenario, local_port=dev_port, calls=1, timeout_s=15, name="desk1")
    device.start()
    ur = carrier(sipp, sw, caller_scenario).run()
    dr = device.wait()
    assert ur.successful == 1, ur.report() + dr.report() + sw.logs()
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)
    assert (cdr["outcome"], cdr["sip_status"], cdr["end_reason"]) == (outcome, status, reason)
    assert (cdr["direction"], cdr["number"], cdr["caller"]) == ("inbound", E164, CALLER), cdr
    assert cdr["rang"] == ["desk1"] and cdr["answered_device"] is None, cdr
    assert cdr["billable_seconds"] == 0 and cdr["answered_at"] is None, cdr
    check_charge(api, cdr, 0)


def test_no_answer_after_the_ring_time_leaves_one_cdr(switch_proc: Any, sipp: Any) -> None:
    """No voicemail: the fork gives up after the number's ring time with 480."""
    dev_port = free_port()
    desk = Dev("desk1")
    seed = Tenant([desk, Dev("spare1")], ring_group=["desk1"], number={"max_ring_time": 5})
    sw = switch_proc(seed.toml())
    register(sipp, sw, desk, dev_port)
    device = sipp("uas_noanswer", local_port=dev_port, calls=1, timeout_s=15, name="desk1")
    device.start()
    ur = carrier(sipp, sw, "uac_expect_noanswer").run()
    device.wait()
    assert ur.successful == 1, ur.report() + sw.logs()
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)
    assert (cdr["outcome"], cdr["sip_status"]) == ("no-answer", 480), cdr
    assert cdr["rang"] == ["desk1"] and cdr["billable_seconds"] == 0, cdr
    check_charge(api, cdr, 0)


def test_forwarded_call_leaves_one_cdr_with_the_forwarded_leg_and_the_original_caller(
    switch_proc: Any, sipp: Any
) -> None:
    gw_port = free_port(OUTSIDE_IP)
    seed = Tenant(
        [Dev("desk1"), Dev("spare1")],
        options={"forwarding": True},
        forwarding={"enabled": True, "target": FORWARD_TARGET},
        gw_port=gw_port,
    )
    sw = switch_proc(seed.toml())
    gw = sipp("uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=15,
              name="gateway").start()  # fmt: skip
    ur = carrier(sipp, sw, hold_ms=HOLD_MS).run()
    gr = gw.wait()
    assert ur.successful == 1 and gr.successful == 1, ur.report() + gr.report() + sw.logs()
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)
    answered_for_the_hold(cdr)
    assert cdr["direction"] == "forwarded" and cdr["number"] == E164, cdr
    assert cdr["caller"] == CALLER, cdr  # the original caller, not the number shown onwards
    assert cdr["forwarded_to"] == cdr["callee"] and cdr["forwarded_to"] in (
        FORWARD_TARGET, "+81" + FORWARD_TARGET[1:],
    ), cdr  # fmt: skip
    assert cdr["rang"] == [] and cdr["answered_device"] is None, cdr
    assert cdr["rule"] == "inbound-forwarding" and cdr["call_class"] == "mobile", cdr
    check_charge(api, cdr, 175)  # ¥17.5 per started minute to a mobile


def test_voicemail_deposit_leaves_one_cdr(switch_proc: Any, sipp: Any) -> None:
    """Nobody registered, voicemail on: the embedded media service takes the message."""
    seed = Tenant([Dev("desk1"), Dev("spare1")], options={"voicemail": True},
                  number={"voicemail_ring_time": 5})  # fmt: skip
    sw = switch_proc(seed.toml())
    lib = default_library()
    wait_ms = int((lib.seconds("voicemail-greeting") + lib.seconds("beep") + 0.4) * 1000)
    res = sipp(
        "media/uac_voicemail.xml", remote=sw.udp, local_ip=CARRIER_IP, service=CONTRACT,
        keys={"caller": CALLER}, extra=["-d", str(wait_ms)], timeout_s=40,
    ).run()  # fmt: skip
    assert res.successful == 1, res.report() + sw.logs()
    assert sw.metrics().get_value("voicemail_messages_total", event="stored") == 1
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)
    assert (cdr["outcome"], cdr["direction"], cdr["number"]) == ("voicemail", "inbound", E164)
    assert cdr["caller"] == CALLER and cdr["answered_device"] is None, cdr
    assert cdr["answered_at"] is not None and cdr["billable_seconds"] >= 1, cdr
    check_charge(api, cdr, 0)


# --------------------------------------------------------------------------- outbound
def test_refused_call_leaves_one_cdr_with_the_rule(switch_proc: Any, sipp: Any) -> None:
    desk = Dev("desk1")
    sw = switch_proc(Tenant([desk]).toml())
    port = free_port()
    register(sipp, sw, desk, port)
    ur = sipp("routing/uac_auth_expect_403", remote=sw.udp, local_port=port, calls=1, rate=1,
              service="110", auth=(desk.id, desk.password), keys={"caller": desk.id},
              timeout_s=10).run()  # fmt: skip
    assert ur.successful == 1, ur.report() + sw.logs()
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)  # the 407 challenge before it is no call
    assert (cdr["outcome"], cdr["sip_status"], cdr["rule"]) == (
        "refused", 403, "outbound-emergency",
    ), cdr  # fmt: skip
    assert (cdr["caller_device"], cdr["dialled"]) == ("desk1", "110"), cdr
    check_charge(api, cdr, 0)


@pytest.mark.parametrize(
    ("kind", "plan", "dialled", "call_class", "tenths"),
    [
        pytest.param("app", False, LANDLINE, "landline", 200, id="app"),  # ¥20 / 30 s
        pytest.param("app", True, LANDLINE, "landline", 0, id="app-10-minute-plan"),
        pytest.param("desk", False, LANDLINE, "landline", 80, id="desk"),  # ¥8 / 3 min
        pytest.param("desk", False, MOBILE, "mobile", 175, id="desk-to-mobile"),  # ¥17.5 / min
        pytest.param("ata", False, LANDLINE, "landline", 80, id="ata"),
    ],
)
def test_outbound_call_from_each_device_kind_leaves_one_rated_cdr(
    switch_proc: Any, sipp: Any, kind: str, plan: bool, dialled: str, call_class: str, tenths: int
) -> None:
    gw_port, port = free_port(OUTSIDE_IP), free_port()
    dev = Dev(f"{kind}1", kind)
    toml = Tenant([dev, Dev("spare1")], gw_port=gw_port).toml()
    if plan:  # the 10-minute plan is an option of the ID
        toml = toml.replace(
            f'  id = "{dev.id}"\n', f'  id = "{dev.id}"\n  free_calls_10min = true\n'
        )
    sw = switch_proc(toml)
    register(sipp, sw, dev, port)
    gw = sipp("uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=15,
              name="gateway").start()  # fmt: skip
    ur = sipp("uac_auth_call", remote=sw.udp, local_port=port, calls=1, rate=1,
              service=dialled, auth=(dev.id, dev.password), keys={"caller": dev.id},
              timeout_s=15, extra=["-d", str(HOLD_MS)]).run()  # fmt: skip
    gr = gw.wait()
    assert ur.successful == 1 and gr.successful == 1, ur.report() + gr.report() + sw.logs()
    api = api_of(sw)
    cdr = the_one_cdr(api, sw)
    answered_for_the_hold(cdr)
    assert (cdr["direction"], cdr["dialled"], cdr["call_class"]) == (
        "outbound", dialled, call_class,
    ), cdr  # fmt: skip
    assert (cdr["caller_device"], cdr["caller_device_kind"]) == (dev.id, kind), cdr
    assert cdr["number"] == E164 and cdr["presented_number"] == E164, cdr
    assert cdr["answered_device"] is None and cdr["rule"] == "outbound", cdr
    check_charge(api, cdr, tenths)
    if plan:
        assert cdr["plan_savings_tenths"] == 200, cdr


def test_a_switch_that_took_no_call_has_no_cdr(switch_proc: Any) -> None:
    """The other side of `the_one_cdr`: registering alone leaves no record."""
    sw = switch_proc(Tenant([Dev("desk1")]).toml())
    got = api_of(sw).get("/tenants/t1/calls")
    assert got.status == 200 and got.body["items"] == [], got


def test_the_cdr_enabled_false_option_keeps_no_records(switch_proc: Any, sipp: Any) -> None:
    """`[cdr] enabled = false`: the call goes through as ever and leaves no record."""
    dev_port = free_port()
    desk = Dev("desk1")
    seed = Tenant([desk, Dev("spare1")], ring_group=["desk1"])
    sw = switch_proc(seed.toml(), config_toml="[cdr]\nenabled = false\n")
    register(sipp, sw, desk, dev_port)
    device = sipp("uas", local_port=dev_port, calls=1, timeout_s=15, name="desk1").start()
    ur = carrier(sipp, sw, hold_ms=200).run()
    device.wait()
    assert ur.successful == 1, ur.report() + sw.logs()
    time.sleep(1.0)  # twenty batch intervals
    got = api_of(sw).get("/tenants/t1/calls")
    assert got.status == 200 and got.body["items"] == [], got
    assert sw.metrics().total("cdr_calls_total") == 0
