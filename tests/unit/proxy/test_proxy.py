"""The proxy end to end, sans-IO: fake Sender, fake clock/scheduler, memory state."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from provisioning.model import Snapshot
from routing.call import Call, LiveView
from routing.decisions import Decision, NoAnswer, NoAnswerAction, Ring, RingStage
from switch.proxy.proxy import ProxyConfig
from switch.sip.message import make_response
from switch.sip.target import Target
from switch.sip.transaction import ServerTransaction
from switch.state.base import Binding
from switch.state.memory import MemoryState

from .harness import (
    APP_FLOW,
    CALLER_SRC,
    DESK_FLOW,
    GW_IP,
    GW_SRC,
    REALM,
    US,
    WALL,
    Env,
)

NUMBER_URI = f"sip:0355500100@{US}"


async def inbound(env: Env, **kw: Any) -> ServerTransaction:
    return await env.send(env.request("INVITE", NUMBER_URI, **kw))


# --------------------------------------------------------------------------- forwarding basics
async def test_gateway_call_rings_registered_devices_with_via_rr_and_max_forwards() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    invites = env.branches()
    assert [c.target for c in invites] == [DESK_FLOW, APP_FLOW]  # the flows, not the Contacts
    desk = invites[0].request
    assert desk.uri == "sip:desk1@192.168.1.20:5060"
    assert desk.headers.get("Max-Forwards") == "69"
    vias = desk.headers.vias()
    assert (vias[0].host, vias[0].port, vias[0].transport) == (US, 5060, "UDP")
    assert vias[0].branch and vias[0].branch.startswith("z9hG4bK")
    assert vias[1].host == "198.51.100.7"
    rr = desk.headers.name_addrs("Record-Route")
    assert len(rr) == 1 and rr[0].uri.host == US and "lr" in rr[0].uri.params  # type: ignore[union-attr]
    assert "+81355500100" in (desk.headers.get("P-Called-Party-ID") or "")
    # UDP in, TCP out: RFC 5658 double Record-Route on the app branch.
    app_rr = invites[1].request.headers.name_addrs("Record-Route")
    assert [r.uri.params.get("transport") for r in app_rr] == ["tcp", None]  # type: ignore[union-attr]
    assert (
        invites[0].request.headers.vias()[0].branch != invites[1].request.headers.vias()[0].branch
    )
    assert env.sent_to(txn) == []  # 100 Trying is the transaction layer's


async def test_missing_max_forwards_is_set_to_70() -> None:
    env = Env()
    await env.register_both()
    await inbound(env, max_forwards=None)
    assert env.branches()[0].request.headers.get("Max-Forwards") == "70"


async def test_max_forwards_zero_is_483_but_options_to_us_is_answered() -> None:
    env = Env()
    txn = await inbound(env, max_forwards="0")
    assert env.final(txn).status == 483
    opt = await env.send(env.request("OPTIONS", f"sip:{US}", max_forwards="0"))
    assert env.final(opt).status == 200
    assert env.branches() == []


async def test_options_keepalive_to_us_gets_allow() -> None:
    env = Env()
    txn = await env.send(env.request("OPTIONS", f"sip:{REALM}"), CALLER_SRC)
    resp = env.final(txn)
    assert resp.status == 200 and "INVITE" in (resp.headers.get("Allow") or "")
    txn = await env.send(env.request("INFO", f"sip:{US}"), CALLER_SRC)
    assert env.final(txn).status == 405
    txn = await env.send(env.request("FOO", f"sip:{US}"), CALLER_SRC)
    assert env.final(txn).status == 501


async def test_proxy_require_is_420_with_unsupported() -> None:
    env = Env()
    txn = await inbound(env, extra=[("Proxy-Require", "foo")])
    resp = env.final(txn)
    assert resp.status == 420 and resp.headers.get("Unsupported") == "foo"


async def test_loop_is_482() -> None:
    # Without Record-Route the proxy relays in-dialog requests by their Request-URI.
    env = Env(config=ProxyConfig(record_route=False))
    req = env.request("BYE", "sip:bob@192.0.2.99", to_tag="t")
    await env.send(req)
    forwarded = env.branches("BYE")[0].request
    assert forwarded.uri == "sip:bob@192.0.2.99"
    # The same request comes back to us (through some misconfigured hop).
    txn = await env.send(forwarded)
    assert env.final(txn).status == 482
    assert len(env.branches("BYE")) == 1


async def test_spiral_with_new_request_uri_is_not_a_loop() -> None:
    env = Env(config=ProxyConfig(record_route=False))
    await env.send(env.request("BYE", "sip:bob@192.0.2.99", to_tag="t"))
    forwarded = env.branches("BYE")[0].request
    forwarded.uri = "sip:carol@192.0.2.98"
    await env.send(forwarded)
    assert len(env.branches("BYE")) == 2


# --------------------------------------------------------------------------- routing
async def test_loose_routing_removes_our_route_and_follows_the_next() -> None:
    env = Env()
    req = env.request(
        "BYE",
        "sip:bob@192.0.2.99",
        to_tag="t",
        extra=[("Route", f"<sip:{US};lr>, <sip:192.0.2.50:5070;lr>")],
    )
    await env.send(req)
    out = env.branches("BYE")[0]
    assert out.target.host == "192.0.2.50" and out.target.port == 5070
    assert out.request.uri == "sip:bob@192.0.2.99"
    assert out.request.headers.get_all("Route") == ["<sip:192.0.2.50:5070;lr>"]
    assert "Record-Route" not in out.request.headers  # in-dialog: no Record-Route


async def test_strict_router_fix_restores_request_uri() -> None:
    env = Env()
    req = env.request(
        "BYE",
        f"sip:{US};lr",
        to_tag="t",
        extra=[("Route", "<sip:192.0.2.50;lr>, <sip:bob@192.0.2.99>")],
    )
    await env.send(req)
    out = env.branches("BYE")[0]
    assert out.request.uri == "sip:bob@192.0.2.99"
    assert out.request.headers.get_all("Route") == ["<sip:192.0.2.50;lr>"]
    assert (out.target.host, out.target.port) == ("192.0.2.50", 5060)


async def test_in_dialog_request_follows_flow_token_to_device_behind_nat() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    desk = env.branches()[0]
    env.respond(desk, 200)
    rr = desk.request.headers.get_all("Record-Route")
    # The carrier's BYE uses the route set (our RR) and the desk's private Contact.
    bye = env.request(
        "BYE",
        "sip:callee@192.168.1.20:5060",
        to_tag="from-call-1",
        call_id="call-1",
        cseq=2,
        extra=[("Route", rr[0])],
    )
    await env.send(bye, GW_SRC)
    out = env.branches("BYE")[0]
    assert out.target == DESK_FLOW
    assert out.request.uri == "sip:callee@192.168.1.20:5060"
    assert "Route" not in out.request.headers
    # The desk's own BYE goes by its Request-URI (the carrier), not back to itself.
    bye2 = env.request(
        "BYE",
        f"sip:0312345678@{GW_IP}",
        to_tag="t",
        call_id="call-1",
        cseq=3,
        extra=[("Route", rr[0])],
    )
    await env.send(bye2, DESK_FLOW)
    assert env.branches("BYE")[1].target == GW_SRC


async def test_in_dialog_request_from_device_needs_our_flow_token() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    desk = env.branches()[0]
    env.respond(desk, 200)
    rr = desk.request.headers.get_all("Record-Route")
    # A forged in-dialog INVITE to the trunk with no credentials (and no Route of ours:
    # not a dialog we are in): refused, 404 Not Here.
    forged = env.request("INVITE", f"sip:0312345678@{GW_IP}", to_tag="x", call_id="fraud")
    txn = await env.send(forged, DESK_FLOW)
    assert env.final(txn).status == 404
    # A real token replayed in another dialog: refused too.
    replay = env.request(
        "INVITE", f"sip:0312345678@{GW_IP}", to_tag="x", call_id="fraud", extra=[("Route", rr[0])]
    )
    txn = await env.send(replay, DESK_FLOW)
    assert env.final(txn).status == 403
    assert len(env.branches()) == 2  # only the original fork


@pytest.mark.parametrize("source", [GW_SRC, DESK_FLOW, CALLER_SRC])
@pytest.mark.parametrize("uri", ["sip:bob@192.0.2.99", f"sip:bob@{US}"])
async def test_in_dialog_request_without_our_route_is_404_not_here(
    source: Target, uri: str
) -> None:
    """A UA that ignored our Record-Route (Kamailio's WITHINDLG: loose_route() fails ->
    404 "Not here"): never relayed, whoever sends it, the trusted carrier included. To our
    own address it used to come back to us as a 482 Loop Detected."""
    env = Env()
    await env.register_both()
    txn = await env.send(env.request("BYE", uri, to_tag="t"), source)
    final = env.final(txn)
    assert (final.status, final.reason) == (404, "Not Here")
    assert env.sender.requests == [] and len(env.sent_to(txn)) == 1


async def test_ack_without_our_route_is_dropped_and_counted() -> None:
    env = Env()
    ack = env.request("ACK", "sip:callee@192.168.1.20:5060", to_tag="callee")
    await env.proxy.on_ack(ack, GW_SRC)
    assert env.sender.stateless == [] and env.sender.responses == []
    assert env.metrics.value("sip_messages_dropped_total", {"reason": "ack_not_here"}) == 1


async def test_our_route_without_a_token_is_relayed_for_the_carrier_only() -> None:
    """A dialog with no device end (the carrier and the media service, a forwarded call)
    carries our Route without a flow token: the carrier's requests are relayed, anyone
    else's are refused (a device could otherwise reach the trunk with a forged To tag)."""
    env = Env()
    plain_rr = f"<sip:{US};lr>"
    extra = [("Route", plain_rr)]
    await env.send(env.request("BYE", "sip:bob@192.0.2.99", to_tag="t", extra=extra), GW_SRC)
    assert [c.target.host for c in env.branches("BYE")] == ["192.0.2.99"]
    txn = await env.send(
        env.request("BYE", f"sip:0312345678@{GW_IP}", to_tag="t", call_id="c2", extra=extra),
        DESK_FLOW,
    )
    assert env.final(txn).status == 403 and len(env.branches("BYE")) == 1


