"""Each resource through the API: what it answers, what it never shows (passwords, hashes),
pagination, filters, CSV import with per-row errors, prompt upload/download, gateways."""

from __future__ import annotations

from provisioning.model import SLOTS_PER_DAY

from .conftest import Api, nq


async def test_tenant_lifecycle(api: Api) -> None:
    body = await api.tenant("acme", verified=False)
    assert body == {
        "id": "acme",
        "name": "acme K.K.",
        "timezone": "Asia/Tokyo",
        "identity_verified": False,
        "status": "active",
        "holidays": [],
    }
    r = await api.patch("/v1/tenants/acme", {"name": "Acme Japan", "identity_verified": True})
    assert r.status == 200 and r.body["name"] == "Acme Japan" and r.body["identity_verified"]
    assert (await api.patch("/v1/tenants/acme", {"status": "suspended"})).body["status"] == (
        "suspended"
    )
    assert (await api.delete("/v1/tenants/acme")).status == 204
    assert (await api.get("/v1/tenants/acme")).status == 404


async def test_tenant_list_paginates_and_filters(api: Api) -> None:
    for i in range(5):
        await api.tenant(f"t{i}")
    seen: list[str] = []
    cursor = None
    while True:
        q = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = await api.get(f"/v1/tenants?{q}")
        assert r.status == 200 and len(r.body["items"]) <= 2
        seen += [t["id"] for t in r.body["items"]]
        cursor = r.body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"t{i}" for i in range(5)]
    r = await api.get("/v1/tenants?name_contains=t3")
    assert [t["id"] for t in r.body["items"]] == ["t3"]
    assert (await api.get("/v1/tenants?cursor=garbage")).status == 400


async def test_tenant_token_may_rename_but_not_verify_itself(api: Api) -> None:
    await api.tenant("acme", verified=False)
    token = await api.token_for("acme")
    r = await api.patch("/v1/tenants/acme", {"name": "Renamed"}, token=token)
    assert r.status == 200 and r.body["name"] == "Renamed"
    for field, value in (("identity_verified", True), ("status", "suspended")):
        r = await api.patch("/v1/tenants/acme", {field: value}, token=token)
        assert (r.status, r.error_id) == (403, "operator-only"), r.body
    after = (await api.get("/v1/tenants/acme")).body
    assert (after["identity_verified"], after["status"]) == (False, "active")
    listed = await api.get("/v1/tenants", token=token)
    assert [t["id"] for t in listed.body["items"]] == ["acme"]
    r = await api.post("/v1/tenants", {}, token=token)
    assert (r.status, r.error_id) == (403, "operator-only")


async def test_device_password_is_never_returned(api: Api) -> None:
    await api.tenant("acme")
    r = await api.post(
        "/v1/tenants/acme/devices",
        {
            "id": "phone",
            "kind": "app",
            "username": "acme-phone",
            "password": "s3cret-pass",
            "display_name": "Reception",
            "free_calls_10min": True,
        },
    )
    assert r.status == 201, r.body
    for got in (r.body, (await api.get("/v1/tenants/acme/devices/phone")).body):
        text = str(got)
        assert "s3cret" not in text and "ha1" not in text and "password" not in text
        assert got["free_calls_10min"] is True and got["display_name"] == "Reception"
    assert (
        await api.put("/v1/tenants/acme/devices/phone/password", {"password": "another-pass"})
    ).status == 204
    short = await api.put("/v1/tenants/acme/devices/phone/password", {"password": "short"})
    assert (short.status, short.error_id) == (422, "invalid-payload")


async def test_device_update_kind_rules_and_release(api: Api) -> None:
    await api.tenant("acme", ids=2, kinds=("app",))
    r = await api.patch("/v1/tenants/acme/devices/acme-d0", {"free_calls_10min": True})
    assert (r.status, r.error_id) == (409, "free-calls-apps-only")  # d0 is a desk phone
    r = await api.patch(
        "/v1/tenants/acme/devices/acme-d1", {"free_calls_10min": True, "web_phonebook": True}
    )
    assert r.status == 200 and r.body["free_calls_10min"] and r.body["web_phonebook"]
    assert r.body["release_seq"] == 0
    r = await api.post("/v1/tenants/acme/devices/acme-d1/release")
    assert r.status == 200 and r.body["release_seq"] == 1
    assert r.body["release_requested_at"] is not None
    listed = await api.get("/v1/tenants/acme/devices?kind=app")
    assert [d["id"] for d in listed.body["items"]] == ["acme-d1"]


async def test_presented_number_must_be_own(api: Api) -> None:
    await api.tenant("acme", ids=2)
    await api.tenant("other")
    theirs = await api.contract_number("other")
    r = await api.patch("/v1/tenants/acme/devices/acme-d1", {"presented_number": theirs})
    assert (r.status, r.error_id) == (409, "presented-number-not-own")
    extra = api.number()
    assert (await api.post("/v1/tenants/acme/numbers", {"number": extra})).status == 201
    r = await api.patch("/v1/tenants/acme/devices/acme-d1", {"presented_number": extra})
    assert r.status == 200 and r.body["presented_number"].startswith("+81")


