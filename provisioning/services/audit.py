"""The REST API's audit log (the `audit` API resource): who changed what, and its retention.

Entries are written by the store into the transaction of the change itself
(`provisioning.store.audit`: the API wraps each write request in `auditing(...)`);
`record` is the fallback for a successful request that opened no write transaction.

Reading: the operator reads every entry (filters: tenant, token, time); a tenant principal
reads its own tenant's entries only, and sees operator entries without the operator's token
id. Retention: `sweep(now)` deletes entries older than the retention period,
`[provisioning] audit_retention_days` (default 365; 0 keeps them forever).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import rules
from ..errors import InvalidInput
from ..records import AuditEntry
from ..store.audit import PendingAudit, auditing, note_tenant
from ..store.queries import audit
from ..store.queries.sql import ts_text
from .base import (
    Page,
    Principal,
    StoreService,
    decode_cursor,
    page_limit,
    page_of,
    require_tenant,
)

__all__ = [
    "AUDIT_RETENTION_DAYS",
    "AuditQuery",
    "AuditService",
    "PendingAudit",
    "auditing",
    "note_tenant",
    "retention_days",
]

AUDIT_RETENTION_DAYS = 365


def retention_days(section: Mapping[str, Any]) -> int:
    """`audit_retention_days` of the `[provisioning]` configuration section (default 365;
    0 = keep forever). ValueError names the key when it is not a whole number >= 0."""
    value = section.get("audit_retention_days", AUDIT_RETENTION_DAYS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("provisioning.audit_retention_days must be a whole number of days >= 0")
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Filters of an audit listing: `since` inclusive, `until` exclusive (aware datetimes)."""

    tenant_id: str | None = None
    token_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = rules.PAGE_DEFAULT


class AuditService(StoreService):
    __slots__ = ()

    async def list_entries(self, principal: Principal, query: AuditQuery) -> Page[AuditEntry]:
        """Operator only: every entry matching `query`, newest first."""
        principal.require_operator()
        return await self._page(query)

    async def tenant_entries(
        self, principal: Principal, tenant_id: str, query: AuditQuery
    ) -> Page[AuditEntry]:
        """The entries of one tenant (its own token, or the operator's), newest first."""
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
        page = await self._page(dataclasses.replace(query, tenant_id=tenant_id))
        if principal.is_operator:
            return page
        return Page(items=[_as_tenant_sees(e) for e in page.items], next_cursor=page.next_cursor)

    async def record(self, pending: PendingAudit, at: datetime) -> None:
        """Write `pending` unless a transaction of its request did (the fallback, see above)."""
        if pending.written:
            return
        async with self.store.data() as tx:
            await audit.insert_entry(tx, pending.entry(at))
        pending.written = True

    async def sweep(self, now: datetime, days: int = AUDIT_RETENTION_DAYS) -> int:
        """Delete entries older than `days` days before `now` (none when `days` is 0)."""
        if days <= 0:
            return 0
        async with self.store.data() as tx:
            return await audit.delete_before(tx, _utc_text(now - timedelta(days=days)))

    async def _page(self, query: AuditQuery) -> Page[AuditEntry]:
        if query.since and query.until and query.since >= query.until:
            raise InvalidInput("invalid-input", "since must be before until", {"field": "since"})
        before = decode_cursor(query.cursor, 2)
        n = page_limit(query.limit)
        where = audit.AuditFilter(
            tenant_id=query.tenant_id,
            token_id=query.token_id,
            since=None if query.since is None else _utc_text(query.since),
            until=None if query.until is None else _utc_text(query.until),
        )
        async with self.store.read() as tx:
            items = await audit.list_entries(
                tx, where, before=(before[0], before[1]) if before else None, limit=n + 1
            )
        return page_of(items, n, lambda e: [_utc_text(e.at), e.id])


def _utc_text(value: datetime) -> str:
    """The stored form (UTC text, store.base) of an aware datetime in any zone."""
    return ts_text(value.astimezone(UTC))


def _as_tenant_sees(entry: AuditEntry) -> AuditEntry:
    """A tenant sees that the operator acted, not with which operator token."""
    if entry.scope == "operator":
        return dataclasses.replace(entry, token_id=None)
    return entry