async def test_carrier_bye_reaches_device_that_called_out() -> None:
    env = Env()
    await env.register_both()
    req = env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    (out,) = env.branches()
    env.respond(out, 200)
    rr = out.request.headers.get_all("Record-Route")
    bye = env.request(
        "BYE",
        "sip:desk1@192.168.1.20:5060",
        to_tag="from-call-1",
        cseq=9,
        extra=[("Route", rr[0])],
    )
    await env.send(bye, GW_SRC)
    assert env.branches("BYE")[0].target == DESK_FLOW


async def test_ack_for_2xx_is_forwarded_statelessly_along_the_route() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    desk = env.branches()[0]
    env.respond(desk, 200)
    rr = desk.request.headers.get_all("Record-Route")
    ack = env.request(
        "ACK", "sip:callee@192.168.1.20:5060", to_tag="callee", extra=[("Route", rr[0])]
    )
    await env.proxy.on_ack(ack, GW_SRC)
    msg, target = env.sender.stateless[-1]
    assert target == DESK_FLOW
    assert msg.headers.vias()[0].host == US


# --------------------------------------------------------------------------- forking
async def test_parallel_fork_one_200_cancels_the_other_and_caller_gets_one_200() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(desk, 180, to_tag="d")
    env.respond(app, 180, to_tag="a")
    env.respond(app, 200, to_tag="a")
    cancels = env.branches("CANCEL")
    assert [c.target for c in cancels] == [DESK_FLOW]
    c = cancels[0].request
    assert c.top_via.branch == desk.request.top_via.branch and c.uri == desk.request.uri
    assert (c.headers.get("Reason") or "").startswith("SIP;cause=200")
    env.respond(desk, 487, to_tag="d")
    statuses = [r.status for r in env.sent_to(txn)]
    assert statuses == [180, 180, 200]
    ok = env.final(txn)
    assert ok.headers.vias()[0].host == "198.51.100.7"  # our Via was stripped
    assert len(ok.headers.vias()) == 1
    assert env.metrics.value("sip_calls_total", {"outcome": "answered"}) == 1
    assert env.metrics.value("sip_calls_active") == 1