async def test_number_settings(api: Api) -> None:
    await api.tenant("acme", ids=3)
    number = await api.contract_number("acme")
    base = f"/v1/tenants/acme/numbers/{nq(number)}"
    r = await api.patch(base, {"label": "Main", "app_ring_delay": 5, "max_ring_time": 45})
    assert r.status == 200, r.body
    assert (r.body["label"], r.body["app_ring_delay"], r.body["max_ring_time"]) == ("Main", 5, 45)
    national = "0" + number[3:]
    assert (await api.get(f"/v1/tenants/acme/numbers/{national}")).body["number"] == number
    r = await api.put(base + "/ring-group", {"ring_group": ["acme-d1", "acme-d2"]})
    assert r.status == 200 and r.body == {"ring_group": ["acme-d1", "acme-d2"]}
    r = await api.put(base + "/ring-group", {"ring_group": ["nobody"]})
    assert (r.status, r.error_id) == (409, "ring-group-not-own-ids")
    r = await api.put(base + "/ring-group", {"ring_group": []})
    assert (r.status, r.error_id) == (422, "invalid-payload")
    r = await api.patch(base + "/options", {"voicemail": True, "recording": True})
    assert r.body == {
        "after_hours": False,
        "voicemail": True,
        "forwarding": False,
        "recording": True,
        "side_effects": [],
    }
    # the number resource's names; the sub-resources' old names answered too (deprecated)
    assert (await api.patch(base + "/recording", {"recording_notice": True})).body == {
        "enabled": True,
        "recording_notice": True,
        "notice": True,
    }
    assert (await api.patch(base + "/voicemail", {"voicemail_ring_time": 25})).body == {
        "enabled": True,
        "voicemail_ring_time": 25,
        "ring_time": 25,
    }
    full = (await api.get(base)).body
    assert full["ring_group"] == ["acme-d1", "acme-d2"] and full["voicemail_ring_time"] == 25
    assert full["recording_notice"] is True and full["options"]["voicemail"] is True


async def test_after_hours_schedule_and_announcement(api: Api) -> None:
    await api.tenant("acme")
    number = await api.contract_number("acme")
    base = f"/v1/tenants/acme/numbers/{nq(number)}"
    assert (await api.patch(base + "/options", {"after_hours": True})).status == 200
    evening = ["ring"] * 18 + ["announce"] * 30
    r = await api.patch(
        base + "/after-hours",
        {
            "slots": {"weekday": evening, "sunday": ["announce"] * SLOTS_PER_DAY},
            "announcement": "template-2",
            "enabled": True,
        },
    )
    assert r.status == 200, r.body
    assert r.body["enabled"] is True and r.body["announcement"] == "template-2"
    assert r.body["slots"]["weekday"] == evening
    assert r.body["slots"]["saturday"] == ["ring"] * SLOTS_PER_DAY
    bad = await api.patch(base + "/after-hours", {"slots": {"weekday": ["ring"] * 47}})
    assert (bad.status, bad.error_id) == (422, "invalid-payload")
    assert bad.body["details"]["field"] == "slots.weekday"
    bad = await api.patch(base + "/after-hours", {"announcement": "prompt:nope"})
    assert (bad.status, bad.error_id) == (400, "invalid-announcement")
    up = await api.call(
        "POST",
        "/v1/tenants/acme/prompts?name=Closed",
        data=b"RIFF....WAVE",
        headers={"Content-Type": "audio/wav"},
    )
    assert up.status == 201, up.body
    r = await api.patch(base + "/after-hours", {"announcement": up.body["announcement"]})
    assert r.status == 200 and r.body["announcement"] == f"prompt:{up.body['id']}"
    in_use = await api.delete(f"/v1/tenants/acme/prompts/{up.body['id']}")
    assert (in_use.status, in_use.error_id) == (409, "prompt-in-use")


async def test_holidays(api: Api) -> None:
    await api.tenant("acme")
    r = await api.put("/v1/tenants/acme/holidays", {"holidays": ["2026-12-31", "2027-01-01"]})
    assert r.body == {"holidays": ["2026-12-31", "2027-01-01"]}
    r = await api.put("/v1/tenants/acme/holidays/2027-01-02")
    assert r.body == {"holidays": ["2026-12-31", "2027-01-01", "2027-01-02"]}
    r = await api.delete("/v1/tenants/acme/holidays/2026-12-31")
    assert r.body == {"holidays": ["2027-01-01", "2027-01-02"]}
    assert (await api.put("/v1/tenants/acme/holidays/2027-02-30")).status == 404
    bad = await api.put("/v1/tenants/acme/holidays", {"holidays": ["tomorrow"]})
    assert (bad.status, bad.error_id) == (422, "invalid-payload")
    assert bad.body["details"]["field"] == "holidays[0]"


