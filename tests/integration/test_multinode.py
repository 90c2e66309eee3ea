"""Several switch nodes on one Redis (issue 11 §2, §5): real `softswitch serve` processes, each
on its defaults (one worker per core on Redis state), SIPp as the devices and the carrier.

- the same call suite against one node and against two (device registered through A, called
  through B and A; an outbound call; the tenant's channel limit counted across nodes);
- a device on TCP registered through A, called through B (B sends the call through A: the
  binding's path);
- a BYE that reaches the other node with the route set is passed on to the node holding the
  call, which releases the channel;
- a node killed with SIGKILL under load;
- a NATed device registered through A, called and cancelled through B (by way of A);
- a node killed: its NATed device rung directly, its dialog taken over by the other;
- Redis connections dropped (and its data lost) under load.

Nodes share `[auth] nonce_secret` (README "Several switch nodes"). Redis database 7 is this
file's own: its keys are deleted before and after each test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from .baresip_helpers import Baresip
from .harness import CARRIER_IP, OUTSIDE_IP, DeviceSpec, SeedSpec, free_port
from .redis_relay import RedisRelay, clean_redis_db
from .sipclient import SipClient, build_request
from .test_sip_calls import CONTRACT, carrier_call, received_requests, register_device

pytestmark = [pytest.mark.integration, pytest.mark.redis]

DB = 7
DESK = DeviceSpec("desk1", "desk1-secret-x")
ALICE = DeviceSpec("alice", "alice-secret-z")
NONCE = f'[auth]\nnonce_secret = "{"n" * 32}"\n'


def config(url: str = f"redis://127.0.0.1:6379/{DB}", extra: str = "") -> str:
    return f'[state]\nurl = "{url}"\n{NONCE}{extra}'


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    with clean_redis_db(DB) as client:
        yield client


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def leases(db: redis.Redis, tenant: str = "t1") -> int:
    return int(db.zcard(f"softswitch:ch:{tenant}"))


def bound(db: redis.Redis, device: str) -> list[str]:
    return list(db.hkeys(f"softswitch:b:{device}"))


def total(nodes: list[Any], name: str, **labels: str) -> float:
    return sum(float(n.metrics().total(name, **labels)) for n in nodes)


def busy_decisions(nodes: list[Any]) -> float:
    """Calls routing sent to busy: "<…>-channels-full", also "<…>-lost-channel-race"."""
    return sum(
        v
        for n in nodes
        for key, v in n.metrics().items()
        if key.startswith("routing_decisions_total{") and "channels-full" in key
    )


def start_nodes(switch_proc: Any, count: int, seed: SeedSpec, cfg: str) -> list[Any]:
    nodes = [switch_proc(seed, cfg, tls=False) for _ in range(count)]
    workers = f"Workers: {len(os.sched_getaffinity(0))}"
    for n in nodes:  # the banner's last line, printed just after the addresses the harness reads
        if len(os.sched_getaffinity(0)) > 1:
            wait_for(lambda n=n: workers in n.proc.stdout_path.read_text(), 2, workers)
    return nodes


def logs(nodes: list[Any]) -> str:
    return "\n".join(n.logs() for n in nodes)


# --------------------------------------------------------------------------- 1. the suite
@pytest.mark.parametrize("count", [1, 2], ids=["one-node", "two-nodes"])
def test_call_suite_on_one_and_on_two_nodes(switch_proc, sipp, redis_db, count):
    """A = the node the devices register through, B = the other (A itself with one node)."""
    gw_port = free_port(OUTSIDE_IP)
    # two IDs, no spares: two channels for the tenant
    seed = SeedSpec(
        devices=[DESK, ALICE], ring_group=["desk1"], spare_ids=0, gw_port=gw_port
    )  # fmt: skip
    nodes = start_nodes(switch_proc, count, seed, config())
    a, b = nodes[0], nodes[-1]
    desk_port, alice_port = free_port(), free_port()
    register_device(sipp, a, DESK, desk_port)
    register_device(sipp, a, ALICE, alice_port)
    assert len(bound(redis_db, "desk1")) == 1 and len(bound(redis_db, "alice")) == 1

    # the carrier calls the desk through B, then through A
    desk = sipp("uas", local_port=desk_port, calls=2, timeout_s=30, name="desk-2").start()
    for via, node in (("B", b), ("A", a)):
        ur = carrier_call(sipp, node, "uac_call", calls=1, timeout_s=15).run()
        assert ur.successful == 1 and ur.failed == 0, f"via {via}\n" + ur.report() + logs(nodes)
    dr = desk.wait(grace=5)
    assert dr.successful == 2 and received_requests(dr.messages()).count("BYE") == 2, dr.report()

    # the device calls out through B
    gw = sipp(
        "uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=15, name="gateway"
    ).start()
    out = sipp(
        "uac_auth_call", remote=b.udp, local_port=alice_port, calls=1, rate=1,
        service="0312345678", auth=(ALICE.id, ALICE.password), keys={"caller": ALICE.id},
        timeout_s=15,
    ).run()  # fmt: skip
    gr = gw.wait(grace=5)
    assert out.successful == 1, out.report() + gr.report() + logs(nodes)
    assert gr.successful == 1, gr.report()
    assert leases(redis_db) == 0

    # both channels taken: one call through A, one through B; a third through either is busy
    desk = sipp("uas", local_port=desk_port, calls=2, timeout_s=30, name="desk-held").start()
    held = [
        carrier_call(sipp, node, "uac_call", calls=1, timeout_s=30, extra=["-d", "6000"]).start()
        for node in (a, b)
    ]
    wait_for(lambda: leases(redis_db) == 2, 10, "two channels taken")
    gw = sipp(
        "uas", local_ip=OUTSIDE_IP, local_port=gw_port, calls=1, timeout_s=8, name="gateway-idle"
    ).start()
    for node in (a, b):
        res = sipp(
            "uac_auth_expect_busy", remote=node.udp, local_port=alice_port, calls=1, rate=1,
            service="0312345678", auth=(ALICE.id, ALICE.password), keys={"caller": ALICE.id},
            timeout_s=8, name="alice-busy",
        ).run()  # fmt: skip
        assert res.successful == 1, res.report() + logs(nodes)
    assert total(nodes, "routing_decisions_total", rule="outbound-channels-full") == 2
    assert "INVITE" not in received_requests(gw.stop().messages())  # nothing reached the carrier
    for h in held:
        r = h.wait(grace=5)
        assert r.successful == 1, r.report()
    assert desk.wait(grace=5).successful == 2
    wait_for(lambda: leases(redis_db) == 0, 5, "the channels released")


# --------------------------------------------------------------------------- 2. TCP device
def carrier_invite(node: Any, client: SipClient, call_id: str, branch: str) -> bytes:
    return build_request(
        "INVITE", f"sip:{CONTRACT}@{node.ip}:{node.sip_port}", transport="udp",
        local=client.local, from_user="0312345678", to_user=CONTRACT, host="softswitch.local",
        call_id=call_id, cseq=1, via_branch=branch,
        extra=[f"Contact: <sip:0312345678@{client.local[0]}:{client.local[1]}>"],
    )  # fmt: skip


def test_tcp_device_registered_through_a_is_reached_through_b_by_way_of_a(
    switch_proc, sipp, redis_db, tmp_path
):
    """A TCP connection is held by one node: B rings the phone through A (the binding's
    path, RFC 3327 in spirit), A forwards down its connection and record-routes, and the
    BYE from the carrier goes B -> A -> phone. The channel is B's and B releases it."""
    seed = SeedSpec(devices=[DESK], spare_ids=2)
    a, b = start_nodes(switch_proc, 2, seed, config())
    phone = Baresip(tmp_path, DESK, a.sip_port, auto_answer=True, transport="tcp")
    try:
        phone.connect()
        wait_for(lambda: bound(redis_db, "desk1"), 10, "the phone's registration")
        ur = carrier_call(sipp, b, "uac_call", calls=1, timeout_s=15, extra=["-d", "500"]).run()
        assert ur.successful == 1 and ur.failed == 0, ur.report() + logs([a, b])
        invites = [t for t in phone.trace() if t.method == "INVITE"]
        assert [t.transport for t in invites] == ["TCP"], phone.trace()
        assert total([b], "sip_node_relays_total", kind="path_sent") == 1
        assert total([a], "sip_node_relays_total", kind="path_received") == 1
        wait_for(lambda: [t for t in phone.trace() if t.method == "BYE"], 5, "the BYE")
        wait_for(lambda: leases(redis_db) == 0, 5, "the call's channel released")
        # through A itself, directly
        ur = carrier_call(sipp, a, "uac_call", calls=1, timeout_s=15, extra=["-d", "300"]).run()
        assert ur.successful == 1 and ur.failed == 0, ur.report() + logs([a, b])
        assert total([a], "sip_node_relays_total", kind="path_received") == 1
        assert [t.transport for t in phone.trace() if t.method == "INVITE"] == ["TCP", "TCP"]
    finally:
        phone.stop()


