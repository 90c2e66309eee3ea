"""Dialog liveness (switch/proxy/dialogs.py), sans-IO through the proxy: keep-alives towards
both ends of an answered call with the route set, From/To and CSeq each end expects; BYE both
ways when one fails (408/481/no answer) or an operator ends the call; the lease released."""

from __future__ import annotations

import asyncio

from switch.proxy.proxy import ProxyConfig
from switch.sip.message import make_response
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction

from .harness import DESK_FLOW, WALL, Env

NUMBER_URI = "sip:+81355500100@10.0.0.1"
INTERVAL, TIMEOUT = 30.0, 5.0
CALLER_CONTACT = Target("udp", "198.51.100.7", 40000)  # the Contact of Env.request


async def answered_call() -> Env:
    env = Env(config=ProxyConfig(keepalive_interval=INTERVAL, keepalive_timeout=TIMEOUT))
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    await env.send(env.request("INVITE", NUMBER_URI))
    env.respond(env.branches()[0], 200)
    await asyncio.sleep(0)
    return env


def sent(env: Env, method: str) -> list[ClientTransaction]:
    return env.branches(method)


def by_end(env: Env) -> tuple[ClientTransaction, ClientTransaction]:
    """The latest keep-alives: (to the callee, to the caller)."""
    last = sent(env, "OPTIONS")[-2:]
    callee = next(c for c in last if c.target == DESK_FLOW)
    caller = next(c for c in last if c.target != DESK_FLOW)
    return callee, caller


def answer(env: Env, ctxn: ClientTransaction, status: int) -> None:
    env.proxy.on_response(ctxn, make_response(ctxn.request, status), ctxn.target)


async def test_keepalives_go_to_both_ends_as_each_expects() -> None:
    env = await answered_call()
    env.sched.advance(INTERVAL - 1)
    assert sent(env, "OPTIONS") == []
    env.sched.advance(1.5)
    to_callee, to_caller = by_end(env)
    callee = to_callee.request
    assert to_callee.target == DESK_FLOW and callee.uri == "sip:callee@192.168.1.20:5060"
    assert callee.headers.get("From") == "<sip:0312345678@192.0.2.10>;tag=from-call-1"
    assert callee.to_tag == "callee" and str(callee.cseq) == "1 OPTIONS"
    assert "Route" not in callee.headers  # nobody beyond us
    caller = to_caller.request
    assert to_caller.target == CALLER_CONTACT and caller.uri == "sip:caller@198.51.100.7:40000"
    assert caller.from_tag == "callee" and caller.to_tag == "from-call-1"
    assert str(caller.cseq) == "1 OPTIONS"
    assert caller.top_via.host == "10.0.0.1" and caller.headers.get("Max-Forwards") == "70"
    for c in (to_callee, to_caller):
        answer(env, c, 200)
    env.sched.advance(TIMEOUT + 1)
    assert sent(env, "BYE") == []
    assert env.metrics.value("sip_dialog_keepalives_total", {"result": "ok"}) == 2
    env.sched.advance(INTERVAL)
    assert len(sent(env, "OPTIONS")) == 4  # every interval


async def test_a_481_ends_the_call_with_bye_both_ways_and_releases_the_lease() -> None:
    env = await answered_call()
    assert await env.state.channels_in_use("t1", WALL) == 1
    env.sched.advance(INTERVAL + 1)
    to_callee, to_caller = by_end(env)
    answer(env, to_caller, 200)
    answer(env, to_callee, 481)
    await asyncio.sleep(0)
    byes = sent(env, "BYE")
    assert [b.target for b in byes] == [CALLER_CONTACT, DESK_FLOW]
    # the caller has seen no request from the callee yet: 1; the callee saw the INVITE's 1
    assert [str(b.request.cseq) for b in byes] == ["1 BYE", "2 BYE"]
    assert all("cause=408" in (b.request.headers.get("Reason") or "") for b in byes)
    assert await env.state.channels_in_use("t1", WALL) == 0
    assert env.metrics.value("sip_calls_active") == 0
    assert env.metrics.value("sip_dialogs_ended_total", {"reason": "keepalive"}) == 1
    env.sched.advance(3 * INTERVAL)
    assert len(sent(env, "OPTIONS")) == 2  # forgotten


async def test_no_answer_within_the_timeout_ends_the_call() -> None:
    env = await answered_call()
    env.sched.advance(INTERVAL + 1)
    to_callee, _ = by_end(env)
    answer(env, to_callee, 200)  # the caller never answers (sent at INTERVAL, 1 s ago)
    env.sched.advance(TIMEOUT - 1.5)
    assert sent(env, "BYE") == []
    env.sched.advance(1)
    await asyncio.sleep(0)
    assert len(sent(env, "BYE")) == 2
    assert await env.state.channels_in_use("t1", WALL) == 0


async def test_other_final_answers_prove_the_end_alive() -> None:
    env = await answered_call()
    env.sched.advance(INTERVAL + 1)
    for c, status in zip(by_end(env), (405, 501), strict=True):
        answer(env, c, status)
    env.sched.advance(TIMEOUT + 1)
    assert sent(env, "BYE") == []


async def test_requests_passing_raise_the_cseq_and_a_bye_stops_the_keepalives() -> None:
    env = await answered_call()
    route = env.caller_route(env.branches()[0])
    reinvite = env.request(
        "INVITE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=7, extra=route
    )
    await env.send(reinvite)
    env.sched.advance(INTERVAL + 1)
    to_callee, _ = by_end(env)
    assert str(to_callee.request.cseq) == "7 OPTIONS"
    bye = env.request("BYE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=8, extra=route)
    await env.send(bye)
    env.sched.advance(3 * INTERVAL)
    assert len(sent(env, "OPTIONS")) == 2 and len(sent(env, "BYE")) == 1  # the caller's own


async def test_the_operator_ends_a_call_once() -> None:
    env = await answered_call()
    assert env.proxy.end_call("call-1") is True
    await asyncio.sleep(0)
    byes = sent(env, "BYE")
    assert len(byes) == 2 and "ended by the operator" in (
        byes[0].request.headers.get("Reason") or ""
    )
    assert await env.state.channels_in_use("t1", WALL) == 0
    assert env.proxy.end_call("call-1") is False  # nothing left to end
    assert len(sent(env, "BYE")) == 2


async def test_keepalives_off() -> None:
    env = Env(config=ProxyConfig(keepalive_interval=0))
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    await env.send(env.request("INVITE", NUMBER_URI))
    env.respond(env.branches()[0], 200)
    env.sched.advance(3600)
    assert sent(env, "OPTIONS") == [] and len(env.proxy.dialogs) == 0


async def test_the_operator_cancels_a_call_still_ringing() -> None:
    env = Env(config=ProxyConfig(keepalive_interval=INTERVAL))
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await env.send(env.request("INVITE", NUMBER_URI))
    invite = env.branches()[0]
    env.respond(invite, 180)
    assert await env.state.channels_in_use("t1", WALL) == 1
    assert env.proxy.end_call("call-1") is True
    (cancel,) = sent(env, "CANCEL")
    assert cancel.target == DESK_FLOW
    env.respond(invite, 487)
    await asyncio.sleep(0)
    assert env.final(txn).status == 487
    assert await env.state.channels_in_use("t1", WALL) == 0
