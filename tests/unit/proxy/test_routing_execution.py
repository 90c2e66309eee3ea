"""Every routing decision carried out by the proxy, sans-IO (fake scheduler, moving fake wall
clock, memory state): the messages it produces (Request-URI, P-Asserted-Identity, From,
History-Info, Diversion, P-Called-Party-ID, media URI parameters) and the channel lease on
every path (acquire, release, refresh, Session-Expires TTL, expiry)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from provisioning.model import (
    AfterHours,
    DayKind,
    DeviceKind,
    Forwarding,
    Gateway,
    Number,
    NumberKind,
    NumberOptions,
    SlotAction,
    Snapshot,
    Tenant,
)
from routing.call import Call, LiveState, LiveView
from routing.decisions import Busy, Decision
from routing.policy import decide as policy_decide
from switch.handoff import HandOff
from switch.proxy.diversion import MediaService, busy_handoff
from switch.proxy.proxy import Proxy, ProxyConfig
from switch.sip.message import SipURI, parse_uri
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction

from .harness import (
    APP_FLOW,
    CALLER_SRC,
    DESK_FLOW,
    GW_IP,
    GW_SRC,
    REALM,
    US,
    Env,
    _device,
)

MEDIA = "sip:media@127.0.0.1:5090"
MEDIA_TARGET = Target("udp", "127.0.0.1", 5090)
CONTRACT = "+81355500100"  # desk1 + app1, apps after 2 s, voicemail after 10 s, label
FORWARDED = "+81355500101"  # forwarding ON to 09011112222
AFTER_HOURS = "+81366600100"  # t2: announcement in every slot, then voicemail
PLAIN = "+81366600101"  # t2: no options, max ring time 20 s
CALLER = "0312345678"
TTL = 600.0


def routing_snapshot() -> Snapshot:
    announce_day = (SlotAction.ANNOUNCE,) * 48
    return Snapshot.build(
        version=1,
        realm=REALM,
        tenants=[
            Tenant(id="t1", name="One", identity_verified=True),
            Tenant(id="t2", name="Two", identity_verified=True),
        ],
        devices=[
            _device("desk1", "t1", DeviceKind.DESK, CONTRACT),
            _device("app1", "t1", DeviceKind.APP, CONTRACT),
            _device("other1", "t2", DeviceKind.APP, AFTER_HOURS),
        ],
        numbers=[
            Number(
                e164=CONTRACT,
                tenant_id="t1",
                kind=NumberKind.CONTRACT,
                ring_group=("desk1", "app1"),
                app_ring_delay=2.0,
                label="Sales",
                label_in_display_name=True,
                options=NumberOptions(voicemail=True),
                voicemail_ring_time=10,
            ),
            Number(
                e164=FORWARDED,
                tenant_id="t1",
                kind=NumberKind.ADDITIONAL,
                ring_group=("app1",),
                options=NumberOptions(forwarding=True, voicemail=True),
                forwarding=Forwarding(enabled=True, target="09011112222"),
            ),
            Number(
                e164=AFTER_HOURS,
                tenant_id="t2",
                kind=NumberKind.CONTRACT,
                ring_group=("other1",),
                options=NumberOptions(after_hours=True, voicemail=True),
                after_hours=AfterHours(
                    enabled=True,
                    slots=MappingProxyType({k: announce_day for k in DayKind}),
                    announcement="template-2",
                ),
            ),
            Number(
                e164=PLAIN,
                tenant_id="t2",
                kind=NumberKind.ADDITIONAL,
                ring_group=("other1",),
                max_ring_time=20.0,
            ),
        ],
        gateways=[
            Gateway(id="gw", name="Carrier", host=GW_IP, port=5060, allowed_sources=(GW_IP,))
        ],
    )


class Wall:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def make_env(*, media: bool = True, decide: Any = None, **config: Any) -> tuple[Env, Wall]:
    env = Env()
    wall = Wall()
    env.snap = routing_snapshot()
    cfg = ProxyConfig(media=MediaService.parse(MEDIA) if media else None, channel_ttl=TTL, **config)
    env.proxy = Proxy(
        sender=env.sender,
        snapshot=lambda: env.snap,
        state=env.state,
        authenticator=env.auth,
        metrics=env.metrics,
        config=cfg,
        decide=decide,
        wall_clock=wall,
    )
    return env, wall


async def call(env: Env, number: str, call_id: str = "call-1", **kw: Any) -> ServerTransaction:
    national = "0" + number[3:]
    req = env.request(
        "INVITE", f"sip:{national}@{US}", call_id=call_id,
        from_uri=f'"Yamada" <sip:{CALLER}@{GW_IP}>', **kw,
    )  # fmt: skip
    return await env.send(req)


async def in_use(env: Env, wall: Wall, tenant: str = "t1") -> int:
    await asyncio.sleep(0)  # let an eager release finish
    return await env.state.channels_in_use(tenant, wall())


def media_params(ctxn: ClientTransaction) -> tuple[str | None, dict[str, str | None]]:
    uri = parse_uri(ctxn.request.uri)
    assert isinstance(uri, SipURI) and (uri.host, uri.port) == ("127.0.0.1", 5090)
    assert ctxn.target == MEDIA_TARGET
    # the media side's parser accepts it (signature included), and says the same
    handoff = HandOff.from_uri(uri.user, list(uri.params.items()), b"")
    params = {k: v for k, v in uri.params.items() if k != "sig"}
    assert dict(handoff.params()) == params
    return uri.user, params


def decisions(env: Env, rule: str) -> float:
    return env.metrics.value("routing_decisions_total", {"rule": rule})


# --------------------------------------------------------------------------- Ring
async def test_ring_desk_at_once_app_after_delay_with_called_party_and_label() -> None:
    env, wall = make_env()
    await env.register_both()
    txn = await call(env, CONTRACT)
    (desk,) = env.branches()
    assert desk.target == DESK_FLOW
    assert await in_use(env, wall) == 1  # the lease was taken before the fork
    h = desk.request.headers
    assert h.get("P-Called-Party-ID") == f"<sip:{CONTRACT}@{REALM};user=phone>"
    frm = h.name_addr("From")
    assert frm is not None and frm.display == "Sales Yamada"
    env.respond(desk, 180)
    env.sched.advance(1.9)
    assert len(env.branches()) == 1  # the app waits while the desk phone rings
    env.sched.advance(0.2)
    app = env.branches()[1]
    assert app.target == APP_FLOW
    assert app.request.headers.get("P-Called-Party-ID") == h.get("P-Called-Party-ID")
    env.respond(app, 200)
    assert env.final(txn).status == 200
    assert decisions(env, "inbound-ring") == 1
    assert await in_use(env, wall) == 1  # answered: still held


async def test_busy_desk_lets_the_app_ring_at_once() -> None:
    env, _ = make_env()
    await env.register_both()
    await call(env, CONTRACT)
    env.respond(env.branches()[0], 486)
    assert [c.target for c in env.branches()] == [DESK_FLOW, APP_FLOW]


async def test_no_answer_cancels_devices_and_diverts_to_voicemail() -> None:
    env, wall = make_env()
    await env.register_both()
    txn = await call(env, CONTRACT)
    desk = env.branches()[0]
    env.respond(desk, 180)
    env.sched.advance(2.0)
    app = env.branches()[1]
    env.respond(app, 180)
    env.sched.advance(8.0)  # 10 s: the voicemail ring time
    cancels = env.branches("CANCEL")
    assert {c.target for c in cancels} == {DESK_FLOW, APP_FLOW}
    vm = env.branches()[2]
    user, params = media_params(vm)
    assert user == "voicemail"
    assert params == {
        "mailbox": CONTRACT, "tenant": "t1", "target": CONTRACT, "caller": CALLER,
        "cause": "408",
    }  # fmt: skip
    assert vm.request.headers.get("P-Called-Party-ID") == f"<sip:{CONTRACT}@{REALM};user=phone>"
    env.respond(desk, 487)
    env.respond(app, 487)
    assert [r.status for r in env.sent_to(txn) if r.status >= 200] == []
    env.respond(vm, 200, to_tag="vm")
    assert env.final(txn).status == 200
    assert await in_use(env, wall) == 1  # the call goes on, in the voicemail
    bye = env.request(
        "BYE", "sip:media@127.0.0.1:5090", to_tag="vm", cseq=2, extra=env.caller_route(vm)
    )
    await env.send(bye)
    assert await in_use(env, wall) == 0


async def test_every_device_refusing_diverts_to_voicemail_at_once() -> None:
    env, _ = make_env()
    await env.register_both()
    txn = await call(env, CONTRACT)
    env.respond(env.branches()[0], 486)  # desk busy: app starts at once
    env.respond(env.branches()[1], 480)
    user, params = media_params(env.branches()[2])
    assert user == "voicemail" and params["cause"] == "408"
    env.respond(env.branches()[2], 503)  # the media service fails too
    assert env.final(txn).status == 500  # its 503 (not the devices' answers) -> 500


async def test_no_answer_without_voicemail_is_480_and_releases() -> None:
    env, wall = make_env()
    await env.register("other1", "sip:other1@10.8.0.9:5080", APP_FLOW)
    txn = await call(env, PLAIN)
    (branch,) = env.branches()
    env.respond(branch, 180)
    assert await in_use(env, wall, "t2") == 1
    env.sched.advance(20.0)
    assert len(env.branches("CANCEL")) == 1 and len(env.branches()) == 1
    env.respond(branch, 487)
    assert env.final(txn).status == 480
    assert await in_use(env, wall, "t2") == 0


async def test_voicemail_without_media_service_ends_as_480() -> None:
    env, _ = make_env(media=False)
    await env.register_both()
    txn = await call(env, CONTRACT)
    env.respond(env.branches()[0], 180)
    env.sched.advance(10.0)
    for c in env.branches():
        env.respond(c, 487)
    assert len(env.branches()) == 2  # no voicemail branch
    assert env.final(txn).status == 480


async def test_caller_cancel_releases_the_lease_and_never_diverts() -> None:
    env, wall = make_env()
    await env.register_both()
    txn = await call(env, CONTRACT)
    env.respond(env.branches()[0], 180)
    await env.cancel(txn)
    env.respond(env.branches()[0], 487)
    assert env.final(txn).status == 487
    env.sched.advance(30)
    assert len(env.branches()) == 1
    assert await in_use(env, wall) == 0


# --------------------------------------------------------------------------- Forward
@pytest.mark.parametrize("registered", [True, False])
async def test_forward_goes_to_gateway_as_the_tenant_number(registered: bool) -> None:
    env, wall = make_env()
    if registered:
        await env.register_both()
    txn = await call(env, FORWARDED)
    (out,) = env.branches()  # no device rings
    assert out.target == GW_SRC
    assert out.request.uri == f"sip:09011112222@{GW_IP}:5060"
    h = out.request.headers
    assert h.get("P-Asserted-Identity") == f"<sip:{FORWARDED}@{REALM};user=phone>"
    frm = h.name_addr("From")
    assert frm is not None and isinstance(frm.uri, SipURI) and frm.uri.user == "0355500101"
    assert frm.tag == "from-call-1"  # the dialog's From tag survives
    assert CALLER not in (h.get("From") or "")
    history = h.get_all("History-Info")
    assert history[0] == f"<sip:{FORWARDED}@{REALM};user=phone>;index=1"
    assert history[1].startswith(f"<sip:09011112222@{GW_IP}:5060;cause=302?Reason=")
    assert history[1].endswith(";index=1.1;mp=1")
    assert h.get("Diversion") == (
        f"<sip:0355500101@{REALM}>;reason=unconditional;counter=1;privacy=off"
    )
    assert "P-Called-Party-ID" not in h and "Record-Route" in h
    assert await in_use(env, wall) == 1  # a forwarded leg takes a channel
    assert decisions(env, "inbound-forwarding") == 1
    env.respond(out, 200)
    assert env.final(txn).status == 200
    route = env.caller_route(out)
    await env.send(env.request("BYE", f"sip:x@{GW_IP}", to_tag="callee", cseq=2, extra=route))
    assert await in_use(env, wall) == 0


async def test_forward_with_channels_full_hears_the_busy_message_not_voicemail() -> None:
    env, wall = make_env()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    await call(env, FORWARDED)
    user, params = media_params(env.branches()[0])
    assert user == "busy" and params["prompt"] == "busy" and "mailbox" not in params


# --------------------------------------------------------------------------- media hand-offs
async def test_after_hours_announcement_then_voicemail_takes_no_channel() -> None:
    env, wall = make_env()
    await env.register("other1", "sip:other1@10.8.0.9:5080", APP_FLOW)
    txn = await call(env, AFTER_HOURS)
    (out,) = env.branches()
    user, params = media_params(out)
    assert user == "announce"
    assert params == {
        "prompt": "template-2", "then": "voicemail", "mailbox": AFTER_HOURS, "tenant": "t2",
        "target": AFTER_HOURS, "caller": CALLER,
    }  # fmt: skip
    assert out.request.headers.get("P-Called-Party-ID") == (
        f"<sip:{AFTER_HOURS}@{REALM};user=phone>"
    )
    assert await in_use(env, wall, "t2") == 0
    env.respond(out, 200)
    assert env.final(txn).status == 200  # the media service answered, not the proxy
    assert decisions(env, "after-hours-announce") == 1


async def test_busy_with_voicemail_goes_to_the_mailbox_with_cause_486() -> None:
    env, wall = make_env()
    await env.register_both()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    txn = await call(env, CONTRACT)
    (out,) = env.branches()
    user, params = media_params(out)
    assert user == "voicemail" and params["mailbox"] == CONTRACT and params["cause"] == "486"
    assert decisions(env, "inbound-channels-full") == 1
    env.respond(out, 200)
    assert env.final(txn).status == 200
    assert await in_use(env, wall) == 2  # the hand-off took no channel


async def test_busy_without_voicemail_plays_the_fixed_message_or_486_without_media() -> None:
    for media in (True, False):
        env, wall = make_env(media=media)
        await env.register("other1", "sip:other1@10.8.0.9:5080", APP_FLOW)
        await env.state.acquire_channel("t2", "up", 1, TTL, wall())
        txn = await call(env, PLAIN)
        if media:
            user, params = media_params(env.branches()[0])
            assert user == "busy"
            assert params == {
                "prompt": "busy", "then": "hangup", "tenant": "t2", "target": PLAIN,
                "caller": CALLER, "cause": "486",
            }  # fmt: skip
        else:
            assert env.branches() == [] and env.final(txn).status == 486


async def test_nobody_registered_with_voicemail_goes_to_voicemail_cause_480() -> None:
    env, wall = make_env()
    await call(env, CONTRACT)
    user, params = media_params(env.branches()[0])
    assert user == "voicemail" and params["cause"] == "480" and params["mailbox"] == CONTRACT
    assert await in_use(env, wall) == 0


async def test_channel_race_lost_after_routing_gets_the_busy_hand_off() -> None:
    """Routing saw a free channel; the lease (the authority) says no. The proxy asks
    routing again with the channels shown full and carries out that answer."""
    asked: list[LiveView] = []

    def stale(c: Call, snap: Snapshot, live: LiveView, now: datetime) -> Decision:
        asked.append(live)
        if len(asked) == 1:  # the view from before the other calls took the channels
            registered = frozenset(d for d in snap.devices if live.is_registered(d))
            live = LiveState(registered=registered)
        return policy_decide(c, snap, live, now)

    env, wall = make_env(decide=stale)
    await env.register_both()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    await call(env, CONTRACT)
    (out,) = env.branches()
    user, params = media_params(out)
    assert user == "voicemail" and params["cause"] == "486"
    assert decisions(env, "inbound-ring-lost-channel-race") == 1
    assert len(asked) == 2 and asked[1].channels_in_use("t1") == 2


# --------------------------------------------------------------------------- device calls
async def test_emergency_is_403_with_warning_and_no_channel() -> None:
    env, wall = make_env()
    await env.register_both()
    req = env.request("INVITE", f"sip:110@{REALM}", from_uri=f"<sip:desk1@{REALM}>")
    txn = await env.send_authenticated(req, "desk1", source=DESK_FLOW)
    final = env.final(txn)
    assert final.status == 403
    assert "emergency" in (final.headers.get("Warning") or "")
    assert env.branches() == [] and await in_use(env, wall) == 0
    assert decisions(env, "outbound-emergency") == 1


async def test_unknown_number_from_carrier_is_404_without_warning() -> None:
    env, _ = make_env()
    txn = await env.send(env.request("INVITE", f"sip:0399999999@{US}"))
    assert env.final(txn).status == 404 and "Warning" not in env.final(txn).headers


async def test_outbound_presents_the_ids_number_takes_and_releases_a_channel() -> None:
    env, wall = make_env()
    await env.register_both()
    req = env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:app1@{REALM}>")
    txn = await env.send_authenticated(req, "app1", source=APP_FLOW)
    (out,) = env.branches()
    assert out.request.uri == f"sip:0312345678@{GW_IP}:5060"
    assert out.request.headers.get("P-Asserted-Identity") == (
        f"<sip:{CONTRACT}@{REALM};user=phone>"
    )
    assert await in_use(env, wall) == 1
    env.respond(out, 486)
    assert env.final(txn).status == 486
    assert await in_use(env, wall) == 0


async def test_outbound_with_channels_full_is_486_with_warning() -> None:
    env, wall = make_env()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    req = env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:app1@{REALM}>")
    txn = await env.send_authenticated(req, "app1", source=APP_FLOW)
    assert env.final(txn).status == 486 and "Warning" in env.final(txn).headers
    assert env.branches() == []


async def test_internal_call_rings_the_device_and_takes_no_channel() -> None:
    env, wall = make_env()
    await env.register_both()
    req = env.request("INVITE", f"sip:desk1@{REALM}", from_uri=f"<sip:app1@{REALM}>")
    txn = await env.send_authenticated(req, "app1", source=APP_FLOW)
    (out,) = env.branches()
    assert out.target == DESK_FLOW
    env.respond(out, 200)
    assert env.final(txn).status == 200
    assert await in_use(env, wall) == 0


# --------------------------------------------------------------------------- lease TTLs
async def answered(env: Env, extra: list[tuple[str, str]] | None = None) -> None:
    await env.register_both()
    await call(env, CONTRACT)
    env.respond(env.branches()[0], 200, extra=extra)


async def test_lease_ttl_without_session_timer_is_the_default() -> None:
    env, wall = make_env()
    await answered(env)
    lease = env.proxy.calls.lease("call-1")
    assert lease is not None and lease[1] == TTL and lease[2] == wall() + TTL


async def test_lease_ttl_follows_session_expires_of_the_2xx_and_of_refreshes() -> None:
    env, wall = make_env()
    await answered(env, extra=[("Session-Expires", "1800;refresher=uac")])
    await asyncio.sleep(0)
    lease = env.proxy.calls.lease("call-1")
    assert lease is not None and lease[1] == 1800 + 32
    assert lease[2] == wall() + 1832
    # A session refresh (re-INVITE) asks for a shorter interval: 600 + 32.
    wall.t += 100
    reinvite = env.request(
        "INVITE", "sip:callee@192.168.1.20:5060", to_tag="callee", cseq=3,
        extra=[("Session-Expires", "600;refresher=uac"), *env.caller_route(env.branches()[0])],
    )  # fmt: skip
    await env.send(reinvite)
    lease = env.proxy.calls.lease("call-1")
    assert lease is not None and lease[1] == 632 and lease[2] == wall() + 632
    # ... and its 2xx settles on 300 (compact form "x").
    re_branch = env.branches()[-1]
    env.respond(re_branch, 200, extra=[("x", "300;refresher=uac")])
    await asyncio.sleep(0)
    lease = env.proxy.calls.lease("call-1")
    assert lease is not None and lease[1] == 332
    # The backend follows: 333 s later the lease is gone.
    assert await in_use(env, wall) == 1
    wall.t += 333
    assert await in_use(env, wall) == 0


async def test_in_dialog_traffic_keeps_the_lease_alive() -> None:
    env, wall = make_env()
    await answered(env)
    for cseq in (3, 4, 5):
        wall.t += TTL - 1
        await env.send(
            env.request(
                "INFO",
                "sip:callee@192.168.1.20:5060",
                to_tag="callee",
                cseq=cseq,
                extra=env.caller_route(env.branches()[0]),
            )
        )
        assert await in_use(env, wall) == 1


async def test_vanished_call_lease_expires_and_a_later_call_gets_a_channel() -> None:
    env, wall = make_env(lease_sweep=60.0)
    await env.register_both()
    for i in range(2):  # two answered calls, then both ends vanish (no BYE ever)
        await call(env, CONTRACT, call_id=f"gone-{i}")
        env.respond(env.branches()[-1], 200, to_tag=f"t{i}")
    assert env.metrics.value("sip_calls_active") == 2
    txn = await call(env, CONTRACT, call_id="third")
    assert media_params(env.branches()[-1])[0] == "voicemail"  # busy: channels full
    env.respond(env.branches()[-1], 200, to_tag="vm")
    assert env.final(txn).status == 200
    wall.t += TTL + 1
    env.sched.advance(60.0)  # the sweep forgets them
    assert env.metrics.value("sip_calls_active") == 1  # only the voicemail call
    assert env.proxy.calls.lease("gone-0") is None
    await call(env, CONTRACT, call_id="fourth")
    assert env.branches()[-1].target == DESK_FLOW
    assert await in_use(env, wall) == 1


async def test_bye_to_a_vanished_callee_still_releases_at_once() -> None:
    """The realistic path when only the callee dies: the caller hangs up, the BYE passes
    through us (and times out towards the dead phone): the lease goes with the BYE."""
    env, wall = make_env()
    await answered(env)
    bye_txn = await env.send(
        env.request(
            "BYE",
            "sip:callee@192.168.1.20:5060",
            to_tag="callee",
            cseq=2,
            extra=env.caller_route(env.branches()[0]),
        )
    )
    assert await in_use(env, wall) == 0
    env.proxy.on_timeout(env.branches("BYE")[0])
    assert env.final(bye_txn).status == 408


def test_media_service_keeps_its_own_uri_parameters() -> None:
    media = MediaService.parse("sip:media@10.0.0.9:5090;transport=tcp", b"k")
    busy = Busy(tenant_id="t1", number="+81355500100", then_voicemail=False, rule="r")
    uri = media.uri_for(busy_handoff(busy, "anonymous;x"))
    assert uri.startswith(
        "sip:busy@10.0.0.9:5090;transport=tcp;prompt=busy;then=hangup;tenant=t1;"
        "target=+81355500100;caller=anonymous%3Bx;cause=486;sig="
    ), uri


def test_snapshot_builds() -> None:
    snap = routing_snapshot()
    assert snap.channels("t1") == 2 and dataclasses.is_dataclass(snap)
    assert CALLER_SRC.host != GW_IP


# --------------------------------------------------------------------------- Fork diversion
class _Hooks:
    def __init__(self, sched: Any) -> None:
        self.sched = sched
        self.started: list[str] = []
        self.cancels: list[str] = []
        self.forwarded: list[tuple[str, str]] = []
        self.finals: list[tuple[int, str | None]] = []

    def call_later(self, delay: float, callback: Any) -> Any:
        return self.sched.call_later(delay, callback)

    def start_branch(self, branch: Any) -> None:
        self.started.append(branch.payload)

    def cancel_branch(self, branch: Any) -> None:
        self.cancels.append(branch.payload)

    def forward(self, branch: Any, response: str) -> None:
        self.forwarded.append((branch.payload, response))

    def finish(self, status: int, chosen: str | None, finals: Any) -> None:
        self.finals.append((status, chosen))


def _fork(*stages: Any) -> tuple[Any, _Hooks, Any]:
    from switch.proxy.forking import Fork

    from .fakes import FakeScheduler

    sched = FakeScheduler()
    hooks = _Hooks(sched)
    return Fork(stages, hooks), hooks, sched


def test_fork_diverts_on_ring_timeout_and_ignores_superseded_finals() -> None:
    from switch.proxy.forking import Stage

    fork, hooks, sched = _fork(Stage(payloads=("desk",)), Stage(payloads=("app",), delay=5))
    fork.start(ring_timeout=3, divert_to="vm")
    fork.on_provisional(fork.branches[0], 180, "180desk")
    sched.advance(3)
    assert hooks.cancels == ["desk"] and hooks.started == ["desk", "vm"]
    sched.advance(10)
    assert hooks.started == ["desk", "vm"]  # the app stage never starts after the diversion
    fork.on_provisional(fork.branches[0], 183, "late183")  # from the superseded branch
    fork.on_final(fork.branches[0], 487, "487")
    assert hooks.finals == [] and ("desk", "late183") not in hooks.forwarded
    vm = fork.branches[-1]
    fork.on_final(vm, 200, "200vm")
    assert hooks.forwarded[-1] == ("vm", "200vm") and fork.finished


def test_fork_without_diversion_cancel_or_6xx_never_diverts() -> None:
    from switch.proxy.forking import Stage

    fork, hooks, _ = _fork(Stage(payloads=("desk",)))
    fork.start(ring_timeout=3, divert_to="vm")
    fork.on_provisional(fork.branches[0], 180, "180")
    fork.cancel()
    fork.on_final(fork.branches[0], 487, "487")
    assert hooks.started == ["desk"] and hooks.finals == [(487, None)]
    fork, hooks, _ = _fork(Stage(payloads=("desk",)))
    fork.start(ring_timeout=3, divert_to="vm")
    fork.on_final(fork.branches[0], 603, "603")
    assert hooks.started == ["desk"] and hooks.finals == [(603, "603")]


async def test_lease_ttl_counts_from_the_answer() -> None:
    env, wall = make_env()
    await env.register_both()
    await call(env, CONTRACT)
    wall.t += 50  # ringing
    env.respond(env.branches()[0], 200)
    lease = env.proxy.calls.lease("call-1")
    assert lease is not None and lease[2] == wall() + TTL
    wall.t += TTL - 1
    assert await in_use(env, wall) == 1


async def test_unreachable_state_backend_is_503_not_a_stuck_call() -> None:
    from switch.state.base import StateUnavailable

    env, _ = make_env()
    await env.register_both()

    async def down(*args: Any) -> bool:
        raise StateUnavailable("redis is down")

    env.state.acquire_channel = down  # type: ignore[method-assign]
    txn = await call(env, CONTRACT)
    assert env.final(txn).status == 503
    assert env.branches() == []


async def test_unresolvable_gateway_after_the_lease_gives_the_channel_back() -> None:
    from switch.proxy.targets import ResolveError

    env, wall = make_env()

    async def nowhere(uri: Any) -> Target:
        raise ResolveError("cannot resolve the gateway", 503)

    env.proxy.resolver.target = nowhere  # type: ignore[method-assign]
    txn = await call(env, FORWARDED)
    assert env.final(txn).status == 503
    assert await in_use(env, wall) == 0
    assert env.metrics.value("sip_calls_total", {"outcome": "failed"}) == 1


async def test_voicemail_branch_after_a_single_device_is_a_clean_copy() -> None:
    """The diverted INVITE carries only our one Via and Record-Route, not the first
    branch's (the template must not be consumed by a single-branch fork that may divert)."""
    env, _ = make_env()
    await env.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
    await call(env, CONTRACT)
    (desk,) = env.branches()
    env.respond(desk, 180)
    env.sched.advance(10.0)
    vm = env.branches()[1]
    assert media_params(vm)[0] == "voicemail"
    for out in (desk, vm):
        vias = out.request.headers.get_all("Via")
        assert len(vias) == 2 and vias[0].startswith(f"SIP/2.0/UDP {US}:5060")
    assert len(vm.request.headers.get_all("Record-Route")) == 1
    assert vm.request.headers.get_all("Record-Route") != desk.request.headers.get_all(
        "Record-Route"
    )  # no flow token of the desk phone's flow in the voicemail leg


