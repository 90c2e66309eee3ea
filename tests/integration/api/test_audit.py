"""The audit log on both backends: every successful write through the API leaves one entry
(who, what route and parameters, which tenant, when, status), written in the transaction of
the change; reads and refused writes leave none; no body or secret is ever in it. The
operator's listing filters and pages; a tenant sees its own tenant's entries only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioning.api import API_VOICEMAIL
from provisioning.records import NewMessage
from provisioning.services import PendingAudit
from provisioning.store.queries import audit as audit_queries

from .conftest import BOTH_BACKENDS, Api, nq


@pytest.fixture(params=BOTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def entries(api: Api, query: str = "", token: Any = ...) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/audit{query}", token=token)
    assert r.status == 200, r.body
    return list(r.body["items"])


def token_id(token: str) -> str:
    return token.split(".", 1)[0]


async def test_each_successful_write_leaves_one_entry(api: Api) -> None:
    start = datetime.now(UTC)
    await api.tenant("acme", ids=2)  # POST /tenants + POST /devices
    own = await api.token_for("acme")  # POST /tokens
    number = nq(await api.contract_number("acme"))
    assert (await api.patch("/v1/tenants/acme", {"name": "Acme"}, token=own)).status == 200
    pw = await api.put(
        "/v1/tenants/acme/devices/acme-d1/password", {"password": "s3cret-pass!"}, token=own
    )
    assert pw.status == 204
    refused = await api.patch(f"/v1/tenants/acme/numbers/{number}/forwarding", {"enabled": True})
    assert refused.status == 409  # no option: refused, so no entry
    assert (await api.get("/v1/tenants/acme", token=own)).status == 200  # a read: no entry
    got = await entries(api)
    assert [(e["method"], e["route"]) for e in got] == [
        ("PUT", "/v1/tenants/{tenant_id}/devices/{device_id}/password"),
        ("PATCH", "/v1/tenants/{tenant_id}"),
        ("POST", "/v1/tokens"),
        ("POST", "/v1/tenants/{tenant_id}/devices"),
        ("POST", "/v1/tenants"),
    ]  # newest first
    password, rename, mint, device, create = got
    assert password == {
        "id": password["id"],
        "at": password["at"],
        "token_id": token_id(own),
        "scope": "tenant",
        "tenant_id": "acme",
        "method": "PUT",
        "route": "/v1/tenants/{tenant_id}/devices/{device_id}/password",
        "params": {"tenant_id": "acme", "device_id": "acme-d1"},
        "status": 204,
    }
    assert rename["status"] == 200 and rename["scope"] == "tenant"
    assert (create["tenant_id"], create["params"], create["status"]) == ("acme", {}, 201)
    assert (mint["tenant_id"], mint["token_id"]) == ("acme", token_id(api.operator))
    assert device["params"] == {"tenant_id": "acme"} and device["scope"] == "operator"
    for e in got:
        assert start <= datetime.fromisoformat(e["at"]) <= datetime.now(UTC)
    text = json.dumps(got)
    for secret in ("s3cret-pass!", "secret-pass", own.split(".", 1)[1], "Acme"):
        assert secret not in text  # neither bodies nor secrets


async def test_filters_and_pages(api: Api) -> None:
    await api.tenant("a")
    await api.tenant("b")
    own = await api.token_for("b")
    for name in ("b1", "b2", "b3"):
        assert (await api.patch("/v1/tenants/b", {"name": name}, token=own)).status == 200
    everything = await entries(api)
    assert len(everything) == 6
    only_b = await entries(api, "?tenant_id=b")
    assert {e["tenant_id"] for e in only_b} == {"b"} and len(only_b) == 5
    mine = await entries(api, f"?token_id={token_id(own)}")
    assert len(mine) == 3 and {e["token_id"] for e in mine} == {token_id(own)}
    middle = everything[2]["at"]
    since = await entries(api, "?since=" + middle.replace("+00:00", "Z"))
    assert since == everything[:3]
    until = await entries(api, "?until=" + middle.replace("+00:00", "%2B00:00"))
    assert until == everything[3:]
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        r = await api.get(f"/v1/audit?limit=2{cursor}")
        seen += r.body["items"]
        if r.body["next_cursor"] is None:
            break
        cursor = f"&cursor={r.body['next_cursor']}"
    assert seen == everything


@pytest.mark.parametrize(
    ("query", "error_id"),
    [
        ("?since=yesterday", "invalid-query"),
        ("?since=2026-12-01T00:00:00", "invalid-query"),  # no zone
        ("?since=2026-02-30T00:00:00Z", "invalid-query"),
        ("?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", "invalid-input"),
        ("?cursor=nonsense", "invalid-cursor"),
    ],
)
async def test_bad_filters_are_400(api: Api, query: str, error_id: str) -> None:
    r = await api.get(f"/v1/audit{query}")
    assert (r.status, r.error_id) == (400, error_id), r.body


async def test_a_tenant_reads_its_own_trail_only(api: Api) -> None:
    await api.tenant("a")
    await api.tenant("b")
    a_token, b_token = await api.token_for("a"), await api.token_for("b")
    assert (await api.patch("/v1/tenants/a", {"name": "A2"}, token=a_token)).status == 200
    assert (await api.patch("/v1/tenants/b", {"name": "B2"}, token=b_token)).status == 200
    r = await api.get("/v1/tenants/a/audit", token=a_token)
    assert r.status == 200
    trail = r.body["items"]
    assert [e["tenant_id"] for e in trail] == ["a", "a", "a"]
    assert [(e["scope"], e["token_id"]) for e in trail] == [
        ("tenant", token_id(a_token)),
        ("operator", None),  # the operator minting a's token, without its token id
        ("operator", None),  # the operator creating tenant a
    ]
    by_operator = (await api.get("/v1/tenants/a/audit")).body["items"]
    assert by_operator[1]["token_id"] == token_id(api.operator)
    hidden = await api.get("/v1/tenants/a/audit", token=b_token)
    assert (hidden.status, hidden.error_id) == (404, "not-found")
    operator_only = await api.get("/v1/audit", token=a_token)
    assert (operator_only.status, operator_only.error_id) == (403, "operator-only")
    assert (await api.get("/v1/tenants/zzz/audit")).status == 404


async def test_the_entry_commits_with_the_change_or_not_at_all(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is written inside the change's own transaction: when writing it fails, the
    change is rolled back with it."""
    await api.tenant("acme")

    async def broken(*_: Any) -> None:
        raise RuntimeError("audit insert failed")

    monkeypatch.setattr(audit_queries, "insert_entry", broken)
    r = await api.patch("/v1/tenants/acme", {"name": "Changed"})
    assert (r.status, r.error_id) == (500, "internal-error")
    monkeypatch.undo()
    assert (await api.get("/v1/tenants/acme")).body["name"] == "acme K.K."
    assert [e["method"] for e in await entries(api)] == ["POST"]  # the creation only


