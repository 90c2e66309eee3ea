"""SIP transactions (switch/sip/transaction.py): RFC 3261 §17 + RFC 6026, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from switch.sip.events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
)
from switch.sip.headers import Headers
from switch.sip.message import Request, Response, make_response
from switch.sip.target import Target, new_branch
from switch.sip.transaction import ClientTransaction, ServerTransaction, TransactionLayer
from switch.sip.transitions import State, Timers

# Non-default timers, exact in binary floating point so deadlines compare exactly.
T = Timers(t1=0.25, t2=2.0, t4=3.0)
T1, T2, T4 = T.t1, T.t2, T.t4
UDP = Target("udp", "192.0.2.10", 5070)
TCP = Target("tcp", "192.0.2.10", 40000, conn_id=7)
DOWN = Target("udp", "198.51.100.5", 5060)  # where client transactions go
DOWN_TCP = Target("tcp", "198.51.100.5", 5060, conn_id=9)


# --------------------------------------------------------------------------- builders
def request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    transport: str = "UDP",
    sent_by: str = "192.0.2.10:5070",
    via_params: str = "",
    cseq: int = 1,
    call_id: str = "call-1@192.0.2.10",
    uri: str = "sip:bob@example.com",
    to_tag: str | None = None,
    routes: tuple[str, ...] = (),
) -> Request:
    branch_param = "" if branch is None else f";branch={branch}"
    fields = [
        ("Via", f"SIP/2.0/{transport} {sent_by}{branch_param}{via_params}"),
        ("Via", "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKlower"),
        *[("Route", r) for r in routes],
        ("Max-Forwards", "70"),
        ("From", "Alice <sip:alice@example.com>;tag=from-1"),
        ("To", "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", "<sip:alice@192.0.2.10:5070>"),
    ]
    return Request(method=method, uri=uri, headers=Headers(fields))


def ack_for(req: Request, to_tag: str | None = "totag", branch: str | None = None) -> Request:
    """An ACK as a UAC sends it: same branch for a non-2xx (§17.1.1.3), new one for a 2xx."""
    top = req.top_via
    ack = request(
        "ACK",
        branch=branch if branch is not None else top.branch,
        transport=top.transport,
        sent_by=f"{top.host}:{top.port}" if top.port else top.host,
        cseq=req.cseq.seq,
        call_id=req.call_id,
        uri=req.uri,
        to_tag=to_tag,
    )
    return ack


def response(req: Request, status: int, to_tag: str | None = "totag") -> Response:
    return make_response(req, status, to_tag=None if status == 100 else to_tag)


def only(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def sent(events: list[Event]) -> list[SendMessage]:
    return only(events, SendMessage)


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, Event]]:
    """Fire every deadline up to `until`, in order, as an event loop would."""
    out: list[tuple[float, Event]] = []
    while (when := layer.get_timer()) is not None and when <= until:
        out += [(when, e) for e in layer.handle_timer(when)]
    return out


def send_times(timeline: list[tuple[float, Event]]) -> list[float]:
    return [t for t, e in timeline if isinstance(e, SendMessage)]


def geometric(first: float, cap: float | None, end: float) -> list[float]:
    """Retransmission instants: intervals first, 2*first, … (capped), strictly before end."""
    out, t, interval = [], 0.0, first
    while t + interval < end:
        t += interval
        out.append(t)
        interval = interval * 2 if cap is None else min(interval * 2, cap)
    return out


@pytest.fixture
def layer() -> TransactionLayer:
    return TransactionLayer(T)


def start_client(
    layer: TransactionLayer, method: str = "INVITE", target: Target = DOWN, now: float = 0.0
) -> tuple[ClientTransaction, Request, list[Event]]:
    req = request(method, branch=new_branch(), sent_by="proxy.example.net:5060")
    txn, events = layer.send_request(req, target, now)
    return txn, req, events


def start_server(
    layer: TransactionLayer, method: str = "INVITE", source: Target = UDP, **kw: Any
) -> tuple[ServerTransaction, Request, list[Event]]:
    req = request(method, branch=kw.pop("branch", new_branch()), **kw)
    events = layer.receive(req, source, 0.0)
    received = only(events, RequestReceived)
    assert len(received) == 1
    return received[0].txn, req, events


# --------------------------------------------------------------------------- basics
def test_new_branch_has_cookie_and_is_unique() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith("z9hG4bK") and len(b) > 7 + 8 for b in branches)


def test_idle_layer_has_no_timer(layer: TransactionLayer) -> None:
    assert layer.get_timer() is None
    assert layer.handle_timer(1e9) == []
    assert layer.counts() == {
        "client_invite": 0,
        "client_non_invite": 0,
        "server_invite": 0,
        "server_non_invite": 0,
    }


def test_target_reliability() -> None:
    assert not UDP.reliable and TCP.reliable and Target("tls", "h", 5061).reliable


# --------------------------------------------------------------------------- INVITE client
def test_invite_client_timer_a_doubles_and_b_times_out(layer: TransactionLayer) -> None:
    txn, req, events = start_client(layer)
    assert [s.message for s in sent(events)] == [req]
    assert txn.state is State.CALLING and txn.is_invite
    assert layer.get_timer() == T1
    timeline = run_timers(layer, 1000.0)
    # Timer A: T1, 2T1, 4T1 … (not capped by T2), until Timer B at 64*T1.
    assert send_times(timeline) == geometric(T1, None, 64 * T1)
    assert send_times(timeline) == [0.25, 0.75, 1.75, 3.75, 7.75, 15.75]
    assert all(
        e.message is req and e.target == DOWN for _, e in timeline if isinstance(e, SendMessage)
    )
    timeouts = [(t, e) for t, e in timeline if isinstance(e, TransactionTimeout)]
    assert timeouts == [(64 * T1, TransactionTimeout(txn=txn))]
    assert timeline[-1] == (64 * T1, TransactionTerminated(txn=txn, reason="timeout"))
    assert txn.state is State.TERMINATED
    assert layer.counts()["client_invite"] == 0
    assert layer.get_timer() is None


def test_timer_b_not_before_its_time(layer: TransactionLayer) -> None:
    start_client(layer, target=DOWN_TCP)
    assert layer.get_timer() == 64 * T1
    assert layer.handle_timer(64 * T1 - 0.001) == []
    assert only(layer.handle_timer(64 * T1), TransactionTimeout)


def test_invite_client_reliable_has_no_timer_a(layer: TransactionLayer) -> None:
    start_client(layer, target=DOWN_TCP)
    timeline = run_timers(layer, 1000.0)
    assert send_times(timeline) == []
    assert [(t, type(e)) for t, e in timeline] == [
        (64 * T1, TransactionTimeout),
        (64 * T1, TransactionTerminated),
    ]


def test_invite_client_provisional_stops_a_and_b(layer: TransactionLayer) -> None:
    txn, req, _ = start_client(layer)
    trying = response(req, 100)
    events = layer.receive(trying, DOWN, 0.1)
    assert events == [ResponseReceived(txn=txn, response=trying, source=DOWN)]
    assert txn.state is State.PROCEEDING
    assert layer.get_timer() is None  # waits for the TU (Timer C is the proxy's)
    ringing = response(req, 180)
    assert layer.receive(ringing, DOWN, 1.0) == [
        ResponseReceived(txn=txn, response=ringing, source=DOWN)
    ]
    again = layer.receive(ringing, DOWN, 1.1)  # further provisionals are passed up too
    assert only(again, ResponseReceived)


@pytest.mark.parametrize("target", [DOWN, DOWN_TCP])
def test_invite_client_non_2xx_generates_ack(layer: TransactionLayer, target: Target) -> None:
    req = request(
        "INVITE",
        branch=new_branch(),
        sent_by="proxy.example.net",
        routes=("<sip:p1.example;lr>", "<sip:p2.example;lr>"),
        cseq=42,
    )
    txn, _ = layer.send_request(req, target, 0.0)
    busy = response(req, 486, to_tag="uas-tag")
    events = layer.receive(busy, target, 1.0)
    assert events[0] == ResponseReceived(txn=txn, response=busy, source=target)
    (ack_send,) = sent(events)
    ack = ack_send.message
    assert ack_send.target == target
    assert isinstance(ack, Request)
    # §17.1.1.3: same Request-URI, Call-ID, From, CSeq number; one Via = the top Via of the
    # request; To of the response (with its tag); the request's Route header fields.
    assert ack.method == "ACK" and ack.uri == req.uri
    assert ack.headers.get_all("Via") == [req.headers.get_all("Via")[0]]
    assert ack.top_via.branch == req.top_via.branch
    assert ack.call_id == req.call_id
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.to_tag == "uas-tag"
    assert (ack.cseq.seq, ack.cseq.method) == (42, "ACK")
    assert ack.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert b"ACK sip:bob@example.com SIP/2.0" in ack.to_bytes()
    if target.reliable:  # Timer D = 0: terminated at once
        assert events[-1] == TransactionTerminated(txn=txn)
        assert layer.get_timer() is None
    else:
        assert txn.state is State.COMPLETED
        assert layer.get_timer() == 1.0 + 32.0


def test_invite_client_completed_absorbs_final_and_resends_ack(
    layer: TransactionLayer,
) -> None:
    txn, req, _ = start_client(layer)
    busy = response(req, 486)
    first = layer.receive(busy, DOWN, 1.0)
    (ack,) = sent(first)
    again = layer.receive(busy, DOWN, 2.0)
    assert again == [SendMessage(message=ack.message, target=DOWN)]  # no ResponseReceived
    assert layer.receive(response(req, 180), DOWN, 3.0) == []  # late provisional ignored
    timeline = run_timers(layer, 1000.0)
    assert timeline == [(33.0, TransactionTerminated(txn=txn))]  # Timer D = 32 s


def test_invite_client_2xx_enters_accepted_and_further_2xx_are_stray(
    layer: TransactionLayer,
) -> None:
    txn, req, _ = start_client(layer)
    ok = response(req, 200, to_tag="fork-1")
    events = layer.receive(ok, DOWN, 1.0)
    assert events == [ResponseReceived(txn=txn, response=ok, source=DOWN)]  # no ACK: TU's
    assert txn.state is State.ACCEPTED
    assert layer.receive(ok, DOWN, 2.0) == [StrayResponse(response=ok, source=DOWN, txn=txn)]
    other = response(req, 200, to_tag="fork-2")
    assert layer.receive(other, DOWN, 3.0) == [StrayResponse(response=other, source=DOWN, txn=txn)]
    assert layer.receive(response(req, 486), DOWN, 4.0) == []  # non-2xx after 2xx: ignored
    timeline = run_timers(layer, 1000.0)
    assert timeline == [(1.0 + 64 * T1, TransactionTerminated(txn=txn))]  # Timer M
    # After the transaction, 2xx retransmissions are stray, forwarded statelessly.
    assert layer.receive(ok, DOWN, 100.0) == [StrayResponse(response=ok, source=DOWN)]


def test_invite_client_cancel_is_its_own_transaction_and_guards_the_invite(
    layer: TransactionLayer,
) -> None:
    inv, req, _ = start_client(layer)
    layer.receive(response(req, 180), DOWN, 0.5)
    cancel = request("CANCEL", branch=req.top_via.branch, sent_by="proxy.example.net:5060")
    ctx, events = layer.send_request(cancel, DOWN, 10.0)
    assert ctx is not inv and not ctx.is_invite
    assert sent(events) == [SendMessage(message=cancel, target=DOWN)]
    # 200 for the CANCEL (CSeq method CANCEL) goes to the CANCEL transaction …
    ok = response(cancel, 200)
    assert layer.receive(ok, DOWN, 10.1)[0] == ResponseReceived(txn=ctx, response=ok, source=DOWN)
    # … and if no final response to the INVITE arrives, it times out 64*T1 after the CANCEL
    # (§9.1).
    timeline = run_timers(layer, 1000.0)
    assert (10.0 + 64 * T1, TransactionTimeout(txn=inv)) in timeline
    assert (10.0 + 64 * T1, TransactionTerminated(txn=inv, reason="timeout")) in timeline


def test_invite_client_cancel_then_487(layer: TransactionLayer) -> None:
    inv, req, _ = start_client(layer)
    layer.receive(response(req, 180), DOWN, 0.5)
    cancel = request("CANCEL", branch=req.top_via.branch, sent_by="proxy.example.net:5060")
    layer.send_request(cancel, DOWN, 1.0)
    terminated = response(req, 487)
    events = layer.receive(terminated, DOWN, 1.2)
    assert events[0] == ResponseReceived(txn=inv, response=terminated, source=DOWN)
    assert only(events, SendMessage)[0].message.method == "ACK"
    timeline = run_timers(layer, 1000.0)
    assert TransactionTimeout(txn=inv) not in [e for _, e in timeline]
    assert (33.2, TransactionTerminated(txn=inv)) in timeline  # Timer D after the 487


def test_response_matching_needs_branch_and_method(layer: TransactionLayer) -> None:
    _, req, _ = start_client(layer, "OPTIONS")
    wrong_method = make_response(req, 200)
    wrong_method.headers.set("CSeq", "1 INVITE")
    assert only(layer.receive(wrong_method, DOWN, 0.1), StrayResponse)
    wrong_branch = make_response(request("OPTIONS", branch="z9hG4bKother"), 200)
    assert only(layer.receive(wrong_branch, DOWN, 0.1), StrayResponse)
    no_branch = make_response(request("OPTIONS", branch=None), 200)
    assert only(layer.receive(no_branch, DOWN, 0.1), StrayResponse)
    assert layer.stats["stray_responses"] == 3


# --------------------------------------------------------------------------- non-INVITE client
def test_non_invite_client_timer_e_capped_at_t2_and_f(layer: TransactionLayer) -> None:
    txn, _, _ = start_client(layer, "OPTIONS")
    assert txn.state is State.TRYING
    timeline = run_timers(layer, 1000.0)
    # E: T1, 2T1, 4T1 … capped at T2, until F at 64*T1.
    assert send_times(timeline) == geometric(T1, T2, 64 * T1)
    assert send_times(timeline)[:6] == [0.25, 0.75, 1.75, 3.75, 5.75, 7.75]
    assert timeline[-2:] == [
        (64 * T1, TransactionTimeout(txn=txn)),
        (64 * T1, TransactionTerminated(txn=txn, reason="timeout")),
    ]


def test_non_invite_client_e_uses_t2_in_proceeding(layer: TransactionLayer) -> None:
    txn, req, _ = start_client(layer, "REGISTER")
    run_timers(layer, 0.3)  # first retransmission at T1; next E due at 0.75
    trying = response(req, 100)
    assert layer.receive(trying, DOWN, 0.3) == [
        ResponseReceived(txn=txn, response=trying, source=DOWN)
    ]
    assert txn.state is State.PROCEEDING
    timeline = run_timers(layer, 1000.0)
    # §17.1.2.2: in Proceeding, E fires and is reset to T2; F keeps its original deadline.
    expected = [0.75]
    while expected[-1] + T2 < 64 * T1:
        expected.append(expected[-1] + T2)
    assert send_times(timeline) == expected
    assert only([e for _, e in timeline], TransactionTimeout) == [TransactionTimeout(txn=txn)]
    assert timeline[-1][0] == 64 * T1


def test_non_invite_client_reliable_no_e(layer: TransactionLayer) -> None:
    start_client(layer, "OPTIONS", target=DOWN_TCP)
    timeline = run_timers(layer, 1000.0)
    assert send_times(timeline) == []
    assert timeline[0][0] == 64 * T1


def test_non_invite_client_final_then_timer_k(layer: TransactionLayer) -> None:
    txn, req, _ = start_client(layer, "OPTIONS")
    ok = response(req, 200)
    assert layer.receive(ok, DOWN, 1.0) == [ResponseReceived(txn=txn, response=ok, source=DOWN)]
    assert txn.state is State.COMPLETED and txn.last_response is ok
    assert layer.receive(ok, DOWN, 1.5) == []  # retransmission absorbed
    assert layer.receive(response(req, 100), DOWN, 1.6) == []
    assert layer.get_timer() == 1.0 + T4
    assert layer.handle_timer(1.0 + T4 - 0.01) == []
    assert layer.handle_timer(1.0 + T4) == [TransactionTerminated(txn=txn)]


def test_non_invite_client_reliable_k_is_zero(layer: TransactionLayer) -> None:
    txn, req, _ = start_client(layer, "OPTIONS", target=DOWN_TCP)
    ok = response(req, 404)
    events = layer.receive(ok, DOWN_TCP, 1.0)
    assert events == [
        ResponseReceived(txn=txn, response=ok, source=DOWN_TCP),
        TransactionTerminated(txn=txn),
    ]
    assert layer.get_timer() is None


def test_send_request_refuses_ack_and_duplicates(layer: TransactionLayer) -> None:
    with pytest.raises(ValueError):
        layer.send_request(request("ACK", branch=new_branch()), DOWN, 0.0)
    req = request("OPTIONS", branch=new_branch())
    layer.send_request(req, DOWN, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(req, DOWN, 0.0)


def test_user_data_is_kept(layer: TransactionLayer) -> None:
    req = request("OPTIONS", branch=new_branch())
    txn, _ = layer.send_request(req, DOWN, 0.0, user_data={"leg": 3})
    assert txn.user_data == {"leg": 3}


# --------------------------------------------------------------------------- INVITE server
def test_invite_server_sends_100_trying_at_once(layer: TransactionLayer) -> None:
    txn, req, events = start_server(layer)
    # The 100 is on the wire before the TU sees the request, so that an immediate final
    # response (407, 404 …) can never overtake it.
    assert isinstance(events[0], SendMessage) and isinstance(events[1], RequestReceived)
    assert events[1].source == UDP
    assert events[1].request is req and events[1].cancelled is None
    (trying,) = sent(events)
    assert isinstance(trying.message, Response) and trying.message.status == 100
    assert trying.message.to_tag is None
    assert trying.target == UDP
    assert txn.state is State.PROCEEDING and txn.is_invite and txn.last_response is trying.message
    assert layer.get_timer() is None


def test_100_trying_echoes_timestamp(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=new_branch())
    req.headers.add("Timestamp", "54.3 0.1")
    (trying,) = sent(layer.receive(req, UDP, 0.0))
    assert trying.message.headers.get("Timestamp") == "54.3 0.1"


def test_invite_server_without_auto_trying() -> None:
    layer = TransactionLayer(T, auto_trying=False)
    _, req, events = start_server(layer)
    assert sent(events) == []
    assert layer.receive(req, UDP, 0.1) == []  # retransmission, nothing to resend yet


def test_invite_server_retransmission_resends_last_provisional(layer: TransactionLayer) -> None:
    txn, req, events = start_server(layer)
    trying = sent(events)[0].message
    assert layer.receive(req, UDP, 0.5) == [SendMessage(message=trying, target=UDP)]
    ringing = response(req, 180)
    assert layer.send_response(txn, ringing, 1.0) == [SendMessage(message=ringing, target=UDP)]
    assert layer.receive(req, UDP, 1.5) == [SendMessage(message=ringing, target=UDP)]


def test_invite_server_non_2xx_timer_g_and_h(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    busy = response(req, 486)
    assert layer.send_response(txn, busy, 1.0) == [SendMessage(message=busy, target=UDP)]
    assert txn.state is State.COMPLETED
    timeline = run_timers(layer, 1000.0)
    # G: T1, 2T1 … capped at T2, from the final response; H at 64*T1 without ACK.
    assert send_times(timeline) == [1.0 + t for t in geometric(T1, T2, 64 * T1)]
    assert all(e.message is busy for _, e in timeline if isinstance(e, SendMessage))
    assert timeline[-1] == (1.0 + 64 * T1, TransactionTerminated(txn=txn, reason="timer_h"))


def test_invite_server_retransmission_in_completed_resends_final(
    layer: TransactionLayer,
) -> None:
    txn, req, _ = start_server(layer)
    busy = response(req, 486)
    layer.send_response(txn, busy, 1.0)
    assert layer.receive(req, UDP, 1.1) == [SendMessage(message=busy, target=UDP)]


def test_invite_server_ack_confirms_and_timer_i(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    layer.send_response(txn, response(req, 486), 1.0)
    run_timers(layer, 1.3)  # one G retransmission
    assert layer.receive(ack_for(req), UDP, 1.3) == []  # absorbed, not for the TU
    assert txn.state is State.CONFIRMED
    assert layer.receive(ack_for(req), UDP, 1.4) == []  # ACK retransmission absorbed
    assert layer.receive(req, UDP, 1.5) == []  # INVITE retransmission absorbed
    assert layer.get_timer() == 1.3 + T4  # Timer I; G and H are gone
    assert run_timers(layer, 1000.0) == [(1.3 + T4, TransactionTerminated(txn=txn))]


def test_invite_server_reliable_no_g_and_i_zero(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer, source=TCP, transport="TCP")
    busy = response(req, 603)
    assert layer.send_response(txn, busy, 1.0) == [SendMessage(message=busy, target=TCP)]
    assert layer.get_timer() == 1.0 + 64 * T1  # only H
    assert layer.receive(ack_for(req), TCP, 2.0) == [TransactionTerminated(txn=txn)]


def test_invite_server_2xx_accepted_state(layer: TransactionLayer) -> None:
    """RFC 6026 §7.1: Accepted absorbs INVITE retransmissions, passes ACKs to the TU, sends
    further 2xx from the TU, and ends with Timer L."""
    txn, req, _ = start_server(layer)
    ok = response(req, 200)
    assert layer.send_response(txn, ok, 1.0) == [SendMessage(message=ok, target=UDP)]
    assert txn.state is State.ACCEPTED
    assert layer.receive(req, UDP, 1.1) == []
    ack = ack_for(req, branch=new_branch())  # ACK for 2xx: new branch -> no transaction
    assert layer.receive(ack, UDP, 1.2) == [AckReceived(request=ack, source=UDP)]
    same_branch_ack = ack_for(req)  # some UAs reuse the INVITE's branch for the 2xx ACK
    src = Target("udp", UDP.host, 6000)
    assert layer.receive(same_branch_ack, src, 1.3) == [
        AckReceived(request=same_branch_ack, source=src)
    ]
    assert layer.send_response(txn, ok, 1.4) == [SendMessage(message=ok, target=UDP)]
    assert layer.send_response(txn, response(req, 486), 1.5) == []
    assert layer.stats["ignored"] == 1
    assert run_timers(layer, 1000.0) == [(1.0 + 64 * T1, TransactionTerminated(txn=txn))]
    assert layer.send_response(txn, ok, 100.0) == []  # terminated: ignored, never a crash


def test_ack_without_transaction_goes_to_tu(layer: TransactionLayer) -> None:
    ack = request("ACK", branch=new_branch(), to_tag="x")
    assert layer.receive(ack, UDP, 0.0) == [AckReceived(request=ack, source=UDP)]


def test_final_then_more_responses_ignored(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    layer.send_response(txn, response(req, 486), 1.0)
    assert layer.send_response(txn, response(req, 180), 1.1) == []
    assert layer.send_response(txn, response(req, 200), 1.2) == []
    assert layer.stats["ignored"] == 2


# --------------------------------------------------------------------------- CANCEL, matching
def test_cancel_matches_invite_server_transaction(layer: TransactionLayer) -> None:
    inv, req, _ = start_server(layer)
    cancel = request("CANCEL", branch=req.top_via.branch)
    events = layer.receive(cancel, UDP, 1.0)
    (rr,) = only(events, RequestReceived)
    assert rr.cancelled is inv
    assert rr.txn is not inv and rr.txn.request is cancel and not rr.txn.is_invite
    assert sent(events) == []  # no 100 Trying for a non-INVITE
    # The TU answers both; the CANCEL's 200 and the INVITE's 487 go their own ways.
    ok = response(cancel, 200)
    assert layer.send_response(rr.txn, ok, 1.0) == [SendMessage(message=ok, target=UDP)]
    assert inv.state is State.PROCEEDING
    gone = response(req, 487)
    assert layer.send_response(inv, gone, 1.0) == [SendMessage(message=gone, target=UDP)]
    # A retransmitted CANCEL is answered from its own transaction.
    assert layer.receive(cancel, UDP, 1.5) == [SendMessage(message=ok, target=UDP)]


def test_cancel_without_invite(layer: TransactionLayer) -> None:
    cancel = request("CANCEL", branch=new_branch())
    (rr,) = only(layer.receive(cancel, UDP, 0.0), RequestReceived)
    assert rr.cancelled is None


def test_cancel_for_finished_invite_has_no_match(layer: TransactionLayer) -> None:
    inv, req, _ = start_server(layer, source=TCP, transport="TCP")
    layer.send_response(inv, response(req, 486), 0.1)
    layer.receive(ack_for(req), TCP, 0.2)  # Confirmed -> I = 0 -> gone
    cancel = request("CANCEL", branch=req.top_via.branch, transport="TCP")
    (rr,) = only(layer.receive(cancel, TCP, 0.3), RequestReceived)
    assert rr.cancelled is None


def test_sent_by_is_part_of_the_key(layer: TransactionLayer) -> None:
    start_server(layer, branch="z9hG4bKsame")
    other = request("INVITE", branch="z9hG4bKsame", sent_by="198.51.100.77:5060")
    assert only(layer.receive(other, UDP, 0.1), RequestReceived)
    assert layer.counts()["server_invite"] == 2


def test_method_is_part_of_the_key(layer: TransactionLayer) -> None:
    start_server(layer, "OPTIONS", branch="z9hG4bKsame")
    assert only(layer.receive(request("INFO", branch="z9hG4bKsame"), UDP, 0.1), RequestReceived)


def test_rfc2543_matching_without_cookie(layer: TransactionLayer) -> None:
    inv, req, events = start_server(layer, branch=None)
    trying = sent(events)[0].message
    assert layer.receive(req, UDP, 0.5) == [SendMessage(message=trying, target=UDP)]
    cancel = request("CANCEL", branch=None)
    (rr,) = only(layer.receive(cancel, UDP, 0.6), RequestReceived)
    assert rr.cancelled is inv
    layer.send_response(inv, response(req, 487), 0.7)
    assert layer.receive(ack_for(req), UDP, 0.8) == []  # matches, absorbed
    assert inv.state is State.CONFIRMED
    other_call = request("INVITE", branch=None, call_id="another")
    assert only(layer.receive(other_call, UDP, 0.9), RequestReceived)


def test_rfc2543_different_cseq_is_a_new_transaction(layer: TransactionLayer) -> None:
    start_server(layer, "OPTIONS", branch="1234")  # a branch without the cookie
    again = request("OPTIONS", branch="1234", cseq=2)
    assert only(layer.receive(again, UDP, 0.1), RequestReceived)


# --------------------------------------------------------------------------- non-INVITE server
def test_non_invite_server_lifecycle_unreliable(layer: TransactionLayer) -> None:
    txn, req, events = start_server(layer, "REGISTER")
    assert sent(events) == [] and txn.state is State.TRYING
    assert layer.receive(req, UDP, 0.1) == []  # absorbed in Trying
    trying = response(req, 100)
    assert layer.send_response(txn, trying, 0.2) == [SendMessage(message=trying, target=UDP)]
    assert txn.state is State.PROCEEDING
    assert layer.receive(req, UDP, 0.3) == [SendMessage(message=trying, target=UDP)]
    ok = response(req, 200)
    assert layer.send_response(txn, ok, 1.0) == [SendMessage(message=ok, target=UDP)]
    assert txn.state is State.COMPLETED and txn.last_response is ok
    assert layer.receive(req, UDP, 1.5) == [SendMessage(message=ok, target=UDP)]
    assert layer.send_response(txn, response(req, 500), 1.6) == []
    assert layer.get_timer() == 1.0 + 64 * T1  # Timer J
    assert layer.handle_timer(1.0 + 64 * T1 - 0.01) == []
    assert layer.handle_timer(1.0 + 64 * T1) == [TransactionTerminated(txn=txn)]
    # After J, the same request is a new transaction.
    assert only(layer.receive(req, UDP, 50.0), RequestReceived)


def test_non_invite_server_reliable_j_is_zero(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer, "OPTIONS", source=TCP, transport="TCP")
    ok = response(req, 200)
    assert layer.send_response(txn, ok, 1.0) == [
        SendMessage(message=ok, target=TCP),
        TransactionTerminated(txn=txn),
    ]
    assert layer.counts()["server_non_invite"] == 0


def test_non_invite_server_never_arms_timers_before_final(layer: TransactionLayer) -> None:
    start_server(layer, "OPTIONS")
    assert layer.get_timer() is None


# --------------------------------------------------------------------------- response target
def test_response_target_udp_uses_via_port_without_rport(layer: TransactionLayer) -> None:
    src = Target("udp", "203.0.113.9", 31000)  # NAT: the packet came from another port
    txn, _, events = start_server(layer, source=src, sent_by="10.0.0.2:5062")
    assert txn.response_target == Target("udp", "203.0.113.9", 5062)  # §18.2.2: received+port
    assert sent(events)[0].target == Target("udp", "203.0.113.9", 5062)


def test_response_target_default_port(layer: TransactionLayer) -> None:
    src = Target("udp", "203.0.113.9", 31000)
    txn, _, _ = start_server(layer, source=src, sent_by="10.0.0.2")
    assert txn.response_target == Target("udp", "203.0.113.9", 5060)


def test_response_target_rport_uses_source(layer: TransactionLayer) -> None:
    src = Target("udp", "203.0.113.9", 31000)
    txn, _, _ = start_server(layer, source=src, sent_by="10.0.0.2:5062", via_params=";rport")
    assert txn.response_target == src  # RFC 3581


def test_response_target_stream_reuses_connection(layer: TransactionLayer) -> None:
    txn, _, events = start_server(layer, source=TCP, transport="TCP", sent_by="10.0.0.2:5062")
    assert txn.response_target == TCP and sent(events)[0].target.conn_id == 7


# --------------------------------------------------------------------------- transport errors
def test_transport_error_times_out_client_transactions(layer: TransactionLayer) -> None:
    a, _, _ = start_client(layer, "INVITE", target=DOWN_TCP)
    b, _, _ = start_client(layer, "OPTIONS", target=DOWN_TCP)
    c, _, _ = start_client(layer, "OPTIONS", target=DOWN)
    events = layer.transport_error(Target("tcp", "x", 1, conn_id=9), 1.0)
    assert TransactionTimeout(txn=a) in events and TransactionTimeout(txn=b) in events
    assert TransactionTerminated(txn=a, reason="transport_error") in events
    assert c.state is State.TRYING
    assert layer.counts()["client_invite"] == 0 and layer.counts()["client_non_invite"] == 1


def test_transport_error_after_final_is_silent(layer: TransactionLayer) -> None:
    txn, req, _ = start_client(layer, "OPTIONS")
    layer.receive(response(req, 200), DOWN, 0.5)
    assert layer.transport_error(DOWN, 1.0) == [
        TransactionTerminated(txn=txn, reason="transport_error")
    ]


def test_transport_error_ends_server_transactions(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    layer.send_response(txn, response(req, 486), 0.5)
    events = layer.transport_error(Target("udp", UDP.host, UDP.port), 1.0)
    assert events == [TransactionTerminated(txn=txn, reason="transport_error")]
    assert layer.get_timer() is None
    assert layer.transport_error(UDP, 2.0) == []


# --------------------------------------------------------------------------- robustness
def test_malformed_messages_are_counted_not_raised(layer: TransactionLayer) -> None:
    no_via = Request(
        method="OPTIONS",
        uri="sip:x@example.com",
        headers=Headers([("Call-ID", "c"), ("CSeq", "1 OPTIONS")]),
    )
    assert layer.receive(no_via, UDP, 0.0) == []
    no_cseq = Response(
        status=200,
        reason="OK",
        headers=Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")]),
    )
    assert layer.receive(no_cseq, UDP, 0.0) == []
    assert layer.stats["malformed"] == 2


def test_counts_follow_lifecycles(layer: TransactionLayer) -> None:
    start_client(layer, "INVITE")
    start_client(layer, "OPTIONS")
    start_server(layer, "INVITE")
    start_server(layer, "BYE")
    assert layer.counts() == {
        "client_invite": 1,
        "client_non_invite": 1,
        "server_invite": 1,
        "server_non_invite": 1,
    }
    run_timers(layer, 1000.0)
    assert layer.counts()["client_invite"] == 0 and layer.counts()["client_non_invite"] == 0
    assert layer.counts()["server_invite"] == 1  # waits for the TU's answer


def test_lazy_deletion_heap_stays_bounded(layer: TransactionLayer) -> None:
    for i in range(5000):
        _, req, _ = start_client(layer, "OPTIONS", now=float(i) * 0.001)
        layer.receive(response(req, 200), DOWN, float(i) * 0.001)  # E and F cancelled
    assert len(layer._heap) < 4 * 5000 + 1024
    assert layer.get_timer() == pytest.approx(T4)  # the first Timer K
    run_timers(layer, 1000.0)
    assert layer.counts()["client_non_invite"] == 0 and layer.get_timer() is None


def test_find_helpers(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    assert layer.find_server(req) is txn
    assert layer.find_server(ack_for(req)) is txn
    ctx, creq, _ = start_client(layer, "OPTIONS")
    branch = creq.top_via.branch
    assert branch is not None and layer.find_client(branch, "OPTIONS") is ctx


def test_layer_works_with_default_timers() -> None:
    layer = TransactionLayer()
    start_client(layer, "INVITE")
    assert layer.get_timer() == 0.5
    timeline = run_timers(layer, 1000.0)
    assert timeline[-1][0] == 32.0  # Timer B = 64 * 0.5


def test_lingering_transactions_keep_their_messages_but_not_parsed_forms(
    layer: TransactionLayer,
) -> None:
    """Completed/Accepted transactions only absorb retransmissions: their messages drop the
    cached parsed headers (a smaller heap for the GC) once the layer takes its next input
    (not before: the TU is still handling the message that made them linger) and still
    resend byte-identical."""
    stxn, req, _ = start_server(layer, "BYE")
    ok = response(req, 200)
    wire = ok.to_bytes()
    assert req.cseq.method == "BYE"  # parsed (and cached) by the TU
    layer.send_response(stxn, ok, 0.0)
    assert stxn.state is State.COMPLETED
    assert "CSeq" in req.headers._cache  # the TU may still read them
    again = sent(layer.receive(req, UDP, 0.1))  # a retransmitted BYE: the 200 again
    assert not ok.headers._cache
    assert set(req.headers._cache) <= {"Via"}  # only what matching the retransmission read
    assert [s.message.to_bytes() for s in again] == [wire]
    assert stxn.request.top_via.branch == req.top_via.branch  # parsed again on demand

    ctxn, creq, _ = start_client(layer, "INVITE")
    ok = response(creq, 200)
    layer.receive(ok, DOWN, 0.2)
    assert ctxn.state is State.ACCEPTED
    assert creq.headers._cache and ok.headers._cache  # the TU is handed the 2xx with them
    layer.handle_timer(0.3)  # the next input: a timer
    assert not creq.headers._cache and not ok.headers._cache
    assert ctxn.request.cseq.method == "INVITE"


# --------------------------------------------------------------------------- pending INVITEs
def test_pending_invites_counts_invites_until_their_final_response(
    layer: TransactionLayer,
) -> None:
    """`pending_invites` (the overload control's cap): INVITE server transactions without a
    final response; provisional responses, retransmissions and non-INVITEs do not change it."""
    a, req_a, _ = start_server(layer)
    b, _, _ = start_server(layer)
    start_server(layer, "OPTIONS")
    assert layer.pending_invites == 2
    layer.send_response(a, response(req_a, 180), 0.0)
    layer.receive(req_a, UDP, 0.1)  # a retransmission
    assert layer.pending_invites == 2
    layer.send_response(a, response(req_a, 200), 0.2)  # Accepted (RFC 6026)
    assert layer.pending_invites == 1
    layer.transport_error(UDP, 0.3)  # b ends without a final response
    assert layer.pending_invites == 0
    assert b.state is State.TERMINATED


def test_pending_invites_after_a_non_2xx_and_its_ack(layer: TransactionLayer) -> None:
    txn, req, _ = start_server(layer)
    layer.send_response(txn, response(req, 486), 0.0)
    assert layer.pending_invites == 0
    layer.receive(ack_for(req), UDP, 0.1)
    run_timers(layer, 100.0)
    assert layer.pending_invites == 0 and layer.counts()["server_invite"] == 0
