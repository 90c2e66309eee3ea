"""Pure rule validation (provisioning.rules): every invariant at its edges, no I/O."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from provisioning import fields, phonebook_csv, rules
from provisioning.errors import ERROR_IDS, InvalidInput, ProvisioningError, RuleViolation
from provisioning.model import (
    AfterHours,
    DayKind,
    Device,
    DeviceKind,
    Forwarding,
    Number,
    NumberKind,
    NumberOptions,
    SlotAction,
    Tenant,
)

T = Tenant(id="t", name="T", identity_verified=True)
CONTRACT = "+81311110000"


def dev(
    i: int, kind: DeviceKind = DeviceKind.APP, presented: str = CONTRACT, **kw: object
) -> Device:
    return Device(
        id=f"d{i}",
        tenant_id="t",
        username=f"u{i}",
        kind=kind,
        ha1_md5="m",
        ha1_sha256="s",
        presented_number=presented,
        **kw,
    )  # type: ignore[arg-type]


def num(
    e164: str = CONTRACT,
    kind: NumberKind = NumberKind.CONTRACT,
    group: tuple[str, ...] = ("d0",),
    **kw: object,
) -> Number:
    return Number(e164=e164, tenant_id="t", kind=kind, ring_group=group, **kw)  # type: ignore[arg-type]


def additional(i: int) -> Number:
    return num(f"+8131111000{i}", NumberKind.ADDITIONAL)


def error_of(fn: object, *args: object) -> ProvisioningError:
    with pytest.raises(ProvisioningError) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.error_id in ERROR_IDS
    assert ERROR_IDS[e.value.error_id] == e.value.status
    return e.value


def devs(n: int) -> list[Device]:
    return [dev(i) for i in range(n)]


def test_minimal_tenant_is_valid() -> None:
    rules.check_tenant(T, devs(1), [num()])


def test_at_least_one_id() -> None:
    assert error_of(rules.check_tenant, T, [], [num(group=())]).error_id == "last-id"


@pytest.mark.parametrize("contracts", [0, 2])
def test_exactly_one_contract_number(contracts: int) -> None:
    numbers = [num(f"+8131111111{i}") for i in range(contracts)] or [additional(1)]
    err = error_of(rules.check_tenant, T, devs(3), numbers)
    assert err.error_id in ("contract-number-required", "contract-number-exists")


@pytest.mark.parametrize(
    ("ids", "extra", "error_id"),
    [
        (3, 2, None),
        (4, 2, None),
        (4, 3, "too-many-additional-numbers"),
        (1, 1, "additional-numbers-exceed-additional-ids"),
        (2, 1, None),
        (2, 2, "additional-numbers-exceed-additional-ids"),
    ],
)
def test_additional_numbers(ids: int, extra: int, error_id: str | None) -> None:
    numbers = [num(), *(additional(i) for i in range(extra))]
    if error_id is None:
        rules.check_tenant(T, devs(ids), numbers)
    else:
        err = error_of(rules.check_tenant, T, devs(ids), numbers)
        assert err.error_id == error_id and err.details["requested"] == extra


@pytest.mark.parametrize(("ids", "ok"), [(1, False), (2, True)])
def test_toll_free_needs_more_than_one_id(ids: int, ok: bool) -> None:
    numbers = [num(), num("+81120123456", NumberKind.TOLL_FREE)]
    if ok:
        rules.check_tenant(T, devs(ids), numbers)
    else:
        assert error_of(rules.check_tenant, T, devs(ids), numbers).error_id == (
            "toll-free-needs-several-ids"
        )


def test_toll_free_kind_matches_prefix() -> None:
    assert error_of(rules.check_number_kind, "+81120123456", NumberKind.ADDITIONAL).status == 400
    assert error_of(rules.check_number_kind, "+81311112222", NumberKind.TOLL_FREE).status == 400
    rules.check_number_kind("+81800123456", NumberKind.TOLL_FREE)


def test_presented_number() -> None:
    free = num("+81800123456", NumberKind.TOLL_FREE)
    for presented, error_id in (
        ("+81322223333", "presented-number-not-own"),
        ("+81800123456", "toll-free-not-presentable"),
    ):
        err = error_of(rules.check_tenant, T, [dev(0), dev(1, presented=presented)], [num(), free])
        assert err.error_id == error_id and err.details["device_id"] == "d1"


def test_free_calls_only_for_apps() -> None:
    rules.check_tenant(T, [dev(0, free_calls_10min=True)], [num()])
    for kind in (DeviceKind.DESK, DeviceKind.ATA):
        err = error_of(rules.check_tenant, T, [dev(0, kind, free_calls_10min=True)], [num()])
        assert err.error_id == "free-calls-apps-only"


@pytest.mark.parametrize(
    ("group", "error_id"),
    [
        ((), "ring-group-empty"),
        (("d9",), "ring-group-not-own-ids"),
        (("d0", "d0"), "ring-group-not-own-ids"),
    ],
)
def test_ring_group(group: tuple[str, ...], error_id: str) -> None:
    assert error_of(rules.check_tenant, T, devs(2), [num(group=group)]).error_id == error_id


@pytest.mark.parametrize(
    ("seconds", "ok"),
    [(0, False), (4, False), (5, True), (15, True), (30, True), (35, False), (12, False)],
)
def test_voicemail_ring_time(seconds: int, ok: bool) -> None:
    if ok:
        rules.check_ring_time(seconds)
    else:
        err = error_of(rules.check_ring_time, seconds)
        assert err.error_id == "invalid-ring-time" and err.details["requested"] == seconds


@pytest.mark.parametrize(("seconds", "ok"), [(-0.5, False), (0, True), (30, True), (30.5, False)])
def test_app_ring_delay(seconds: float, ok: bool) -> None:
    if ok:
        rules.check_app_ring_delay(seconds)
    else:
        assert error_of(rules.check_app_ring_delay, seconds).error_id == "invalid-ring-delay"


def schedule(action: SlotAction) -> AfterHours:
    slots = {k: (SlotAction.RING,) * 48 for k in DayKind}
    slots[DayKind.HOLIDAY] = (action,) * 48
    return AfterHours(slots=MappingProxyType(slots))


def test_forward_slots_need_the_forwarding_option() -> None:
    n = num(after_hours=schedule(SlotAction.FORWARD))
    err = error_of(rules.check_tenant, T, devs(1), [n])
    assert err.error_id == "forward-slot-needs-forwarding-option"
    assert err.details["forward_slots"] == 48
    ok = dataclasses.replace(n, options=NumberOptions(forwarding=True))
    rules.check_tenant(T, devs(1), [ok])


def test_announcement_is_a_template_or_own_prompt() -> None:
    ah = dataclasses.replace(AfterHours(), announcement="prompt:p1")
    err = error_of(rules.check_tenant, T, devs(1), [num(after_hours=ah)])
    assert err.error_id == "invalid-announcement"
    rules.check_tenant(T, devs(1), [num(after_hours=ah)], prompt_ids={"p1"})


def test_switches_need_options_and_forwarding_a_target() -> None:
    on = num(after_hours=AfterHours(enabled=True))
    assert error_of(rules.check_tenant, T, devs(1), [on]).error_id == "option-required"
    fwd = num(options=NumberOptions(forwarding=True), forwarding=Forwarding(enabled=True))
    assert error_of(rules.check_tenant, T, devs(1), [fwd]).error_id == "forwarding-needs-target"


def test_exclusion_both_ways() -> None:
    n = num(
        options=NumberOptions(after_hours=True, forwarding=True),
        after_hours=AfterHours(enabled=True),
        forwarding=Forwarding(target="+819011112222"),
    )
    n = rules.set_forwarding_enabled(n, True)
    assert n.forwarding.enabled and not n.after_hours.enabled
    n = rules.set_forwarding_enabled(n, False)
    assert not n.forwarding.enabled and not n.after_hours.enabled  # stays OFF
    n = rules.set_forwarding_enabled(n, True)
    n = rules.set_after_hours_enabled(n, True)
    assert n.after_hours.enabled and not n.forwarding.enabled
    n = rules.set_after_hours_enabled(n, False)
    assert not n.after_hours.enabled and not n.forwarding.enabled


def test_identity_required_for_configuration() -> None:
    unverified = dataclasses.replace(T, identity_verified=False)
    err = error_of(rules.require_identity, unverified, "forwarding")
    assert err.error_id == "identity-not-verified" and isinstance(err, RuleViolation)
    rules.require_identity(T, "forwarding")


def test_dropping_an_option_switches_it_off() -> None:
    n = num(
        options=NumberOptions(),
        after_hours=AfterHours(enabled=True),
        forwarding=Forwarding(enabled=True, target="+819011112222"),
    )
    n = rules.drop_options(n)
    assert not n.after_hours.enabled and not n.forwarding.enabled
    assert n.forwarding.target == "+819011112222"


def test_timezone_and_numbers() -> None:
    assert rules.check_timezone("Asia/Tokyo") == "Asia/Tokyo"
    assert error_of(rules.check_timezone, "Mars/Olympus").error_id == "invalid-timezone"
    assert error_of(rules.check_timezone, "../etc/passwd").error_id == "invalid-timezone"
    assert rules.parse_number("03-1234-5678") == "+81312345678"
    assert error_of(rules.parse_number, "110").error_id == "invalid-number"


def test_parse_slots() -> None:
    parsed = rules.parse_slots({"weekday": "R" * 18 + "A" * 30, DayKind.SUNDAY: ["forward"] * 48})
    assert parsed[DayKind.WEEKDAY][17:19] == (SlotAction.RING, SlotAction.ANNOUNCE)
    assert parsed[DayKind.SUNDAY] == (SlotAction.FORWARD,) * 48
    for bad in (
        {"weekday": "R" * 47},
        {"weekday": "X" * 48},
        {"someday": "R" * 48},
        {"weekday": "R" * 49},
    ):
        err = error_of(rules.parse_slots, bad)
        assert err.error_id == "invalid-schedule" and isinstance(err, InvalidInput)


def test_phonebook_csv() -> None:
    data = (
        "name,number\n"
        "Yamada,03-1111-2222,Yamada Shoten,boss\n"
        "\n"
        "NoNumber\n"
        "Bad,abc\n"
        ",0311112222\n"
        "Too,0311112222,a,b,c\n"
        "Intl,+1 (555) 123-4567\n"
    )
    entries, errors = phonebook_csv.parse_phonebook_csv(data)
    assert [e.name for e in entries] == ["Yamada", "Intl"]
    assert entries[0].company == "Yamada Shoten" and entries[0].note == "boss"
    assert [e["row"] for e in errors] == [4, 5, 6, 7]


def test_phonebook_csv_encodings() -> None:
    text = "氏名,番号\n山田,090-1234-5678\n"
    for data in (
        text,
        text.encode("utf-8"),
        "\ufeff".encode() + text.encode(),
        text.encode("cp932"),
    ):
        entries, errors = phonebook_csv.parse_phonebook_csv(data)
        assert errors == [] and [e.name for e in entries] == ["山田"]
    assert error_of(phonebook_csv.decode_csv, b"abc\x81\x7f").error_id == "phonebook-import-invalid"


def test_phonebook_entry_limits() -> None:
    fields.check_phonebook_entry("x" * 100, "03")
    assert error_of(fields.check_phonebook_entry, "x" * 101, "0311112222").status == 400
    assert error_of(fields.check_phonebook_entry, "x", "0").status == 400
    assert error_of(fields.check_phonebook_entry, "x", "1" * 21).status == 400
