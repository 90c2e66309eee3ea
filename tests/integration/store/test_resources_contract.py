"""Phonebook, prompts, tokens, gateways, pagination and seed import on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.errors import ProvisioningError, Unauthenticated
from provisioning.live import build_snapshot
from provisioning.model import DeviceKind, TenantStatus
from provisioning.rules import MAX_PROMPT_BYTES
from provisioning.seed import load_seed
from provisioning.services import (
    DeviceCreate,
    GatewayInput,
    GatewayUpdate,
    PhonebookEntryInput,
    Principal,
    Services,
    TenantUpdate,
    import_seed,
)
from provisioning.store import Store

from .conftest import OP, dump, make_tenant
from .test_rules_contract import refused

pytestmark = pytest.mark.integration

DEMO_SEED = Path(__file__).parents[3] / "deploy" / "demo-seed.toml"


def csv_rows(n: int, start: int = 0) -> str:
    return "".join(
        f"Person {i:04d},090-{i // 10000:04d}-{i % 10000:04d}\n" for i in range(start, start + n)
    )


# --------------------------------------------------------------------------- phonebook


async def test_phonebook_holds_1000_entries_not_1001(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    result = await svc.phonebook.import_phonebook_csv(OP, tid, "name,number\n" + csv_rows(999))
    assert (result.imported, result.total) == (999, 999)
    await svc.phonebook.add_phonebook_entry(
        OP, tid, PhonebookEntryInput(name="Last", number="0312345678")
    )
    err = await refused(
        store,
        svc.phonebook.add_phonebook_entry(
            OP, tid, PhonebookEntryInput(name="One too many", number="0312345679")
        ),
        "phonebook-full",
        409,
    )
    assert (err.details["limit"], err.details["requested"]) == (1000, 1001)
    err = await refused(
        store, svc.phonebook.import_phonebook_csv(OP, tid, csv_rows(1)), "phonebook-full"
    )
    # replacing is measured against the new content only
    result = await svc.phonebook.import_phonebook_csv(OP, tid, csv_rows(1000), replace=True)
    assert result.total == 1000
    await refused(
        store,
        svc.phonebook.import_phonebook_csv(OP, tid, csv_rows(1001), replace=True),
        "phonebook-full",
    )


async def test_phonebook_import_reports_every_bad_row(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    await svc.phonebook.import_phonebook_csv(OP, tid, csv_rows(3))
    data = "名前,電話番号\n山田太郎,03-1111-2222\n,0311112222\n佐藤,not-a-number\n\n鈴木\n"
    err = await refused(
        store,
        svc.phonebook.import_phonebook_csv(OP, tid, data.encode("cp932")),
        "phonebook-import-invalid",
        400,
    )
    assert [e["row"] for e in err.details["errors"]] == [3, 4, 6]
    assert all(e["reason"] for e in err.details["errors"])
    ok = await svc.phonebook.import_phonebook_csv(
        OP, tid, "\ufeff山田太郎,03-1111-2222,山田商店,社長\n"
    )
    assert ok.imported == 1
    page = await svc.phonebook.list_phonebook(OP, tid, name_contains="山田")
    assert [(e.name, e.number, e.company, e.note) for e in page.items] == [
        ("山田太郎", "03-1111-2222", "山田商店", "社長")
    ]


async def test_phonebook_entry_crud_and_pages(svc: Services) -> None:
    tid, _, _ = await make_tenant(svc)
    await svc.phonebook.import_phonebook_csv(OP, tid, csv_rows(25))
    seen, cursor = [], None
    while True:
        page = await svc.phonebook.list_phonebook(OP, tid, cursor=cursor, limit=10)
        seen += [e.name for e in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 25
    e = (await svc.phonebook.list_phonebook(OP, tid, limit=1)).items[0]
    e2 = await svc.phonebook.update_phonebook_entry(
        OP, tid, e.id, PhonebookEntryInput(name="Renamed", number="+81-90-0000-0000", note="vip")
    )
    assert (e2.name, e2.note) == ("Renamed", "vip")
    await svc.phonebook.delete_phonebook_entry(OP, tid, e.id)
    assert (await svc.phonebook.list_phonebook(OP, tid, name_contains="renamed")).items == []


# --------------------------------------------------------------------------- prompts


async def test_ten_prompts_not_eleven(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    for i in range(10):
        await svc.prompts.create_prompt(OP, tid, name=f"p{i}", audio=bytes([i]) * 100)
    err = await refused(
        store, svc.prompts.create_prompt(OP, tid, name="p10", audio=b"x"), "too-many-prompts", 409
    )
    assert (err.details["limit"], err.details["requested"]) == (10, 11)
    prompts = await svc.prompts.list_prompts(OP, tid)
    assert len(prompts) == 10
    info, audio = await svc.prompts.get_prompt_audio(OP, tid, prompts[3].id)
    assert audio == bytes([int(info.name[1:])]) * 100 and info.size == 100
    await svc.prompts.delete_prompt(OP, tid, prompts[0].id)
    await svc.prompts.create_prompt(OP, tid, name="again", audio=b"y")


async def test_prompt_size_limit(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    await refused(
        store,
        svc.prompts.create_prompt(OP, tid, name="big", audio=b"\0" * (MAX_PROMPT_BYTES + 1)),
        "prompt-too-large",
        413,
    )
    await refused(
        store, svc.prompts.create_prompt(OP, tid, name="empty", audio=b""), "invalid-input"
    )
    p = await svc.prompts.create_prompt(OP, tid, name="max", audio=b"\1" * MAX_PROMPT_BYTES)
    assert p.size == MAX_PROMPT_BYTES


# --------------------------------------------------------------------------- tokens, gateways


async def test_tokens(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    op_token = await svc.tokens.create_token(OP, scope="operator", label="ops")
    t_token = await svc.tokens.create_token(OP, scope="tenant", tenant_id=tid)
    assert (await svc.tokens.authenticate(op_token.token)).is_operator
    me = await svc.tokens.authenticate(t_token.token)
    assert (me.scope, me.tenant_id) == ("tenant", tid)
    assert t_token.token.split(".", 1)[1] not in repr(await dump(store))
    for bad in ("", "garbage", op_token.token + "x", t_token.info.id + ".wrong"):
        with pytest.raises(Unauthenticated) as e:
            await svc.tokens.authenticate(bad)
        assert (e.value.status, e.value.error_id) == (401, "invalid-token")
    await refused(store, svc.tokens.create_token(me, scope="operator"), "operator-only", 403)
    assert [t.id for t in await svc.tokens.list_tokens(me)] == [t_token.info.id]
    await svc.tokens.revoke_token(me, t_token.info.id)
    with pytest.raises(Unauthenticated):
        await svc.tokens.authenticate(t_token.token)


async def test_gateways_are_operator_only(svc: Services, store: Store) -> None:
    tid, _, _ = await make_tenant(svc)
    await refused(
        store, svc.gateways.list_gateways(Principal.for_tenant(tid)), "operator-only", 403
    )
    gw = await svc.gateways.create_gateway(
        OP, GatewayInput(name="NTT", host="192.0.2.10", transport="tcp")
    )
    assert gw.allowed_sources == ("192.0.2.10",) and gw.port == 5060
    gw = await svc.gateways.update_gateway(
        OP, gw.id, GatewayUpdate(allowed_sources=["192.0.2.11", "2001:db8::1"])
    )
    assert (await svc.gateways.get_gateway(OP, gw.id)).allowed_sources == (
        "192.0.2.11",
        "2001:db8::1",
    )
    await refused(
        store,
        svc.gateways.update_gateway(OP, gw.id, GatewayUpdate(transport="sctp")),  # type: ignore[arg-type]
        "invalid-input",
    )
    await refused(
        store,
        svc.gateways.create_gateway(
            OP, GatewayInput(name="x", host="h", allowed_sources=["not-ip"])
        ),
        "invalid-input",
    )
    await svc.gateways.delete_gateway(OP, gw.id)
    assert await svc.gateways.list_gateways(OP) == []


# --------------------------------------------------------------------------- pagination


async def test_tenant_pages_and_filters(svc: Services) -> None:
    made = [
        await make_tenant(svc, name=f"{'Acme' if i % 2 else 'Other'} {i:02d}") for i in range(7)
    ]
    await svc.tenants.update_tenant(OP, made[1][0], TenantUpdate(status=TenantStatus.SUSPENDED))
    names, cursor = [], None
    for _ in range(10):
        page = await svc.tenants.list_tenants(OP, cursor=cursor, limit=3)
        names += [t.name for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert names == sorted(names) and len(names) == 7
    acme = await svc.tenants.list_tenants(OP, name_contains="acme", limit=50)
    assert [t.name for t in acme.items] == ["Acme 01", "Acme 03", "Acme 05"]
    assert acme.next_cursor is None
    suspended = await svc.tenants.list_tenants(OP, status=TenantStatus.SUSPENDED)
    assert [t.id for t in suspended.items] == [made[1][0]]
    with pytest.raises(ProvisioningError) as e:
        await svc.tenants.list_tenants(OP, cursor="!!not-a-cursor")
    assert e.value.error_id == "invalid-cursor"
    # a literal % in the filter is not a wildcard
    assert (await svc.tenants.list_tenants(OP, name_contains="%")).items == []


async def test_device_pages_and_kind_filter(svc: Services) -> None:
    tid, _, ids = await make_tenant(svc, ids=5)
    await svc.devices.create_device(
        OP, tid, DeviceCreate(kind=DeviceKind.ATA, username="ata-9", password="password-9")
    )
    p1 = await svc.devices.list_devices(OP, tid, limit=4)
    p2 = await svc.devices.list_devices(OP, tid, limit=4, cursor=p1.next_cursor)
    assert len(p1.items) == 4 and len(p2.items) == 2 and p2.next_cursor is None
    assert [d.id for d in p1.items + p2.items] == sorted([*ids, p2.items[-1].id])
    desks = await svc.devices.list_devices(OP, tid, kind=DeviceKind.DESK)
    assert [d.kind for d in desks.items] == [DeviceKind.DESK] * 4
    assert [
        d.username for d in (await svc.devices.list_devices(OP, tid, username_contains="ata")).items
    ] == ["ata-9"]


# --------------------------------------------------------------------------- seed import


async def test_seed_import_round_trips_into_the_snapshot(svc: Services, store: Store) -> None:
    seed = load_seed(DEMO_SEED)
    result = await import_seed(store, seed)
    assert (result.tenants, result.devices, result.numbers, result.gateways) == (1, 3, 2, 1)
    snap = await build_snapshot(store)
    want = seed.snapshot()
    assert snap.realm == want.realm
    assert dict(snap.tenants) == dict(want.tenants)
    assert dict(snap.devices) == dict(want.devices)
    assert dict(snap.numbers) == dict(want.numbers)
    assert snap.gateways == want.gateways
    with pytest.raises(ProvisioningError) as e:
        await import_seed(store, seed)
    assert e.value.error_id == "id-taken"
    again = await import_seed(store, seed, replace=True)
    assert again.replaced == ["demo"]
    assert dict((await build_snapshot(store)).devices) == dict(want.devices)


async def test_seed_realm_must_match_once_devices_exist(svc: Services, store: Store) -> None:
    await make_tenant(svc)
    seed = load_seed(DEMO_SEED)
    object.__setattr__(seed, "realm", "other.realm")
    await refused(store, import_seed(store, seed), "realm-mismatch")
    await refused(store, svc.realm.set_realm(OP, "other.realm"), "realm-locked")


async def test_seed_if_empty(store: Store) -> None:
    from provisioning.live import seed_if_empty

    seed = load_seed(DEMO_SEED)
    assert await seed_if_empty(store, seed) is True
    assert await seed_if_empty(store, seed) is False
    assert set((await build_snapshot(store)).tenants) == {"demo"}