# --------------------------------------------------------------------------- 3. BYE via B
def in_dialog(
    method: str, client: SipClient, call_id: str, ok: Any, cseq: int, route: bool
) -> bytes:
    """ACK or BYE of the carrier's answered call; `route`: with the dialog's route set."""
    contact = re.search(r"<([^>]+)>", ok.get("Contact") or "")
    assert contact, ok.raw
    extra = [f"To: {ok.get('To')}"]
    if route:
        extra += [f"Route: {rr}" for rr in ok.all("Record-Route")]
    raw = build_request(
        method, contact[1], transport="udp", local=client.local, from_user="0312345678",
        to_user=CONTRACT, host="softswitch.local", call_id=call_id, cseq=cseq, extra=extra,
    )  # fmt: skip
    return raw.replace(b"To: <sip:%s@softswitch.local>\r\n" % CONTRACT.encode(), b"", 1)


def test_bye_reaching_the_other_node_with_the_route_set_ends_the_call_where_it_is(
    switch_proc, sipp, redis_db
):
    """One ID, one channel; the call is set up through A. A BYE that reaches B with the
    dialog's route set (A's Record-Route: a DNS answer or a VIP that moved) is passed on to
    A (B reads A's flow token: the nodes share the secret), which releases the channel and
    sends the BYE to the phone. A BYE that reaches B without a route set is no dialog B can
    tell: 404 Not Here, nothing relayed, nothing released."""
    seed = SeedSpec(devices=[DESK], spare_ids=0)
    a, b = start_nodes(switch_proc, 2, seed, config())
    port = free_port()
    register_device(sipp, a, DESK, port)
    desk = sipp("uas", local_port=port, calls=2, timeout_s=30).start()
    with SipClient("udp", a.udp, local_ip=CARRIER_IP, timeout=8) as client:
        call_id = f"bye-via-b-{secrets.token_hex(4)}"
        ok = client.request(carrier_invite(a, client, call_id, f"z9hG4bK-{secrets.token_hex(6)}"))
        assert ok is not None and ok.status == 200, (ok, logs([a, b]))
        assert ok.all("Record-Route"), ok.raw
        client.send(in_dialog("ACK", client, call_id, ok, 1, route=True))
        wait_for(lambda: leases(redis_db) == 1, 5, "the call's channel")
        client.remote = b.udp
        refused = client.request(in_dialog("BYE", client, call_id, ok, 2, route=False))
        assert refused is not None and refused.status == 404, (refused, logs([a, b]))
        time.sleep(0.5)
        assert leases(redis_db) == 1, "a BYE without the route set released the channel"
        bye_ok = client.request(in_dialog("BYE", client, call_id, ok, 3, route=True))
        assert bye_ok is not None and bye_ok.status == 200, (bye_ok, logs([a, b]))
    took = wait_for(lambda: leases(redis_db) == 0, 3, "the channel released by A")
    assert total([b], "sip_node_relays_total", kind="peer") >= 1
    assert total([a], "sip_dialogs_ended_total") == 0  # the BYE ended it, not a keep-alive
    ur = carrier_call(sipp, b, "uac_call", calls=1, timeout_s=15).run()
    assert ur.successful == 1 and ur.failed == 0, ur.report() + logs([a, b])
    dr = desk.wait(grace=5)
    assert dr.successful == 2 and received_requests(dr.messages()).count("BYE") == 2, dr.report()
    print(f"channel released {took:.2f} s after B passed the BYE on")