# --------------------------------------------------------------------------- lost races
def stale_first(asked: list[LiveView]) -> Any:
    """The real policy, but its first answer comes from a view without the leases (taken
    before the other calls took the channels); later questions see what the proxy shows."""

    def decide(c: Call, snap: Snapshot, live: LiveView, now: datetime) -> Decision:
        asked.append(live)
        if len(asked) == 1:
            registered = frozenset(d for d in snap.devices if live.is_registered(d))
            live = LiveState(registered=registered)
        return policy_decide(c, snap, live, now)

    return decide


async def test_lost_race_of_a_forwarded_call_is_the_busy_message_without_voicemail() -> None:
    asked: list[LiveView] = []
    env, wall = make_env(decide=stale_first(asked))
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    await call(env, FORWARDED)  # forwarding ON: voicemail does not act
    user, params = media_params(env.branches()[0])
    assert user == "busy" and "mailbox" not in params
    assert decisions(env, "inbound-forwarding") == 1
    assert decisions(env, "inbound-forwarding-lost-channel-race") == 1
    assert await in_use(env, wall) == 2


async def test_lost_race_of_a_device_call_is_486_with_warning() -> None:
    asked: list[LiveView] = []
    env, wall = make_env(decide=stale_first(asked))
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    req = env.request("INVITE", f"sip:0312345678@{REALM}", from_uri=f"<sip:app1@{REALM}>")
    txn = await env.send_authenticated(req, "app1", source=APP_FLOW)
    final = env.final(txn)
    assert final.status == 486 and "lines of your company are in use" in (
        final.headers.get("Warning") or ""
    )
    assert env.branches() == []
    assert decisions(env, "outbound-lost-channel-race") == 1
    assert env.metrics.value("sip_calls_total", {"outcome": "busy"}) == 1


