"""Call detail records: the repository the CDR writer stores into, and the call history and
statements the REST API serves (`api/resources/calls.py`, `api/resources/statements.py`).

Writing (`CallRecordRepo`, used by `switch.cdr_writer`): one `Store.data()` transaction per
batch (no routing version bump), idempotent on `cdr_id`, so a batch replayed from the
writer's spool after an outage never doubles a call. `expire` is the retention sweep.

Retention default: 400 days. A statement of a closed month must stay reproducible for as
long as a tenant can question it, and a tenant compares a month with the same month a year
earlier: 13 billing months (~396 days) plus a few days' margin for the sweep. Invoices (the
legal accounting record, 7 years in Japan) are the billing system's business, not these
rows. `[cdr] retention_days` changes it.

Reading: the history is keyset-paged, newest first; the CSV export reads the same query page
by page (each page its own short read transaction), so neither holds the whole result.

Statements need the rating rules, which live in `billing` — a package provisioning must not
import. The composition root (`switch/node.py`) injects a `StatementBuilder` (implemented
in `billing.statement_doc`): it names billing months and turns a month's CDRs into the
statement document. Without one, the statement operations answer 503
`statements-unavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..errors import NotFound, ProvisioningError
from ..records import CallQuery, CallRecord, DeviceRole, MonthSpan
from ..rules import PAGE_DEFAULT
from ..store.base import Store
from ..store.queries import cdrs as q
from ..store.queries import devices, tenants
from ..store.queries.sql import ts_text
from .base import Page, Principal, decode_cursor, encode_cursor, page_limit

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "CallHistoryService",
    "CallRecordRepo",
    "HistoryItem",
    "MonthSpan",
    "NoSuchMonth",
    "StatementBuilder",
    "StatementSheet",
    "StatementsUnavailable",
]

DEFAULT_RETENTION_DAYS = 400
DEFAULT_TIMEZONE = "Asia/Tokyo"  # a deleted tenant's CDRs, for the operator's statement
_MONTH_PAGE = 1_000  # CDRs read per transaction while a statement is built
EXPORT_PAGE = 500  # CDRs read per transaction by the CSV export

HistoryItem = tuple[CallRecord, DeviceRole | None]
"""A CDR of the history and, when the query named an ID, that ID's role in the call."""


class NoSuchMonth(ProvisioningError):
    status = 404

    def __init__(self, label: str) -> None:
        super().__init__(
            "no-such-month",
            f"no billing month {label!r} (YYYY-MM, not after the current month)",
            {"month": label},
        )


class StatementsUnavailable(ProvisioningError):
    status = 503

    def __init__(self) -> None:
        super().__init__("statements-unavailable", "this node computes no statements")


# --------------------------------------------------------------------------- writing
class CallRecordRepo:
    """Where the CDR writer stores batches (see the module docstring)."""

    def __init__(self, store: Store, *, pg_form: str = "copy") -> None:
        """`pg_form`: how batches go into PostgreSQL ("values", "unnest", "copy"; see
        store/queries/cdrs.py); SQLite always uses multi-row VALUES."""
        if pg_form not in q.INSERT_FORMS:
            raise ValueError(f"unknown insert form {pg_form!r}")
        self.store = store
        self.form = pg_form if store.dialect == "postgresql" else "values"

    async def insert(self, records: Sequence[CallRecord], *, now: datetime) -> int:
        """Store a batch in one transaction; returns how many were new (the others were
        stored already: a replay). Raises `StoreUnavailable` when the database is away."""
        if not records:
            return 0
        async with self.store.data() as tx:
            return await q.insert(tx, records, now, form=self.form)

    async def expire(self, now: datetime, retention_days: int, *, batch: int = 5_000) -> int:
        """Delete every CDR that started more than `retention_days` before `now`, in
        batches (short transactions); returns how many."""
        if retention_days < 1:
            raise ValueError("retention_days must be >= 1")
        cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
        total = 0
        while True:
            async with self.store.data() as tx:
                gone = await q.delete_older_than(tx, cutoff, batch)
            total += gone
            if gone < batch:
                return total


# --------------------------------------------------------------------------- statements
class StatementSheet(Protocol):
    """One tenant's statement being built, fed the month's CDRs in start order."""

    def add(self, record: CallRecord) -> None: ...

    def document(self) -> dict[str, Any]:
        """The statement as JSON (the `Statement` schema of api/resources/statements.py)."""
        ...


class StatementBuilder(Protocol):
    def month(self, label: str | None, timezone: str, now: datetime) -> MonthSpan | None:
        """The billing month `label` ("YYYY-MM"; None: the one `now` is in) in `timezone`;
        None when `label` names no month."""
        ...

    def sheet(self, tenant_id: str, month: MonthSpan, *, detail: bool) -> StatementSheet:
        """An empty statement; `detail=False` leaves out the per-ID and per-number parts
        (the operator's list of every tenant)."""
        ...


