"""The embedded relay's core: SDP rewriting, branches, delete, query, expiry, recording —
with fake ports and a fake sink (our own seams)."""

from __future__ import annotations

from typing import cast

import pytest

from media.g711 import Codec
from media.relay.core import RelayConfig, RelayCore
from media.relay.errors import NgRequestError
from media.relay.ng import (
    Answer,
    BlockMedia,
    Delete,
    ListCalls,
    Offer,
    Ping,
    Query,
    StartRecording,
    StopRecording,
    SubscribeRequest,
    UnblockMedia,
)
from media.sdp import parse_sdp, rtp_destination

from .fakes import RELAY, FakePool, FakePorts, FakeSink, party_sdp, rtp, tone_frame

A_SDP = party_sdp("10.0.0.1", 4000)
B1_SDP = party_sdp("10.0.0.2", 5000, session=2)
B2_SDP = party_sdp("10.0.0.3", 6000, session=3)


def make(**config: object) -> tuple[RelayCore, FakePool, FakeSink]:
    pool, sink = FakePool(), FakeSink()
    core = RelayCore(pool=pool, sink=sink, config=RelayConfig(**config))  # type: ignore[arg-type]
    return core, pool, sink


def sdp_of(reply: dict[str, object]) -> bytes:
    body = reply["sdp"]
    assert isinstance(body, bytes)
    return body


def offer(
    core: RelayCore, *, branch: str | None = "br1", record: bool = False, now: float = 0.0
) -> bytes:
    req = Offer(call_id="c", from_tag="ft", sdp=A_SDP, via_branch=branch, record_call=record)
    return sdp_of(core.handle(req, now, 1000.0 + now))


def answer(
    core: RelayCore, *, branch: str | None = "br1", to_tag: str = "tt", sdp: bytes = B1_SDP
) -> bytes:
    req = Answer(call_id="c", from_tag="ft", to_tag=to_tag, sdp=sdp, via_branch=branch)
    return sdp_of(core.handle(req, 0.5, 1000.5))


def ports(core: RelayCore, tag: str | None) -> FakePorts:
    call = core.calls["c"]
    leg = call.leg_by_tag(tag) if tag else next(iter(call.branches.values())).leg
    assert leg is not None
    return cast(FakePorts, leg.ports)


def test_ping() -> None:
    core, _, _ = make()
    assert core.handle(Ping(), 0, 0) == {"result": "pong"}


def test_offer_and_answer_point_each_party_at_the_ports_facing_the_other() -> None:
    core, pool, _ = make()
    to_callee = offer(core)
    to_caller = answer(core)
    a_ports, b_ports = ports(core, "ft"), ports(core, "tt")
    # the callee is told to send to the B-facing pair, the caller to the A-facing pair
    assert rtp_destination(to_callee) == (RELAY, b_ports.rtp_port)
    assert rtp_destination(to_caller) == (RELAY, a_ports.rtp_port)
    assert a_ports.rtp_port != b_ports.rtp_port and pool.open() == 2
    # nothing else of the SDP changed
    assert parse_sdp(to_callee).origin == parse_sdp(A_SDP).origin
    assert parse_sdp(to_callee).media[0].formats == ("0", "8", "101")


def test_ice_attributes_are_removed_so_media_cannot_bypass_the_relay() -> None:
    core, _, _ = make()
    ice = (
        "a=ice-ufrag:Ab1\r\na=ice-pwd:secret\r\n"
        "a=candidate:1 1 UDP 2130706431 10.0.0.1 4000 typ host\r\n"
    )
    body = party_sdp("10.0.0.1", 4000, extra=ice + "a=end-of-candidates\r\na=sendrecv\r\n")
    reply = core.handle(Offer(call_id="c", from_tag="ft", sdp=body), 0, 0)
    out = sdp_of(reply)
    assert b"ice-" not in out and b"candidate" not in out and out.endswith(b"a=sendrecv\r\n")


def test_retransmitted_offer_for_the_same_branch_allocates_nothing_new() -> None:
    core, pool, _ = make()
    first = offer(core)
    assert offer(core) == first and pool.open() == 2


def test_each_branch_gets_its_own_ports_and_media_goes_to_all_until_the_answer() -> None:
    core, pool, _ = make()
    sdp1 = offer(core, branch="br1")
    sdp2 = offer(core, branch="br2")
    assert rtp_destination(sdp1) != rtp_destination(sdp2) and pool.open() == 3
    call = core.calls["c"]
    branch1, branch2 = call.branches["br1"].leg, call.branches["br2"].leg
    assert call.a.peers == (branch1, branch2)  # early media to every device
    answer(core, branch="br2", sdp=B2_SDP, to_tag="tt2")
    assert call.a.peers == (branch2,) and branch1.peers == () and branch2.peers == (call.a,)
    assert branch2.tag == "tt2" and branch1.tag is None