async def test_every_2xx_is_forwarded() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(desk, 200, to_tag="d")
    env.respond(app, 200, to_tag="a")
    assert [r.status for r in env.sent_to(txn)] == [200, 200]


async def test_busy_wins_over_not_found() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(desk, 404)
    assert env.sent_to(txn) == []
    env.respond(app, 486)
    assert env.final(txn).status == 486
    assert env.metrics.value("sip_calls_total", {"outcome": "busy"}) == 1


async def test_6xx_cancels_other_branches_and_wins() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(app, 180)
    env.respond(desk, 603)
    assert [c.target for c in env.branches("CANCEL")] == [APP_FLOW]
    env.respond(app, 487)
    assert env.final(txn).status == 603


async def test_503_becomes_500() -> None:
    env = Env()
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await inbound(env)
    env.respond(env.branches()[0], 503)
    assert env.final(txn).status == 500


async def test_challenges_of_all_branches_are_aggregated() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(desk, 407, extra=[("Proxy-Authenticate", 'Digest realm="a", nonce="1"')])
    env.respond(app, 401, extra=[("WWW-Authenticate", 'Digest realm="b", nonce="2"')])
    resp = env.final(txn)
    assert resp.status in (401, 407)
    assert resp.headers.get_fields("Proxy-Authenticate") == ['Digest realm="a", nonce="1"']
    assert resp.headers.get_fields("WWW-Authenticate") == ['Digest realm="b", nonce="2"']


