"""Media anchoring of recorded calls (switch/proxy/anchor.py) through the real proxy, sans-IO
(fake sender and scheduler, memory state) with a fake relay that keeps what an ng relay
would: calls, their branches by via-branch, and every request in order. What is checked is
what leaves the proxy (the SDP each branch and the caller get, the order of responses) and
what the relay is asked (offer/answer/delete with the right tags and branches, nothing left
behind)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from provisioning.model import Forwarding, NumberOptions
from switch.proxy.anchor import (
    MediaAnchors,
    RelayError,
    format_metadata,
    parse_metadata,
)
from switch.proxy.proxy import Proxy, ProxyConfig
from switch.sip.message import Response
from switch.sip.transaction import ClientTransaction, ServerTransaction

from .harness import APP_FLOW, CALLER_SRC, DESK_FLOW, GW_SRC, WALL, Env, _roundtrip

CONTRACT = "+81355500100"
CALLER_SDP = (
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_HEADERS = [("Content-Type", "application/sdp")]


def callee_sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=- 2 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


class FakeRelay:
    """An ng relay's bookkeeping: calls -> via-branches; `fail` makes every request raise;
    `gate` (an Event) holds offers/answers until set."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.calls: dict[str, set[str]] = {}
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None
        self.port = 30000
        self.duration = 3200

    async def _enter(self, command: str, args: dict[str, Any]) -> None:
        self.log.append((command, args))
        if self.gate is not None and command in ("offer", "answer"):
            await self.gate.wait()
        if self.fail is not None:
            raise RelayError(self.fail, f"{command}: {self.fail}")

    def _sdp(self) -> bytes:
        self.port += 2
        return f"v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio {self.port} RTP/AVP 0\r\n".encode()

    async def offer(self, **args: Any) -> bytes:
        await self._enter("offer", args)
        self.calls.setdefault(args["call_id"], set()).add(args["via_branch"] or "")
        return self._sdp()

    async def answer(self, **args: Any) -> bytes:
        await self._enter("answer", args)
        return self._sdp()

    async def delete(self, **args: Any) -> Mapping[str, Any]:
        await self._enter("delete", args)
        branches = self.calls.get(args["call_id"])
        if branches is None:
            return {"result": "ok", "warning": "Call-ID not found"}
        if args.get("via_branch") is not None and len(branches) > 1:
            branches.discard(args["via_branch"])
            return {"result": "ok"}
        del self.calls[args["call_id"]]
        return {"result": "ok"}  # as rtpengine: no statistics in a delete's reply

    async def query(self, **args: Any) -> Mapping[str, Any]:
        await self._enter("query", args)
        if args["call_id"] not in self.calls:
            raise RelayError("refused", "Unknown call-id")
        return {"result": "ok", "totals": {"RTP": {"packets": 500, "bytes": 86000, "errors": 1}}}

    async def block_media(self, **args: Any) -> None:
        await self._enter("block media", args)

    async def unblock_media(self, **args: Any) -> None:
        await self._enter("unblock media", args)

    async def play_media(self, **args: Any) -> int | None:
        await self._enter("play media", args)
        return self.duration

    def commands(self) -> list[str]:
        return [c for c, _ in self.log]


def env_with(
    relay: FakeRelay, *, recording: bool = True, notice: bool = False, **number: Any
) -> Env:
    env = Env(config=ProxyConfig(channel_ttl=600.0, lease_sweep=5.0))
    numbers = [
        dataclasses.replace(
            n,
            options=NumberOptions(recording=recording, forwarding="forwarding" in number),
            recording_notice=notice,
            **number,
        )
        if n.e164 == CONTRACT
        else n
        for n in env.snap.numbers.values()
    ]
    env.snap = dataclasses.replace(env.snap, numbers={n.e164: n for n in numbers})
    anchors = MediaAnchors(
        relay, metrics=env.metrics, notice_file="/prompts/recording-notice.wav",
        scheduler=env.sender, wall_clock=lambda: WALL,
    )  # fmt: skip
    env.proxy = Proxy(
        sender=env.sender, snapshot=lambda: env.snap, state=env.state,
        authenticator=env.auth, metrics=env.metrics, config=env.proxy.config,
        wall_clock=lambda: WALL, anchors=anchors,
    )  # fmt: skip
    return env


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def invite(env: Env, *, sdp: bytes = CALLER_SDP, call_id: str = "call-1") -> Any:
    req = env.request("INVITE", f"sip:{CONTRACT}@10.0.0.1", call_id=call_id, extra=SDP_HEADERS)
    req.body = sdp
    return _roundtrip(req)


