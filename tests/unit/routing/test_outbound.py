"""Calls from a device: barred destinations, internal calls, outbound through the carrier."""

from datetime import UTC, datetime
from typing import Any

import pytest

from provisioning.model import Forwarding, NumberOptions, TenantStatus
from routing import Call, Decision, DestinationKind, Internal, LiveState, Outbound, Reject, decide
from routing.outbound import EMERGENCY_WARNING
from routing.testing import (
    ADDITIONAL,
    CONTRACT,
    TOLL_FREE,
    business_hours,
    device,
    number,
    office,
    snapshot,
    tenant,
)

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Friday 19:00 in Tokyo: after hours
ALL = frozenset("ABCDE")


def dial(
    dialled: str,
    *,
    caller: str = "D",
    registered: frozenset[str] = ALL,
    in_use: int = 0,
    contract: dict[str, Any] | None = None,
    tenant_fields: dict[str, Any] | None = None,
) -> Decision:
    snap = office(contract=contract, tenant_fields=tenant_fields)
    live = LiveState(channels={"t1": in_use}, registered=registered)
    return decide(
        Call.from_device(call_id="c1", device_id=caller, dialled=dialled), snap, live, NOW
    )


@pytest.mark.parametrize(
    "dialled", ["110", "118", "119", "tel:110", "184110", "186119", "1-1-9", " 118 "]
)
@pytest.mark.parametrize(
    "situation",
    [
        {},
        {"in_use": 5},
        {"caller": "ghost"},
        {"tenant_fields": {"status": TenantStatus.SUSPENDED}},
        {"registered": frozenset()},
    ],
)
def test_emergency_numbers_are_always_refused(dialled: str, situation: dict[str, Any]) -> None:
    decision = dial(dialled, **situation)
    assert decision == Reject(
        status=403, reason="Forbidden", warning=EMERGENCY_WARNING, rule="outbound-emergency"
    )


@pytest.mark.parametrize(
    ("dialled", "status", "rule"),
    [
        ("+12125551234", 403, "outbound-international"),
        ("01012125551234", 403, "outbound-international"),
        ("001010121255512", 403, "outbound-international"),
        ("184+442071234567", 403, "outbound-international"),
        ("117", 403, "outbound-barred-short-code"),
        ("177", 403, "outbound-barred-short-code"),
        ("031234", 484, "outbound-incomplete"),
        ("user-Z", 404, "outbound-invalid"),
        ("", 404, "outbound-invalid"),
    ],
)
def test_refused_destinations(dialled: str, status: int, rule: str) -> None:
    decision = dial(dialled)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.rule, decision.tenant_id) == (status, rule, "t1")
    assert decision.warning


def test_international_refusal_says_so() -> None:
    decision = dial("+12125551234")
    assert isinstance(decision, Reject) and decision.warning is not None
    assert "international calls are not available" in decision.warning


@pytest.mark.parametrize(
    ("dialled", "destination", "kind"),
    [
        ("0355550000", "+81355550000", DestinationKind.LANDLINE),
        ("+81355550000", "+81355550000", DestinationKind.LANDLINE),
        ("090-1111-2222", "+819011112222", DestinationKind.MOBILE),
        ("05011112222", "+815011112222", DestinationKind.IP_PHONE),
        ("0570123456", "+81570123456", DestinationKind.NAVI_DIAL),
        ("0120999999", "+81120999999", DestinationKind.TOLL_FREE),
        ("08001234567", "+818001234567", DestinationKind.TOLL_FREE),
        ("104", "104", DestinationKind.DIRECTORY),
    ],
)
def test_outbound_through_the_carrier(
    dialled: str, destination: str, kind: DestinationKind
) -> None:
    decision = dial(dialled, caller="C")
    assert decision == Outbound(
        tenant_id="t1",
        device_id="C",
        destination=destination,
        destination_kind=kind,
        presented_number=ADDITIONAL,
        rule="outbound",
    )
    assert decision.takes_channel


@pytest.mark.parametrize(("prefix", "withhold"), [("", False), ("184", True), ("186", False)])
def test_184_withholds_the_caller_number(prefix: str, withhold: bool) -> None:
    decision = dial(prefix + "0355550000")
    assert isinstance(decision, Outbound)
    assert (decision.destination, decision.withhold_identity) == ("+81355550000", withhold)