async def test_cancel_before_answer_gives_487() -> None:
    env = Env()
    await env.register_both()
    txn = await inbound(env)
    desk, app = env.branches()
    env.respond(desk, 180)
    cancel = await env.cancel(txn)
    assert env.final(cancel).status == 200
    assert [c.target for c in env.branches("CANCEL")] == [DESK_FLOW]  # app: no provisional yet
    env.respond(app, 100)
    env.respond(app, 180)
    assert [c.target for c in env.branches("CANCEL")] == [DESK_FLOW, APP_FLOW]
    assert all("Reason" not in c.request.headers for c in env.branches("CANCEL"))
    env.respond(desk, 487)
    env.respond(app, 487)
    assert env.final(txn).status == 487
    assert env.metrics.value("sip_calls_total", {"outcome": "cancelled"}) == 1


async def test_cancel_matching_nothing_is_481() -> None:
    env = Env()
    req = env.request("CANCEL", NUMBER_URI)
    txn = await env.send(req, GW_SRC, cancelled=None)
    assert env.final(txn).status == 481


async def test_timer_c_without_provisional_gives_408() -> None:
    env = Env(timer_c=181.0)
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    env.snap = _with_ring_time(env.snap, 600.0)
    txn = await inbound(env)
    env.sched.advance(180.0)
    assert env.sent_to(txn) == []
    env.sched.advance(1.0)
    assert env.final(txn).status == 408


async def test_timer_c_after_provisional_cancels_the_branch() -> None:
    env = Env(timer_c=181.0)
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    env.snap = _with_ring_time(env.snap, 600.0)
    txn = await inbound(env)
    env.respond(env.branches()[0], 180)
    env.sched.advance(181.0)
    assert len(env.branches("CANCEL")) == 1
    env.respond(env.branches()[0], 487)
    assert env.final(txn).status == 487


async def test_no_answer_after_max_ring_time_is_480() -> None:
    env = Env()
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await inbound(env)  # the number's max_ring_time is 60 s
    env.respond(env.branches()[0], 180)
    env.sched.advance(60.0)
    assert len(env.branches("CANCEL")) == 1
    env.respond(env.branches()[0], 487)
    assert env.final(txn).status == 480


def _staged(
    call: Call, snapshot: Snapshot, live: LiveView, now: datetime
) -> Decision:  # desk first, the app 5 s later while the desk still rings
    return Ring(
        rule="test",
        tenant_id="t1",
        number="+81355500100",
        called_number="+81355500100",
        stages=(
            RingStage(delay_s=0.0, device_ids=("desk1",)),
            RingStage(delay_s=5.0, device_ids=("app1",), only_if_earlier_stage_ringing=True),
        ),
        no_answer=NoAnswer(after_s=60.0, action=NoAnswerAction.REJECT),
    )


async def test_timed_stage_starts_while_desk_rings() -> None:
    env = Env(decide=_staged)
    await env.register_both()
    await inbound(env)
    assert [c.target for c in env.branches()] == [DESK_FLOW]
    env.respond(env.branches()[0], 180)
    env.sched.advance(4.9)
    assert len(env.branches()) == 1
    env.sched.advance(0.1)
    assert [c.target for c in env.branches()] == [DESK_FLOW, APP_FLOW]


