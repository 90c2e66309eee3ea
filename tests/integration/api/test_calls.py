"""The call history and statement resources over HTTP (real store: SQLite, and PostgreSQL for
the parametrised tests): filters, cursor pages, the streamed CSV export, the device-facing
view, statements per tenant and for the operator, tenant isolation, stable error_ids."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from billing import default_tariffs
from billing.cdr_rating import rate_record
from billing.statement_doc import CdrStatements
from provisioning.api import mount_api
from provisioning.api.resources.calls import CALL_PAGE, CSV_COLUMNS, DEVICE_CALL_PAGE
from provisioning.api.resources.statements import STATEMENT, STATEMENT_PAGE
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRecord
from provisioning.services import Principal, Services
from provisioning.services import cdrs as cdr_service
from provisioning.services.cdrs import CallHistoryService, CallRecordRepo

from .conftest import BOTH_BACKENDS, Api

TABLE = default_tariffs()
T0 = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)  # 10:00 Tokyo, billing month 2024-05
NOW = datetime(2024, 5, 20, 0, 0, tzinfo=UTC)
CALLER = "+819055556666"


@pytest.fixture(params=BOTH_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def capi(service: Services, aiohttp_client: Any) -> Api:
    """The API as the node mounts it: history and statements with billing's builder."""
    registry = CollectorRegistry()
    root = web.Application()
    calls = CallHistoryService(service.store, CdrStatements(TABLE), clock=lambda: NOW)
    api_app = mount_api(root, service, registry=registry, calls=calls)
    client = await aiohttp_client(root)
    created = await service.tokens.create_token(Principal.operator(), scope="operator")
    return Api(client, service, created.token, api_app, registry)


_n = 0


def cdr(tenant: str, minutes: float, **fields: Any) -> CallRecord:
    global _n
    _n += 1
    start = T0 + timedelta(minutes=minutes)
    seconds = fields.pop("seconds", 61)
    base: dict[str, Any] = {
        "cdr_id": f"{tenant}-cdr-{_n:05d}", "call_id": f"call-{_n}", "node": "n1",
        "tenant_id": tenant, "direction": CallDirection.OUTBOUND,
        "outcome": CallOutcome.ANSWERED if seconds else CallOutcome.NO_ANSWER,
        "dialled": "09011112222", "callee": "+819011112222", "started_at": start,
        "answered_at": start if seconds else None, "ended_at": start + timedelta(seconds=seconds),
        "billable_seconds": seconds,
    }  # fmt: skip
    return rate_record(CallRecord(**{**base, **fields}), TABLE, "Asia/Tokyo")


async def seed(api: Api) -> dict[str, Any]:
    """Tenant a (desk a-d0, apps a-d1 a-d2) with one call of each kind; tenant b with one."""
    await api.tenant("a", ids=3)
    await api.tenant("b")
    number = await api.contract_number("a")
    calls = {
        "out": cdr("a", 1, caller_device="a-d1", caller_device_kind=DeviceKind.APP,
                   number=number, presented_number=number),
        "in": cdr("a", 2, direction=CallDirection.INBOUND, caller=CALLER, callee=number,
                  number=number, rang=("a-d0", "a-d1"), answered_device="a-d0",
                  answered_device_kind=DeviceKind.DESK),
        "missed": cdr("a", 3, direction=CallDirection.INBOUND, caller=CALLER, callee=number,
                      number=number, rang=("a-d1",), seconds=0),
        "fwd": cdr("a", 4, direction=CallDirection.FORWARDED, caller=CALLER,
                   callee="+819011113333", forwarded_to="+819011113333", number=number,
                   shown_to=("a-d0", "a-d1", "a-d2")),
        "formula": cdr("a", 5, direction=CallDirection.INBOUND, caller="=HYPERLINK(\"x\")",
                       callee=number, number=number, seconds=0),
        "b": cdr("b", 1, caller_device="b-d0", caller_device_kind=DeviceKind.DESK),
    }  # fmt: skip
    await CallRecordRepo(api.service.store).insert(list(calls.values()), now=NOW)
    return {"number": number, **calls}


async def ids(api: Api, path: str, **kw: Any) -> list[str]:
    r = await api.get(path, **kw)
    assert r.status == 200, r.body
    CALL_PAGE.validate(r.body)  # the documented shape
    return [c["cdr_id"] for c in r.body["items"]]


