"""The ng client state machine with a fake clock: retransmissions, timeouts, duplicates,
error replies, ICMP."""

from __future__ import annotations

import pytest

from media.relay.errors import NgRefused, NgTimeout, NgUnreachable
from media.relay.ng import Ping, Query, decode_message, encode_message
from media.relay.transactions import Completed, Failed, NgTransactions


def reply_to(datagram: bytes, body: dict[str, object]) -> bytes:
    cookie, _ = decode_message(datagram)
    return encode_message(cookie, body)  # type: ignore[arg-type]


def events(tx: NgTransactions) -> list[Completed | Failed]:
    out = []
    while (event := tx.next_event()) is not None:
        out.append(event)
    return out


def test_request_is_sent_at_once_and_completed_by_its_reply() -> None:
    tx = NgTransactions(token="t")
    cookie = tx.start(Ping(), 10.0)
    [sent] = tx.datagrams_to_send()
    assert sent == b"t_1 d7:command4:pinge" and cookie == "t_1"
    assert tx.next_timer() == pytest.approx(10.2)
    tx.receive_datagram(reply_to(sent, {"result": "pong"}), 10.05)
    [done] = events(tx)
    assert isinstance(done, Completed)
    assert done.reply == {"result": b"pong"} and done.latency == pytest.approx(0.05)
    assert done.attempts == 1 and tx.next_timer() is None and tx.pending() == 0


def test_retransmits_with_the_same_cookie_then_times_out_after_one_second() -> None:
    tx = NgTransactions(token="t")
    tx.start(Ping(), 0.0)
    first = tx.datagrams_to_send()
    times = []
    while (when := tx.next_timer()) is not None:
        times.append(when)
        tx.handle_timer(when)
        assert tx.datagrams_to_send() in ([], first)  # same bytes, same cookie
    assert times == pytest.approx([0.2, 0.5, 1.0])
    [failed] = events(tx)
    assert isinstance(failed, Failed) and isinstance(failed.error, NgTimeout)
    assert failed.kind == "timeout" and failed.attempts == 3
    assert failed.latency == pytest.approx(1.0)
    assert tx.stats.sent == 3 and tx.stats.retransmitted == 2 and tx.stats.timeouts == 1


def test_early_timer_does_nothing() -> None:
    tx = NgTransactions(token="t")
    tx.start(Ping(), 0.0)
    tx.datagrams_to_send()
    tx.handle_timer(0.1)
    assert tx.datagrams_to_send() == [] and events(tx) == []


def test_reply_to_a_retransmission_completes_and_a_duplicate_is_ignored() -> None:
    tx = NgTransactions(token="t")
    tx.start(Query(call_id="c"), 0.0)
    [sent] = tx.datagrams_to_send()
    tx.handle_timer(0.2)
    assert tx.datagrams_to_send() == [sent]
    reply = reply_to(sent, {"result": "ok", "created": 1})
    tx.receive_datagram(reply, 0.25)
    tx.receive_datagram(reply, 0.26)  # the answer to the first send, late
    [done] = events(tx)
    assert isinstance(done, Completed) and done.attempts == 2
    assert tx.stats.duplicates == 1 and tx.stats.completed == 1
    tx.handle_timer(5.0)
    assert events(tx) == []  # nothing left to time out


def test_replies_are_matched_by_cookie_not_by_order() -> None:
    tx = NgTransactions(token="t")
    a = tx.start(Query(call_id="a"), 0.0)
    b = tx.start(Query(call_id="b"), 0.0)
    sent_a, sent_b = tx.datagrams_to_send()
    tx.receive_datagram(reply_to(sent_b, {"result": "ok", "which": "b"}), 0.01)
    tx.receive_datagram(reply_to(sent_a, {"result": "ok", "which": "a"}), 0.02)
    done = events(tx)
    assert [(e.cookie, e.reply["which"]) for e in done if isinstance(e, Completed)] == [
        (b, b"b"),
        (a, b"a"),
    ]


def test_stray_and_malformed_datagrams_do_not_end_a_request() -> None:
    tx = NgTransactions(token="t")
    tx.start(Ping(), 0.0)
    [sent] = tx.datagrams_to_send()
    tx.receive_datagram(b"other_9 d6:result4:ponge", 0.01)
    tx.receive_datagram(b"garbage", 0.02)
    tx.receive_datagram(sent.split(b" ")[0] + b" d6:result", 0.03)  # truncated body
    assert events(tx) == [] and tx.pending() == 1
    assert tx.stats.stray == 1 and tx.stats.malformed == 2
    tx.receive_datagram(reply_to(sent, {"result": "pong"}), 0.04)
    assert isinstance(events(tx)[0], Completed)


def test_error_reply_is_a_refusal_with_the_reason() -> None:
    tx = NgTransactions(token="t")
    tx.start(Query(call_id="gone"), 0.0)
    [sent] = tx.datagrams_to_send()
    tx.receive_datagram(
        reply_to(sent, {"result": "error", "error-reason": "Unknown call-id"}), 0.01
    )
    [failed] = events(tx)
    assert isinstance(failed, Failed) and failed.kind == "refused"
    assert isinstance(failed.error, NgRefused) and failed.error.reason == "Unknown call-id"
    assert failed.command == "query"


def test_reply_without_result_fails_as_malformed() -> None:
    tx = NgTransactions(token="t")
    tx.start(Ping(), 0.0)
    [sent] = tx.datagrams_to_send()
    tx.receive_datagram(reply_to(sent, {"something": "else"}), 0.01)
    [failed] = events(tx)
    assert isinstance(failed, Failed) and failed.kind == "malformed"


def test_icmp_unreachable_fails_everything_pending_at_once() -> None:
    tx = NgTransactions(token="t")
    tx.start(Ping(), 0.0)
    tx.start(Query(call_id="c"), 0.0)
    tx.connection_refused(0.001)
    failed = events(tx)
    assert len(failed) == 2
    assert all(isinstance(e, Failed) and isinstance(e.error, NgUnreachable) for e in failed)
    assert tx.next_timer() is None and tx.stats.unreachable == 2


def test_cancelled_request_is_forgotten() -> None:
    tx = NgTransactions(token="t")
    cookie = tx.start(Ping(), 0.0)
    [sent] = tx.datagrams_to_send()
    tx.cancel(cookie)
    assert tx.next_timer() is None
    tx.receive_datagram(reply_to(sent, {"result": "pong"}), 0.1)
    assert events(tx) == [] and tx.stats.duplicates == 1


def test_cookies_differ_between_instances_and_requests() -> None:
    one, two = NgTransactions(), NgTransactions()
    cookies = {one.start(Ping(), 0), one.start(Ping(), 0), two.start(Ping(), 0)}
    assert len(cookies) == 3


def test_custom_schedule_and_validation() -> None:
    tx = NgTransactions(intervals=(0.1,), token="t")
    assert tx.timeout == pytest.approx(0.1)
    tx.start(Ping(), 0.0)
    tx.handle_timer(0.1)
    assert isinstance(events(tx)[0], Failed)
    with pytest.raises(ValueError):
        NgTransactions(intervals=())
    with pytest.raises(ValueError):
        NgTransactions(intervals=(0.1, 0.0))