async def test_timed_stage_never_starts_after_answer() -> None:
    env = Env(decide=_staged)
    await env.register_both()
    txn = await inbound(env)
    env.respond(env.branches()[0], 200)
    env.sched.advance(30.0)
    assert [c.target for c in env.branches()] == [DESK_FLOW]
    assert env.final(txn).status == 200


async def test_timed_stage_starts_at_once_when_desk_is_busy() -> None:
    env = Env(decide=_staged)
    await env.register_both()
    txn = await inbound(env)
    env.respond(env.branches()[0], 486)
    assert [c.target for c in env.branches()] == [DESK_FLOW, APP_FLOW]
    env.respond(env.branches()[1], 480)
    assert env.final(txn).status == 486


# --------------------------------------------------------------------------- trunk
async def test_unknown_number_is_404() -> None:
    env = Env()
    txn = await env.send(env.request("INVITE", f"sip:0399999999@{US}"))
    assert env.final(txn).status == 404


async def test_nobody_registered_is_480() -> None:
    env = Env()
    txn = await inbound(env)
    assert env.final(txn).status == 480
    assert env.branches() == []


async def test_to_user_is_used_when_request_uri_has_no_user() -> None:
    env = Env()
    await env.register_both()
    await env.send(env.request("INVITE", f"sip:{GW_IP}:5070", to_uri=f"<{NUMBER_URI}>"))
    assert len(env.branches()) == 2


async def test_gateway_is_not_challenged_but_devices_are() -> None:
    env = Env()
    txn = await env.send(
        env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:desk1@{REALM}>"),
        CALLER_SRC,
    )
    resp = env.final(txn)
    assert resp.status == 407
    assert any("algorithm=MD5" in v for v in resp.headers.get_fields("Proxy-Authenticate"))
    assert env.branches() == []


async def test_outbound_call_goes_to_gateway_with_our_identity() -> None:
    env = Env()
    req = env.request(
        "INVITE",
        f"sip:03-1234-5678@{REALM}",
        from_uri=f'"Desk" <sip:desk1@{REALM}>',
        extra=[("P-Asserted-Identity", "<sip:+81399999999@evil.example>")],
    )
    await env.send_authenticated(req, "desk1")
    (out,) = env.branches()
    assert (out.target.host, out.target.port) == (GW_IP, 5060)
    r = out.request
    assert r.uri == f"sip:0312345678@{GW_IP}:5060"
    assert r.headers.get_fields("P-Asserted-Identity") == [f"<sip:+81355500100@{REALM};user=phone>"]
    frm = r.headers.name_addr("From")
    assert frm is not None and frm.uri.user == "0355500100"  # type: ignore[union-attr]
    assert frm.tag == "from-call-1"
    assert "Proxy-Authorization" not in r.headers


async def test_wrong_password_is_rechallenged_and_counted() -> None:
    env = Env()
    req = env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    txn = await env.send_authenticated(req, "desk1", password="wrong")
    assert env.final(txn).status == 407
    assert env.metrics.value("sip_auth_failures_total", {"reason": "credentials"}) == 1
    assert env.branches() == []


async def test_internal_call_by_username_rings_that_device() -> None:
    env = Env()
    await env.register_both()
    req = env.request(
        "INVITE",
        f"sip:app1@{REALM}",
        from_uri=f"<sip:desk1@{REALM}>",
        extra=[("P-Asserted-Identity", "<sip:boss@evil.example>")],
    )
    await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    (out,) = env.branches()
    assert out.target == APP_FLOW
    assert out.request.uri == "sip:app1@10.8.0.3:5080;transport=tcp"
    assert out.request.headers.get_fields("P-Asserted-Identity") == [f'"DESK1" <sip:desk1@{REALM}>']