async def test_history_filters_and_isolation(capi: Api) -> None:
    s = await seed(capi)
    newest_first = [s[k].cdr_id for k in ("formula", "fwd", "missed", "in", "out")]
    assert await ids(capi, "/v1/tenants/a/calls") == newest_first
    token_a, token_b = await capi.token_for("a"), await capi.token_for("b")
    assert await ids(capi, "/v1/tenants/a/calls", token=token_a) == newest_first
    hidden = await capi.get("/v1/tenants/a/calls", token=token_b)
    assert (hidden.status, hidden.error_id) == (404, "not-found")
    national = "0" + s["number"][3:]  # the API takes any usual form
    base = "/v1/tenants/a/calls"
    got = await ids(capi, f"{base}?number={national}&direction=inbound&outcome=no-answer")
    assert got == [s["formula"].cdr_id, s["missed"].cdr_id]
    assert await ids(capi, f"{base}?number=0399999999") == []
    assert await ids(capi, f"{base}?device=a-d0") == [s["fwd"].cdr_id, s["in"].cdr_id]
    assert await ids(capi, f"{base}?direction=forwarded") == [s["fwd"].cdr_id]
    assert await ids(capi, f"{base}?party=%2B819011112222") == [s["out"].cdr_id]
    since = (T0 + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    until = (T0 + timedelta(minutes=4)).isoformat()
    assert await ids(capi, f"{base}?since={since}&until={until.replace('+', '%2B')}") == [
        s["missed"].cdr_id, s["in"].cdr_id,
    ]  # fmt: skip
    everyone = await ids(capi, "/v1/calls")
    assert set(everyone) == {c.cdr_id for k, c in s.items() if k != "number"}
    assert await ids(capi, "/v1/calls?tenant=b") == [s["b"].cdr_id]
    r = await capi.get("/v1/calls", token=token_a)
    assert (r.status, r.error_id) == (403, "operator-only")


async def test_history_items_carry_the_rating(capi: Api) -> None:
    s = await seed(capi)
    r = await capi.get("/v1/tenants/a/calls?direction=outbound")
    (item,) = r.body["items"]
    assert (item["charge"], item["charge_tenths"], item["tariff_version"]) == (
        "60", 600, "2021-06-26",
    )  # fmt: skip
    assert (item["billing_month"], item["call_class"], item["caller_device"]) == (
        "2024-05", "mobile", "a-d1",
    )  # fmt: skip
    assert item["role"] is None and item["cdr_id"] == s["out"].cdr_id


@pytest.mark.parametrize(
    ("query", "status", "error_id"),
    [
        ("since=2024-05-10T00:00:00Z&until=2024-05-10T00:00:00Z", 400, "invalid-filter"),
        ("since=2024-05-10T00:00:00", 400, "invalid-filter"),  # no offset
        ("since=yesterday", 400, "invalid-filter"),
        ("number=12", 400, "invalid-filter"),
        ("direction=sideways", 400, "invalid-query"),
        ("outcome=maybe", 400, "invalid-query"),
        ("colour=blue", 400, "invalid-query"),
        ("cursor=%%%", 400, "invalid-cursor"),
        ("format=xml", 400, "invalid-query"),
        ("limit=0", 400, "invalid-query"),
    ],
)
async def test_bad_filters(capi: Api, query: str, status: int, error_id: str) -> None:
    await capi.tenant("a")
    r = await capi.get(f"/v1/tenants/a/calls?{query}")
    assert (r.status, r.error_id) == (status, error_id), r.body


async def test_cursor_pages(capi: Api) -> None:
    await capi.tenant("a")
    records = [cdr("a", i) for i in range(23)]
    await CallRecordRepo(capi.service.store).insert(records, now=NOW)
    seen: list[str] = []
    path = "/v1/tenants/a/calls?limit=10"
    while path:
        r = await capi.get(path)
        seen += [c["cdr_id"] for c in r.body["items"]]
        cursor = r.body["next_cursor"]
        path = f"/v1/tenants/a/calls?limit=10&cursor={cursor}" if cursor else ""
    assert seen == [r.cdr_id for r in reversed(records)]


async def test_csv_export_is_streamed_and_safe(capi: Api) -> None:
    s = await seed(capi)
    many = [cdr("a", 100 + i) for i in range(cdr_service.EXPORT_PAGE + 20)]
    await CallRecordRepo(capi.service.store).insert(many, now=NOW)
    resp = await capi.client.get(
        "/v1/tenants/a/calls?format=csv", headers={"Authorization": f"Bearer {capi.operator}"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers.get("Transfer-Encoding") == "chunked"  # streamed, no Content-Length
    text = await resp.text()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + len(many) + 5
    by_id = {row[0]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert by_id[s["formula"].cdr_id]["caller"] == '\'=HYPERLINK("x")'  # never a formula
    assert by_id[s["in"].cdr_id]["caller"] == CALLER  # +81… left as it is
    assert by_id[s["out"].cdr_id]["charge"] == "60"
    assert by_id[s["in"].cdr_id]["rang"] == "a-d0 a-d1"
    assert s["b"].cdr_id not in by_id
    filtered = await capi.client.get(
        "/v1/tenants/a/calls?format=csv&direction=forwarded",
        headers={"Authorization": f"Bearer {capi.operator}"},
    )
    assert len(list(csv.reader(io.StringIO(await filtered.text())))) == 2
    other = await capi.get("/v1/tenants/a/calls?format=csv", token=await capi.token_for("b"))
    assert (other.status, other.error_id) == (404, "not-found")  # a JSON error, not a CSV


async def test_device_view_is_what_the_app_shows(capi: Api) -> None:
    s = await seed(capi)
    r = await capi.get("/v1/tenants/a/devices/a-d1/calls", token=await capi.token_for("a"))
    assert r.status == 200, r.body
    DEVICE_CALL_PAGE.validate(r.body)
    view = {c["cdr_id"]: c for c in r.body["items"]}
    assert list(view) == [s[k].cdr_id for k in ("fwd", "missed", "in", "out")]
    out, answered, missed, fwd = (view[s[k].cdr_id] for k in ("out", "in", "missed", "fwd"))
    assert (out["direction"], out["other_party"], out["charge"]) == (
        "outgoing", "+819011112222", "60",
    )  # fmt: skip
    assert (answered["direction"], answered["other_party"], answered["answered_elsewhere"]) == (
        "incoming", CALLER, True,
    )  # fmt: skip
    assert (answered["answered_here"], answered["missed"], answered["charge"]) == (
        False, False, None,
    )  # fmt: skip
    assert (missed["missed"], missed["role"], missed["number"]) == (True, "rang", s["number"])
    # the forwarded call shows its original caller, which the forward target never saw
    assert (fwd["other_party"], fwd["forwarded_to"], fwd["role"]) == (
        CALLER, "+819011113333", "shown",
    )  # fmt: skip
    desk = await capi.get("/v1/tenants/a/devices/a-d0/calls")
    here = {c["cdr_id"]: c for c in desk.body["items"]}[s["in"].cdr_id]
    assert (here["answered_here"], here["answered_elsewhere"]) == (True, False)
    for path, token in [
        ("/v1/tenants/a/devices/b-d0/calls", None),  # b's ID under a
        ("/v1/tenants/b/devices/b-d0/calls", await capi.token_for("a")),
        ("/v1/tenants/a/devices/nobody/calls", None),
    ]:
        r = await capi.get(path, **({"token": token} if token else {}))
        assert (r.status, r.error_id) == (404, "not-found"), path


async def test_statements(capi: Api) -> None:
    await seed(capi)
    token_a = await capi.token_for("a")
    r = await capi.get("/v1/tenants/a/statements/current", token=token_a)
    assert r.status == 200, r.body
    STATEMENT.validate(r.body)
    assert (r.body["month"], r.body["open"], r.body["total"]["calls"]) == ("2024-05", True, 5)
    assert r.body["total"]["charge_tenths"] == 600 + 350  # the app's call + the forwarded leg
    assert r.body["payable_yen"] == 95
    same = await capi.get("/v1/tenants/a/statements/2024-05")
    assert same.body == r.body
    closed = await capi.get("/v1/tenants/a/statements/2024-04")
    assert (closed.status, closed.body["open"], closed.body["total"]["calls"]) == (200, False, 0)
    for month in ("2024-06", "2024-13", "may", "current2"):
        r = await capi.get(f"/v1/tenants/a/statements/{month}")
        assert (r.status, r.error_id) == (404, "no-such-month"), month
    hidden = await capi.get("/v1/tenants/a/statements/current", token=await capi.token_for("b"))
    assert (hidden.status, hidden.error_id) == (404, "not-found")
    everyone = await capi.get("/v1/statements/2024-05")
    assert everyone.status == 200, everyone.body
    STATEMENT_PAGE.validate(everyone.body)
    assert [d["tenant_id"] for d in everyone.body["items"]] == ["a", "b"]
    assert (await capi.get("/v1/statements/2024-05", token=token_a)).status == 403
    assert (await capi.get("/v1/statements/2099-01")).error_id == "no-such-month"


async def test_statements_need_the_builder(api: Api) -> None:
    """`mount_api` without the composition root's builder: a clean 503, history still works."""
    await api.tenant("a")
    r = await api.get("/v1/tenants/a/statements/current")
    assert (r.status, r.error_id) == (503, "statements-unavailable")
    assert (await api.get("/v1/tenants/a/calls")).status == 200


async def test_openapi_documents_the_resources(capi: Api) -> None:
    doc = (await capi.get("/v1/openapi.json")).body
    listing = doc["paths"]["/v1/tenants/{tenant_id}/calls"]["get"]["responses"]["200"]["content"]
    assert set(listing) == {"application/json", "text/csv"}
    assert listing["application/json"]["schema"] == {"$ref": "#/components/schemas/CallPage"}
    for path in (
        "/v1/calls",
        "/v1/statements/{month}",
        "/v1/tenants/{tenant_id}/statements/current",
    ):
        assert path in doc["paths"]
    for error_id in ("invalid-filter", "no-such-month", "statements-unavailable"):
        assert error_id in doc["x-error-ids"]
    assert {"Call", "DeviceCall", "Statement", "StatementTotals"} <= set(
        doc["components"]["schemas"]
    )