def reply(
    env: Env, ctxn: ClientTransaction, status: int, *, to_tag: str, sdp: bytes | None = None
) -> None:
    extra = SDP_HEADERS if sdp is not None else None
    resp = _make(ctxn, status, to_tag, extra, sdp)
    env.proxy.on_response(ctxn, resp, ctxn.target)


def _make(ctxn: ClientTransaction, status: int, tag: str, extra: Any, sdp: bytes | None) -> Any:
    from switch.sip.message import make_response

    resp = make_response(ctxn.request, status, to_tag=tag)
    if 200 <= status < 300:
        resp.headers.add("Contact", "<sip:callee@192.168.1.20:5060>")
    for name, value in extra or ():
        resp.headers.add(name, value)
    if sdp is not None:
        resp.body = sdp
    return _roundtrip(resp)


def up(env: Env, txn: ServerTransaction) -> list[Response]:
    return env.sent_to(txn)


async def answered_call(env: Env, relay: FakeRelay) -> tuple[ServerTransaction, ClientTransaction]:
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await env.send(invite(env), GW_SRC)
    await settle()
    [branch] = env.branches()
    reply(env, branch, 200, to_tag="desk-tag", sdp=callee_sdp(5004))
    await settle()
    return txn, branch


# ---------------------------------------------------------------- forking
async def test_each_fork_branch_gets_its_own_relay_side_and_the_cancelled_one_goes() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    await env.register_both()
    txn = await env.send(invite(env), GW_SRC)
    await settle()
    desk, app = env.branches()
    offers = [a for c, a in relay.log if c == "offer"]
    # one offer per branch, named by the Via branch that branch really carries
    assert [o["via_branch"] for o in offers] == [desk.request.top_via.branch,
                                                  app.request.top_via.branch]  # fmt: skip
    assert all(o["from_tag"] == "from-call-1" and o["label"] == "caller" for o in offers)
    assert all(o["sdp"] == CALLER_SDP for o in offers)
    assert desk.request.body != app.request.body  # each device gets its own relay port
    assert all(b.request.body.startswith(b"v=0\r\nc=IN IP4 10.9.9.9") for b in (desk, app))
    meta = parse_metadata(offers[0]["metadata"])
    assert meta["tenant"] == "t1" and meta["number"] == CONTRACT and meta["dir"] == "inbound"
    assert meta["other"] == "0312345678" and "answered" not in meta
    assert offers[0]["record"] is False  # the embedded relay records from the answer
    # the desk answers: the caller gets the relay's SDP, not the phone's
    reply(env, app, 180, to_tag="app-tag")
    reply(env, desk, 180, to_tag="desk-tag")
    reply(env, desk, 200, to_tag="desk-tag", sdp=callee_sdp(5004))
    await settle()
    ok = up(env, txn)[-1]
    assert ok.status == 200 and b"10.9.9.9" in ok.body and b"192.168.1.20" not in ok.body
    [answer] = [a for c, a in relay.log if c == "answer"]
    assert (answer["to_tag"], answer["via_branch"]) == ("desk-tag", desk.request.top_via.branch)
    assert answer["record"] is True and answer["label"] == "callee"
    answered_meta = parse_metadata(answer["metadata"])
    assert answered_meta["device"] == "desk1" and answered_meta["answered"] == str(int(WALL * 1000))
    # the app's branch is cancelled; its 487 deletes its relay side only
    [cancel] = env.branches("CANCEL")
    assert cancel.request.top_via.branch is not None
    reply(env, app, 487, to_tag="app-tag")
    await settle()
    assert relay.calls == {"call-1": {desk.request.top_via.branch}}
    # BYE: the whole call goes
    bye = env.request("BYE", "sip:desk1@192.168.1.20:5060", to_tag="desk-tag",
                      extra=env.caller_route(desk))  # fmt: skip
    await env.send(bye, GW_SRC)
    await settle()
    assert relay.calls == {} and env.proxy.anchors is not None and not env.proxy.anchors.calls
    assert relay.log[-2:] == [("query", {"call_id": "call-1"}), ("delete", {"call_id": "call-1"})]
    assert env.metrics.value("relay_packets_total", {"relay": "embedded"}) == 500
    assert env.metrics.value("relay_errors_total", {"relay": "embedded", "kind": "rtp"}) == 1
    assert env.metrics.value("relay_sessions_active", {"relay": "embedded"}) == 0


