"""What operators see of, and clear from, the running switch through the API (issue 12 §4):
active calls per tenant, ending one (BYE both ways, the channel released), registrations per
device - over HTTP against the real switch, with real SIPp registrations and calls; and on
Redis, one node's calls and registrations seen through another node's API.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
import redis

from .e2e_helpers import Api, operator_token
from .harness import DeviceSpec, SeedSpec, free_port
from .redis_relay import clean_redis_db
from .test_dialog_liveness import wait_for
from .test_sip_calls import CONTRACT, carrier_call, register_device

pytestmark = pytest.mark.integration

DESK = DeviceSpec("desk1", "desk1-secret-x")
CALLS = "/tenants/t1/active-calls"


def api_for(sw) -> Api:  # type: ignore[no-untyped-def]
    return Api(f"http://{sw.ip}:{sw.http_port}/v1", operator_token(data_dir=sw.proc.data_dir))


def items(api: Api, path: str) -> list[dict]:  # type: ignore[type-arg]
    r = api.get(path)
    assert r.status == 200, r
    return list(r.body["items"])


def test_operator_sees_registrations_and_calls_and_ends_a_call_with_bye_both_ways(
    switch_proc, sipp
):
    sw = switch_proc(SeedSpec(devices=[DESK]))
    api = api_for(sw)
    port = free_port()
    register_device(sipp, sw, DESK, port)

    regs = items(api, "/tenants/t1/registrations")
    assert len(regs) == 1, regs
    reg = regs[0]
    assert reg["device_id"] == "desk1" and f":{port}" in reg["contact"]
    assert reg["transport"] == "udp" and reg["source"] == f"127.0.0.1:{port}"
    assert reg["user_agent"] == "sipp-test" and 0 < reg["expires_in"] <= 300
    assert items(api, "/tenants/t1/registrations?device=desk1") == regs
    assert items(api, "/tenants/t1/registrations?device=t1-spare01") == []
    assert items(api, CALLS) == []

    other_tenant = api.call("POST", "/tenants", {
        "name": "other", "contract_number": "0399990002",
        "basic_device": {"kind": "app", "username": "other-user", "password": "other-pw-0001"},
    })  # fmt: skip
    assert other_tenant.status == 201, other_tenant
    other_id = other_tenant.body["id"]
    own = Api(
        api.base, api.call("POST", "/tokens", {"scope": "tenant", "tenant_id": "t1"}).body["token"]
    )
    intruder = Api(api.base, api.call(
        "POST", "/tokens", {"scope": "tenant", "tenant_id": other_id}
    ).body["token"])  # fmt: skip

    uas = sipp("uas", local_port=port, calls=1, timeout_s=30, extra=["-aa"]).start()
    uac = carrier_call(sipp, sw, "uac_call_until_bye", timeout_s=30, extra=["-aa"]).start()
    wait_for(lambda: any(c["answered"] for c in items(api, CALLS)), 10)
    (call,) = items(api, CALLS)
    assert call["called"] == CONTRACT and call["caller"] and "0312345678" in call["caller"][-10:]
    assert call["answered_at"] >= call["started_at"] and call["node"]

    quoted = urllib.parse.quote(call["call_id"], safe="")
    path = f"{CALLS}/{quoted}"
    assert own.get(CALLS).body["items"] == [call]
    wait_for(lambda: api.get(f"/tenants/{other_id}/active-calls").status == 200, 5)
    for refused in (
        intruder.get(CALLS),
        intruder.get("/tenants/t1/registrations"),  # t1's paths
        intruder.delete(path),
        intruder.delete(f"/tenants/{other_id}/active-calls/{quoted}"),
    ):  # cross-tenant: 404, as on every route (api/test_isolation.py)
        assert refused.status == 404 and refused.error_id == "not-found", refused
    assert items(api, CALLS) == [call]  # untouched
    r = api.delete(path)
    assert r.status == 200 and r.body["signalled"] is True, r
    ur, sr = uac.wait(grace=5), uas.wait(grace=5)
    # both ends got the switch's BYE and answered it: each scenario ends on BYE/200
    assert ur.successful == 1 and sr.successful == 1, ur.report() + sr.report() + sw.logs()
    assert 'text="ended by the operator"' in ur.messages()
    assert items(api, CALLS) == []
    m = sw.metrics()
    assert m.get_value("sip_calls_active") == 0
    assert m.get_value("sip_dialogs_ended_total", reason="operator") == 1

    again = api.delete(path)
    assert again.status == 404 and again.error_id == "not-found", again
    assert api.get("/tenants/nobody/active-calls").status == 404


@pytest.fixture
def redis_db12() -> Iterator[redis.Redis]:
    with clean_redis_db(12) as client:
        yield client


@pytest.mark.redis
def test_on_redis_one_nodes_calls_and_registrations_are_listed_and_ended_by_another(
    switch_proc, sipp, redis_db12
):
    config = '[state]\nurl = "redis://127.0.0.1:6379/12"\n'
    a = switch_proc(SeedSpec(devices=[DESK]), config)
    b = switch_proc(SeedSpec(devices=[DESK]), config)
    port = free_port()
    register_device(sipp, a, DESK, port)
    api_b = api_for(b)
    (reg,) = items(api_b, "/tenants/t1/registrations")
    assert reg["device_id"] == "desk1" and reg["source"] == f"127.0.0.1:{port}"

    uas = sipp("uas", local_port=port, calls=1, timeout_s=30, extra=["-aa"]).start()
    uac = carrier_call(sipp, a, "uac_call_until_bye", timeout_s=30, extra=["-aa"]).start()
    wait_for(lambda: any(c["answered"] for c in items(api_b, CALLS)), 10)
    (call,) = items(api_b, CALLS)
    # node A (one of its workers: one per core on Redis, "<node>/w<i>") took the channel;
    # node A holds the flow
    node, _, worker = call["node"].partition("/w")
    assert node == reg["node"] and worker.isdigit(), call
    assert f"node id {node}" in a.logs() and f"node id {node}" not in b.logs()
    # ended through node B: A is asked to send the BYEs, the channel is freed at once
    r = api_b.delete(f"{CALLS}/{urllib.parse.quote(call['call_id'], safe='')}")
    assert r.status == 200 and r.body["signalled"] is False and r.body["node"] == call["node"]
    assert items(api_b, CALLS) == []
    ur, sr = uac.wait(grace=5), uas.wait(grace=5)
    assert ur.successful == 1 and sr.successful == 1, ur.report() + sr.report() + a.logs()
    assert "ended at another node's request" in a.logs()
    wait_for(lambda: items(api_b, CALLS) == [], 5)


def test_operator_ends_a_call_still_ringing_with_cancel_and_487(switch_proc, sipp):
    sw = switch_proc(SeedSpec(devices=[DESK]))
    api = api_for(sw)
    port = free_port()
    register_device(sipp, sw, DESK, port)
    desk = sipp("uas_noanswer", local_port=port, calls=1, timeout_s=30).start()
    caller = carrier_call(sipp, sw, "uac_expect_487", timeout_s=30).start()
    wait_for(lambda: len(items(api, CALLS)) == 1, 10)
    (call,) = items(api, CALLS)
    assert call["answered"] is False and call["answered_at"] is None
    r = api.delete(f"{CALLS}/{urllib.parse.quote(call['call_id'], safe='')}")
    assert r.status == 200 and r.body["signalled"] is True, r
    cr, dr = caller.wait(grace=5), desk.wait(grace=5)
    assert cr.successful == 1, cr.report() + sw.logs()  # the caller got 487
    assert dr.successful == 1, dr.report()  # the phone got the switch's CANCEL
    wait_for(lambda: items(api, CALLS) == [], 5)
