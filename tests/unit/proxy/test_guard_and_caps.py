"""The proxy with the authentication guard (switch/proxy/bans.py) and the toll-fraud caps
(routing.caps, switch/proxy/usage.py), on the sans-IO harness and the memory backend."""

from __future__ import annotations

from routing.caps import OutboundLimits, device_lease_key
from switch.proxy.bans import AuthGuard, GuardSettings
from switch.sip.target import Target

from .harness import CALLER_SRC, REALM, WALL, Env

LIMITS = OutboundLimits(
    concurrent_per_id=1, per_id_per_day=2, per_tenant_per_day=0, expensive_per_id_per_day=1
)


def guarded_env(**settings: object) -> Env:
    env = Env()
    guard = AuthGuard(env.state, GuardSettings(**settings), env.metrics)  # type: ignore[arg-type]
    env.proxy.guard = guard
    return env


async def call(env: Env, n: int, dialled: str = "0312345678", password: str | None = None,
               source: Target = CALLER_SRC) -> int:  # fmt: skip
    req = env.request(
        "INVITE", f"sip:{dialled}@{REALM}", from_uri=f"<sip:desk1@{REALM}>", call_id=f"c{n}"
    )
    txn = await env.send_authenticated(req, "desk1", source=source, password=password)
    answers = env.sent_to(txn)
    return answers[-1].status if answers else 0


# ------------------------------------------------------------------ guard
async def test_a_source_is_banned_after_the_threshold_and_refused_unverified() -> None:
    env = guarded_env(source_max_failures=3, id_max_failures=0)
    for n in range(3):
        assert await call(env, n, password="wrong") == 407
    refused = env.request("INVITE", f"sip:0312345678@{REALM}", call_id="after")
    txn = await env.send(refused, CALLER_SRC)
    answer = env.final(txn)
    assert answer.status == 403
    assert "too many failed authentications" in (answer.headers.get("Warning") or "")
    assert env.metrics.value("sip_auth_bans_total", {"kind": "source"}) == 1
    assert env.metrics.value("sip_auth_refused_total", {"kind": "source"}) == 1
    assert env.metrics.value("sip_auth_failures_total", {"reason": "credentials"}) == 3
    assert env.branches() == []
    # Another address is not concerned: its right password goes through.
    other = Target("udp", "198.51.100.99", 5060)
    assert await call(env, 9, source=other) in (100, 0) and len(env.branches()) == 1


async def test_an_id_under_guard_admits_its_known_address_only() -> None:
    env = guarded_env(source_max_failures=0, id_max_failures=2)
    assert env.proxy.guard is not None
    await env.state.remember_source("desk1", CALLER_SRC.host, WALL + 3600, WALL)
    stranger = Target("udp", "203.0.113.77", 5060)
    for n in range(2):
        await call(env, n, password="wrong", source=stranger)
    assert env.metrics.value("sip_auth_bans_total", {"kind": "id"}) == 1
    first = await env.send(env.request("INVITE", f"sip:0312345678@{REALM}", call_id="x"), stranger)
    assert env.final(first).status == 407  # no username yet: the challenge as always
    req = env.request("INVITE", f"sip:0312345678@{REALM}", call_id="z")
    req.headers.add(
        "Proxy-Authorization",
        env.credentials(env.final(first), req, "desk1", "pw-desk"),
    )
    assert env.final(await env.send(req, stranger)).status == 403  # right password, new place
    await call(env, 7)  # the ID's own address: verified and routed
    assert len(env.branches()) == 1


# ------------------------------------------------------------------ caps
async def test_daily_cap_refuses_the_call_past_it_with_a_warning() -> None:
    env = Env(limits=LIMITS)
    for n in range(2):
        await call(env, n)
        (branch,) = env.branches()[n:]
        env.respond(branch, 486)  # ended: the concurrent cap is free again
    assert len(env.branches()) == 2
    txn_status = await call(env, 2)
    assert txn_status == 403
    assert env.metrics.value("routing_decisions_total", {"rule": "outbound-daily-cap"}) == 1
    assert env.metrics.value("sip_outbound_capped_total", {"cap": "outbound-daily-cap"}) == 1
    assert len(env.branches()) == 2  # nothing went to the carrier
    assert await env.state.daily("2027-01-15", ["out:id:desk1", "out:tenant:t1"]) == [2, 2]


async def test_concurrent_cap_counts_calls_in_progress_only() -> None:
    env = Env(limits=OutboundLimits(concurrent_per_id=1, per_id_per_day=0,
                                    per_tenant_per_day=0, expensive_per_id_per_day=0))  # fmt: skip
    await call(env, 1)
    assert await env.state.channels_in_use(device_lease_key("desk1"), WALL) == 1
    assert await call(env, 2) == 403
    assert env.metrics.value("routing_decisions_total", {"rule": "outbound-concurrent-cap"}) == 1
    (first,) = env.branches()
    env.respond(first, 486)  # the first call failed: its leases are given back
    assert await env.state.channels_in_use(device_lease_key("desk1"), WALL) == 0
    await call(env, 3)
    assert len(env.branches()) == 2


async def test_expensive_class_cap_and_internal_calls_are_free() -> None:
    env = Env(limits=LIMITS)
    await call(env, 1, dialled="0570012345")  # navi-dial: expensive
    env.respond(env.branches()[0], 486)
    assert await call(env, 2, dialled="0570012345") == 403
    assert env.metrics.value("sip_outbound_capped_total", {"cap": "outbound-expensive-cap"}) == 1
    assert await env.state.daily("2027-01-15", ["out-expensive:id:desk1"]) == [1]