async def test_call_to_own_number_rings_its_group_internally() -> None:
    env = Env()
    await env.register_both()
    req = env.request("INVITE", f"sip:0355500101@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    assert [c.target for c in env.branches()] == [APP_FLOW]


@pytest.mark.parametrize("dialled", ["other1", "nobody"])
async def test_other_tenants_usernames_are_404(dialled: str) -> None:
    env = Env()
    await env.register("other1", "sip:other1@10.9.9.9", Target("udp", "10.9.9.9", 5060))
    req = env.request("INVITE", f"sip:{dialled}@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    txn = await env.send_authenticated(req, "desk1")
    assert env.final(txn).status == 404
    assert env.branches() == []


async def test_stray_2xx_is_forwarded_statelessly_without_our_via() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    desk = env.branches()[0]
    resp = make_response(desk.request, 200, to_tag="x")
    env.proxy.on_stray_response(resp, DESK_FLOW, desk)  # a 2xx in the Accepted state
    msg, target = env.sender.stateless[-1]
    assert target.host == "198.51.100.7" and target.port == 40000
    assert len(msg.headers.vias()) == 1


async def test_response_matching_no_transaction_is_dropped_by_default() -> None:
    """RFC 6026 §7.5: not relayed (no open reflector), counted."""
    env = Env()
    await env.register_both()
    await inbound(env)
    resp = make_response(env.branches()[0].request, 200, to_tag="x")
    env.proxy.on_stray_response(resp, DESK_FLOW, None)
    assert env.sender.stateless == []
    assert env.metrics.value("sip_messages_dropped_total", {"reason": "stray_response"}) == 1


async def test_option_forward_stray_responses_relays_unmatched_ones() -> None:
    env = Env(config=ProxyConfig(forward_stray_responses=True))
    await env.register_both()
    await inbound(env)
    resp = make_response(env.branches()[0].request, 200, to_tag="x")
    env.proxy.on_stray_response(resp, DESK_FLOW, None)
    assert len(env.sender.stateless) == 1


async def test_bye_ends_the_active_call() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    env.respond(env.branches()[0], 200)
    assert env.metrics.value("sip_calls_active") == 1
    route = env.caller_route(env.branches()[0])
    bye = env.request("BYE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=2, extra=route)
    await env.send(bye)
    assert env.metrics.value("sip_calls_active") == 0


async def test_channel_limit_refuses_the_next_call_and_failure_releases() -> None:
    env = Env()
    await env.register_both()
    limit = env.snap.channels("t1")  # 2 IDs -> 2 channels
    for i in range(limit):
        await env.state.acquire_channel("t1", f"busy-{i}", limit, 3600, WALL)
    txn = await inbound(env, call_id="third")
    assert env.final(txn).status == 486
    assert env.branches() == []
    await env.state.release_channel("t1", "busy-0")
    txn = await inbound(env, call_id="fourth")
    assert await env.state.channels_in_use("t1", WALL) == limit
    for c in env.branches():
        env.respond(c, 486)
    assert env.final(txn).status == 486
    await asyncio.sleep(0)  # let the release task run (no time passes)
    assert await env.state.channels_in_use("t1", WALL) == limit - 1


async def test_bye_releases_the_channel() -> None:
    env = Env()
    await env.register_both()
    await inbound(env)
    env.respond(env.branches()[0], 200)
    assert await env.state.channels_in_use("t1", WALL) == 1
    route = env.caller_route(env.branches()[0])
    await env.send(
        env.request("BYE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=2, extra=route)
    )
    await asyncio.sleep(0)
    assert await env.state.channels_in_use("t1", WALL) == 0


# --------------------------------------------------------------------------- helpers
def _with_ring_time(snap: Snapshot, seconds: float) -> Snapshot:
    import dataclasses

    numbers = [dataclasses.replace(n, max_ring_time=seconds) for n in snap.numbers.values()]
    return Snapshot.build(
        version=snap.version + 1,
        realm=snap.realm,
        tenants=list(snap.tenants.values()),
        devices=list(snap.devices.values()),
        numbers=numbers,
        gateways=list(snap.gateways),
    )


class _SlowState(MemoryState):
    """Registrations that arrive only when the test says so (a network backend)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def bindings(self, device_id: str, now: float) -> list[Binding]:
        await self.gate.wait()
        return await super().bindings(device_id, now)


async def test_cancel_while_routing_answers_487_and_forks_nothing() -> None:
    slow = _SlowState()
    env = Env(state=slow)
    await env.register_both()
    req = env.request("INVITE", NUMBER_URI)
    txn = ServerTransaction(("k", "slow"), req, GW_SRC, req.top_via)
    task = asyncio.ensure_future(env.proxy.on_request(txn, req, GW_SRC, None))
    await asyncio.sleep(0)  # the proxy is now waiting for the state backend
    assert not task.done()
    cancel = await env.cancel(txn)
    assert env.final(cancel).status == 200
    slow.gate.set()
    await task
    assert env.final(txn).status == 487
    assert env.branches() == []
    assert await slow.channels_in_use("t1", WALL) == 0


async def test_message_between_devices_is_forked_without_record_route() -> None:
    env = Env()
    await env.register_both()
    req = env.request("MESSAGE", f"sip:app1@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    txn = await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    (out,) = env.branches("MESSAGE")
    assert out.target == APP_FLOW and "Record-Route" not in out.request.headers
    env.respond(out, 200)
    assert env.final(txn).status == 200
    assert env.metrics.value("sip_calls_total", {"outcome": "answered"}) == 0  # not a call


async def test_487_that_lost_the_callers_via_still_ends_the_branch() -> None:
    env = Env()
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await inbound(env)
    desk = env.branches()[0]
    env.respond(desk, 180)
    await env.cancel(txn)
    # The callee answers 487 with the CANCEL's Via only (ours): a common UAS mistake.
    cancel_req = env.branches("CANCEL")[0].request
    bad = make_response(cancel_req, 487, to_tag="callee")
    bad.headers.set("CSeq", f"{desk.request.cseq.seq} INVITE")
    env.proxy.on_response(desk, bad, desk.target)
    resp = env.final(txn)
    assert resp.status == 487
    assert [v.host for v in resp.headers.vias()] == ["198.51.100.7"]


def _labelled(call: Call, snapshot: Snapshot, live: LiveView, now: datetime) -> Decision:
    return Ring(
        rule="test",
        tenant_id="t1",
        number="+81355500101",
        called_number="+81355500101",
        stages=(RingStage(delay_s=0.0, device_ids=("app1",)),),
        no_answer=NoAnswer(after_s=60.0, action=NoAnswerAction.REJECT),
        display_prefix="Sales",
    )


async def test_number_label_prefixes_the_callers_display_name() -> None:
    env = Env(decide=_labelled)
    await env.register_both()
    await env.send(
        env.request("INVITE", f"sip:0355500101@{US}", from_uri='"Tanaka" <sip:0311112222@x>')
    )
    out = env.branches()[0].request
    frm = out.headers.name_addr("From")
    assert frm is not None and frm.display == "Sales Tanaka" and frm.tag == "from-call-1"
    assert "+81355500101" in (out.headers.get("P-Called-Party-ID") or "")


async def test_internal_call_to_own_number_says_which_number() -> None:
    env = Env()
    await env.register_both()
    req = env.request("INVITE", f"sip:0355500101@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    out = env.branches()[0].request
    assert out.headers.get("P-Called-Party-ID") == f"<sip:+81355500101@{REALM};user=phone>"


async def test_caller_side_in_dialog_request_pops_both_double_record_routes() -> None:
    env = Env()
    await env.register("app1", "sip:app1@10.8.0.3:5080;transport=tcp", APP_FLOW)
    await inbound(env)
    app = env.branches()[0]
    env.respond(app, 200)
    rr = app.request.headers.get_all("Record-Route")
    assert len(rr) == 2  # UDP in, TCP out (RFC 5658)
    # The caller (UDP) uses the route set in reverse order.
    bye = env.request(
        "BYE",
        "sip:app1@10.8.0.3:5080;transport=tcp",
        to_tag="callee",
        cseq=2,
        extra=[("Route", f"{rr[1]}, {rr[0]}")],
    )
    await env.send(bye, GW_SRC)
    out = env.branches("BYE")[0]
    assert out.target == APP_FLOW
    assert "Route" not in out.request.headers


async def test_in_dialog_request_after_reconnect_still_goes_to_the_other_end() -> None:
    env = Env()
    await env.register_both()
    req = env.request("INVITE", f"sip:app1@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    (out,) = env.branches()
    env.respond(out, 200)
    rr = out.request.headers.get_all("Record-Route")[0]
    # The app reconnected (new TCP connection, new port) and hangs up.
    moved = Target("tcp", APP_FLOW.host, 6000, conn_id=99)
    bye = env.request(
        "BYE", "sip:desk1@192.168.1.20:5060", to_tag="x", cseq=5, extra=[("Route", rr)]
    )
    await env.send(bye, moved)
    assert env.branches("BYE")[0].target == DESK_FLOW