@pytest.mark.parametrize(
    ("in_use", "outcome"), [(0, Outbound), (4, Outbound), (5, Reject), (6, Reject)]
)
def test_outbound_needs_a_free_channel(in_use: int, outcome: type) -> None:
    decision = dial("0355550000", in_use=in_use)
    assert type(decision) is outcome
    if isinstance(decision, Reject):
        assert (decision.status, decision.rule) == (486, "outbound-channels-full")


def test_outbound_ignores_after_hours_and_forwarding_of_the_presented_number() -> None:
    contract = {
        "options": NumberOptions(after_hours=True, forwarding=True),
        "after_hours": business_hours(),
        "forwarding": Forwarding(enabled=True, target="09011112222"),
    }
    assert isinstance(dial("0355550000", contract=contract), Outbound)


@pytest.mark.parametrize(("recording", "notice"), [(False, False), (True, False), (True, True)])
def test_outbound_recording_follows_the_presented_number(recording: bool, notice: bool) -> None:
    contract = {"options": NumberOptions(recording=recording), "recording_notice": notice}
    on_contract = dial("0355550000", caller="D", contract=contract)
    on_additional = dial("0355550000", caller="C", contract=contract)
    assert isinstance(on_contract, Outbound) and isinstance(on_additional, Outbound)
    assert (on_contract.record, on_contract.recording_notice) == (recording, notice)
    assert (on_additional.record, on_additional.recording_notice) == (False, False)


def _two_tenants(presented: str) -> Any:
    devices = [
        device("A", presented_number=presented),
        device("X", tenant_id="t2", presented_number="+81300000001"),
    ]
    numbers = [
        number(CONTRACT, "A"),
        number(TOLL_FREE, "A"),
        number("+81300000001", "X", tenant_id="t2"),
    ]
    return snapshot([tenant(), tenant("t2")], devices, numbers)


@pytest.mark.parametrize("presented", [TOLL_FREE, "+81300000001", "+81399999999"])
def test_toll_free_or_foreign_presented_number_falls_back_to_the_contract_number(
    presented: str,
) -> None:
    snap = _two_tenants(presented)
    call = Call.from_device(call_id="c1", device_id="A", dialled="0355550000")
    decision = decide(call, snap, LiveState(), NOW)
    assert isinstance(decision, Outbound)
    assert decision.presented_number == CONTRACT
    assert decision.anomalies == ("presented-number-invalid",)


def test_no_presentable_number_is_refused() -> None:
    snap = snapshot([tenant()], [device("A", presented_number=TOLL_FREE)], [number(TOLL_FREE, "A")])
    call = Call.from_device(call_id="c1", device_id="A", dialled="0355550000")
    decision = decide(call, snap, LiveState(), NOW)
    assert isinstance(decision, Reject) and decision.rule == "outbound-no-presentable-number"


@pytest.mark.parametrize(
    ("situation", "rule"),
    [
        ({"caller": "ghost"}, "outbound-unknown-device"),
        ({"tenant_fields": {"status": TenantStatus.SUSPENDED}}, "outbound-tenant-suspended"),
    ],
)
def test_unknown_device_and_suspended_tenant_are_refused(
    situation: dict[str, Any], rule: str
) -> None:
    decision = dial("0355550000", **situation)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.rule) == (403, rule)


# -- internal calls -------------------------------------------------------------------------


@pytest.mark.parametrize("in_use", [0, 5])
def test_calling_an_own_id_is_internal_and_takes_no_channel(in_use: int) -> None:
    decision = dial("user-A", in_use=in_use)
    assert decision == Internal(
        tenant_id="t1", device_id="D", device_ids=("A",), rule="internal-device"
    )
    assert not decision.takes_channel


@pytest.mark.parametrize(
    ("dialled", "registered", "status", "rule"),
    [
        ("user-D", ALL, 486, "internal-self"),
        ("user-A", frozenset("BCDE"), 480, "internal-unregistered"),
    ],
)
def test_internal_refusals(
    dialled: str, registered: frozenset[str], status: int, rule: str
) -> None:
    decision = dial(dialled, registered=registered)
    assert isinstance(decision, Reject) and (decision.status, decision.rule) == (status, rule)


