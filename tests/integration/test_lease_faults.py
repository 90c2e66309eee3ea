"""Channel leases after faults, with real Redis and real SIPp calls (issue 12 §3.2, §3.4):

- a switch killed with SIGKILL mid-call and restarted: the caller's BYE reaches the new
  process, which finds the lease from the Call-ID alone (the call's record in Redis) and
  releases it;
- Redis gone while the BYE passes: the release is retried and done once Redis is back;
- a black-holed Redis: new calls get 503 with Retry-After at once (no multi-second wait), and
  an acquire the network held and delivered late never leaves a channel taken ("busy after
  recovery").

The switch subprocesses use Redis database 13 (this file's own; its keys are deleted before
and after each test); the in-process tests a key prefix of their own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio import Redis

from switch.metrics import Metrics
from switch.proxy.leases import ActiveCalls
from switch.state import redis as redis_state
from switch.state.base import StateUnavailable
from switch.state.redis import RedisState

from .harness import CARRIER_IP, DeviceSpec, SeedSpec, free_port
from .redis_relay import RedisRelay, clean_redis_db
from .sipclient import SipClient, build_request
from .test_dialog_liveness import wait_for
from .test_sip_calls import CONTRACT, carrier_call, register_device

pytestmark = [pytest.mark.integration, pytest.mark.redis]

DB = 13
DESK = DeviceSpec("desk1", "desk1-secret-x")


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    with clean_redis_db(DB) as client:
        yield client


def leases(db: redis.Redis, tenant: str = "t1") -> int:
    return int(db.zcard(f"softswitch:ch:{tenant}"))


def records(db: redis.Redis, tenant: str = "t1") -> list[str]:
    return [str(c) for c in db.zrange(f"softswitch:cs:{tenant}", 0, -1)]


def state_config(url: str) -> str:
    return f'[state]\nurl = "{url}"\n'


# --------------------------------------------------------------------------- kill -9
def test_bye_after_kill_9_and_restart_releases_the_lease(switch_proc, sipp, redis_db):
    port = free_port()
    seed = SeedSpec(devices=[DESK])
    config = state_config(f"redis://127.0.0.1:6379/{DB}")
    first = switch_proc(seed, config, sip_port=port)
    dev_port = free_port()
    register_device(sipp, first, DESK, dev_port)
    uas = sipp("uas", local_port=dev_port, calls=1, timeout_s=60).start()
    uac = carrier_call(sipp, first, "uac_call", timeout_s=60, extra=["-d", "12000"]).start()
    wait_for(lambda: leases(redis_db) == 1 and len(records(redis_db)) == 1, 10)
    call_id = records(redis_db)[0]
    assert redis_db.get(f"softswitch:c:{call_id}"), "the call's record is in Redis"

    os.killpg(first.proc.pid, signal.SIGKILL)  # no goodbye: its memory is gone
    assert first.proc.proc is not None
    first.proc.proc.wait(5)
    # the same node restarted: same address and data directory (the route set's Record-Route
    # names a worker's private port, kept in the data directory and taken again)
    second = switch_proc(seed, config, sip_port=port, workdir=first.proc.workdir)

    ur = uac.wait(grace=20)
    sr = uas.wait(grace=10)
    assert ur.successful == 1 and ur.failed == 0, ur.report() + second.logs()
    assert sr.successful == 1, sr.report()
    wait_for(lambda: leases(redis_db) == 0, 5)
    assert records(redis_db) == [] and redis_db.get(f"softswitch:c:{call_id}") is None
    assert "released by its record" in second.logs()


# --------------------------------------------------------------------------- Redis blip
def test_release_during_a_redis_outage_is_retried_until_redis_is_back(switch_proc, sipp, redis_db):
    with RedisRelay() as relay:
        sw = switch_proc(SeedSpec(devices=[DESK]), state_config(relay.url(DB)))
        dev_port = free_port()
        register_device(sipp, sw, DESK, dev_port)
        uas = sipp("uas", local_port=dev_port, calls=1, timeout_s=30).start()
        uac = carrier_call(sipp, sw, "uac_call", timeout_s=30, extra=["-d", "4000"]).start()
        wait_for(lambda: leases(redis_db) == 1, 10)
        relay.drop()  # Redis goes away before the caller hangs up
        ur = uac.wait(grace=10)  # the BYE passes (the switch needs no Redis to relay it)
        assert ur.successful == 1, ur.report() + sw.logs()
        time.sleep(1.0)
        assert leases(redis_db) == 1, "the release could not have reached Redis"
        relay.resume()
        took = wait_for(lambda: leases(redis_db) == 0, 20)
        uas.wait(grace=5)
        m = sw.metrics()
        assert m.total("sip_lease_writes_retried_total", outcome="done") >= 1, sw.logs()
        assert m.total("sip_lease_writes_retried_total", outcome="given_up") == 0
        assert records(redis_db) == []
        print(f"lease released {took:.1f} s after Redis came back")


# --------------------------------------------------------------------------- black hole
def invite(client: SipClient, n: int) -> bytes:
    local = client.local
    return build_request(
        "INVITE", f"sip:{CONTRACT}@softswitch.local", transport="udp", local=local,
        from_user="0312345678", to_user=CONTRACT, host="softswitch.local",
        call_id=f"blackhole-{n}-{secrets.token_hex(4)}", cseq=1,
        extra=[f"Contact: <sip:0312345678@{local[0]}:{local[1]}>"],
    )  # fmt: skip


def test_black_holed_redis_new_calls_fail_fast_with_retry_after_then_are_served(
    switch_proc, sipp, redis_db
):
    with RedisRelay() as relay:
        # one ID: one channel, so a single lease left behind would make the next call busy
        sw = switch_proc(SeedSpec(devices=[DESK], spare_ids=0), state_config(relay.url(DB)))
        dev_port = free_port()
        register_device(sipp, sw, DESK, dev_port)
        relay.hold()
        waits = []
        with SipClient("udp", sw.udp, local_ip=CARRIER_IP) as client:
            for n in range(6):
                start = time.monotonic()
                r = client.request(invite(client, n), timeout=8)
                waits.append(time.monotonic() - start)
                assert r is not None and r.status == 503, r
                assert r.get("Retry-After"), r.raw
        assert max(waits) < 1.5, waits  # the first pays the timeout; the others fail fast
        assert sorted(waits)[len(waits) // 2] < 0.3, waits
        relay.resume()  # whatever the black hole held reaches Redis now
        time.sleep(0.5)
        uas = sipp("uas", local_port=dev_port, calls=3, timeout_s=30).start()
        uac = carrier_call(sipp, sw, "uac_call", calls=3, limit=1, timeout_s=30).start()
        ur = uac.wait()
        uas.wait()
        assert ur.successful == 3 and ur.failed == 0, ur.report() + sw.logs()
        wait_for(lambda: leases(redis_db) == 0, 5)
        print(f"INVITE answers during the black hole: {[round(w, 3) for w in waits]} s")


# --------------------------------------------------------------------------- late writes
async def test_an_acquire_held_by_the_network_leaves_no_channel_taken() -> None:
    """ActiveCalls: the acquire times out (503 for the call), the relay then delivers it -
    the lease it took is released, so the tenant's only channel is free again."""
    prefix = f"softswitch-test:{secrets.token_hex(6)}:"
    raw = Redis(decode_responses=True)
    with RedisRelay() as relay:
        state = RedisState(relay.url(0), prefix=prefix)
        calls = ActiveCalls(Metrics(), state, time.time, retry_for=3.0, late_write_bound=2.0)
        try:
            await state.channels_in_use("t", time.time())  # a pooled connection: the command
            relay.hold()  # itself goes out, and is held
            with pytest.raises(StateUnavailable):
                await calls.acquire("t", "held-call", 1)
            relay.resume()  # the held acquire lands now, well within LATE_WRITE_BOUND
            # the breaker's cooldown (1 s) and the undo's retries (0.25 s doubling) pass
            await asyncio.sleep(3.0)
            assert await raw.zcard(f"{prefix}ch:t") == 0
            assert not await raw.exists(f"{prefix}c:held-call")  # its record went with it
            assert await calls.acquire("t", "next-call", 1)  # not busy
        finally:
            await state.close()
            for k in [k async for k in raw.scan_iter(match=prefix + "*")]:
                await raw.delete(k)
            await raw.aclose()


async def test_redis_refuses_an_acquire_that_arrives_after_the_late_write_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_state, "LATE_WRITE_BOUND", 1.0)
    prefix = f"softswitch-test:{secrets.token_hex(6)}:"
    raw = Redis(decode_responses=True)
    with RedisRelay() as relay:
        state = RedisState(relay.url(0), prefix=prefix)
        try:
            await state.channels_in_use("t", time.time())
            relay.hold()
            with pytest.raises(StateUnavailable):
                await state.acquire_channel("t", "late", 1, 60, time.time())
            await asyncio.sleep(1.5)  # past the bound: the held command is stale
            relay.resume()
            await asyncio.sleep(0.5)
            assert await raw.zcard(f"{prefix}ch:t") == 0
        finally:
            await state.close()
            await raw.aclose()