async def test_a_number_without_recording_keeps_media_end_to_end() -> None:
    relay = FakeRelay()
    env = env_with(relay, recording=False)
    txn, branch = await answered_call(env, relay)
    assert relay.log == []
    assert branch.request.body == CALLER_SDP
    assert up(env, txn)[-1].body == callee_sdp(5004)


async def test_a_forwarded_call_on_a_recording_number_is_not_anchored() -> None:
    relay = FakeRelay()
    env = env_with(relay, forwarding=Forwarding(enabled=True, target="+819011112222"))
    await env.send(invite(env), GW_SRC)
    await settle()
    [branch] = env.branches()
    assert "09011112222" in branch.request.uri
    assert branch.request.body == CALLER_SDP and relay.log == []


async def test_an_outbound_call_presenting_a_recording_number_is_anchored() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    req = env.request("INVITE", "sip:0311112222@10.0.0.1", from_uri="<sip:desk1@softswitch.test>",
                      extra=SDP_HEADERS)  # fmt: skip
    req.body = CALLER_SDP
    txn = await env.send_authenticated(_roundtrip(req), "desk1", DESK_FLOW)
    await settle()
    [branch] = env.branches()
    [offer] = [a for c, a in relay.log if c == "offer"]
    meta = parse_metadata(offer["metadata"])
    assert (meta["dir"], meta["device"], meta["other"]) == ("outbound", "desk1", "+81311112222")
    assert b"10.9.9.9" in branch.request.body
    reply(env, branch, 200, to_tag="carrier", sdp=callee_sdp(7000))
    await settle()
    assert b"10.9.9.9" in up(env, txn)[-1].body


# ---------------------------------------------------------------- order and failures
async def test_responses_keep_their_order_while_the_relay_answers() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await env.send(invite(env), GW_SRC)
    await settle()
    [branch] = env.branches()
    relay.gate = asyncio.Event()
    reply(env, branch, 183, to_tag="d", sdp=callee_sdp(5004))  # held by the relay
    reply(env, branch, 180, to_tag="d")  # no SDP, but after the 183
    await settle()
    assert [r.status for r in up(env, txn)] == []
    relay.gate.set()
    await settle()
    assert [r.status for r in up(env, txn)] == [183, 180]


async def test_an_unreachable_relay_never_kills_the_call() -> None:
    relay = FakeRelay()
    relay.fail = "unreachable"
    env = env_with(relay)
    txn, branch = await answered_call(env, relay)
    assert branch.request.body == CALLER_SDP  # the original offer went out
    assert up(env, txn)[-1].status == 200 and up(env, txn)[-1].body == callee_sdp(5004)
    assert relay.commands() == ["offer"]  # no answer for a branch the relay never saw
    assert env.metrics.value("relay_fallbacks_total", {"relay": "embedded", "step": "offer"}) == 1


async def test_a_failing_answer_forwards_the_callees_sdp() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await env.send(invite(env), GW_SRC)
    await settle()
    relay.fail = "timeout"
    [branch] = env.branches()
    reply(env, branch, 200, to_tag="d", sdp=callee_sdp(5004))
    await settle()
    assert up(env, txn)[-1].body == callee_sdp(5004)
    assert env.metrics.value("relay_fallbacks_total", {"relay": "embedded", "step": "answer"}) == 1


async def test_a_cancel_during_the_offer_sends_no_invite_and_leaves_nothing() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    relay.gate = asyncio.Event()
    txn = await env.send(invite(env), GW_SRC)
    await settle()
    await env.cancel(txn)
    relay.gate.set()
    await settle()
    assert env.branches() == []  # the INVITE never left
    assert env.final(txn).status == 487
    assert relay.calls == {} and relay.commands()[-1] == "delete"


async def test_lease_expiry_deletes_the_relay_session() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    await answered_call(env, relay)
    assert relay.calls
    clock = [WALL + 601.0]
    env.proxy.calls._wall = lambda: clock[0]  # the lease TTL (600 s) has passed
    env.sched.advance(10.0)  # the lease sweep runs
    await settle()
    assert relay.calls == {} and relay.log[-1][0] == "delete"


async def test_late_offer_is_not_anchored_and_counted() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    txn, branch = await answered_call_without_sdp(env)
    assert relay.log == [] and branch.request.body == b""
    late = {"relay": "embedded", "step": "late-offer"}
    assert env.metrics.value("relay_fallbacks_total", late) == 1
    assert up(env, txn)[-1].status == 200


