"""CDRs in the real stores (SQLite file and PostgreSQL): idempotent batched inserts (both
insert forms on PostgreSQL), history filters and keyset pages, an ID's roles, statement
months, retention, and the history/statement service with billing's statement builder."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing import default_tariffs
from billing.cdr_rating import rate_record
from billing.statement_doc import CdrStatements
from provisioning.errors import Forbidden, NotFound
from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallQuery, CallRecord, DeviceRole
from provisioning.services import Principal, Services
from provisioning.services.cdrs import (
    CallHistoryService,
    CallRecordRepo,
    NoSuchMonth,
    StatementsUnavailable,
)
from provisioning.store import Store
from provisioning.store.queries import cdrs as q

from .conftest import OP, make_tenant

pytestmark = pytest.mark.integration

TABLE = default_tariffs()
T0 = datetime(2024, 5, 10, 1, 0, tzinfo=UTC)  # billing month 2024-05 in Tokyo
NOW = datetime(2024, 5, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
async def cdr_store(store: Store) -> AsyncIterator[Store]:
    async with store.migration() as tx:
        await tx.execute("DELETE FROM cdr_devices")
        await tx.execute("DELETE FROM cdrs")
    yield store


def make(i: int, tenant: str = "t1", **fields: Any) -> CallRecord:
    start = fields.pop("started_at", T0 + timedelta(minutes=i))
    seconds = fields.pop("seconds", 61)
    base: dict[str, Any] = {
        "cdr_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cdr:{tenant}:{i}")),
        "call_id": f"call-{tenant}-{i}", "node": "n1", "tenant_id": tenant,
        "direction": CallDirection.OUTBOUND, "outcome": CallOutcome.ANSWERED,
        "dialled": "09011112222", "callee": "+819011112222", "number": "+81312345678",
        "caller_device": f"{tenant}-app", "caller_device_kind": DeviceKind.APP,
        "started_at": start, "answered_at": start if seconds else None,
        "ended_at": start + timedelta(seconds=seconds), "billable_seconds": seconds,
    }  # fmt: skip
    return rate_record(CallRecord(**{**base, **fields}), TABLE, "Asia/Tokyo")


async def count(store: Store) -> tuple[int, int]:
    async with store.read() as tx:
        rows = await tx.fetchval("SELECT COUNT(*) FROM cdrs")
        roles = await tx.fetchval("SELECT COUNT(*) FROM cdr_devices")
    return int(rows), int(roles)


# --------------------------------------------------------------------------- writes
@pytest.mark.parametrize("form", ["values", "unnest", "copy"])
async def test_batched_inserts_are_idempotent(cdr_store: Store, form: str) -> None:
    repo = CallRecordRepo(cdr_store, pg_form=form)  # SQLite: always VALUES
    batch = [make(i, rang=("t1-desk",)) for i in range(1000)]  # more than one VALUES chunk
    assert await repo.insert(batch, now=NOW) == 1000
    assert await count(cdr_store) == (1000, 2000)
    # a replay of part of it, with new ones: only the new ones count
    assert await repo.insert([*batch[500:], make(1000)], now=NOW) == 1
    assert await count(cdr_store) == (1001, 2001)
    async with cdr_store.read() as tx:
        back = await q.list_calls(tx, CallQuery(tenant_id="t1"), before=None, limit=1)
    assert back[0][0] == make(1000)  # every field, the rating included, survives the store


async def test_a_record_with_every_optional_field_round_trips(cdr_store: Store) -> None:
    full = make(
        1, direction=CallDirection.INBOUND, caller="+819033334444", callee="+81312345678",
        caller_device=None, caller_device_kind=None, rang=("a", "b"), answered_device="a",
        answered_device_kind=DeviceKind.DESK, shown_to=("c",), presented_number="+81312345678",
        forwarded_to=None, sip_status=200, end_reason="bye", rule="inbound-ring",
        recorded=True, has_plan=False, caller_category="payphone",
    )  # fmt: skip
    empty = make(2, tenant_id=None, number=None, callee=None, caller_device=None,
                 caller_device_kind=None, seconds=0, outcome=CallOutcome.REFUSED,
                 dialled="")  # fmt: skip
    await CallRecordRepo(cdr_store).insert([full, empty], now=NOW)
    async with cdr_store.read() as tx:
        got = {r.cdr_id: r for r, _ in await q.list_calls(tx, CallQuery(), before=None, limit=5)}
    assert got == {full.cdr_id: full, empty.cdr_id: empty}


# --------------------------------------------------------------------------- history
async def history(store: Store, query: CallQuery, size: int = 50) -> list[list[str]]:
    svc = CallHistoryService(store)
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await svc.list_calls(OP, query, cursor=cursor, limit=size)
        pages.append([r.cdr_id for r, _ in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def test_history_pages_newest_first_without_gaps_or_repeats(
    cdr_store: Store, svc: Services
) -> None:
    tid, _, _ = await make_tenant(svc)
    same_start = [make(i, tenant=tid, started_at=T0) for i in range(10)]  # ties on start
    records = [make(i, tenant=tid) for i in range(10, 125)] + same_start
    await CallRecordRepo(cdr_store).insert(records, now=NOW)
    pages = await history(cdr_store, CallQuery(tenant_id=tid))
    assert [len(p) for p in pages] == [50, 50, 25]
    flat = [c for p in pages for c in p]
    expected = sorted(records, key=lambda r: (r.started_at, r.cdr_id), reverse=True)
    assert flat == [r.cdr_id for r in expected]


async def test_history_filters(cdr_store: Store, svc: Services) -> None:
    tid, _, _ = await make_tenant(svc)
    other, _, _ = await make_tenant(svc)
    records = [
        make(1, tenant=tid),  # outbound, answered, from the app
        make(2, tenant=tid, direction=CallDirection.INBOUND, caller="+819055556666",
             callee="+81312345679", number="+81312345679", caller_device=None,
             caller_device_kind=None, rang=(f"{tid}-desk",), seconds=0,
             outcome=CallOutcome.NO_ANSWER),
        make(3, tenant=tid, started_at=T0 + timedelta(days=3)),
        make(4, tenant=other),
    ]  # fmt: skip
    await CallRecordRepo(cdr_store).insert(records, now=NOW)

    async def ids(**filters: Any) -> set[str]:
        return {c for p in await history(cdr_store, CallQuery(tenant_id=tid, **filters)) for c in p}

    c1, c2, c3 = (r.cdr_id for r in records[:3])
    assert await ids() == {c1, c2, c3}  # never the other tenant's
    assert await ids(since=T0 + timedelta(days=1)) == {c3}
    assert await ids(until=T0 + timedelta(minutes=2)) == {c1}  # half-open
    assert await ids(number="+81312345679") == {c2}
    assert await ids(party="+819055556666") == {c2}
    assert await ids(party="+819011112222") == {c1, c3}
    assert await ids(direction=CallDirection.INBOUND) == {c2}
    assert await ids(outcome=CallOutcome.NO_ANSWER) == {c2}
    assert await ids(device=f"{tid}-desk") == {c2}
    assert await ids(device=f"{tid}-app", since=T0 + timedelta(days=1)) == {c3}
    assert await ids(direction=CallDirection.OUTBOUND, outcome=CallOutcome.NO_ANSWER) == set()
    everyone = {c for p in await history(cdr_store, CallQuery()) for c in p}
    assert everyone == {r.cdr_id for r in records}


async def test_device_history_gives_each_ids_role(cdr_store: Store, svc: Services) -> None:
    tid, _, devices = await make_tenant(svc, ids=3)
    a, b, c = devices
    calls = [
        make(1, tenant=tid, caller_device=a),  # a called out
        make(2, tenant=tid, direction=CallDirection.INBOUND, caller_device=None,
             caller_device_kind=None, rang=(a, b), answered_device=b),  # b answered, a missed
        make(3, tenant=tid, direction=CallDirection.FORWARDED, caller_device=None,
             caller_device_kind=None, shown_to=(a, b, c), forwarded_to="+819011113333"),
    ]  # fmt: skip
    await CallRecordRepo(cdr_store).insert(calls, now=NOW)
    hist = CallHistoryService(cdr_store)
    page = await hist.device_calls(OP, CallQuery(tenant_id=tid, device=a), cursor=None)
    assert [(r.cdr_id, role) for r, role in page.items] == [
        (calls[2].cdr_id, DeviceRole.SHOWN),
        (calls[1].cdr_id, DeviceRole.RANG),
        (calls[0].cdr_id, DeviceRole.CALLER),
    ]
    page = await hist.device_calls(OP, CallQuery(tenant_id=tid, device=b), cursor=None)
    assert [role for _, role in page.items] == [DeviceRole.SHOWN, DeviceRole.ANSWERED]
    other, _, other_devices = await make_tenant(svc)
    with pytest.raises(NotFound):  # another tenant's ID through this tenant
        await hist.device_calls(OP, CallQuery(tenant_id=tid, device=other_devices[0]), cursor=None)
    with pytest.raises(Forbidden):
        await hist.device_calls(
            Principal.for_tenant(other), CallQuery(tenant_id=tid, device=a), cursor=None
        )


async def test_scope_of_the_history(cdr_store: Store, svc: Services) -> None:
    tid, _, _ = await make_tenant(svc)
    hist = CallHistoryService(cdr_store)
    with pytest.raises(NotFound):
        await hist.list_calls(OP, CallQuery(tenant_id="no-such-tenant"), cursor=None)
    with pytest.raises(Forbidden):  # every tenant at once: the operator only
        await hist.list_calls(Principal.for_tenant(tid), CallQuery(), cursor=None)
    page = await hist.list_calls(Principal.for_tenant(tid), CallQuery(tenant_id=tid), cursor=None)
    assert page.items == [] and page.next_cursor is None


async def test_export_reads_page_by_page(cdr_store: Store, svc: Services) -> None:
    from provisioning.services import cdrs as service_module

    tid, _, _ = await make_tenant(svc)
    records = [make(i, tenant=tid) for i in range(service_module.EXPORT_PAGE * 2 + 7)]
    await CallRecordRepo(cdr_store).insert(records, now=NOW)
    pages = await CallHistoryService(cdr_store).export_calls(OP, CallQuery(tenant_id=tid))
    sizes = [len(p) async for p in pages]
    assert sizes == [service_module.EXPORT_PAGE, service_module.EXPORT_PAGE, 7]


# --------------------------------------------------------------------------- months, retention
async def test_month_queries(cdr_store: Store) -> None:
    may = [make(i, tenant=t) for i in range(3) for t in ("tb", "ta")]
    june = make(9, tenant="ta", started_at=datetime(2024, 5, 26, 0, 0, tzinfo=UTC))
    await CallRecordRepo(cdr_store).insert([*may, june], now=NOW)
    async with cdr_store.read() as tx:
        assert await q.month_tenants(tx, "2024-05", after=None, limit=10) == ["ta", "tb"]
        assert await q.month_tenants(tx, "2024-05", after="ta", limit=10) == ["tb"]
        assert await q.month_tenants(tx, "2024-06", after=None, limit=10) == ["ta"]
        first = await q.month_calls(tx, "ta", "2024-05", after=None, limit=2)
        key = (first[-1].started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), first[-1].cdr_id)
        rest = await q.month_calls(tx, "ta", "2024-05", after=key, limit=10)
    assert [r.cdr_id for r in first + rest] == [r.cdr_id for r in may if r.tenant_id == "ta"]


async def test_retention_deletes_old_cdrs_and_their_roles(cdr_store: Store) -> None:
    old = [make(i, started_at=T0 - timedelta(days=401), rang=("x",)) for i in range(7)]
    kept = [make(i + 100, rang=("x",)) for i in range(3)]
    repo = CallRecordRepo(cdr_store)
    await repo.insert(old + kept, now=NOW)
    assert await repo.expire(T0, 400, batch=3) == 7
    assert await count(cdr_store) == (3, 6)
    assert await repo.expire(T0, 400) == 0


# --------------------------------------------------------------------------- statements
async def test_statements_from_the_store(cdr_store: Store, svc: Services) -> None:
    tid, number, devices = await make_tenant(svc, ids=2)
    app, desk = devices
    calls = [
        make(1, tenant=tid, caller_device=app, number=number),  # app 61 s: ¥60
        make(2, tenant=tid, caller_device=desk, caller_device_kind=DeviceKind.DESK,
             number=number, seconds=180),  # desk to a mobile 3 min: ¥52.5
        make(3, tenant=tid, started_at=datetime(2024, 4, 20, tzinfo=UTC)),  # April's
    ]  # fmt: skip
    await CallRecordRepo(cdr_store).insert(calls, now=NOW)
    hist = CallHistoryService(cdr_store, CdrStatements(TABLE), clock=lambda: NOW)
    current = await hist.statement(OP, tid, None)
    assert (current["month"], current["open"], current["payable_yen"]) == ("2024-05", True, 112)
    assert current["total"]["charge_tenths"] == 600 + 525
    assert {d["device_id"]: d["total"]["charge_tenths"] for d in current["by_device"]} == {
        app: 600, desk: 525,
    }  # fmt: skip
    april = await hist.statement(Principal.for_tenant(tid), tid, "2024-04")
    assert (april["open"], april["total"]["calls"]) == (False, 1)
    with pytest.raises(NoSuchMonth):
        await hist.statement(OP, tid, "2024-06")  # not begun yet
    with pytest.raises(NoSuchMonth):
        await hist.statement(OP, tid, "May")
    with pytest.raises(NotFound):
        await hist.statement(OP, "no-such-tenant", None)
    with pytest.raises(StatementsUnavailable):
        await CallHistoryService(cdr_store).statement(OP, tid, None)


async def test_operator_statements_page_through_tenants(cdr_store: Store, svc: Services) -> None:
    tenants = sorted([(await make_tenant(svc))[0] for _ in range(3)])
    await CallRecordRepo(cdr_store).insert(
        [make(i, tenant=t) for i, t in enumerate(tenants)], now=NOW
    )
    hist = CallHistoryService(cdr_store, CdrStatements(TABLE), clock=lambda: NOW)
    first = await hist.all_statements(OP, "2024-05", cursor=None, limit=2)
    assert [d["tenant_id"] for d in first.items] == tenants[:2]
    assert first.next_cursor is not None
    rest = await hist.all_statements(OP, "2024-05", cursor=first.next_cursor, limit=2)
    assert [d["tenant_id"] for d in rest.items] == tenants[2:] and rest.next_cursor is None
    assert all("by_device" not in d for d in first.items + rest.items)
    with pytest.raises(Forbidden):
        await hist.all_statements(Principal.for_tenant(tenants[0]), "2024-05", cursor=None)
