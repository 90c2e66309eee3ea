"""Inbound calls: every rule, and the precedence between them (routing.policy docstring)."""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from provisioning.model import DayKind, Forwarding, NumberOptions, SlotAction, TenantStatus
from routing import (
    Announce,
    Busy,
    Call,
    Decision,
    Forward,
    LiveState,
    NoAnswer,
    NoAnswerAction,
    Reject,
    Ring,
    RingStage,
    Voicemail,
    decide,
)
from routing.testing import ADDITIONAL, CONTRACT, TOLL_FREE, business_hours, office, schedule

WEEKDAY_10 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # Friday 10:00 in Tokyo
WEEKDAY_19 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Friday 19:00 in Tokyo
MOBILE = "+819011112222"
ALL = frozenset("ABCDE")

FWD = {
    "options": NumberOptions(forwarding=True),
    "forwarding": Forwarding(enabled=True, target="090-1111-2222"),
}
AH = {"options": NumberOptions(after_hours=True), "after_hours": business_hours()}


def route(
    contract: dict[str, Any] | None = None,
    *,
    registered: frozenset[str] = ALL,
    in_use: int = 0,
    now: datetime = WEEKDAY_10,
    dialled: str = "0312345678",
    tenant: dict[str, Any] | None = None,
    fax: bool = False,
) -> Decision:
    snap = office(contract=contract, tenant_fields=tenant)
    live = LiveState(channels={"t1": in_use}, registered=registered)
    call = Call.inbound(
        call_id="c1",
        dialled=dialled,
        caller_number="+81355550000",
        caller_display="Yamada",
        fax=fax,
    )
    return decide(call, snap, live, now)


def opts(**flags: bool) -> NumberOptions:
    return NumberOptions(**flags)


# (id, route() kwargs, expected type, expected rule)
PRECEDENCE: list[tuple[str, dict[str, Any], type, str]] = [
    ("unknown number", {"dialled": "0399999999"}, Reject, "inbound-unknown-number"),
    ("not a number", {"dialled": "110"}, Reject, "inbound-unknown-number"),
    (
        "suspended",
        {"tenant": {"status": TenantStatus.SUSPENDED}},
        Reject,
        "inbound-tenant-suspended",
    ),
    (
        "suspended beats forwarding",
        {"contract": FWD, "tenant": {"status": TenantStatus.SUSPENDED}},
        Reject,
        "inbound-tenant-suspended",
    ),
    ("forwarding", {"contract": FWD}, Forward, "inbound-forwarding"),
    (
        "forwarding with nobody registered",
        {"contract": FWD, "registered": frozenset()},
        Forward,
        "inbound-forwarding",
    ),
    (
        "forwarding beats after-hours",
        {
            "contract": {**AH, **FWD, "options": opts(forwarding=True, after_hours=True)},
            "now": WEEKDAY_19,
        },
        Forward,
        "inbound-forwarding",
    ),
    (
        "forwarding, channels full",
        {"contract": FWD, "in_use": 5},
        Busy,
        "inbound-forwarding-channels-full",
    ),
    (
        "forwarding switch on, no option",
        {"contract": {**FWD, "options": opts()}},
        Ring,
        "inbound-ring",
    ),
    (
        "forwarding option, switch off",
        {"contract": {**FWD, "forwarding": Forwarding(target=MOBILE)}},
        Ring,
        "inbound-ring",
    ),
    ("after-hours announce", {"contract": AH, "now": WEEKDAY_19}, Announce, "after-hours-announce"),
    (
        "after-hours beats channels",
        {"contract": AH, "now": WEEKDAY_19, "in_use": 5},
        Announce,
        "after-hours-announce",
    ),
    (
        "after-hours beats nobody registered",
        {"contract": AH, "now": WEEKDAY_19, "registered": frozenset()},
        Announce,
        "after-hours-announce",
    ),
    ("after-hours ring slot", {"contract": AH}, Ring, "inbound-ring"),
    (
        "after-hours switched off",
        {
            "contract": {**AH, "after_hours": replace(business_hours(), enabled=False)},
            "now": WEEKDAY_19,
        },
        Ring,
        "inbound-ring",
    ),
    (
        "after-hours without option",
        {"contract": {**AH, "options": opts()}, "now": WEEKDAY_19},
        Ring,
        "inbound-ring",
    ),
    ("channels full", {"in_use": 5}, Busy, "inbound-channels-full"),
    ("channels over-full", {"in_use": 9}, Busy, "inbound-channels-full"),
    ("one channel free", {"in_use": 4}, Ring, "inbound-ring"),
    (
        "channels beat nobody registered",
        {"in_use": 5, "registered": frozenset()},
        Busy,
        "inbound-channels-full",
    ),
    ("nobody registered", {"registered": frozenset()}, Reject, "no-registered-device"),
    (
        "nobody registered, voicemail",
        {"registered": frozenset(), "contract": {"options": opts(voicemail=True)}},
        Voicemail,
        "no-registered-device-voicemail",
    ),
    (
        "only outside the group registered",
        {"dialled": "0800-000-0000"},
        Reject,
        "inbound-unknown-number",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "kind", "rule"), [p[1:] for p in PRECEDENCE], ids=[p[0] for p in PRECEDENCE]
)
def test_precedence(kwargs: dict[str, Any], kind: type, rule: str) -> None:
    decision = route(**kwargs)
    assert type(decision) is kind
    assert decision.rule == rule


