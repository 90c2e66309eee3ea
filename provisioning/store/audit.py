"""The audit entry of the API request being served, written INTO that request's own write.

The REST API declares what it is doing before it calls a service (`auditing(entry)`, a
context variable of the request's task); each store's `write()` and `data()` call
`flush_pending(tx)` just before they commit, so the entry is inserted in the very
transaction that makes the change: the change and its audit row commit together or not at
all (a refused request, rolled back, leaves no entry). Only the first transaction of a
request writes it. A successful request that opened no write transaction gets its entry
right after, in a transaction of its own (`AuditService.record`, called by the API).

Why a context variable and not an argument: every service method would need an `audit`
parameter threaded down to its `store.write()`; the services stay as they are, and a write
made outside the API (the CLI, the seed import, the media service) has no pending entry and
writes none.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..records import AuditEntry, Scope
from .base import Tx
from .queries import audit

__all__ = ["PendingAudit", "auditing", "flush_pending", "note_tenant"]


@dataclass(slots=True, kw_only=True)
class PendingAudit:
    """What the API is doing; `written` once an entry for it is in a transaction."""

    token_id: str | None
    scope: Scope
    tenant_id: str | None
    method: str
    route: str
    params: Mapping[str, str] = field(default_factory=dict)
    status: int
    id: str = field(default_factory=lambda: f"au_{secrets.token_hex(8)}")
    written: bool = False

    def entry(self, at: datetime) -> AuditEntry:
        return AuditEntry(
            id=self.id,
            at=at,
            token_id=self.token_id,
            scope=self.scope,
            tenant_id=self.tenant_id,
            method=self.method,
            route=self.route,
            params=dict(self.params),
            status=self.status,
        )


_PENDING: ContextVar[PendingAudit | None] = ContextVar("provisioning_audit", default=None)


@contextmanager
def auditing(pending: PendingAudit) -> Iterator[PendingAudit]:
    """`pending` is the entry of every write transaction opened inside the block."""
    token = _PENDING.set(pending)
    try:
        yield pending
    finally:
        _PENDING.reset(token)


def note_tenant(tenant_id: str) -> None:
    """Name the tenant of the pending entry when its path did not (a tenant being created, a
    token made for a tenant). No-op outside an audited request."""
    pending = _PENDING.get()
    if pending is not None and pending.tenant_id is None:
        pending.tenant_id = tenant_id


async def flush_pending(tx: Tx) -> None:
    """Insert the pending entry into `tx` unless it was written already (or there is none)."""
    pending = _PENDING.get()
    if pending is None or pending.written:
        return
    await audit.insert_entry(tx, pending.entry(datetime.now(UTC)))
    pending.written = True