def test_another_tenants_username_is_not_internal() -> None:
    snap = _two_tenants(CONTRACT)
    call = Call.from_device(call_id="c1", device_id="A", dialled="user-X")
    decision = decide(call, snap, LiveState(registered=frozenset("AX")), NOW)
    assert isinstance(decision, Reject) and decision.status == 404


def test_another_tenants_number_goes_out_through_the_carrier() -> None:
    snap = _two_tenants(CONTRACT)
    call = Call.from_device(call_id="c1", device_id="A", dialled="0300000001")
    decision = decide(call, snap, LiveState(registered=frozenset("AX")), NOW)
    assert isinstance(decision, Outbound) and decision.destination == "+81300000001"


@pytest.mark.parametrize(
    ("caller", "dialled", "registered", "rings"),
    [
        ("D", "0312345679", ALL, ("A", "B", "C")),
        ("A", "0312345678", ALL, ("B", "C", "D", "E")),
        ("E", "+81312345678", frozenset("CDE"), ("C", "D")),
        ("C", "03-1234-5678", frozenset("ECBA"), ("A", "B", "E")),  # desk, ATA, then apps
        ("A", "0120123456", ALL, ("D", "E")),
    ],
)
def test_dialling_an_own_number_rings_its_group_internally(
    caller: str, dialled: str, registered: frozenset[str], rings: tuple[str, ...]
) -> None:
    decision = dial(dialled, caller=caller, registered=registered, in_use=5)
    assert isinstance(decision, Internal)
    assert (decision.device_ids, decision.rule) == (rings, "internal-number")
    assert decision.via_number is not None and not decision.takes_channel


def test_own_number_with_nobody_else_registered() -> None:
    decision = dial("0312345679", caller="A", registered=frozenset("ADE"))
    assert isinstance(decision, Reject)
    assert (decision.status, decision.rule) == (480, "internal-number-unregistered")


# --------------------------------------------------------------------------- voicemail menu
def test_the_access_code_opens_the_menu_over_the_devices_mailboxes() -> None:
    from routing import VoicemailMenu

    # the contract number (rings A-E) has voicemail; the additional one (A-C) has not
    decision = dial("1417", caller="A", contract={"options": NumberOptions(voicemail=True)})
    assert decision == VoicemailMenu(
        rule="voicemail-menu", tenant_id="t1", device_id="A", mailboxes=(CONTRACT,)
    )
    assert not decision.takes_channel


def test_the_access_code_works_with_every_channel_in_use_and_nobody_registered() -> None:
    from routing import VoicemailMenu

    decision = dial(
        "1417", caller="D", in_use=5, registered=frozenset(),
        contract={"options": NumberOptions(voicemail=True)},
    )  # fmt: skip
    assert isinstance(decision, VoicemailMenu) and decision.mailboxes == (CONTRACT,)


def test_the_access_code_without_a_mailbox_is_404_with_a_warning() -> None:
    decision = dial("1417", caller="A")  # no number has voicemail
    assert isinstance(decision, Reject) and decision.status == 404
    assert decision.rule == "voicemail-menu-no-mailbox" and decision.warning


def test_the_access_code_is_a_setting() -> None:
    from routing import RoutingSettings, VoicemailMenu

    snap = office(contract={"options": NumberOptions(voicemail=True)})
    live = LiveState(channels={"t1": 0}, registered=ALL)
    call = Call.from_device(call_id="c1", device_id="A", dialled="*86")
    settings = RoutingSettings(voicemail_access_code="*86")
    assert isinstance(decide(call, snap, live, NOW, settings=settings), VoicemailMenu)
    # and 1417 is then an ordinary (invalid) number
    plain = Call.from_device(call_id="c2", device_id="A", dialled="1417")
    assert isinstance(decide(plain, snap, live, NOW, settings=settings), Reject)


@pytest.mark.parametrize("code", ["", "abc", "110", "1 4"])
def test_bad_access_codes_are_refused(code: str) -> None:
    from routing import RoutingSettings

    with pytest.raises(ValueError):
        RoutingSettings(voicemail_access_code=code)