def test_the_latest_answer_wins_and_deleting_it_falls_back() -> None:
    core, _, _ = make()
    offer(core, branch="br1")
    offer(core, branch="br2")
    answer(core, branch="br1", to_tag="t1")  # a 183 with early media from device 1
    call = core.calls["c"]
    first, second = call.branches["br1"], call.branches["br2"]
    assert call.selected is first and call.a.peers == (first.leg,)
    answer(core, branch="br2", sdp=B2_SDP, to_tag="t2")  # device 2 answers the call
    assert call.selected is second and call.a.peers == (second.leg,)
    core.handle(Delete(call_id="c", from_tag="ft", via_branch="br2"), 1, 1001)
    assert call.selected is first  # device 2 went away: back to the other answered branch


def test_delete_by_via_branch_removes_one_branch_and_without_it_the_call() -> None:
    core, pool, _ = make()
    offer(core, branch="br1")
    offer(core, branch="br2")
    answer(core, branch="br2", sdp=B2_SDP)
    reply = core.handle(Delete(call_id="c", from_tag="ft", via_branch="br1"), 1, 1001)
    assert reply["result"] == "ok" and "br1" not in core.calls["c"].branches
    assert pool.open() == 2
    core.handle(Delete(call_id="c"), 2, 1002)
    assert core.calls == {} and pool.open() == 0
    assert core.handle(ListCalls(), 3, 1003) == {"result": "ok", "calls": []}


def test_deleting_the_last_branch_deletes_the_call_as_rtpengine_does() -> None:
    core, pool, _ = make()
    offer(core, branch="br1")
    core.handle(Delete(call_id="c", from_tag="ft", via_branch="br1"), 1, 1001)
    assert core.calls == {} and pool.open() == 0


def test_unknown_call_is_a_warning_or_with_fatal_an_error() -> None:
    core, _, _ = make()
    reply = core.handle(Delete(call_id="nope"), 0, 0)
    assert reply == {"result": "ok", "warning": "Call-ID not found or tags didn't match"}
    with pytest.raises(NgRequestError, match="not found"):
        core.handle(Delete(call_id="nope", fatal=True), 0, 0)
    with pytest.raises(NgRequestError, match="Unknown call-id"):
        core.handle(Query(call_id="nope"), 0, 0)
    with pytest.raises(NgRequestError, match="Unknown call-id"):
        core.handle(Answer(call_id="nope", from_tag="a", to_tag="b", sdp=B1_SDP), 0, 0)
    assert core.stats.refused == {"delete": 1, "query": 1, "answer": 1}


def test_delete_delay_keeps_the_call_until_the_tick() -> None:
    core, pool, _ = make()
    offer(core)
    core.handle(Delete(call_id="c", delete_delay=5), 1, 1001)
    assert "c" in core.calls
    core.tick(3, 1003)
    assert "c" in core.calls
    core.tick(6.1, 1006.1)
    assert core.calls == {} and pool.open() == 0


def test_reoffer_from_the_callee_goes_to_the_caller_through_the_caller_ports() -> None:
    core, _, _ = make()
    offer(core)
    answer(core)
    hold = party_sdp("0.0.0.0", 5000, session=2, extra="a=sendonly\r\n")
    reply = core.handle(Offer(call_id="c", from_tag="tt", to_tag="ft", sdp=hold), 1, 1001)
    to_caller = sdp_of(reply)
    assert b"c=IN IP4 0.0.0.0" in to_caller  # the hold marker reaches the caller
    assert parse_sdp(to_caller).media[0].port == ports(core, "ft").rtp_port
    callee = core.calls["c"].leg_by_tag("tt")
    assert callee is not None and callee.rtp_destination() is None and core.calls["c"].on_hold()
    back = core.handle(Answer(call_id="c", from_tag="tt", to_tag="ft", sdp=A_SDP), 2, 1002)
    assert parse_sdp(sdp_of(back)).media[0].port == ports(core, "tt").rtp_port


def test_unknown_dialogue_and_bad_sdp_are_refused_without_leaking_ports() -> None:
    core, pool, _ = make()
    with pytest.raises(NgRequestError, match="Incomplete SDP"):
        core.handle(Offer(call_id="c", from_tag="ft", sdp=b"v=0\r\nnonsense"), 0, 0)
    offer(core, branch="br1")
    offer(core, branch="br2")
    with pytest.raises(NgRequestError, match="Invalid dialogue"):
        core.handle(Offer(call_id="c", from_tag="stranger", sdp=A_SDP), 0, 0)
    with pytest.raises(NgRequestError, match="Invalid dialogue"):
        answer(core, branch="no-such-branch", to_tag="x")  # which of the two? refuse
    assert pool.open() == 3