def register_nat(sipp: Any, node: Any, port: int) -> None:
    """The desk registers through `node` with a private Contact (tests/sipp/register_nat.xml)."""
    reg = sipp(
        "register_nat", remote=node.udp, local_port=port, credentials=[(DESK.id, DESK.password)],
        keys={"expires": "300"}, timeout_s=8, name="register-nat",
    ).run()  # fmt: skip
    assert reg.successful == 1, reg.report()


def test_cancel_through_b_reaches_a_nat_device_by_way_of_a(switch_proc, sipp, redis_db):
    """The caller gives up while a NATed phone registered through A rings through B: B's
    CANCEL follows the INVITE's path (the same Route, RFC 3261 §9.1) to A, which cancels its
    own branch to the phone; 487 to the caller, the channel given back."""
    seed = SeedSpec(devices=[DESK], spare_ids=2)
    a, b = start_nodes(switch_proc, 2, seed, config())
    port = free_port()
    register_nat(sipp, a, port)
    uas = sipp("uas_noanswer", local_port=port, calls=2, timeout_s=20, name="desk").start()
    ur = carrier_call(sipp, b, "uac_cancel", calls=2).start().wait()
    sr = uas.wait()
    assert ur.successful == 2 and ur.failed == 0, ur.report() + "\n" + sr.report() + logs([a, b])
    assert sr.successful == 2, sr.report()
    assert received_requests(sr.messages()).count("CANCEL") == 2
    assert total([b], "sip_node_relays_total", kind="path_sent") == 2
    assert total([a], "sip_node_relays_total", kind="path_received") == 2
    wait_for(lambda: leases(redis_db) == 0, 5, "the channels given back")