async def test_prompt_upload_download_delete(api: Api) -> None:
    await api.tenant("acme")
    audio = b"RIFF" + bytes(range(256)) * 40
    up = await api.call(
        "POST",
        "/v1/tenants/acme/prompts?name=Welcome",
        data=audio,
        headers={"Content-Type": "audio/wav"},
    )
    assert up.status == 201 and up.body["size"] == len(audio) and up.body["name"] == "Welcome"
    pid = up.body["id"]
    raw = await api.client.get(
        f"/v1/tenants/acme/prompts/{pid}/audio", headers={"Authorization": f"Bearer {api.operator}"}
    )
    assert raw.status == 200 and raw.content_type == "audio/wav"
    assert await raw.read() == audio
    assert (await api.get(f"/v1/tenants/acme/prompts/{pid}")).body["name"] == "Welcome"
    no_name = await api.call(
        "POST", "/v1/tenants/acme/prompts", data=audio, headers={"Content-Type": "audio/wav"}
    )
    assert (no_name.status, no_name.error_id) == (400, "invalid-query")
    text = await api.call(
        "POST",
        "/v1/tenants/acme/prompts?name=x",
        data=b"hello",
        headers={"Content-Type": "text/plain"},
    )
    assert (text.status, text.error_id) == (415, "unsupported-media-type")
    assert (await api.delete(f"/v1/tenants/acme/prompts/{pid}")).status == 204
    assert (await api.get("/v1/tenants/acme/prompts")).body == {"items": []}


async def test_phonebook_crud_and_csv_import(api: Api) -> None:
    await api.tenant("acme")
    r = await api.post("/v1/tenants/acme/phonebook", {"name": "Sato", "number": "090-1111-2222"})
    assert r.status == 201 and r.body["company"] is None
    eid = r.body["id"]
    r = await api.put(
        f"/v1/tenants/acme/phonebook/{eid}",
        {"name": "Sato Taro", "number": "090-1111-2222", "company": "ACME"},
    )
    assert r.status == 200 and r.body["company"] == "ACME"
    csv = "name,number,company\n鈴木,03-1111-2222,Suzuki Co\nTanaka,080-3333-4444\n"
    r = await api.call(
        "POST",
        "/v1/tenants/acme/phonebook/import",
        data=csv.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status == 200 and r.body == {"imported": 2, "total": 3}, r.body
    r = await api.get("/v1/tenants/acme/phonebook?name_contains=鈴木")
    assert [e["company"] for e in r.body["items"]] == ["Suzuki Co"]
    assert (await api.delete(f"/v1/tenants/acme/phonebook/{eid}")).status == 204
    assert len((await api.get("/v1/tenants/acme/phonebook")).body["items"]) == 2


async def test_phonebook_csv_reports_every_bad_row_and_imports_nothing(api: Api) -> None:
    await api.tenant("acme")
    csv = "Good,03-1111-2222\n,03-1111-3333\nBad number,call me\nAlso good,090-0000-0000\n"
    r = await api.call(
        "POST",
        "/v1/tenants/acme/phonebook/import",
        data=csv.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert (r.status, r.error_id) == (400, "phonebook-import-invalid"), r.body
    assert [e["row"] for e in r.body["details"]["errors"]] == [2, 3]
    assert all(e["reason"] for e in r.body["details"]["errors"])
    assert (await api.get("/v1/tenants/acme/phonebook")).body["items"] == []


async def test_gateways_are_operator_only(api: Api) -> None:
    await api.tenant("acme")
    token = await api.token_for("acme")
    r = await api.post("/v1/gateways", {"id": "carrier", "name": "Carrier", "host": "127.0.0.2"})
    assert r.status == 201 and r.body["allowed_sources"] == ["127.0.0.2"], r.body
    r = await api.patch("/v1/gateways/carrier", {"port": 5080, "transport": "tcp"})
    assert (r.body["port"], r.body["transport"]) == (5080, "tcp")
    for method, path in (
        ("GET", "/v1/gateways"),
        ("GET", "/v1/gateways/carrier"),
        ("DELETE", "/v1/gateways/carrier"),
    ):
        r = await api.call(method, path, token=token)
        assert (r.status, r.error_id) == (403, "operator-only"), (method, path)
    assert (await api.delete("/v1/gateways/carrier")).status == 204
    assert (await api.get("/v1/gateways/carrier")).status == 404


async def test_tokens(api: Api) -> None:
    await api.tenant("acme")
    token = await api.token_for("acme")
    mine = await api.post(
        "/v1/tokens", {"scope": "tenant", "tenant_id": "acme", "label": "staff"}, token=token
    )
    assert mine.status == 201 and mine.body["tenant_id"] == "acme"
    listed = await api.get("/v1/tokens", token=token)
    assert {t["label"] for t in listed.body["items"]} >= {"staff"}
    assert all("token" not in t for t in listed.body["items"])
    op = await api.post("/v1/tokens", {"scope": "operator"}, token=token)
    assert (op.status, op.error_id) == (403, "operator-only")
