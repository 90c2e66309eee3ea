"""A suspended tenant's tokens stop working on EVERY route (walked from the router, as the
isolation test does): 403 `tenant-suspended`, nothing changes. The operator still reads and
changes the tenant, and reactivating it brings its tokens back. Both backends."""

from __future__ import annotations

import pytest

from .conftest import BOTH_BACKENDS, Api
from .test_isolation import everything_of, populate_victim, routes, send

PUBLIC = {("GET", "/v1/openapi.json")}


@pytest.fixture(params=BOTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def suspend(api: Api, tenant: str, status: str = "suspended") -> None:
    r = await api.patch(f"/v1/tenants/{tenant}", {"status": status})
    assert r.status == 200 and r.body["status"] == status, r.body


async def test_a_suspended_tenants_token_is_refused_everywhere(api: Api) -> None:
    params = await populate_victim(api)
    own = await api.token_for("a")
    assert (await api.get("/v1/tenants/a", token=own)).status == 200
    await suspend(api, "a")
    before = await everything_of(api, "a")
    checked = 0
    for method, template in routes(api.app):
        r = await send(api, method, template, params, own)
        if (method, template) in PUBLIC:
            assert r.status == 200
            continue
        assert (r.status, r.error_id) == (403, "tenant-suspended"), (method, template, r.body)
        assert r.body["details"] == {"tenant_id": "a"}
        checked += 1
    assert checked == len(routes(api.app)) - len(PUBLIC) > 40
    assert await everything_of(api, "a") == before


async def test_the_issue_s_four_actions_are_refused(api: Api) -> None:
    """Read, rename, change a device password, mint a token: what the probe did."""
    await api.tenant("a", ids=2)
    own = await api.token_for("a")
    await suspend(api, "a")
    calls = [
        api.get("/v1/tenants/a", token=own),
        api.patch("/v1/tenants/a", {"name": "renamed"}, token=own),
        api.put("/v1/tenants/a/devices/a-d1/password", {"password": "new-pass-1"}, token=own),
        api.post("/v1/tokens", {"scope": "tenant", "tenant_id": "a"}, token=own),
    ]
    for call in calls:
        r = await call
        assert (r.status, r.error_id) == (403, "tenant-suspended"), r.body
    assert (await api.get("/v1/tenants/a")).body["name"] == "a K.K."
    tokens = (await api.get("/v1/tokens?tenant_id=a")).body["items"]
    assert len(tokens) == 1


async def test_the_operator_still_acts_and_reactivation_restores_the_tokens(api: Api) -> None:
    await api.tenant("a", ids=2)
    await api.tenant("b")
    own = await api.token_for("a")
    other = await api.token_for("b")
    await suspend(api, "a")
    assert (await api.get("/v1/tenants/a")).status == 200
    assert (await api.patch("/v1/tenants/a", {"name": "Renamed"})).status == 200
    pw = await api.put("/v1/tenants/a/devices/a-d1/password", {"password": "by-operator-1"})
    assert pw.status == 204, pw.body
    minted = await api.token_for("a")  # the operator may mint one; it is refused too
    assert (await api.get("/v1/tenants/a", token=minted)).error_id == "tenant-suspended"
    assert (await api.get("/v1/tenants/b", token=other)).status == 200  # others unaffected
    await suspend(api, "a", "active")
    for token in (own, minted):
        r = await api.get("/v1/tenants/a", token=token)
        assert r.status == 200 and r.body["name"] == "Renamed"


async def test_a_wrong_secret_is_401_even_for_a_suspended_tenant(api: Api) -> None:
    """Suspension is only revealed to a caller holding the token itself."""
    await api.tenant("a")
    own = await api.token_for("a")
    await suspend(api, "a")
    token_id = own.split(".", 1)[0]
    r = await api.get("/v1/tenants/a", token=f"{token_id}.not-the-secret")
    assert (r.status, r.error_id) == (401, "invalid-token")
