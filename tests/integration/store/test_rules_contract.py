"""Every service rule at its edges, on both backends, through the Services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from provisioning.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ProvisioningError,
    RuleViolation,
)
from provisioning.model import DayKind, DeviceKind, NumberKind, SlotAction
from provisioning.services import (
    AfterHoursUpdate,
    DeviceCreate,
    DeviceUpdate,
    ForwardingUpdate,
    NumberCreate,
    NumberUpdate,
    OptionsUpdate,
    Principal,
    Services,
    TenantCreate,
    TenantUpdate,
)
from provisioning.store import Store

from .conftest import OP, dump, make_tenant, unique

pytestmark = pytest.mark.integration


def fresh_number(prefix: str = "03") -> str:
    n = int(unique("").strip() or 0)
    return f"{prefix}{7000_0000 + n:08d}" if prefix == "03" else f"{prefix}{100000 + n:06d}"


async def refused(
    store: Store, call: Awaitable[Any], error_id: str, status: int | None = None
) -> ProvisioningError:
    """The call is refused with `error_id` and the store is left exactly as it was."""
    before = await dump(store)
    with pytest.raises(ProvisioningError) as info:
        await call
    assert info.value.error_id == error_id, info.value
    if status is not None:
        assert info.value.status == status
    assert await dump(store) == before
    return info.value


async def add_device(svc: Services, tenant: str, kind: DeviceKind = DeviceKind.DESK) -> str:
    name = unique("x")
    d = await svc.devices.create_device(
        OP, tenant, DeviceCreate(kind=kind, username=name, password="password-x")
    )
    return d.id


# --------------------------------------------------------------------------- tenants, IDs


async def test_tenant_crud(svc: Services, store: Store) -> None:
    tid, contract, ids = await make_tenant(svc, name="Yamada Shoten")
    t = await svc.tenants.get_tenant(OP, tid)
    assert (t.name, t.timezone, t.identity_verified) == ("Yamada Shoten", "Asia/Tokyo", False)
    t = await svc.tenants.update_tenant(
        OP, tid, TenantUpdate(name="Yamada K.K.", timezone="UTC", identity_verified=True)
    )
    assert (t.name, t.timezone, t.identity_verified) == ("Yamada K.K.", "UTC", True)
    numbers = (await svc.numbers.list_numbers(OP, tid)).items
    assert [(n.e164, n.kind, n.ring_group) for n in numbers] == [
        (contract, NumberKind.CONTRACT, (ids[0],))
    ]
    await svc.tenants.delete_tenant(OP, tid)
    await refused(store, svc.tenants.get_tenant(OP, tid), "not-found", 404)
    assert (await dump(store))["devices"] == []


async def test_unknown_timezone_is_refused(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    await refused(
        store,
        svc.tenants.update_tenant(OP, tid, TenantUpdate(timezone="Asia/Nowhere")),
        "invalid-timezone",
        400,
    )


async def test_holidays(svc: Services) -> None:
    from datetime import date

    tid, _, _ = await make_tenant(svc)
    await svc.tenants.set_holidays(OP, tid, [date(2026, 12, 31), date(2027, 1, 1)])
    t = await svc.tenants.add_holiday(OP, tid, date(2027, 1, 2))
    assert len(t.holidays) == 3
    t = await svc.tenants.remove_holiday(OP, tid, date(2026, 12, 31))
    assert t.holidays == frozenset({date(2027, 1, 1), date(2027, 1, 2)})
    listed = [x for x in (await svc.tenants.list_tenants(OP, limit=500)).items if x.id == tid]
    assert listed == [t]


async def test_tenant_principal_scope(svc: Services, store: Store) -> None:
    a, _, _ = await make_tenant(svc)
    b, _, _ = await make_tenant(svc)
    me = Principal.for_tenant(a)
    await svc.tenants.get_tenant(me, a)
    with pytest.raises(Forbidden) as e:
        await svc.tenants.get_tenant(me, b)
    assert e.value.error_id == "wrong-tenant" and e.value.status == 403
    await refused(
        store,
        svc.tenants.update_tenant(me, a, TenantUpdate(identity_verified=True)),
        "operator-only",
        403,
    )
    assert [t.id for t in (await svc.tenants.list_tenants(me)).items] == [a]


async def test_device_crud_and_password_is_only_hashed(svc: Services, store: Store) -> None:
    from switch.sip.digest import ha1

    tid, contract, _ids = await make_tenant(svc)
    d = await svc.devices.create_device(
        OP,
        tid,
        DeviceCreate(
            kind=DeviceKind.ATA, username="fax-1", password="fax-password", display_name="FAX"
        ),
    )
    assert d.presented_number == contract and d.kind is DeviceKind.ATA
    assert not any("password" in f for f in type(d).__dataclass_fields__ if f != "id")
    rows = (await dump(store))["devices"]
    assert "fax-password" not in repr(rows)
    realm = await svc.realm.realm()
    row = dict(next(r for r in rows if dict(r)["id"] == d.id))
    assert row["ha1_md5"] == ha1("fax-1", realm, "fax-password", "MD5")
    assert row["ha1_sha256"] == ha1("fax-1", realm, "fax-password", "SHA-256")
    d2 = await svc.devices.update_device(
        OP, tid, d.id, DeviceUpdate(display_name="FAX 2", password="another-pass")
    )
    assert d2.display_name == "FAX 2"
    row = dict(next(r for r in (await dump(store))["devices"] if dict(r)["id"] == d.id))
    assert row["ha1_md5"] == ha1("fax-1", realm, "another-pass", "MD5")
    await svc.devices.delete_device(OP, tid, d.id)
    await refused(store, svc.devices.get_device(OP, tid, d.id), "not-found")


async def test_username_unique_service_wide(svc: Services, store: Store) -> None:
    a, _, _ = await make_tenant(svc)
    b, _, _ = await make_tenant(svc)
    await svc.devices.create_device(
        OP, a, DeviceCreate(kind=DeviceKind.APP, username="same", password="password-1")
    )
    await refused(
        store,
        svc.devices.create_device(
            OP, b, DeviceCreate(kind=DeviceKind.APP, username="same", password="password-2")
        ),
        "username-taken",
        409,
    )


async def test_free_calls_are_for_apps_only(svc: Services, store: Store) -> None:
    tid, _, ids = await make_tenant(svc, ids=2)
    await svc.devices.update_device(OP, tid, ids[0], DeviceUpdate(free_calls_10min=True))
    await refused(
        store,
        svc.devices.update_device(OP, tid, ids[1], DeviceUpdate(free_calls_10min=True)),
        "free-calls-apps-only",
    )


async def test_deleting_the_last_id_is_refused(svc: Services, store: Store) -> None:
    tid, _, ids = await make_tenant(svc)
    await refused(store, svc.devices.delete_device(OP, tid, ids[0]), "last-id", 409)


async def test_release_device_bumps_release_seq(svc: Services) -> None:
    from provisioning.live import build_snapshot

    tid, _, ids = await make_tenant(svc)
    d = await svc.devices.release_device(OP, tid, ids[0])
    assert d.release_seq == 1 and d.release_requested_at is not None
    d = await svc.devices.release_device(OP, tid, ids[0])
    assert d.release_seq == 2
    snap = await build_snapshot(svc.store)
    assert snap.devices[ids[0]].release_seq == 2


# --------------------------------------------------------------------------- numbers


async def test_two_additional_numbers_but_not_three(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc, ids=4)
    for _ in range(2):
        await svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
    err = await refused(
        store,
        svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number())),
        "too-many-additional-numbers",
        409,
    )
    assert err.details["limit"] == 2 and err.details["requested"] == 3
    assert "≤ 2" in err.details["rule"]


async def test_additional_numbers_never_exceed_additional_ids(svc: Services, store: Store) -> None:
    tid, _, _ids = await make_tenant(svc, ids=1)
    err = await refused(
        store,
        svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number())),
        "additional-numbers-exceed-additional-ids",
    )
    assert (err.details["limit"], err.details["requested"]) == (0, 1)
    await add_device(svc, tid)
    await svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
    err = await refused(
        store,
        svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number())),
        "additional-numbers-exceed-additional-ids",
    )
    assert (err.details["limit"], err.details["requested"]) == (1, 2)


async def test_deleting_an_id_may_not_break_the_number_rule(svc: Services, store: Store) -> None:
    tid, _, ids = await make_tenant(svc, ids=2)
    await svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
    await refused(
        store,
        svc.devices.delete_device(OP, tid, ids[1]),
        "additional-numbers-exceed-additional-ids",
    )


async def test_toll_free_needs_several_ids(svc: Services, store: Store) -> None:
    tid, _, _ids = await make_tenant(svc, ids=1)
    free = fresh_number("0120")
    err = await refused(
        store,
        svc.numbers.add_number(OP, tid, NumberCreate(number=free, kind=NumberKind.TOLL_FREE)),
        "toll-free-needs-several-ids",
    )
    assert err.details["ids"] == 1
    second = await add_device(svc, tid)
    n = await svc.numbers.add_number(OP, tid, NumberCreate(number=free, kind=NumberKind.TOLL_FREE))
    assert n.kind is NumberKind.TOLL_FREE and n.e164.startswith("+81120")
    await refused(store, svc.devices.delete_device(OP, tid, second), "toll-free-needs-several-ids")
    # 0800 too; a toll-free number of the wrong kind is malformed
    await refused(
        store,
        svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number("0800"))),
        "invalid-number",
        400,
    )


async def test_presented_number_is_own_and_not_toll_free(svc: Services, store: Store) -> None:
    tid, _, ids = await make_tenant(svc, ids=2)
    _, other_contract, _ = await make_tenant(svc)
    free = await svc.numbers.add_number(
        OP, tid, NumberCreate(number=fresh_number("0800"), kind=NumberKind.TOLL_FREE)
    )
    await refused(
        store,
        svc.devices.update_device(OP, tid, ids[0], DeviceUpdate(presented_number=other_contract)),
        "presented-number-not-own",
        409,
    )
    await refused(
        store,
        svc.devices.update_device(OP, tid, ids[0], DeviceUpdate(presented_number=free.e164)),
        "toll-free-not-presentable",
        409,
    )
    await refused(
        store,
        svc.devices.create_device(
            OP,
            tid,
            DeviceCreate(
                kind=DeviceKind.APP,
                username=unique("p"),
                password="password-p",
                presented_number=other_contract,
            ),
        ),
        "presented-number-not-own",
    )
    extra = await svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
    d = await svc.devices.update_device(OP, tid, ids[1], DeviceUpdate(presented_number=extra.e164))
    assert d.presented_number == extra.e164
    await refused(
        store, svc.numbers.delete_number(OP, tid, extra.e164), "number-presented-by-device"
    )


async def test_number_belongs_to_one_tenant(svc: Services, store: Store) -> None:
    a, _, _ = await make_tenant(svc, ids=2)
    b, _, _ = await make_tenant(svc, ids=2)
    national = fresh_number()
    await svc.numbers.add_number(OP, a, NumberCreate(number=national))
    e164 = "+81" + national[1:]
    await refused(
        store, svc.numbers.add_number(OP, b, NumberCreate(number=e164)), "number-taken", 409
    )
    await refused(
        store, svc.numbers.add_number(OP, a, NumberCreate(number=national)), "number-taken"
    )
    await refused(
        store,
        svc.tenants.create_tenant(
            OP,
            TenantCreate(
                name="Dup",
                contract_number=national[:2] + "-" + national[2:6] + "-" + national[6:],
                basic_device=DeviceCreate(
                    kind=DeviceKind.APP, username=unique("dup"), password="password-d"
                ),
            ),
        ),
        "number-taken",
    )


async def test_contract_number_stays(svc: Services, store: Store) -> None:
    tid, contract, _ = await make_tenant(svc, ids=2)
    await refused(store, svc.numbers.delete_number(OP, tid, contract), "contract-number-required")
    await refused(
        store,
        svc.numbers.add_number(
            OP, tid, NumberCreate(number=fresh_number(), kind=NumberKind.CONTRACT)
        ),
        "contract-number-exists",
    )


async def test_ring_groups(svc: Services, store: Store) -> None:
    tid, contract, ids = await make_tenant(svc, ids=3)
    assert (await svc.numbers.get_number(OP, tid, contract)).ring_group == tuple(
        ids
    )  # default: all
    extra = await svc.numbers.add_number(
        OP, tid, NumberCreate(number=fresh_number(), ring_group=[ids[2]])
    )
    assert extra.ring_group == (ids[2],)
    await refused(
        store,
        svc.numbers.update_number(OP, tid, contract, NumberUpdate(ring_group=[])),
        "ring-group-empty",
    )
    _, _, foreign = await make_tenant(svc)
    await refused(
        store,
        svc.numbers.update_number(OP, tid, contract, NumberUpdate(ring_group=[ids[0], foreign[0]])),
        "ring-group-not-own-ids",
    )
    # the only member of a group cannot go; a member of a larger group can
    await refused(store, svc.devices.delete_device(OP, tid, ids[2]), "ring-group-empty")
    await svc.numbers.update_number(OP, tid, extra.e164, NumberUpdate(ring_group=[ids[1], ids[2]]))
    await svc.numbers.delete_number(OP, tid, extra.e164)
    await svc.devices.delete_device(OP, tid, ids[2])
    assert (await svc.numbers.get_number(OP, tid, contract)).ring_group == tuple(ids[:2])
    # a new ID joins every group by default, or only those named
    new = await add_device(svc, tid)
    assert (await svc.numbers.get_number(OP, tid, contract)).ring_group == (*ids[:2], new)


@pytest.mark.parametrize(("seconds", "ok"), [(0, False), (5, True), (30, True), (35, False)])
async def test_voicemail_ring_time_edges(
    svc: Services, store: Store, seconds: int, ok: bool
) -> None:
    tid, contract, _ = await make_tenant(svc)
    call = svc.numbers.update_number(OP, tid, contract, NumberUpdate(voicemail_ring_time=seconds))
    if ok:
        assert (await call).voicemail_ring_time == seconds
    else:
        err = await refused(store, call, "invalid-ring-time", 400)
        assert err.details["requested"] == seconds


@pytest.mark.parametrize(("seconds", "ok"), [(0, True), (5, True), (30, True), (35, False)])
async def test_app_ring_delay_edges(svc: Services, store: Store, seconds: int, ok: bool) -> None:
    tid, contract, _ = await make_tenant(svc)
    call = svc.numbers.update_number(OP, tid, contract, NumberUpdate(app_ring_delay=seconds))
    if ok:
        assert (await call).app_ring_delay == seconds
    else:
        await refused(store, call, "invalid-ring-delay", 400)


# --------------------------------------------------------------------------- options


def week(action: SlotAction) -> dict[DayKind, list[SlotAction]]:
    return {DayKind.WEEKDAY: [SlotAction.RING] * 18 + [action] * 30}


async def verified_number(svc: Services, **options: bool) -> tuple[str, str]:
    tid, contract, _ = await make_tenant(svc, verified=True)
    if options:
        await svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(**options))
    return tid, contract


async def test_configuration_before_identity_check_is_refused(svc: Services, store: Store) -> None:
    tid, contract, _ = await make_tenant(svc, verified=False)
    await svc.number_settings.set_options(
        OP, tid, contract, OptionsUpdate(voicemail=True, recording=True)
    )
    for call in (
        svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(after_hours=True)),
        svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(forwarding=True)),
        svc.number_settings.set_after_hours(OP, tid, contract, AfterHoursUpdate(enabled=True)),
        svc.number_settings.set_after_hours(
            OP, tid, contract, AfterHoursUpdate(slots=week(SlotAction.ANNOUNCE))
        ),
        svc.number_settings.set_forwarding(
            OP, tid, contract, ForwardingUpdate(target="090-1234-5678")
        ),
    ):
        err = await refused(store, call, "identity-not-verified", 409)
        assert "identity" in err.details["rule"]
    await svc.tenants.update_tenant(OP, tid, TenantUpdate(identity_verified=True))
    n = await svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(after_hours=True))
    assert n.options.after_hours


async def test_switches_need_their_option(svc: Services, store: Store) -> None:
    tid, contract = await verified_number(svc)
    await refused(
        store,
        svc.number_settings.set_after_hours(OP, tid, contract, AfterHoursUpdate(enabled=True)),
        "option-required",
    )
    await refused(
        store,
        svc.number_settings.set_forwarding(
            OP, tid, contract, ForwardingUpdate(enabled=True, target="09012345678")
        ),
        "option-required",
    )


async def test_forward_slot_needs_the_forwarding_option(svc: Services, store: Store) -> None:
    tid, contract = await verified_number(svc, after_hours=True)
    err = await refused(
        store,
        svc.number_settings.set_after_hours(
            OP, tid, contract, AfterHoursUpdate(slots=week(SlotAction.FORWARD))
        ),
        "forward-slot-needs-forwarding-option",
        409,
    )
    assert err.details["forward_slots"] == 30
    n = await svc.number_settings.set_after_hours(
        OP,
        tid,
        contract,
        AfterHoursUpdate(slots=week(SlotAction.ANNOUNCE), enabled=True, announcement="template-2"),
    )
    assert n.after_hours.slots[DayKind.WEEKDAY].count(SlotAction.ANNOUNCE) == 30
    assert n.after_hours.slots[DayKind.SUNDAY] == (SlotAction.RING,) * 48
    await svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(forwarding=True))
    n = await svc.number_settings.set_after_hours(
        OP, tid, contract, AfterHoursUpdate(slots=week(SlotAction.FORWARD))
    )
    assert n.after_hours.slots[DayKind.WEEKDAY][-1] is SlotAction.FORWARD
    # dropping the forwarding option while forward slots remain is refused
    await refused(
        store,
        svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(forwarding=False)),
        "forward-slot-needs-forwarding-option",
    )


async def test_schedule_shape_and_announcement(svc: Services, store: Store) -> None:
    tid, contract = await verified_number(svc, after_hours=True)
    await refused(
        store,
        svc.number_settings.set_after_hours(
            OP, tid, contract, AfterHoursUpdate(slots={DayKind.SATURDAY: [SlotAction.RING] * 47})
        ),
        "invalid-schedule",
        400,
    )
    await refused(
        store,
        svc.number_settings.set_after_hours(
            OP, tid, contract, AfterHoursUpdate(announcement="template-9")
        ),
        "invalid-announcement",
    )
    p = await svc.prompts.create_prompt(OP, tid, name="closed", audio=b"RIFF....WAVE")
    n = await svc.number_settings.set_after_hours(
        OP, tid, contract, AfterHoursUpdate(announcement=f"prompt:{p.id}")
    )
    assert n.after_hours.announcement == f"prompt:{p.id}"
    await refused(store, svc.prompts.delete_prompt(OP, tid, p.id), "prompt-in-use")
    _, other_contract = await verified_number(svc, after_hours=True)
    await refused(
        store,
        svc.number_settings.set_after_hours(
            OP, tid, other_contract, AfterHoursUpdate(announcement="template-1")
        ),
        "not-found",
        404,
    )


async def test_forwarding_on_turns_after_hours_off_for_good(svc: Services) -> None:
    tid, contract = await verified_number(svc, after_hours=True, forwarding=True)
    n = await svc.number_settings.set_after_hours(OP, tid, contract, AfterHoursUpdate(enabled=True))
    assert n.after_hours.enabled and not n.forwarding.enabled
    n = await svc.number_settings.set_forwarding(
        OP, tid, contract, ForwardingUpdate(enabled=True, target="090-1111-2222")
    )
    assert n.forwarding.enabled and n.forwarding.target == "+819011112222"
    assert not n.after_hours.enabled
    n = await svc.number_settings.set_forwarding(OP, tid, contract, ForwardingUpdate(enabled=False))
    assert not n.forwarding.enabled and not n.after_hours.enabled  # stays OFF


async def test_after_hours_on_turns_forwarding_off_for_good(svc: Services) -> None:
    tid, contract = await verified_number(svc, after_hours=True, forwarding=True)
    await svc.number_settings.set_forwarding(
        OP, tid, contract, ForwardingUpdate(enabled=True, target="0312340000")
    )
    n = await svc.number_settings.set_after_hours(OP, tid, contract, AfterHoursUpdate(enabled=True))
    assert n.after_hours.enabled and not n.forwarding.enabled
    assert n.forwarding.target == "+81312340000"  # the target is kept
    n = await svc.number_settings.set_after_hours(
        OP, tid, contract, AfterHoursUpdate(enabled=False)
    )
    assert not n.after_hours.enabled and not n.forwarding.enabled


async def test_forwarding_needs_a_target(svc: Services, store: Store) -> None:
    tid, contract = await verified_number(svc, forwarding=True)
    await refused(
        store,
        svc.number_settings.set_forwarding(OP, tid, contract, ForwardingUpdate(enabled=True)),
        "forwarding-needs-target",
    )
    await refused(
        store,
        svc.number_settings.set_forwarding(OP, tid, contract, ForwardingUpdate(target="12345")),
        "invalid-number",
        400,
    )


async def test_unsubscribing_an_option_switches_it_off(svc: Services) -> None:
    tid, contract = await verified_number(svc, after_hours=True)
    await svc.number_settings.set_after_hours(OP, tid, contract, AfterHoursUpdate(enabled=True))
    n = await svc.number_settings.set_options(OP, tid, contract, OptionsUpdate(after_hours=False))
    assert not n.options.after_hours and not n.after_hours.enabled


async def test_turning_off_is_allowed_after_unverifying(svc: Services) -> None:
    tid, contract = await verified_number(svc, forwarding=True)
    await svc.number_settings.set_forwarding(
        OP, tid, contract, ForwardingUpdate(enabled=True, target="09011112222")
    )
    await svc.tenants.update_tenant(OP, tid, TenantUpdate(identity_verified=False))
    n = await svc.number_settings.set_forwarding(OP, tid, contract, ForwardingUpdate(enabled=False))
    assert not n.forwarding.enabled


# --------------------------------------------------------------------------- atomicity


RefusedCall = Callable[[Services, str, str, list[str]], Awaitable[Any]]


@pytest.mark.parametrize(
    ("make_call", "error_id"),
    [
        (
            lambda s, t, c, ids: s.devices.delete_device(OP, t, ids[1]),
            "additional-numbers-exceed-additional-ids",
        ),
        (
            lambda s, t, c, ids: s.numbers.add_number(OP, t, NumberCreate(number="0399999999")),
            "additional-numbers-exceed-additional-ids",
        ),
        (
            lambda s, t, c, ids: s.numbers.update_number(
                OP, t, c, NumberUpdate(ring_group=[ids[0]], voicemail_ring_time=35)
            ),
            "invalid-ring-time",
        ),
        (
            lambda s, t, c, ids: s.devices.create_device(
                OP,
                t,
                DeviceCreate(
                    kind=DeviceKind.DESK,
                    username="new-desk",
                    password="password-n",
                    free_calls_10min=True,
                ),
            ),
            "free-calls-apps-only",
        ),
    ],
)
async def test_a_refused_request_changes_nothing(
    svc: Services, store: Store, make_call: RefusedCall, error_id: str
) -> None:
    tid, contract, ids = await make_tenant(svc, ids=2)
    await svc.numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
    version = await store.version()
    await refused(store, make_call(svc, tid, contract, ids), error_id)
    assert await store.version() == version


async def test_not_found_errors(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    for call in (
        svc.tenants.get_tenant(OP, "nope"),
        svc.devices.get_device(OP, tid, "nope"),
        svc.numbers.get_number(OP, tid, "0311112222"),
        svc.numbers.get_number(OP, tid, "garbage"),
        svc.prompts.delete_prompt(OP, tid, "nope"),
        svc.gateways.get_gateway(OP, "nope"),
    ):
        err = await refused(store, call, "not-found", 404)
        assert isinstance(err, NotFound)


def test_error_classes_carry_status() -> None:
    assert RuleViolation("x", "y").status == 409
    assert Conflict("x", "y").status == 409
    assert InvalidInput("x", "y").status == 400


async def test_concurrent_writers_cannot_both_pass_a_limit(store_url: str, svc: Services) -> None:
    """Two connections race to add the one allowed additional number: exactly one wins
    (writers are serialised by the version row, so each checks the other's committed state)."""
    import asyncio

    from provisioning.store import open_store

    tid, _, _ = await make_tenant(svc, ids=2)
    second = await open_store(store_url)
    try:
        results = await asyncio.gather(
            *(
                Services(s).numbers.add_number(OP, tid, NumberCreate(number=fresh_number()))
                for s in (svc.store, second, svc.store, second)
            ),
            return_exceptions=True,
        )
    finally:
        await second.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 3, results
    assert all(
        getattr(e, "error_id", None) == "additional-numbers-exceed-additional-ids" for e in errors
    )
    assert len((await svc.numbers.list_numbers(OP, tid)).items) == 2
