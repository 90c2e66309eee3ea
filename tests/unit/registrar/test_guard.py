"""The registrar behind the authentication guard (switch/proxy/bans.py): the source ban, the
ID guard that still admits the ID's usual address, the address remembered on success, what
is not counted, and the BanFilter of drop mode."""

from __future__ import annotations

from switch.metrics import Metrics
from switch.proxy.bans import AuthGuard, BanAction, BanFilter, BanKind, GuardSettings
from switch.sip.message import Headers, Request, Response
from switch.sip.target import Target
from switch.transport.flood import parse_exempt

from .test_registrar import SRC, Env

ELSEWHERE = Target("udp", "198.51.100.50", 5060)


def guarded(**settings: object) -> tuple[Env, AuthGuard]:
    env = Env()
    guard = AuthGuard(env.state, GuardSettings(**settings), env.metrics)  # type: ignore[arg-type]
    env.reg.guard = guard
    return env, guard


async def test_the_source_is_banned_at_the_threshold_and_every_id_refused() -> None:
    env, _ = guarded(source_max_failures=3, id_max_failures=0)
    assert [(await env.register(password="no")).status for _ in range(3)] == [401] * 3
    refused = await env.register(authenticate=False)  # even the credential-less first try
    assert refused.status == 403
    assert "too many failed authentications" in (refused.headers.get("Warning") or "")
    bob = await env.register("bob", "pw-b", authenticate=False)
    assert bob.status == 403  # a ban on the address covers every ID sent from it
    assert (await env.register(source=ELSEWHERE)).status == 200  # other addresses are fine
    assert env.metrics.value("sip_auth_failures_total", {"reason": "credentials"}) == 3
    assert env.metrics.value("sip_auth_bans_active", {"kind": "source"}) == 1


async def test_stale_nonces_and_missing_credentials_are_not_failures() -> None:
    env, _ = guarded(source_max_failures=1)
    for _ in range(5):
        assert (await env.register(authenticate=False)).status == 401
    assert await env.state.bans(env.clock()) == []


async def test_the_id_guard_admits_the_usual_address_and_refuses_new_ones() -> None:
    env, guard = guarded(source_max_failures=0, id_max_failures=3)
    assert (await env.register()).status == 200  # alice's phone, from SRC: remembered
    assert await env.state.known_source("alice", SRC.host, env.clock())
    for n in range(3):
        attacker = Target("udp", f"203.0.113.{n + 1}", 5060)
        assert (await env.register(password="guess", source=attacker)).status == 401
    assert [b.kind for b in await env.state.bans(env.clock())] == ["id"]
    assert (await env.register(call_id="call-2")).status == 200  # the phone, as usual
    new_place = await env.register(source=ELSEWHERE, call_id="call-3")
    assert new_place.status == 403  # the right password, from an address never seen
    assert (
        await env.register("bob", "pw-b", source=ELSEWHERE, contacts=["<sip:bob@192.168.1.9:5060>"])
    ).status == 200  # another ID: not concerned
    assert await guard.lift(BanKind.ID, "alice", env.clock())
    assert (await env.register(source=ELSEWHERE, call_id="call-4")).status == 200


async def test_exempt_addresses_are_never_banned() -> None:
    env, _ = guarded(source_max_failures=1, exempt=(parse_exempt(SRC.host),))
    for _ in range(3):
        assert (await env.register(password="no")).status == 401
    assert await env.state.bans(env.clock()) == []


async def test_a_ban_made_on_another_node_is_seen_after_a_sync() -> None:
    env, guard = guarded(source_max_failures=2)
    other = AuthGuard(env.state, GuardSettings(source_max_failures=2))  # node B, same state
    now = env.clock()
    await other.failed(SRC.host, "alice", now)
    await other.failed(SRC.host, "alice", now)
    assert (await env.register(authenticate=False)).status == 401  # not synced yet
    await guard.sync(now)
    assert (await env.register(authenticate=False)).status == 403
    assert await other.lift(BanKind.SOURCE, SRC.host, now)
    await guard.sync(now)
    assert (await env.register(authenticate=False)).status == 401


class Inner:
    def __init__(self) -> None:
        self.got: list[Request | Response] = []

    def on_message(self, message: Request | Response, source: Target) -> None:
        self.got.append(message)

    def on_send_error(self, target: Target) -> None:
        return None


async def test_ban_filter_drops_requests_of_banned_sources_in_drop_mode_only() -> None:
    env = Env()
    request = Request(method="OPTIONS", uri="sip:x", headers=Headers([]))
    for action, dropped in ((BanAction.DROP, 1), (BanAction.REJECT, 0)):
        guard = AuthGuard(env.state, GuardSettings(source_max_failures=1, action=action))
        await guard.failed(SRC.host, None, env.clock())
        inner, metrics = Inner(), Metrics()
        gate = BanFilter(inner, guard, metrics, env.clock)
        gate.on_message(request, SRC)
        gate.on_message(request, ELSEWHERE)
        assert len(inner.got) == 2 - dropped
        assert metrics.value("sip_messages_dropped_total", {"reason": "auth_banned"}) == dropped
