"""Every service rule at its edges, through the API, on SQLite and on PostgreSQL.

Each refusal asserts the status, the error_id, and that nothing changed (the whole of the
tenant's data is compared before and after)."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.model import SLOTS_PER_DAY

from .conftest import BOTH_BACKENDS, Api, nq

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


async def state(api: Api, tenant: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tenant": (await api.get(f"/v1/tenants/{tenant}")).body}
    for coll in ("devices", "numbers", "prompts"):
        out[coll] = (
            await api.get(f"/v1/tenants/{tenant}/{coll}?limit=500")
            if coll != "prompts"
            else await api.get(f"/v1/tenants/{tenant}/prompts")
        ).body
    out["phonebook_size"] = await phonebook_size(api, tenant)
    return out


async def phonebook_size(api: Api, tenant: str) -> int:
    total, cursor = 0, None
    while True:
        q = "limit=500" + (f"&cursor={cursor}" if cursor else "")
        body = (await api.get(f"/v1/tenants/{tenant}/phonebook?{q}")).body
        total += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return total


async def refused(api: Api, tenant: str, call: Any, status: int, error_id: str) -> Any:
    before = await state(api, tenant)
    r = await call
    assert (r.status, r.error_id) == (status, error_id), r.body
    assert await state(api, tenant) == before
    return r


async def test_two_additional_numbers_but_not_three(api: Api) -> None:
    await api.tenant("acme", ids=4)  # 3 additional IDs: the ID rule is not the limit here
    for _ in range(2):
        assert (await api.post("/v1/tenants/acme/numbers", {"number": api.number()})).status == 201
    r = await refused(
        api,
        "acme",
        api.post("/v1/tenants/acme/numbers", {"number": api.number()}),
        409,
        "too-many-additional-numbers",
    )
    assert r.body["details"]["limit"] == 2


async def test_additional_numbers_never_exceed_additional_ids(api: Api) -> None:
    await api.tenant("acme", ids=1)  # the basic ID only: no additional number at all
    await refused(
        api,
        "acme",
        api.post("/v1/tenants/acme/numbers", {"number": api.number()}),
        409,
        "additional-numbers-exceed-additional-ids",
    )
    await api.device("acme", "acme-d1")  # one additional ID: one additional number
    assert (await api.post("/v1/tenants/acme/numbers", {"number": api.number()})).status == 201
    await refused(
        api,
        "acme",
        api.post("/v1/tenants/acme/numbers", {"number": api.number()}),
        409,
        "additional-numbers-exceed-additional-ids",
    )
    # and removing the additional ID would leave more additional numbers than additional IDs
    await refused(
        api,
        "acme",
        api.delete("/v1/tenants/acme/devices/acme-d1"),
        409,
        "additional-numbers-exceed-additional-ids",
    )


async def test_toll_free_needs_more_than_one_id(api: Api) -> None:
    await api.tenant("acme", ids=1)
    body = {"number": "0120-555-001", "kind": "toll-free"}
    await refused(
        api, "acme", api.post("/v1/tenants/acme/numbers", body), 409, "toll-free-needs-several-ids"
    )
    await api.device("acme", "acme-d1")
    assert (await api.post("/v1/tenants/acme/numbers", body)).status == 201


def csv_rows(n: int, start: int = 0) -> bytes:
    return "".join(
        f"Name {i},03-{i // 10000:04d}-{i % 10000:04d}\n" for i in range(start, start + n)
    ).encode()


async def test_thousand_phonebook_entries_but_not_1001(api: Api) -> None:
    await api.tenant("acme")
    imp = "/v1/tenants/acme/phonebook/import"
    csv = {"Content-Type": "text/csv"}
    await refused(
        api, "acme", api.call("POST", imp, data=csv_rows(1001), headers=csv), 409, "phonebook-full"
    )
    r = await api.call("POST", imp, data=csv_rows(999), headers=csv)
    assert r.status == 200 and r.body == {"imported": 999, "total": 999}, r.body
    entry = {"name": "Last", "number": "03-9999-9999"}
    assert (await api.post("/v1/tenants/acme/phonebook", entry)).status == 201  # the 1,000th
    assert await phonebook_size(api, "acme") == 1000
    await refused(api, "acme", api.post("/v1/tenants/acme/phonebook", entry), 409, "phonebook-full")
    await refused(
        api,
        "acme",
        api.call("POST", imp, data=csv_rows(1, 5000), headers=csv),
        409,
        "phonebook-full",
    )


async def test_ten_prompts_but_not_eleven(api: Api) -> None:
    await api.tenant("acme")
    wav = {"Content-Type": "audio/wav"}
    for i in range(10):
        r = await api.call("POST", f"/v1/tenants/acme/prompts?name=p{i}", data=b"RIFF", headers=wav)
        assert r.status == 201, r.body
    await refused(
        api,
        "acme",
        api.call("POST", "/v1/tenants/acme/prompts?name=p10", data=b"RIFF", headers=wav),
        409,
        "too-many-prompts",
    )


@pytest.mark.parametrize(
    ("ring_time", "ok"), [(0, False), (5, True), (30, True), (35, False), (7, False)]
)
async def test_voicemail_ring_time_edges(api: Api, ring_time: int, ok: bool) -> None:
    await api.tenant("acme")
    n = nq(await api.contract_number("acme"))
    assert (
        await api.patch(f"/v1/tenants/acme/numbers/{n}/options", {"voicemail": True})
    ).status == 200
    for name in ("voicemail_ring_time", "ring_time"):  # the field and its old name
        call = api.patch(f"/v1/tenants/acme/numbers/{n}/voicemail", {name: ring_time})
        if ok:
            r = await call
            assert r.status == 200
            assert r.body == {
                "enabled": True,
                "voicemail_ring_time": ring_time,
                "ring_time": ring_time,
            }
        else:
            r = await refused(api, "acme", call, 422, "invalid-payload")
            assert r.body["details"]["field"] == name


async def test_forward_slot_needs_the_forwarding_option(api: Api) -> None:
    await api.tenant("acme")
    n = nq(await api.contract_number("acme"))
    base = f"/v1/tenants/acme/numbers/{n}"
    assert (await api.patch(base + "/options", {"after_hours": True})).status == 200
    slots = {"weekday": ["ring"] * 36 + ["forward"] * 12}
    await refused(
        api,
        "acme",
        api.patch(base + "/after-hours", {"slots": slots}),
        409,
        "forward-slot-needs-forwarding-option",
    )
    assert (await api.patch(base + "/options", {"forwarding": True})).status == 200
    r = await api.patch(base + "/after-hours", {"slots": slots})
    assert r.status == 200 and r.body["slots"]["weekday"][-1] == "forward"
    # and the option cannot be dropped while forward slots remain
    await refused(
        api,
        "acme",
        api.patch(base + "/options", {"forwarding": False}),
        409,
        "forward-slot-needs-forwarding-option",
    )


async def test_no_after_hours_or_forwarding_before_the_identity_check(api: Api) -> None:
    await api.tenant("acme", verified=False)
    n = nq(await api.contract_number("acme"))
    base = f"/v1/tenants/acme/numbers/{n}"
    for option in ("after_hours", "forwarding"):
        await refused(
            api, "acme", api.patch(base + "/options", {option: True}), 409, "identity-not-verified"
        )
    assert (await api.patch(base + "/options", {"voicemail": True})).status == 200  # unaffected
    assert (await api.patch("/v1/tenants/acme", {"identity_verified": True})).status == 200
    r = await api.patch(base + "/options", {"after_hours": True, "forwarding": True})
    assert r.status == 200 and r.body["after_hours"] and r.body["forwarding"]


async def test_after_hours_settings_need_the_option(api: Api) -> None:
    await api.tenant("acme")
    n = nq(await api.contract_number("acme"))
    await refused(
        api,
        "acme",
        api.patch(f"/v1/tenants/acme/numbers/{n}/after-hours", {"enabled": True}),
        409,
        "option-required",
    )
    await refused(
        api,
        "acme",
        api.patch(
            f"/v1/tenants/acme/numbers/{n}/forwarding", {"enabled": True, "target": "09011112222"}
        ),
        409,
        "option-required",
    )


async def test_forwarding_and_after_hours_exclude_each_other(api: Api) -> None:
    await api.tenant("acme")
    n = nq(await api.contract_number("acme"))
    base = f"/v1/tenants/acme/numbers/{n}"
    assert (
        await api.patch(base + "/options", {"after_hours": True, "forwarding": True})
    ).status == 200
    slots = {k: ["announce"] * SLOTS_PER_DAY for k in ("saturday", "sunday")}
    assert (await api.patch(base + "/after-hours", {"enabled": True, "slots": slots})).body[
        "enabled"
    ] is True
    # forwarding ON turns the announcement OFF ...
    r = await api.patch(base + "/forwarding", {"enabled": True, "target": "090-1234-5678"})
    assert r.status == 200 and r.body == {
        "enabled": True,
        "target": "+819012345678",
        "side_effects": [  # ... and says so
            {
                "setting": "after_hours.enabled",
                "from": True,
                "to": False,
                "rule": "forwarding-excludes-after-hours",
            }
        ],
    }
    assert (await api.get(base + "/after-hours")).body["enabled"] is False
    # ... and it stays OFF when forwarding is turned off again
    assert (await api.patch(base + "/forwarding", {"enabled": False})).body["enabled"] is False
    assert (await api.get(base + "/after-hours")).body["enabled"] is False
    # the other way round: announcement ON turns forwarding OFF, which stays OFF
    assert (await api.patch(base + "/forwarding", {"enabled": True})).body["enabled"] is True
    assert (await api.patch(base + "/after-hours", {"enabled": True})).body["enabled"] is True
    assert (await api.get(base + "/forwarding")).body == {
        "enabled": False,
        "target": "+819012345678",
    }
    assert (await api.patch(base + "/after-hours", {"enabled": False})).status == 200
    assert (await api.get(base + "/forwarding")).body["enabled"] is False
    # the schedule kept its slots through all of it
    assert (await api.get(base + "/after-hours")).body["slots"]["sunday"][0] == "announce"


async def test_forwarding_on_needs_a_target(api: Api) -> None:
    await api.tenant("acme")
    n = nq(await api.contract_number("acme"))
    base = f"/v1/tenants/acme/numbers/{n}"
    assert (await api.patch(base + "/options", {"forwarding": True})).status == 200
    await refused(
        api,
        "acme",
        api.patch(base + "/forwarding", {"enabled": True}),
        409,
        "forwarding-needs-target",
    )
    await refused(
        api, "acme", api.patch(base + "/forwarding", {"target": "110"}), 400, "invalid-number"
    )


async def test_contract_number_is_unique_and_stays(api: Api) -> None:
    await api.tenant("acme", ids=2)
    contract = await api.contract_number("acme")
    await refused(
        api,
        "acme",
        api.post("/v1/tenants/acme/numbers", {"number": api.number(), "kind": "contract"}),
        409,
        "contract-number-exists",
    )
    await refused(
        api,
        "acme",
        api.delete(f"/v1/tenants/acme/numbers/{nq(contract)}"),
        409,
        "contract-number-required",
    )
    await api.tenant("other")
    await refused(
        api,
        "acme",
        api.post("/v1/tenants/acme/numbers", {"number": await api.contract_number("other")}),
        409,
        "number-taken",
    )


async def test_last_id_cannot_be_removed(api: Api) -> None:
    await api.tenant("acme")
    await refused(api, "acme", api.delete("/v1/tenants/acme/devices/acme-d0"), 409, "last-id")


async def test_ten_minute_free_calls_are_for_apps_only(api: Api) -> None:
    await api.tenant("acme")
    body = {
        "kind": "ata",
        "username": "acme-fax",
        "password": "fax-password",
        "free_calls_10min": True,
    }
    await refused(
        api, "acme", api.post("/v1/tenants/acme/devices", body), 409, "free-calls-apps-only"
    )
    assert (await api.post("/v1/tenants/acme/devices", {**body, "kind": "app"})).status == 201