@pytest.mark.parametrize(
    "dialled", ["0312345678", "+81312345678", "03-1234-5678", "tel:+81-3-1234-5678", "81312345678"]
)
def test_dialled_number_forms(dialled: str) -> None:
    decision = route(dialled=dialled)
    assert isinstance(decision, Ring) and decision.number == CONTRACT


def test_unknown_number_is_404_and_suspended_is_480_without_warning() -> None:
    unknown = route(dialled="0399999999")
    suspended = route(tenant={"status": TenantStatus.SUSPENDED})
    assert isinstance(unknown, Reject) and isinstance(suspended, Reject)
    assert (unknown.status, suspended.status) == (404, 480)
    assert unknown.warning is None and suspended.warning is None


def test_forward_presents_the_dialled_number_and_keeps_the_caller() -> None:
    decision = route({**FWD, "options": opts(forwarding=True, recording=True, voicemail=True)})
    assert decision == Forward(
        tenant_id="t1",
        number=CONTRACT,
        target=MOBILE,
        presented_identity=CONTRACT,
        original_caller="+81355550000",
        original_display="Yamada",
        rule="inbound-forwarding",
    )
    assert decision.takes_channel and not decision.record


def test_forwarding_channels_full_offers_no_voicemail() -> None:
    decision = route({**FWD, "options": opts(forwarding=True, voicemail=True)}, in_use=5)
    assert isinstance(decision, Busy)
    assert not decision.then_voicemail and decision.mailbox is None


def test_forwarding_and_after_hours_both_on_is_flagged() -> None:
    both = {**AH, **FWD, "options": opts(forwarding=True, after_hours=True)}
    decision = route(both, now=WEEKDAY_19)
    assert isinstance(decision, Forward)
    assert decision.anomalies == ("forwarding-and-after-hours-both-on",)


@pytest.mark.parametrize(
    ("target", "anomaly"),
    [
        (None, "forwarding-without-target"),
        ("+12125551234", "forwarding-target-invalid"),
        ("110", "forwarding-target-invalid"),
        (CONTRACT, "forwarding-to-itself"),
    ],
)
def test_forwarding_without_usable_target_rings_and_is_flagged(
    target: str | None, anomaly: str
) -> None:
    decision = route({**FWD, "forwarding": Forwarding(enabled=True, target=target)})
    assert isinstance(decision, Ring)
    assert decision.anomalies == (anomaly,)


def test_fax_while_forwarding_rings_the_ata_only() -> None:
    decision = route(FWD, fax=True)
    assert isinstance(decision, Ring)
    assert decision.rule == "fax-while-forwarding"
    assert decision.stages == (RingStage(delay_s=0, device_ids=("B",)),)
    assert decision.no_answer.action is NoAnswerAction.REJECT


def test_fax_while_forwarding_without_a_registered_ata_is_forwarded() -> None:
    assert isinstance(route(FWD, fax=True, registered=frozenset("ACDE")), Forward)


def test_fax_without_forwarding_rings_as_usual() -> None:
    decision = route(fax=True)
    assert isinstance(decision, Ring) and decision.rule == "inbound-ring"