def procs_alive(db: redis.Redis, node: str) -> bool:
    """Does any process of `node` still count as alive (state/base.py, Processes)?"""
    now = time.time()
    return any(
        float(v.split(" ")[0]) > now
        for k, v in db.hgetall("softswitch:procs").items()
        if k.split("/w")[0] == node
    )


def test_node_killed_its_nat_device_is_rung_directly_and_its_dialog_taken_over(
    switch_proc, sipp, redis_db
):
    """A phone behind NAT (its Contact a private address) registers through A: B rings it
    through A (the binding's path). A call is set up through A; A gets SIGKILL. Once A has
    stopped announcing itself, B takes A's dialog over: the carrier's BYE sent to B with
    A's route set reaches the phone and releases the channel at once through the call's
    shared record (not after the 2 h lease TTL), and B rings the phone directly."""
    seed = SeedSpec(devices=[DESK], spare_ids=2)
    a, b = start_nodes(switch_proc, 2, seed, config())
    port = free_port()
    register_nat(sipp, a, port)
    desk = sipp("uas", local_port=port, calls=3, timeout_s=60, name="desk").start()
    ur = carrier_call(sipp, b, "uac_call", calls=1, timeout_s=15).run()
    assert ur.successful == 1 and ur.failed == 0, ur.report() + logs([a, b])
    assert total([b], "sip_node_relays_total", kind="path_sent") == 1
    assert total([a], "sip_node_relays_total", kind="path_received") == 1
    a_id = node_id(a)
    with SipClient("udp", a.udp, local_ip=CARRIER_IP, timeout=8) as client:
        call_id = f"taken-over-{secrets.token_hex(4)}"
        ok = client.request(carrier_invite(a, client, call_id, f"z9hG4bK-{secrets.token_hex(6)}"))
        assert ok is not None and ok.status == 200, (ok, logs([a, b]))
        client.send(in_dialog("ACK", client, call_id, ok, 1, route=True))
        wait_for(lambda: leases(redis_db) == 1, 5, "the call's channel")
        os.killpg(a.proc.pid, signal.SIGKILL)
        assert a.proc.proc is not None
        a.proc.proc.wait(5)
        wait_for(lambda: not procs_alive(redis_db, a_id), 8, "A counted dead")
        time.sleep(1.5)  # B's own view: its next housekeeping round
        client.remote = b.udp
        # SIPp's UAS answers every message of a call to where its INVITE came from (dead A),
        # not to the BYE's Via as a phone does: the 200 is lost, B retransmits the BYE, and
        # what is checked is that the BYE reached the phone through B and the channel is free.
        client.send(in_dialog("BYE", client, call_id, ok, 2, route=True))
        took = wait_for(lambda: leases(redis_db) == 0, 3, "the channel released by B")
    assert total([b], "sip_node_relays_total", kind="peer") == 0  # taken over, not passed on
    ur = carrier_call(sipp, b, "uac_call", calls=1, timeout_s=15).run()
    assert ur.successful == 1 and ur.failed == 0, ur.report() + b.logs()
    assert total([b], "sip_node_relays_total", kind="path_sent") == 1  # directly this time
    dr = desk.wait(grace=5)
    byes = [m for m in dr.messages().split("\n\n") if m.lstrip().startswith("BYE ")]
    assert any(call_id in m and f"{b.ip}:" in m for m in byes), dr.messages()[-3000:]
    print(f"channel released {took:.2f} s after the BYE reached B")


