"""The proxy drives the call-record tracker (switch/proxy/cdrs.py, billing/cdr.py), sans-IO:
the real proxy, routing policy, tracker and memory state; a list stands in for the CDR
writer's `submit`. Every path ends in exactly one record with the fields the proxy saw:
answer and BYE, CANCEL, the lost channel race, the no-answer diversion, lease expiry, the
tracker's own sweep, `Proxy.dialog_ended`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.cdr import CallRecords
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord
from routing.call import Call, LiveState, LiveView
from routing.decisions import Decision
from routing.policy import decide as policy_decide
from switch.proxy.diversion import MediaService
from switch.proxy.proxy import Proxy, ProxyConfig

from .harness import CALLER_SRC, DESK_FLOW, US, Env
from .test_routing_execution import (
    CALLER,
    CONTRACT,
    FORWARDED,
    MEDIA,
    TTL,
    Wall,
    call,
    media_params,
    routing_snapshot,
)


class Cdrs:
    def __init__(self) -> None:
        self.submitted: list[CallRecord] = []

    def only(self) -> CallRecord:
        assert len(self.submitted) == 1, self.submitted
        return self.submitted[0]


def make_env(decide: Any = None, **config: Any) -> tuple[Env, Wall, Cdrs]:
    env, wall, sink = Env(), Wall(), Cdrs()
    env.snap = routing_snapshot()
    cfg = ProxyConfig(media=MediaService.parse(MEDIA), channel_ttl=TTL, **config)
    env.proxy = Proxy(
        sender=env.sender, snapshot=lambda: env.snap, state=env.state, authenticator=env.auth,
        metrics=env.metrics, config=cfg, decide=decide, wall_clock=wall,
        call_records=CallRecords(node="n1"), cdr_sink=sink.submitted.append,
    )  # fmt: skip
    return env, wall, sink


def at(wall: Wall, offset: float = 0.0) -> datetime:
    return datetime.fromtimestamp(wall.t + offset, UTC)


async def bye(env: Env, call_id: str = "call-1", cseq: int = 2) -> None:
    req = env.request("BYE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=cseq,
                      call_id=call_id, extra=env.caller_route(env.branches()[0]))  # fmt: skip
    await env.send(req)


async def test_answered_by_the_desk_phone_and_hung_up() -> None:
    env, wall, sink = make_env()
    await env.register_both()
    t0 = wall.t
    await call(env, CONTRACT)
    (desk,) = env.branches()  # the app's stage comes 2 s later
    wall.t += 4
    env.respond(desk, 200)
    assert sink.submitted == []
    wall.t += 30.2
    await bye(env)
    r = sink.only()
    assert (r.direction, r.outcome, r.tenant_id, r.number) == (
        CallDirection.INBOUND, CallOutcome.ANSWERED, "t1", CONTRACT,
    )  # fmt: skip
    assert (r.caller, r.rang, r.answered_device) == (CALLER, ("desk1",), "desk1")
    assert r.answered_device_kind is DeviceKind.DESK
    assert r.started_at == datetime.fromtimestamp(t0, UTC) and r.answered_at == at(wall, -30.2)
    assert (r.billable_seconds, r.sip_status, r.end_reason) == (31, 200, "bye")
    assert r.rule == "inbound-ring" and r.node == "n1"
    await bye(env, cseq=3)  # a retransmitted/second BYE: no second record
    assert len(sink.submitted) == 1


async def test_cancelled_while_ringing() -> None:
    env, _, sink = make_env()
    await env.register_both()
    txn = await call(env, CONTRACT)
    await env.cancel(txn)
    (desk,) = env.branches()
    env.respond(desk, 487)
    assert env.final(txn).status == 487
    r = sink.only()
    assert (r.outcome, r.sip_status, r.end_reason) == (CallOutcome.CANCELLED, 487, "cancel")
    assert r.rang == ("desk1",) and r.billable_seconds == 0


async def test_the_no_answer_diversion_is_a_voicemail_call() -> None:
    env, _, sink = make_env()
    await env.register_both()
    await call(env, CONTRACT)
    env.sched.advance(10.0)  # the voicemail ring time
    vm = env.branches()[-1]
    assert media_params(vm)[0] == "voicemail"
    env.respond(vm, 200, to_tag="vm")
    env.proxy.dialog_ended("call-1", reason="bye")
    r = sink.only()
    assert r.outcome is CallOutcome.VOICEMAIL and set(r.rang) == {"desk1", "app1"}
    assert r.answered_device is None


async def test_the_lost_channel_race_describes_the_call_again() -> None:
    """Routing saw a free channel, the lease says no: the re-decision (busy treatment: the
    voicemail hand-off) is what the record says, under one CDR id and start."""
    first: list[bool] = []

    def stale(c: Call, snap: Any, live: LiveView, now: datetime) -> Decision:
        if not first:
            first.append(True)
            registered = frozenset(d for d in snap.devices if live.is_registered(d))
            live = LiveState(registered=registered)
        return policy_decide(c, snap, live, now)

    env, wall, sink = make_env(decide=stale)
    await env.register_both()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    await call(env, CONTRACT)
    (vm,) = env.branches()
    env.respond(vm, 486)
    r = sink.only()
    assert r.rule == "inbound-ring-lost-channel-race" and r.outcome is CallOutcome.VOICEMAIL
    assert r.rang == ()


async def test_a_forwarded_call_keeps_the_original_caller() -> None:
    env, _, sink = make_env()
    await call(env, FORWARDED)
    (gw,) = env.branches()
    env.respond(gw, 200)
    env.proxy.dialog_ended("call-1", reason="operator")
    r = sink.only()
    assert (r.direction, r.caller, r.end_reason) == (CallDirection.FORWARDED, CALLER, "operator")
    assert r.forwarded_to is not None and r.answered_device is None


async def test_a_device_call_refused_by_routing() -> None:
    env, _, sink = make_env()
    req = env.request("INVITE", f"sip:110@{US}", from_uri=f"<sip:desk1@{US}>")
    txn = await env.send_authenticated(req, "desk1", CALLER_SRC)
    assert env.final(txn).status == 403
    r = sink.only()  # the 407 before it was no call
    assert (r.outcome, r.rule, r.caller_device) == (
        CallOutcome.REFUSED, "outbound-emergency", "desk1",
    )  # fmt: skip
    assert r.caller_device_kind is DeviceKind.DESK and r.sip_status == 403


async def test_an_expired_lease_ends_the_call_at_its_last_sign_of_life() -> None:
    env, wall, sink = make_env(lease_sweep=60.0)
    await env.register_both()
    await call(env, CONTRACT)
    env.respond(env.branches()[0], 200)
    wall.t += 100
    info = env.request("INFO", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=3,
                       extra=env.caller_route(env.branches()[0]))  # fmt: skip
    await env.send(info)
    last = at(wall)
    wall.t += TTL + 1
    env.sched.advance(60.0)
    r = sink.only()
    assert (r.end_reason, r.ended_at, r.billable_seconds) == ("expired", last, 100)
    assert r.outcome is CallOutcome.ANSWERED


async def test_the_trackers_own_sweep_ends_a_call_nobody_ended() -> None:
    """A hand-off to the media service takes no lease: when neither end is heard of again,
    the tracker's idle TTL ends it (the proxy's CDR sweep runs while calls are open)."""
    env, wall, sink = make_env()
    txn = await call(env, "+81366600100")  # t2's after-hours number: the announcement
    (media,) = env.branches()
    env.respond(media, 200)
    assert env.final(txn).status == 200
    answered = at(wall)
    records = env.proxy.cdrs
    assert records is not None
    wall.t += timedelta(hours=3).total_seconds()
    env.sched.advance(3 * 3600.0)
    r = sink.only()
    assert (r.outcome, r.end_reason, r.ended_at) == (
        CallOutcome.ANNOUNCEMENT, "expired", answered,
    )  # fmt: skip
    assert len(records.records) == 0


def test_records_and_sink_go_together() -> None:
    env = Env()
    with pytest.raises(ValueError, match="together"):
        Proxy(
            sender=env.sender, snapshot=lambda: env.snap, state=env.state,
            authenticator=env.auth, metrics=env.metrics, call_records=CallRecords(node="n"),
        )  # fmt: skip


async def test_a_proxy_without_records_keeps_none() -> None:
    env = Env()
    assert env.proxy.cdrs is None
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    req = env.request("INVITE", f"sip:0355500100@{US}")
    await env.send(req)
    env.respond(env.branches()[0], 200)


async def test_the_carriers_calling_party_category_is_kept() -> None:
    """RFC 4694 `cpc` of the carrier's caller identity (toll-free calls are rated by it)."""
    env, _, sink = make_env()
    await env.register_both()
    pai = ("P-Asserted-Identity", "<tel:+81312345678;cpc=payphone>")
    txn = await call(env, CONTRACT, extra=[pai])
    await env.cancel(txn)
    env.respond(env.branches()[0], 487)
    assert sink.only().caller_category == "payphone"