@pytest.mark.parametrize(("voicemail", "mailbox"), [(False, None), (True, CONTRACT)])
def test_announce_then_voicemail_when_the_number_has_it(
    voicemail: bool, mailbox: str | None
) -> None:
    options = opts(after_hours=True, voicemail=voicemail)
    hours = replace(business_hours(), announcement="prompt:7")
    decision = route({"options": options, "after_hours": hours}, now=WEEKDAY_19)
    assert decision == Announce(
        tenant_id="t1",
        number=CONTRACT,
        prompt="prompt:7",
        then_voicemail=voicemail,
        mailbox=mailbox,
        rule="after-hours-announce",
    )


FWD_SLOT = schedule(slots={DayKind.WEEKDAY: dict.fromkeys(range(36, 48), SlotAction.FORWARD)})


def test_forward_slot_forwards_with_the_switch_off() -> None:
    contract = {
        "options": opts(after_hours=True, forwarding=True),
        "after_hours": FWD_SLOT,
        "forwarding": Forwarding(enabled=False, target=MOBILE),
    }
    assert type(route(contract)) is Ring
    decision = route(contract, now=WEEKDAY_19)
    assert isinstance(decision, Forward) and decision.rule == "after-hours-forward"
    assert decision.target == MOBILE and not decision.record


def test_forward_slot_channels_full_offers_voicemail() -> None:
    contract = {
        "options": opts(after_hours=True, forwarding=True, voicemail=True),
        "after_hours": FWD_SLOT,
        "forwarding": Forwarding(target=MOBILE),
    }
    decision = route(contract, now=WEEKDAY_19, in_use=5)
    assert isinstance(decision, Busy) and decision.rule == "after-hours-forward-channels-full"
    assert decision.then_voicemail


@pytest.mark.parametrize(
    ("options", "target", "anomaly"),
    [
        (opts(after_hours=True), MOBILE, "forward-slot-without-forwarding-option"),
        (opts(after_hours=True, forwarding=True), None, "forwarding-without-target"),
    ],
)
def test_forward_slot_that_cannot_forward_rings_and_is_flagged(
    options: NumberOptions, target: str | None, anomaly: str
) -> None:
    contract = {
        "options": options,
        "after_hours": FWD_SLOT,
        "forwarding": Forwarding(target=target),
    }
    decision = route(contract, now=WEEKDAY_19)
    assert isinstance(decision, Ring) and anomaly in decision.anomalies


@pytest.mark.parametrize(("voicemail", "in_use"), [(False, 5), (True, 5), (True, 7)])
def test_busy_plays_the_fixed_message_or_voicemail(voicemail: bool, in_use: int) -> None:
    decision = route({"options": opts(voicemail=voicemail)}, in_use=in_use)
    assert decision == Busy(
        tenant_id="t1",
        number=CONTRACT,
        then_voicemail=voicemail,
        mailbox=CONTRACT if voicemail else None,
        channels_in_use=in_use,
        channels=5,
        rule="inbound-channels-full",
    )


# -- the ring group -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "stages"),
    [
        ("ABCDE", [(0, "AB", False), (3.0, "CDE", True)]),
        ("ACE", [(0, "A", False), (3.0, "CE", True)]),
        ("B", [(0, "B", False)]),
        ("AB", [(0, "AB", False)]),
        ("CDE", [(0, "CDE", False)]),  # no desk phone/ATA registered: apps ring at once
        ("D", [(0, "D", False)]),
    ],
)
def test_desk_phones_and_atas_ring_first(
    registered: str, stages: list[tuple[float, str, bool]]
) -> None:
    decision = route({"app_ring_delay": 3.0}, registered=frozenset(registered))
    assert isinstance(decision, Ring)
    expected = tuple(
        RingStage(delay_s=d, device_ids=tuple(ids), only_if_earlier_stage_ringing=f)
        for d, ids, f in stages
    )
    assert decision.stages == expected


@pytest.mark.parametrize(
    ("dialled", "registered", "rings"),
    [
        (ADDITIONAL, ALL, "ABC"),
        (TOLL_FREE, ALL, "DE"),
        (TOLL_FREE, frozenset("ABC"), ""),  # registered devices outside the group do not ring
        (CONTRACT, frozenset("ACE"), "ACE"),
    ],
)
def test_only_registered_devices_of_the_group_ring(
    dialled: str, registered: frozenset[str], rings: str
) -> None:
    decision = route(dialled=dialled, registered=registered)
    if rings:
        assert isinstance(decision, Ring)
        assert sorted(decision.device_ids) == list(rings)
    else:
        assert isinstance(decision, Reject) and decision.status == 480


