"""One name per field, and writes that say what else they switched.

- `voicemail_ring_time` / `recording_notice` on the number resource and its sub-resources;
  the sub-resources' old names (`ring_time`, `notice`) are accepted (not both at once) and
  answered, documented `deprecated`.
- PATCH options / after-hours / forwarding answer `side_effects`: each setting a service rule
  switched although the request did not name it, documented in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.model import SLOTS_PER_DAY

from .conftest import BOTH_BACKENDS, Api, nq


@pytest.fixture(params=BOTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _number(api: Api) -> str:
    await api.tenant("acme")
    base = f"/v1/tenants/acme/numbers/{nq(await api.contract_number('acme'))}"
    opts = {"voicemail": True, "recording": True, "after_hours": True, "forwarding": True}
    assert (await api.patch(base + "/options", opts)).status == 200
    return base


async def test_old_and_new_names_reach_the_same_setting(api: Api) -> None:
    base = await _number(api)
    for body, seconds in (({"voicemail_ring_time": 10}, 10), ({"ring_time": 20}, 20)):
        r = await api.patch(base + "/voicemail", body)
        assert r.body == {"enabled": True, "voicemail_ring_time": seconds, "ring_time": seconds}
        assert (await api.get(base)).body["voicemail_ring_time"] == seconds
    for body, on in (({"recording_notice": True}, True), ({"notice": False}, False)):
        r = await api.patch(base + "/recording", body)
        assert r.body == {"enabled": True, "recording_notice": on, "notice": on}
        assert (await api.get(base)).body["recording_notice"] is on


async def test_both_names_at_once_or_neither_is_422(api: Api) -> None:
    base = await _number(api)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/voicemail", {"voicemail_ring_time": 10, "ring_time": 10}, "ring_time"),
        ("/voicemail", {}, "voicemail_ring_time"),
        ("/recording", {"recording_notice": True, "notice": True}, "notice"),
        ("/recording", {}, "recording_notice"),
    ]
    for path, body, field in cases:
        r = await api.patch(base + path, body)
        assert (r.status, r.error_id) == (422, "invalid-payload"), r.body
        assert r.body["details"]["field"] == field


async def test_after_hours_on_says_it_turned_forwarding_off(api: Api) -> None:
    base = await _number(api)
    r = await api.patch(base + "/forwarding", {"enabled": True, "target": "09012345678"})
    assert r.body["side_effects"] == []  # after-hours was off: nothing else switched
    r = await api.patch(base + "/after-hours", {"enabled": True})
    assert r.status == 200 and r.body["enabled"] is True
    assert r.body["side_effects"] == [
        {
            "setting": "forwarding.enabled",
            "from": True,
            "to": False,
            "rule": "after-hours-excludes-forwarding",
        }
    ]
    assert (await api.get(base + "/forwarding")).body["enabled"] is False
    again = await api.patch(base + "/after-hours", {"enabled": True})
    assert again.body["side_effects"] == []  # already off: no side effect to report


async def test_unsubscribing_says_it_switched_the_function_off(api: Api) -> None:
    base = await _number(api)
    slots = {"sunday": ["announce"] * SLOTS_PER_DAY}
    assert (await api.patch(base + "/after-hours", {"enabled": True, "slots": slots})).status == 200
    r = await api.patch(base + "/options", {"after_hours": False})
    assert r.status == 200 and r.body["after_hours"] is False
    assert r.body["side_effects"] == [
        {
            "setting": "after_hours.enabled",
            "from": True,
            "to": False,
            "rule": "unsubscribed-option-is-off",
        }
    ]


async def test_the_document_says_so(api: Api) -> None:
    doc = (await api.get("/v1/openapi.json", token=None)).body
    schemas = doc["components"]["schemas"]
    for name in ("ForwardingChange", "AfterHoursChange", "NumberOptionsChange"):
        assert "side_effects" in schemas[name]["required"]
        items = schemas[name]["properties"]["side_effects"]["items"]
        assert items == {"$ref": "#/components/schemas/SideEffect"}
    assert set(schemas["SideEffect"]["properties"]["rule"]["enum"]) == {
        "forwarding-excludes-after-hours",
        "after-hours-excludes-forwarding",
        "unsubscribed-option-is-off",
    }
    path = "/v1/tenants/{tenant_id}/numbers/{number}/forwarding"
    answer = doc["paths"][path]["patch"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/ForwardingChange"}
    vm = doc["paths"]["/v1/tenants/{tenant_id}/numbers/{number}/voicemail"]["patch"]
    body = vm["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["ring_time"]["deprecated"] is True
    assert body["allOf"] == [
        {"oneOf": [{"required": ["voicemail_ring_time"]}, {"required": ["ring_time"]}]}
    ]
    assert schemas["Voicemail"]["properties"]["ring_time"]["deprecated"] is True
    assert schemas["Recording"]["properties"]["notice"]["deprecated"] is True
    assert {"/v1/audit", "/v1/tenants/{tenant_id}/audit"} <= set(doc["paths"])
    for error_id, status in {
        "tenant-suspended": 403,
        "json-too-deep": 400,
        "request-line-too-long": 414,
        "header-too-large": 431,
        "bad-http-request": 400,
    }.items():
        assert doc["x-error-ids"][error_id] == status