async def answered_call_without_sdp(env: Env) -> tuple[ServerTransaction, ClientTransaction]:
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    txn = await env.send(invite(env, sdp=b""), GW_SRC)
    await settle()
    [branch] = env.branches()
    reply(env, branch, 200, to_tag="d", sdp=callee_sdp(5004))
    await settle()
    return txn, branch


# ---------------------------------------------------------------- in dialog
async def test_a_reinvite_from_the_callee_goes_through_the_relay() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    _, branch = await answered_call(env, relay)
    relay.log.clear()
    # the callee (desk) puts the caller on hold: From = the callee's tag, To = the caller's
    reinvite = env.request(
        "INVITE", "sip:caller@198.51.100.7:40000", from_uri="<sip:desk1@192.168.1.20>",
        to_uri="<sip:0312345678@192.0.2.10>", to_tag="from-call-1", cseq=5,
        extra=[*SDP_HEADERS, *[("Route", v) for v in branch.request.headers.get_all("Record-Route")]],  # noqa: E501
        via="SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKre1",
    )  # fmt: skip
    reinvite.headers.set("From", "<sip:desk1@192.168.1.20>;tag=desk-tag")
    reinvite.body = callee_sdp(5006)
    txn = await env.send(_roundtrip(reinvite), DESK_FLOW)
    await settle()
    fwd = env.branches()[-1]
    [offer] = [a for c, a in relay.log if c == "offer"]
    assert (offer["from_tag"], offer["to_tag"]) == ("desk-tag", "from-call-1")
    assert offer["label"] == "callee"
    assert offer["via_branch"] is None and offer["metadata"] is None and not offer["record"]
    assert b"10.9.9.9" in fwd.request.body
    reply(env, fwd, 200, to_tag="from-call-1", sdp=CALLER_SDP)
    await settle()
    [answer] = [a for c, a in relay.log if c == "answer"]
    assert (answer["from_tag"], answer["to_tag"]) == ("desk-tag", "from-call-1")
    assert answer["label"] == "caller"
    assert b"10.9.9.9" in up(env, txn)[-1].body


async def test_a_2xx_retransmission_carries_the_relays_sdp_again() -> None:
    relay = FakeRelay()
    env = env_with(relay)
    txn, branch = await answered_call(env, relay)
    first = up(env, txn)[-1].body
    again = _make(branch, 200, "desk-tag", SDP_HEADERS, callee_sdp(5004))
    env.proxy.on_stray_response(again, branch.target, branch)
    [(sent, _)] = env.sender.stateless
    assert sent.body == first


# ---------------------------------------------------------------- the notice
async def test_the_notice_plays_to_the_caller_with_the_callee_blocked() -> None:
    relay = FakeRelay()
    env = env_with(relay, notice=True)
    txn, _ = await answered_call(env, relay)
    assert relay.commands() == ["offer", "answer", "block media", "play media"]
    block, play = relay.log[2][1], relay.log[3][1]
    assert block["from_tag"] == "desk-tag"  # the callee is not heard...
    assert play["from_tag"] == "from-call-1"  # ...while the caller hears the notice
    assert play["file"] == "/prompts/recording-notice.wav"
    assert up(env, txn)[-1].status == 200  # the 2xx went once the notice was playing
    env.sched.advance(3.1)  # the notice lasts 3.2 s
    await settle()
    assert relay.commands()[-1] == "play media"
    env.sched.advance(0.2)
    await settle()
    assert relay.commands()[-1] == "unblock media"
    assert relay.log[-1][1]["from_tag"] == "desk-tag"


async def test_no_notice_when_the_number_does_not_ask_for_it() -> None:
    relay = FakeRelay()
    env = env_with(relay, notice=False)
    await answered_call(env, relay)
    assert relay.commands() == ["offer", "answer"]


# ---------------------------------------------------------------- metadata
@pytest.mark.parametrize("value", ["0312345678", "+81 3|x:y", "匿名", "a%b"])
def test_metadata_values_survive_the_round_trip(value: str) -> None:
    text = format_metadata({"other": value, "dir": "inbound", "none": None})
    assert "|" not in text.split("|")[0].split(":", 1)[1]
    assert parse_metadata(text) == {"other": value, "dir": "inbound"}


def test_callers_source_is_not_a_device() -> None:
    assert CALLER_SRC != DESK_FLOW and APP_FLOW != DESK_FLOW