def test_ring_carries_called_number_label_caller_and_channel() -> None:
    decision = route(dialled="03-1234-5679")
    assert isinstance(decision, Ring)
    assert (decision.called_number, decision.display_prefix) == (ADDITIONAL, "Sales")
    assert (decision.caller_number, decision.caller_display) == ("+81355550000", "Yamada")
    assert decision.takes_channel and not decision.record


def test_label_not_shown_unless_enabled() -> None:
    decision = route({"label": "Support", "label_in_display_name": False})
    assert isinstance(decision, Ring) and decision.display_prefix is None
    decision = route({"label": "Support", "label_in_display_name": True})
    assert isinstance(decision, Ring) and decision.display_prefix == "Support"


@pytest.mark.parametrize(
    ("contract", "no_answer", "anomalies"),
    [
        ({}, NoAnswer(after_s=60.0, action=NoAnswerAction.REJECT), ()),
        ({"max_ring_time": 45.0}, NoAnswer(after_s=45.0, action=NoAnswerAction.REJECT), ()),
        (
            {"max_ring_time": 0.0},
            NoAnswer(after_s=60.0, action=NoAnswerAction.REJECT),
            ("max-ring-time-invalid",),
        ),
        (
            {"options": opts(voicemail=True), "voicemail_ring_time": 20},
            NoAnswer(after_s=20, action=NoAnswerAction.VOICEMAIL, mailbox=CONTRACT),
            (),
        ),
        (
            {"options": opts(voicemail=True), "voicemail_ring_time": 7},
            NoAnswer(after_s=5, action=NoAnswerAction.VOICEMAIL, mailbox=CONTRACT),
            ("voicemail-ring-time-invalid:7",),
        ),
        (
            {"options": opts(voicemail=True), "voicemail_ring_time": 0},
            NoAnswer(after_s=5, action=NoAnswerAction.VOICEMAIL, mailbox=CONTRACT),
            ("voicemail-ring-time-invalid:0",),
        ),
    ],
)
def test_no_answer_policy(
    contract: dict[str, Any], no_answer: NoAnswer, anomalies: tuple[str, ...]
) -> None:
    decision = route(contract)
    assert isinstance(decision, Ring)
    assert (decision.no_answer, decision.anomalies) == (no_answer, anomalies)


@pytest.mark.parametrize(
    ("recording", "notice", "expected"),
    [
        (False, False, (False, False)),
        (True, False, (True, False)),
        (True, True, (True, True)),
        (False, True, (False, False)),
    ],
)
def test_recording_flags(recording: bool, notice: bool, expected: tuple[bool, bool]) -> None:
    decision = route({"options": opts(recording=recording), "recording_notice": notice})
    assert isinstance(decision, Ring)
    assert (decision.record, decision.recording_notice) == expected


def test_foreign_and_unknown_ring_group_members_never_ring() -> None:
    decision = route({"ring_group": ("A", "ghost", "A", "C")})
    assert isinstance(decision, Ring)
    assert decision.device_ids == ("A", "C")
    assert decision.anomalies == ("ring-group-foreign-device:ghost",)


def test_negative_app_delay_is_flagged_and_apps_ring_at_once() -> None:
    decision = route({"app_ring_delay": -1.0})
    assert isinstance(decision, Ring)
    assert decision.stages[1].delay_s == 0 and decision.anomalies == ("app-ring-delay-invalid",)


@pytest.mark.parametrize(
    ("contract", "flagged"),
    [
        (
            {"app_ring_delay": 10.0, "options": opts(voicemail=True), "voicemail_ring_time": 10},
            True,
        ),
        (
            {"app_ring_delay": 5.0, "options": opts(voicemail=True), "voicemail_ring_time": 10},
            False,
        ),
        ({"app_ring_delay": 60.0}, True),
        ({"app_ring_delay": 59.0}, False),
    ],
)
def test_app_delay_at_or_beyond_the_no_answer_timer_is_flagged(
    contract: dict[str, Any], flagged: bool
) -> None:
    decision = route(contract)
    assert isinstance(decision, Ring) and len(decision.stages) == 2
    anomaly = "apps-never-ring:app-ring-delay-exceeds-ring-time"
    assert (anomaly in decision.anomalies) is flagged