async def test_voicemail_deletes_and_tenant_deletion_are_audited(api: Api) -> None:
    await api.tenant("acme")
    number = await api.contract_number("acme")
    base = f"/v1/tenants/acme/numbers/{nq(number)}"
    assert (await api.patch(base + "/options", {"voicemail": True})).status == 200
    message_id = await api.app[API_VOICEMAIL].save(
        NewMessage(
            tenant_id="acme",
            mailbox=number,
            caller="09011112222",
            dialled=number,
            received_at=datetime.now(UTC),
            pcm=b"\x01\x00" * 800,
        ),
        limit=15,
    )
    assert (await api.delete(f"{base}/voicemail/messages/{message_id}")).status == 204
    assert (await api.delete("/v1/tenants/acme")).status == 204
    got = await entries(api, "?tenant_id=acme")  # the tenant is gone, its trail is not
    assert [e["route"].rsplit("/", 1)[-1] for e in got] == [
        "{tenant_id}",
        "{message_id}",
        "options",
        "tenants",
    ]
    assert got[1]["params"] == {
        "tenant_id": "acme",
        "number": number,
        "message_id": message_id,
    }


async def test_retention_sweep(api: Api) -> None:
    audit = api.service.audit
    now = datetime.now(UTC)
    for days in (400, 366, 364, 1):
        pending = PendingAudit(
            token_id="tok_x", scope="operator", tenant_id="t", method="POST", route="/v1/x",
            status=201,
        )  # fmt: skip
        await audit.record(pending, now - timedelta(days=days))
        await audit.record(pending, now)  # written already: not twice
    assert len(await entries(api)) == 4
    assert await audit.sweep(now, 0) == 0  # 0 keeps everything
    assert await audit.sweep(now, 365) == 2
    left = [now - datetime.fromisoformat(e["at"]) for e in await entries(api)]
    assert sorted(d.days for d in left) == [1, 364]
    assert await audit.sweep(now + timedelta(days=400)) == 2  # default: 365 days
