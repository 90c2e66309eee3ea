"""The CDR tracker (billing.cdr): the records the proxy's events produce, one test per outcome
and per kind of call, with the decisions the real routing policy makes for them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.cdr import (
    CallRecords,
    CallStart,
    billable_seconds,
    describe,
    media_outcome,
    outcome_of,
)
from provisioning.model import DeviceKind, Forwarding, NumberOptions, Snapshot
from provisioning.records import CallDirection, CallOutcome, CallRecord, DeviceRole
from routing import Call, Decision, LiveState, decide
from routing.decisions import (
    Announce,
    Busy,
    Forward,
    Internal,
    Outbound,
    Reject,
    Ring,
    Voicemail,
    VoicemailMenu,
)
from routing.testing import ADDITIONAL, CONTRACT, TOLL_FREE, business_hours, office

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # Friday 10:00 in Tokyo
T19 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Friday 19:00 in Tokyo: after hours
CALLER = "+819011112222"
REGISTERED = frozenset("ABCDE")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def inbound(snap: Snapshot, dialled: str = "0312345678", **live: Any) -> tuple[Decision, Call]:
    call = Call.inbound(call_id="c1", dialled=dialled, caller_number=CALLER)
    state = LiveState(registered=live.get("registered", REGISTERED), channels=live.get("ch", {}))
    return decide(call, snap, state, live.get("now", T0)), call


def from_device(snap: Snapshot, device: str, dialled: str) -> tuple[Decision, Call]:
    call = Call.from_device(call_id="c1", device_id=device, dialled=dialled)
    return decide(call, snap, LiveState(registered=REGISTERED), T0), call


def start(tracker: CallRecords, snap: Snapshot, decision: Decision, call: Call) -> str:
    device = snap.devices.get(call.device_id) if call.device_id else None
    return tracker.started("c1", describe(decision, call, device, snap), now=at(0))


def tracker() -> CallRecords:
    ids = iter(f"cdr-{i}" for i in range(1000))
    return CallRecords(node="node-1", new_id=lambda: next(ids))


def finish(t: CallRecords, status: int, at_s: float, reason: str | None = None) -> CallRecord:
    record = t.ended("c1", now=at(at_s), status=status, reason=reason)
    assert record is not None
    assert "c1" not in t
    return record


# --------------------------------------------------------------------------- inbound
def test_answered_inbound_call_rings_the_group_and_bills_the_answered_time() -> None:
    snap = office()
    decision, call = inbound(snap)
    assert isinstance(decision, Ring)
    t = tracker()
    assert start(t, snap, decision, call) == "cdr-0"
    for device in "ABCDE":
        t.rang("c1", device, snap.devices[device].kind)
    t.answered("c1", now=at(4.5), device_id="A", kind=DeviceKind.DESK)
    t.answered("c1", now=at(5), device_id="C", kind=DeviceKind.APP)  # a later 2xx: ignored
    t.touched("c1", now=at(30))
    r = finish(t, 200, 64.6, "bye")
    assert (r.outcome, r.direction, r.tenant_id) == (
        CallOutcome.ANSWERED,
        CallDirection.INBOUND,
        "t1",
    )
    assert (r.dialled, r.number, r.caller, r.callee) == ("0312345678", CONTRACT, CALLER, CONTRACT)
    assert (r.answered_device, r.answered_device_kind) == ("A", DeviceKind.DESK)
    assert r.rang == tuple("ABCDE") and r.caller_device is None
    assert (r.answered_at, r.ended_at, r.billable_seconds) == (at(4.5), at(64.6), 61)
    assert (r.sip_status, r.end_reason, r.rule, r.node) == (200, "bye", "inbound-ring", "node-1")
    assert r.device_roles() == {"A": DeviceRole.ANSWERED, **{d: DeviceRole.RANG for d in "BCDE"}}
    assert r.rating is None and r.billing_month is None  # rating is the writer's job


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        (486, None, CallOutcome.BUSY),
        (600, None, CallOutcome.BUSY),
        (603, None, CallOutcome.BUSY),
        (480, None, CallOutcome.NO_ANSWER),
        (408, None, CallOutcome.NO_ANSWER),
        (487, "cancel", CallOutcome.CANCELLED),
        (487, None, CallOutcome.CANCELLED),
        (500, None, CallOutcome.FAILED),
        (503, None, CallOutcome.FAILED),
        (404, None, CallOutcome.FAILED),
    ],
)
def test_unanswered_inbound_outcomes(status: int, reason: str | None, outcome: CallOutcome) -> None:
    snap = office()
    decision, call = inbound(snap)
    t = tracker()
    start(t, snap, decision, call)
    t.rang("c1", "A", DeviceKind.DESK)
    r = finish(t, status, 20, reason)
    assert (r.outcome, r.sip_status, r.billable_seconds, r.answered_at) == (
        outcome,
        status,
        0,
        None,
    )
    assert r.device_roles() == {"A": DeviceRole.RANG}  # a missed call on A


def test_refused_inbound_call_names_the_rule_and_no_tenant_for_an_unknown_number() -> None:
    snap = office()
    decision, call = inbound(snap, dialled="0399999999")
    assert isinstance(decision, Reject)
    t = tracker()
    start(t, snap, decision, call)
    r = finish(t, decision.status, 0)
    assert (r.outcome, r.rule, r.tenant_id, r.number) == (
        CallOutcome.REFUSED, "inbound-unknown-number", None, None,
    )  # fmt: skip


def test_after_hours_announcement() -> None:
    snap = office(
        contract={"options": NumberOptions(after_hours=True), "after_hours": business_hours()}
    )
    decision, call = inbound(snap, now=T19)
    assert isinstance(decision, Announce)
    t = tracker()
    start(t, snap, decision, call)
    t.handed_to_media("c1", media_outcome(decision))
    t.answered("c1", now=at(1))  # the media service answers
    r = finish(t, 200, 16, "bye")
    assert (r.outcome, r.rule, r.answered_device, r.billable_seconds) == (
        CallOutcome.ANNOUNCEMENT, "after-hours-announce", None, 15,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("voicemail", "outcome"), [(False, CallOutcome.BUSY_MESSAGE), (True, CallOutcome.VOICEMAIL)]
)
def test_every_channel_busy(voicemail: bool, outcome: CallOutcome) -> None:
    snap = office(contract={"options": NumberOptions(voicemail=voicemail)})
    decision, call = inbound(snap, ch={"t1": 5})
    assert isinstance(decision, Busy)
    assert media_outcome(decision) is outcome
    t = tracker()
    start(t, snap, decision, call)
    t.handed_to_media("c1", media_outcome(decision))
    # the busy message is early media then 486; the caller may also hang up first (487)
    r = finish(t, 486 if not voicemail else 200, 8, None if not voicemail else "bye")
    assert r.outcome is outcome and r.rule == "inbound-channels-full"


def test_busy_message_wins_over_a_cancel_by_the_caller() -> None:
    snap = office()
    decision, call = inbound(snap, ch={"t1": 5})
    t = tracker()
    start(t, snap, decision, call)
    t.handed_to_media("c1", CallOutcome.BUSY_MESSAGE)
    assert finish(t, 487, 3, "cancel").outcome is CallOutcome.BUSY_MESSAGE


def test_voicemail_after_no_answer_keeps_the_ring() -> None:
    snap = office(contract={"options": NumberOptions(voicemail=True)})
    decision, call = inbound(snap)
    assert isinstance(decision, Ring)
    assert media_outcome(decision) is CallOutcome.VOICEMAIL  # the no-answer diversion
    t = tracker()
    start(t, snap, decision, call)
    t.rang("c1", "A", DeviceKind.DESK)
    t.handed_to_media("c1", CallOutcome.VOICEMAIL)
    t.answered("c1", now=at(15))
    r = finish(t, 200, 40, "bye")
    assert (r.outcome, r.rang, r.answered_device, r.billable_seconds) == (
        CallOutcome.VOICEMAIL, ("A",), None, 25,
    )  # fmt: skip


def test_voicemail_at_once_when_nobody_is_registered() -> None:
    snap = office(contract={"options": NumberOptions(voicemail=True)})
    decision, call = inbound(snap, registered=frozenset())
    assert isinstance(decision, Voicemail)
    t = tracker()
    start(t, snap, decision, call)
    t.handed_to_media("c1", media_outcome(decision))
    t.answered("c1", now=at(0.5))
    assert finish(t, 200, 10, "bye").outcome is CallOutcome.VOICEMAIL


def test_forwarded_call_keeps_the_original_caller_and_its_leg() -> None:
    fwd = {
        "options": NumberOptions(forwarding=True),
        "forwarding": Forwarding(enabled=True, target="090-1111-3333"),
    }
    snap = office(contract=fwd)
    decision, call = inbound(snap)
    assert isinstance(decision, Forward)
    t = tracker()
    start(t, snap, decision, call)
    t.answered("c1", now=at(6))  # the forward target answered through the carrier
    r = finish(t, 200, 66, "bye")
    assert (r.direction, r.outcome, r.caller, r.callee) == (
        CallDirection.FORWARDED, CallOutcome.ANSWERED, CALLER, "+819011113333",
    )  # fmt: skip
    assert (r.forwarded_to, r.presented_number, r.number) == ("+819011113333", CONTRACT, CONTRACT)
    assert (r.billable_seconds, r.recorded, r.rang) == (60, False, ())
    # the ring group's IDs show it in their history, although none rang
    assert r.shown_to == tuple("ABCDE")
    assert set(r.device_roles().values()) == {DeviceRole.SHOWN}


def test_toll_free_inbound_keeps_the_carrier_category() -> None:
    snap = office()
    call = Call.inbound(call_id="c1", dialled="0120123456", caller_number=CALLER)
    decision = decide(call, snap, LiveState(registered=REGISTERED), T0)
    start_ = describe(decision, call, None, snap, caller_category="payphone")
    assert (start_.number, start_.caller_category) == (TOLL_FREE, "payphone")


# --------------------------------------------------------------------------- outbound
@pytest.mark.parametrize(
    ("device", "kind", "plan"),
    [("C", DeviceKind.APP, True), ("A", DeviceKind.DESK, False), ("B", DeviceKind.ATA, False)],
)
def test_outbound_from_app_desk_and_ata(device: str, kind: DeviceKind, plan: bool) -> None:
    snap = office()
    if plan:
        devices = {**snap.devices, device: replace(snap.devices[device], free_calls_10min=True)}
        snap = Snapshot.build(
            version=1, realm="test", tenants=list(snap.tenants.values()),
            devices=list(devices.values()), numbers=list(snap.numbers.values()), gateways=[],
        )  # fmt: skip
    decision, call = from_device(snap, device, "09011114444")
    assert isinstance(decision, Outbound)
    t = tracker()
    start(t, snap, decision, call)
    t.answered("c1", now=at(3))
    r = finish(t, 200, 3 + 600.2, "bye")
    presented = ADDITIONAL if device == "C" else CONTRACT
    assert (r.direction, r.outcome, r.callee, r.presented_number, r.number) == (
        CallDirection.OUTBOUND, CallOutcome.ANSWERED, "+819011114444", presented, presented,
    )  # fmt: skip
    assert (r.caller_device, r.caller_device_kind, r.has_plan) == (device, kind, plan)
    assert (r.billable_seconds, r.answered_device, r.rule) == (601, None, "outbound")
    assert r.device_roles() == {device: DeviceRole.CALLER}


def test_outbound_emergency_is_refused() -> None:
    snap = office()
    decision, call = from_device(snap, "C", "110")
    assert isinstance(decision, Reject)
    t = tracker()
    start(t, snap, decision, call)
    r = finish(t, decision.status, 0)
    assert (r.outcome, r.direction, r.rule, r.tenant_id, r.caller_device) == (
        CallOutcome.REFUSED, CallDirection.OUTBOUND, "outbound-emergency", "t1", "C",
    )  # fmt: skip


def test_outbound_cancelled_before_the_answer() -> None:
    snap = office()
    decision, call = from_device(snap, "A", "0311112222")
    t = tracker()
    start(t, snap, decision, call)
    r = finish(t, 487, 9, "cancel")
    assert (r.outcome, r.billable_seconds) == (CallOutcome.CANCELLED, 0)


def test_internal_call_between_ids() -> None:
    snap = office()
    decision, call = from_device(snap, "C", snap.devices["A"].username)
    assert isinstance(decision, Internal)
    t = tracker()
    start(t, snap, decision, call)
    t.rang("c1", "A", DeviceKind.DESK)
    t.answered("c1", now=at(2), device_id="A")
    r = finish(t, 200, 12, "bye")
    assert (r.direction, r.outcome, r.number, r.presented_number) == (
        CallDirection.INTERNAL, CallOutcome.ANSWERED, None, None,
    )  # fmt: skip
    assert r.answered_device_kind is DeviceKind.DESK  # learnt from the ring
    assert r.device_roles() == {"C": DeviceRole.CALLER, "A": DeviceRole.ANSWERED}


def test_voicemail_menu_is_an_internal_call_to_the_media_service() -> None:
    snap = office(contract={"options": NumberOptions(voicemail=True)})
    decision, call = from_device(snap, "A", "1417")
    assert isinstance(decision, VoicemailMenu)
    t = tracker()
    start(t, snap, decision, call)
    t.handed_to_media("c1", media_outcome(decision))
    t.answered("c1", now=at(1))
    r = finish(t, 200, 41, "bye")
    assert (r.direction, r.outcome, r.caller_device, r.number, r.billable_seconds) == (
        CallDirection.INTERNAL, CallOutcome.VOICEMAIL, "A", None, 40,
    )  # fmt: skip
    assert r.rule == "voicemail-menu"


def test_only_media_decisions_have_a_media_outcome() -> None:
    snap = office()
    decision, _ = from_device(snap, "C", "09011114444")
    assert isinstance(decision, Outbound)
    with pytest.raises(ValueError):
        media_outcome(decision)


def test_lost_channel_race_redescribes_the_call_and_keeps_its_id() -> None:
    snap = office()
    decision, call = inbound(snap)
    t = tracker()
    first = start(t, snap, decision, call)
    busy = Busy(tenant_id="t1", number=CONTRACT, then_voicemail=False, channels_in_use=5,
                channels=5, rule="inbound-ring-lost-channel-race")  # fmt: skip
    again = t.started("c1", describe(busy, call, None, snap), now=at(1))
    assert again == first
    t.handed_to_media("c1", media_outcome(busy))
    r = finish(t, 486, 5)
    assert (r.outcome, r.rule, r.started_at) == (
        CallOutcome.BUSY_MESSAGE, "inbound-ring-lost-channel-race", at(0),
    )  # fmt: skip


# --------------------------------------------------------------------------- lifecycle
def test_unknown_and_repeated_ends_give_nothing() -> None:
    t = tracker()
    assert t.ended("nope", now=at(0), status=200) is None
    t.rang("nope", "A", DeviceKind.APP)  # events of unknown calls are ignored
    t.answered("nope", now=at(0))
    snap = office()
    start(t, snap, *inbound(snap))
    assert finish(t, 480, 5).outcome is CallOutcome.NO_ANSWER
    assert t.ended("c1", now=at(6), status=200, reason="bye") is None  # BYE after the end


def test_expiry_ends_at_the_last_sign_of_life() -> None:
    snap = office()
    t = tracker()
    start(t, snap, *inbound(snap))
    t.answered("c1", now=at(10), device_id="A", kind=DeviceKind.DESK)
    t.touched("c1", now=at(70))
    assert t.expired(at(100)) == []  # not stale yet, not named
    (r,) = t.expired(at(7200), call_ids=["c1", "unknown"])
    assert (r.outcome, r.end_reason, r.ended_at, r.billable_seconds, r.sip_status) == (
        CallOutcome.ANSWERED, "expired", at(70), 60, 200,
    )  # fmt: skip
    assert len(t) == 0


def test_the_tracker_expires_calls_nobody_ended() -> None:
    snap = office()
    t = CallRecords(node="n", setup_ttl=timedelta(minutes=5), idle_ttl=timedelta(hours=2))
    t.started("ring", describe(*inbound(snap), None, snap), now=at(0))
    t.started("talk", describe(*inbound(snap), None, snap), now=at(0))
    t.answered("talk", now=at(5), device_id="A")
    assert t.expired(at(299)) == []
    (unanswered,) = t.expired(at(301))
    assert (unanswered.call_id, unanswered.outcome, unanswered.ended_at) == (
        "ring", CallOutcome.FAILED, at(0),
    )  # fmt: skip
    assert t.expired(at(5 + 7199)) == []
    (talk,) = t.expired(at(5 + 7201))
    assert (talk.call_id, talk.billable_seconds) == ("talk", 0)  # no sign of life after answer


def test_drain_ends_every_open_call_at_its_last_sign_of_life() -> None:
    snap = office()
    t = tracker()
    described = describe(*inbound(snap), None, snap)
    t.started("talk", described, now=at(0))
    t.answered("talk", now=at(2), device_id="A", kind=DeviceKind.DESK)
    t.touched("talk", now=at(50))
    t.started("ring", described, now=at(10))
    records = {r.call_id: r for r in t.drain()}
    assert len(t) == 0 and set(records) == {"talk", "ring"}
    talk, ring = records["talk"], records["ring"]
    assert (talk.outcome, talk.billable_seconds, talk.end_reason) == (
        CallOutcome.ANSWERED, 48, "shutdown",
    )  # fmt: skip
    assert (ring.outcome, ring.ended_at, ring.sip_status) == (CallOutcome.FAILED, at(10), None)


def test_memory_is_bounded_and_evictions_are_handed_over() -> None:
    evicted: list[CallRecord] = []
    t = CallRecords(node="n", limit=3, on_evicted=evicted.append)
    snap = office()
    decision, call = inbound(snap)
    described = describe(decision, call, None, snap)
    ids = [t.started(f"c{i}", described, now=at(i)) for i in range(5)]
    assert len(t) == 3 and t.evicted == 2 and len(set(ids)) == 5
    assert [(r.call_id, r.end_reason) for r in evicted] == [("c0", "evicted"), ("c1", "evicted")]
    assert "c0" not in t and "c4" in t


def test_cdr_ids_are_uuids_by_default() -> None:
    import uuid

    t = CallRecords(node="n")
    snap = office()
    cdr_id = t.started("x", describe(*inbound(snap), None, snap), now=at(0))
    assert uuid.UUID(cdr_id).version == 4


def test_media_outcomes_are_checked() -> None:
    t = tracker()
    with pytest.raises(ValueError):
        t.handed_to_media("c1", CallOutcome.ANSWERED)


# --------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(
    ("answer", "end", "seconds"),
    [
        (None, 10.0, 0),
        (0.0, 0.0, 0),
        (0.0, 0.2, 1),
        (0.0, 30.0, 30),
        (0.0, 30.000001, 31),
        (5, 4, 0),
    ],
)
def test_billable_seconds_count_a_started_second(
    answer: float | None, end: float, seconds: int
) -> None:
    assert billable_seconds(None if answer is None else at(answer), at(end)) == seconds


def test_outcome_precedence() -> None:
    base: dict[str, Any] = {"media": None, "answered": False, "status": 486, "reason": None}
    assert outcome_of(refused=True, **{**base, "answered": True}) is CallOutcome.REFUSED
    media = {**base, "media": CallOutcome.VOICEMAIL, "answered": True}
    assert outcome_of(refused=False, **media) is CallOutcome.VOICEMAIL
    assert outcome_of(refused=False, **{**base, "answered": True}) is CallOutcome.ANSWERED
    assert outcome_of(refused=False, **{**base, "reason": "cancel"}) is CallOutcome.CANCELLED
    assert outcome_of(refused=False, **base) is CallOutcome.BUSY
    assert outcome_of(refused=False, **{**base, "status": None}) is CallOutcome.FAILED


def test_a_call_start_is_plain_data() -> None:
    s = CallStart(direction=CallDirection.INBOUND, tenant_id=None, dialled="")
    with pytest.raises(AttributeError):
        s.dialled = "x"  # type: ignore[misc]


def test_cdr_ids_are_distinct_uuid4s_within_and_across_trackers() -> None:
    import uuid

    from billing.cdr import cdr_ids

    one, two = cdr_ids(), cdr_ids()
    ids = [one() for _ in range(10_000)] + [two() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert str(parsed[0])[:24] != str(parsed[-1])[:24]  # random per tracker