# --------------------------------------------------------------------------- the API
class CallHistoryService:
    """The call history and statements, per tenant and (operator) across tenants."""

    def __init__(
        self,
        store: Store,
        statements: StatementBuilder | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.statements = statements
        self.clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ history
    async def list_calls(
        self,
        principal: Principal,
        query: CallQuery,
        *,
        cursor: str | None,
        limit: int = PAGE_DEFAULT,
    ) -> Page[HistoryItem]:
        """One page of CDRs matching `query`, newest first. A tenant principal must name its
        own tenant; the operator may name none (every tenant)."""
        await self._check_scope(principal, query)
        size = page_limit(limit)
        before = _keys(decode_cursor(cursor, 2))
        async with self.store.read() as tx:
            items = await q.list_calls(tx, query, before=before, limit=size + 1)
        if len(items) > size:
            last = items[size - 1][0]
            return Page(items=items[:size], next_cursor=encode_cursor(_key_of(last)))
        return Page(items=items)

    async def export_calls(
        self, principal: Principal, query: CallQuery
    ) -> AsyncIterator[list[HistoryItem]]:
        """Every CDR matching `query`, newest first, in pages of EXPORT_PAGE (a short read
        transaction each). Checks the scope before the first page: call it, then stream."""
        await self._check_scope(principal, query)
        return self._pages(query)

    async def _pages(self, query: CallQuery) -> AsyncIterator[list[HistoryItem]]:
        before: tuple[str, str] | None = None
        while True:
            async with self.store.read() as tx:
                items = await q.list_calls(tx, query, before=before, limit=EXPORT_PAGE)
            if items:
                yield items
            if len(items) < EXPORT_PAGE:
                return
            before = _key_of(items[-1][0])

    async def device_calls(
        self,
        principal: Principal,
        query: CallQuery,
        *,
        cursor: str | None,
        limit: int = PAGE_DEFAULT,
    ) -> Page[HistoryItem]:
        """One ID's history (the device-facing view): `query.device` must be an ID of
        `query.tenant_id` (not-found otherwise)."""
        if query.tenant_id is None or query.device is None:
            raise ValueError("the device view needs a tenant and a device")
        principal.require_tenant(query.tenant_id)
        async with self.store.read() as tx:
            if await devices.get_info(tx, query.device, query.tenant_id) is None:
                raise NotFound("device", query.device)
        return await self.list_calls(principal, query, cursor=cursor, limit=limit)

    async def _check_scope(self, principal: Principal, query: CallQuery) -> None:
        if query.tenant_id is None:
            principal.require_operator()
            return
        principal.require_tenant(query.tenant_id)
        async with self.store.read() as tx:
            if not await tenants.exists(tx, query.tenant_id):
                raise NotFound("tenant", query.tenant_id)

    # ------------------------------------------------------------------ statements
    async def statement(
        self, principal: Principal, tenant_id: str, label: str | None
    ) -> dict[str, Any]:
        """The tenant's statement for billing month `label` (None: the current, open one).
        Errors: not-found (tenant), no-such-month, statements-unavailable."""
        principal.require_tenant(tenant_id)
        builder = self._builder()
        async with self.store.read() as tx:
            tenant = await tenants.load_tenant(tx, tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        month = self._month(builder, label, tenant.timezone)
        sheet = builder.sheet(tenant_id, month, detail=True)
        await self._fill(sheet, tenant_id, month.label)
        return sheet.document()

    async def all_statements(
        self, principal: Principal, label: str, *, cursor: str | None, limit: int = PAGE_DEFAULT
    ) -> Page[dict[str, Any]]:
        """Operator: every tenant's statement summary for `label`, a page of tenants (those
        with CDRs in that month) at a time."""
        principal.require_operator()
        builder = self._builder()
        self._month(builder, label, DEFAULT_TIMEZONE)  # validates the label
        size = page_limit(limit)
        keys = decode_cursor(cursor, 1)
        after = keys[0] if keys else None
        async with self.store.read() as tx:
            ids = await q.month_tenants(tx, label, after=after, limit=size + 1)
            zones = {t: await self._timezone(tx, t) for t in ids[:size]}
        docs = []
        for tenant_id, zone in zones.items():
            month = self._month(builder, label, zone)
            sheet = builder.sheet(tenant_id, month, detail=False)
            await self._fill(sheet, tenant_id, label)
            docs.append(sheet.document())
        more = encode_cursor([ids[size - 1]]) if len(ids) > size else None
        return Page(items=docs, next_cursor=more)

    def _builder(self) -> StatementBuilder:
        if self.statements is None:
            raise StatementsUnavailable()
        return self.statements

    def _month(self, builder: StatementBuilder, label: str | None, timezone: str) -> MonthSpan:
        now = self.clock()
        month = builder.month(label, timezone, now)
        if month is None or month.start > now:
            raise NoSuchMonth(label or "current")
        return month

    async def _timezone(self, tx: Any, tenant_id: str) -> str:
        tenant = await tenants.load_tenant(tx, tenant_id)
        return DEFAULT_TIMEZONE if tenant is None else tenant.timezone

    async def _fill(self, sheet: StatementSheet, tenant_id: str, label: str) -> None:
        after: tuple[str, str] | None = None
        while True:
            async with self.store.read() as tx:
                page = await q.month_calls(tx, tenant_id, label, after=after, limit=_MONTH_PAGE)
            for record in page:
                sheet.add(record)
            if len(page) < _MONTH_PAGE:
                return
            after = _key_of(page[-1])


def _key_of(record: CallRecord) -> tuple[str, str]:
    return (ts_text(record.started_at), record.cdr_id)


def _keys(keys: list[str] | None) -> tuple[str, str] | None:
    return None if keys is None else (keys[0], keys[1])