def load(sipp: Any, node: Any, name: str, n: int, hold_ms: int = 500) -> Any:
    """`n` calls at 10/s through `node`, each held `hold_ms`; a 503 + Retry-After counts as
    FailedTimeoutOnRecv (tests/sipp/uac_call_or_503.xml)."""
    return sipp(
        "uac_call_or_503", remote=node.udp, local_ip=CARRIER_IP, calls=n, rate=10,
        service=CONTRACT, keys={"caller": "0312345678"}, timeout_s=30,
        name=name, extra=["-d", str(hold_ms)],
    ).start()  # fmt: skip


# --------------------------------------------------------------------------- 4. kill -9
def held(db: redis.Redis, tenant: str = "t1") -> int:
    """Channel leases not past their deadline (expired ones leave the zset lazily)."""
    return int(db.zcount(f"softswitch:ch:{tenant}", time.time(), "+inf"))


SHORT_TTL = "[proxy]\nchannel_ttl = 6.0\nlease_sweep = 1.0\n"


def node_id(node: Any) -> str:
    found = re.search(r"runtime state in redis, node id (\S+)", node.proc.stderr_path.read_text())
    assert found, node.logs()
    return found[1]


def held_by(db: redis.Redis, node: str, tenant: str = "t1") -> int:
    """Live leases whose call record names `node` (or one of its workers, "<node>/w<i>")."""
    calls = db.zrangebyscore(f"softswitch:ch:{tenant}", time.time(), "+inf")
    records = [db.get(f"softswitch:c:{c}") for c in calls]
    return sum(1 for r in records if r and json.loads(r)["node"].split("/w")[0] == node)