def test_port_exhaustion_is_an_error_and_leaves_nothing_behind() -> None:
    pool, sink = FakePool(limit=1), FakeSink()
    core = RelayCore(pool=pool, sink=sink)
    with pytest.raises(NgRequestError, match="Ran out of ports"):
        offer(core)
    assert core.calls == {}
    assert pool.open() == 0


def test_query_reports_ports_endpoints_and_counters_like_rtpengine() -> None:
    core, _, _ = make()
    offer(core)
    answer(core)
    call = core.calls["c"]
    call.rtp_in(call.a, rtp(1, 160, b"x" * 160), ("10.0.0.9", 4100), 1.0)
    call.rtp_in(call.a, rtp(2, 320, b"x" * 160), ("10.0.0.66", 1), 1.02)  # foreign: dropped
    reply = core.handle(Query(call_id="c"), 2.0, 1002.0)
    totals = reply["totals"]
    assert totals == {
        "RTP": {"packets": 1, "bytes": 172, "errors": 1},
        "RTCP": {"packets": 0, "bytes": 0, "errors": 0},
    }
    tags = reply["tags"]
    assert isinstance(tags, dict) and set(tags) == {"ft", "tt"}
    stream = tags["ft"]["medias"][0]["streams"][0]  # type: ignore[index]
    assert stream["local port"] == ports(core, "ft").rtp_port
    assert stream["endpoint"] == {"family": "IPv4", "address": "10.0.0.9", "port": 4100}
    assert stream["advertised endpoint"]["port"] == 4000
    assert stream["last packet"] == 1001
    assert tags["ft"]["in dialogue with"] == "tt"  # type: ignore[index]


def test_subscribe_is_not_supported_by_the_embedded_relay() -> None:
    core, _, _ = make()
    with pytest.raises(NgRequestError, match="Unsupported"):
        core.handle(SubscribeRequest(call_id="c"), 0, 0)


# --------------------------------------------------------------------------- expiry
def test_idle_call_expires_and_activity_keeps_it() -> None:
    core, pool, _ = make(idle_timeout=10.0)
    offer(core)
    answer(core)
    call = core.calls["c"]
    call.rtp_in(call.a, rtp(1, 160, b"x" * 160), ("10.0.0.1", 4000), 8.0)
    core.tick(15.0, 1015)
    assert "c" in core.calls  # a packet at 8 s: idle for 7 s only
    core.tick(18.5, 1018.5)
    assert core.calls == {} and core.stats.expired_idle == 1 and pool.open() == 0


def test_held_call_uses_the_hold_timeout() -> None:
    core, _, _ = make(idle_timeout=10.0, hold_timeout=100.0)
    offer(core)
    answer(core, sdp=party_sdp("10.0.0.2", 5000, extra="a=recvonly\r\n"))
    core.tick(50.0, 1050)
    assert "c" in core.calls
    core.tick(101.0, 1101)
    assert core.calls == {}


def test_max_age_ends_even_a_busy_call() -> None:
    core, _, _ = make(max_age=100.0)
    offer(core)
    call = core.calls["c"]
    for t in range(0, 101, 5):
        call.rtp_in(call.a, rtp(t, 160 * t, b"x"), ("10.0.0.1", 4000), float(t))
        core.tick(float(t), 1000.0 + t)
    assert "c" in core.calls
    core.tick(100.5, 1100.5)
    assert core.calls == {} and core.stats.expired_age == 1


# --------------------------------------------------------------------------- routing
def test_packets_are_latched_forwarded_and_foreign_sources_dropped() -> None:
    core, _, _ = make()
    offer(core)
    answer(core)
    call = core.calls["c"]
    a, b = call.a, call.leg_by_tag("tt")
    assert b is not None
    assert b.rtp_destination() == ("10.0.0.2", 5000)  # before latching: the SDP
    assert call.rtp_in(b, rtp(1, 0, b"y"), ("203.0.113.5", 7000), 0.0) == (a,)
    assert b.rtp_destination() == ("203.0.113.5", 7000)  # NAT: the real source wins
    assert call.rtp_in(b, rtp(2, 160, b"y"), ("198.51.100.1", 9), 0.5) == ()  # foreign
    assert b.rtp.errors == 1
    assert call.rtp_in(b, rtp(3, 320, b"y"), ("198.51.100.1", 9), 3.0) == (a,)  # relatch
    assert b.rtp_destination() == ("198.51.100.1", 9)
    assert call.rtcp_in(b, b"\x81\xc9" + bytes(30), ("203.0.113.5", 7001), 3.1) == (a,)
    assert b.rtcp_destination() == ("203.0.113.5", 7001) and a.rtcp_destination() == (
        "10.0.0.1",
        4001,
    )