async def test_a_policy_that_ignores_full_channels_gets_486_not_a_second_race() -> None:
    def blind(c: Call, snap: Snapshot, live: LiveView, now: datetime) -> Decision:
        registered = frozenset(d for d in snap.devices if live.is_registered(d))
        return policy_decide(c, snap, LiveState(registered=registered), now)

    env, wall = make_env(decide=blind)
    await env.register_both()
    for i in range(2):
        await env.state.acquire_channel("t1", f"up-{i}", 2, TTL, wall())
    txn = await call(env, CONTRACT)
    assert env.final(txn).status == 486 and env.branches() == []
    assert decisions(env, "inbound-ring-lost-channel-race") == 1


async def test_routing_time_is_the_injected_wall_clock_in_utc() -> None:
    seen: list[datetime] = []

    def clocked(c: Call, snap: Snapshot, live: LiveView, now: datetime) -> Decision:
        seen.append(now)
        return policy_decide(c, snap, live, now)

    env, wall = make_env(decide=clocked)
    wall.t = 1_900_000_123.5
    await call(env, CONTRACT)
    assert seen == [datetime.fromtimestamp(1_900_000_123.5, UTC)]
    assert seen[0].tzinfo is UTC


@pytest.mark.parametrize("operation", ["bindings", "channels_in_use", "acquire_channel"])
async def test_unreachable_state_backend_503_carries_retry_after(operation: str) -> None:
    """Like the registrar's (and the glue's for any TU): a temporary failure the phone may
    retry after Retry-After seconds (RFC 3261 §21.5.4), and no channel is left taken."""
    from switch.state.base import StateUnavailable

    env, _ = make_env()
    await env.register_both()

    async def down(*args: Any) -> Any:
        raise StateUnavailable("redis is down")

    setattr(env.state, operation, down)
    txn = await call(env, CONTRACT)
    final = env.final(txn)
    assert final.status == 503
    assert final.headers.get("Retry-After") == str(StateUnavailable.retry_after)
    assert env.branches() == []
    assert env.metrics.value("sip_calls_total", {"outcome": "failed"}) == 1