def test_channel_ttl_option_node_killed_mid_load_calls_go_on_through_the_other(
    switch_proc, sipp, redis_db
):
    """Two nodes at 10 calls/s each (1 s calls). A (where the desk registered) gets SIGKILL
    (supervisor and workers) 3 s in: every call through B succeeds before and after, the
    registration stays, and the channels of A's calls cut off come back by the lease TTL
    (`channel_ttl` 6 s here, 2 h by default: the option under test)."""
    seed = SeedSpec(devices=[DESK], spare_ids=60)
    a, b = start_nodes(switch_proc, 2, seed, config(extra=SHORT_TTL))
    port = free_port()
    register_device(sipp, a, DESK, port)
    desk = sipp("uas", local_port=port, calls=1000, timeout_s=40, trace_msg=False).start()
    n = 80
    loads = {name: load(sipp, node, f"load-{name}", n, hold_ms=1000) for name, node in
             (("A", a), ("B", b))}  # fmt: skip
    time.sleep(3.0)
    a_id = node_id(a)
    os.killpg(a.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert a.proc.proc is not None
    a.proc.proc.wait(5)
    stuck = held_by(redis_db, a_id)
    time.sleep(1.0)
    ra = loads["A"].stop()
    rb = loads["B"].wait(grace=10)
    detail = ra.report() + "\n" + rb.report() + "\n" + b.logs()
    assert rb.successful == n and rb.failed == 0, detail
    assert 0 < ra.successful < n, detail  # A served calls, then died with some up
    assert len(bound(redis_db, "desk1")) == 1, "the registration through A is gone"
    after = sipp(
        "uac_call", remote=b.udp, local_ip=CARRIER_IP, calls=10, rate=10, service=CONTRACT,
        keys={"caller": "0312345678"}, timeout_s=15, name="after-kill",
    ).run()  # fmt: skip
    assert after.successful == 10 and after.failed == 0, after.report() + b.logs()
    assert stuck > 0, "no call was up on A when it was killed?"
    wait_for(lambda: held_by(redis_db, a_id) == 0, 6.0 + 2.0, "A's channels to come back")
    back = time.monotonic() - killed_at
    wait_for(lambda: held(redis_db) == 0, 5.0, "every channel free")
    desk.stop()
    # B's books agree: no call of its own left, and the tenant can fill every channel again
    assert b.metrics().total("sip_calls_active") == 0
    print(
        f"A: {ra.successful} calls done before the kill, {stuck} channels held by A at the kill;"
        f" B: {rb.successful}/{n}; A's channels back {back:.1f} s after the kill"
    )


# --------------------------------------------------------------------------- 5. Redis outage
def test_redis_connections_dropped_mid_load_503_with_retry_after_then_calls_recover(
    switch_proc, sipp, redis_db
):
    """Both nodes reach Redis through a relay that drops every connection for 2.5 s in the
    middle of 10 calls/s through each node. Calls arriving meanwhile get 503 + Retry-After
    (uac_call_or_503 counts them as FailedTimeoutOnRecv, a 503 without Retry-After as
    FailedRegexpHdrNotFound, anything else - 486, 408, 500 - as another failure); every call
    after it completes; nothing is left holding a channel (15 channels: a few leaked leases
    would make callers hear busy). Then Redis comes back empty (FLUSHDB while the relay is
    down: a restart without persistence): the desk's refresh through B registers it again
    and calls through both nodes reach it."""
    with RedisRelay() as relay:
        seed = SeedSpec(devices=[DESK], spare_ids=14)
        a, b = start_nodes(switch_proc, 2, seed, config(relay.url(DB)))
        nodes = [a, b]
        port = free_port()
        register_device(sipp, a, DESK, port)
        desk = sipp("uas", local_port=port, calls=1000, timeout_s=60, trace_msg=False).start()
        n = 80
        runs = [load(sipp, a, "load-A", n), load(sipp, b, "load-B", n)]
        time.sleep(3.0)
        relay.drop()
        time.sleep(2.5)
        relay.resume()
        results = [r.wait(grace=10) for r in runs]
        detail = "\n".join(r.report() for r in results) + logs(nodes)
        refused = sum(r.counter("FailedTimeoutOnRecv") for r in results)
        for r in results:
            assert r.created == n and r.counter("FailedRegexpHdrNotFound") == 0, detail
            # every failed call was a 503 with Retry-After
            assert r.failed == r.counter("FailedTimeoutOnRecv"), detail
        assert refused > 0, "no call met the outage? " + detail
        assert sum(r.successful for r in results) == 2 * n - refused, detail
        assert busy_decisions(nodes) == 0
        wait_for(lambda: held(redis_db) == 0, 5, "every channel released")
        after = [load(sipp, node, f"after-{i}", 15) for i, node in enumerate(nodes)]
        for r in after:
            res = r.wait(grace=10)
            assert res.successful == 15 and res.failed == 0, res.report() + logs(nodes)

        # Redis restarted without its data: registrations and leases are gone
        relay.drop()
        redis_db.flushdb()
        relay.resume()
        assert bound(redis_db, "desk1") == []
        time.sleep(1.5)  # the breakers' cooldown (1 s) after the dropped connections
        desk.stop()
        register_device(sipp, b, DESK, port)  # the desk's refresh, through the other node
        assert len(bound(redis_db, "desk1")) == 1
        desk = sipp("uas", local_port=port, calls=2, timeout_s=20, name="desk-again").start()
        for node in nodes:
            ur = carrier_call(sipp, node, "uac_call", calls=1, timeout_s=10).run()
            assert ur.successful == 1 and ur.failed == 0, ur.report() + logs(nodes)
        assert desk.wait(grace=5).successful == 2
        print(f"refused with 503 + Retry-After during the outage: {refused} of {2 * n} calls")