def test_blocked_party_is_recorded_but_not_forwarded() -> None:
    core, _, _ = make()
    offer(core, record=True)
    answer(core)
    call = core.calls["c"]
    b = call.leg_by_tag("tt")
    assert b is not None
    core.handle(BlockMedia(call_id="c", from_tag="tt"), 1.0, 1001.0)
    assert call.rtp_in(b, rtp(1, 0, b"y" * 160), ("10.0.0.2", 5000), 1.0) == ()
    assert call.rtp_in(call.a, rtp(1, 0, b"y" * 160), ("10.0.0.1", 4000), 1.0) == (b,)
    core.handle(UnblockMedia(call_id="c", from_tag="tt"), 1.5, 1001.5)
    assert call.rtp_in(b, rtp(2, 160, b"y" * 160), ("10.0.0.2", 5000), 1.5) == (call.a,)
    assert call.recording is not None and call.recording.recorder.stats(1).packets == 2
    with pytest.raises(NgRequestError, match="Unknown from-tag"):
        core.handle(BlockMedia(call_id="c", from_tag="nobody"), 2.0, 1002.0)


def test_a_losing_branch_is_cut_off_after_the_answer() -> None:
    core, _, _ = make()
    offer(core, branch="br1")
    offer(core, branch="br2")
    answer(core, branch="br2", sdp=B2_SDP, to_tag="tt2")
    loser = core.calls["c"].branches["br1"].leg
    assert core.calls["c"].rtp_in(loser, rtp(1, 0, b"z"), ("10.0.0.2", 5000), 1.0) == ()


# --------------------------------------------------------------------------- recording
def test_recorded_call_is_handed_to_the_sink_with_its_metadata() -> None:
    core, _, sink = make()
    core.handle(
        Offer(
            call_id="c", from_tag="ft", sdp=A_SDP, via_branch="br1", record_call=True, metadata="m1"
        ),
        0.0,
        1000.0,
    )
    answer(core)
    call = core.calls["c"]
    b = call.leg_by_tag("tt")
    assert b is not None
    for i in range(50):
        t = 0.5 + 0.02 * i
        call.rtp_in(call.a, rtp(i, 160 * i, tone_frame(Codec.PCMU, 3000)), ("10.0.0.1", 4000), t)
        call.rtp_in(b, rtp(i, 160 * i, tone_frame(Codec.PCMA, -3000), pt=8), ("10.0.0.2", 5000), t)
    core.handle(Delete(call_id="c"), 2.0, 1002.0)
    [(writer, meta)] = sink.closed
    assert meta.call_id == "c" and meta.from_tag == "ft" and meta.to_tag == "tt"
    assert meta.via_branch == "br1" and meta.metadata == "m1" and meta.relay == "embedded"
    assert meta.started == 1000.0 and meta.ended == 1002.0
    assert meta.duration == pytest.approx(2.0, abs=0.001)
    assert meta.codecs == ("PCMA", "PCMU") and meta.data_bytes == len(writer.pcm)
    left, right = writer.channel(0), writer.channel(1)
    assert len(left) == 16000
    # 0.5 s of silence before the talk, then caller positive (left), callee negative (right)
    assert left[3000] == 0 and left[5000] > 2000 and right[5000] < -2000
    assert meta.stats["caller"]["packets"] == 50  # type: ignore[index]


def test_unanswered_recording_is_discarded_and_start_stop_recording_commands() -> None:
    core, _, sink = make()
    offer(core, record=True)
    core.handle(Delete(call_id="c"), 1, 1001)
    assert len(sink.discarded) == 1 and sink.closed == []
    offer(core)
    answer(core)
    core.handle(StartRecording(call_id="c", metadata="later"), 1, 1001)
    core.handle(StopRecording(call_id="c"), 2, 1002)
    [(_, meta)] = sink.closed
    assert meta.metadata == "later" and meta.to_tag == "tt"
    assert meta.duration == pytest.approx(1.0, abs=0.001)


def test_recording_without_a_sink_is_refused() -> None:
    core = RelayCore(pool=FakePool())
    with pytest.raises(NgRequestError, match="no recording sink"):
        offer(core, record=True)
