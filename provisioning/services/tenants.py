"""Tenants and their holidays (the `tenants` API resource).

Operator only: tenant create/delete, `identity_verified`, `status`. A tenant principal reads
its own tenant and may change its name, timezone and holidays. A tenant always has its
contract number and its basic ID: both are created with it, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from .. import fields, rules
from ..errors import Conflict, NotFound, RuleViolation
from ..model import Number, NumberKind, Tenant, TenantStatus, is_toll_free
from ..store.audit import note_tenant
from ..store.base import utcnow_text
from ..store.queries import devices, numbers, tenants
from .base import (
    UNSET,
    Page,
    Principal,
    StoreService,
    Unset,
    decode_cursor,
    new_id,
    page_limit,
    page_of,
    tenant_state,
)
from .devices import DeviceCreate, new_device
from .numbers import require_number_free

__all__ = ["TenantCreate", "TenantService", "TenantUpdate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantCreate:
    """Sign-up: a tenant always has its contract number and its basic ID from the start (the
    contract number is created with a ring group of the basic ID)."""

    name: str
    contract_number: str
    basic_device: DeviceCreate
    timezone: str = "Asia/Tokyo"
    identity_verified: bool = False
    id: str | None = None  # generated when None


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantUpdate:
    name: str | Unset = UNSET
    timezone: str | Unset = UNSET
    identity_verified: bool | Unset = UNSET  # operator only
    status: TenantStatus | Unset = UNSET  # operator only


class TenantService(StoreService):
    __slots__ = ()

    async def create_tenant(self, principal: Principal, data: TenantCreate) -> Tenant:
        """Operator only. Creates the tenant, its contract number and its basic ID together.
        Errors: invalid-timezone, invalid-number, toll-free-not-presentable (a toll-free
        contract number), number-taken, username-taken, id-taken."""
        principal.require_operator()
        tenant = Tenant(
            id=data.id or new_id("t"),
            name=fields.text_field(data.name, "name", 1, rules.TENANT_NAME_MAX),
            timezone=rules.check_timezone(data.timezone),
            identity_verified=bool(data.identity_verified),
        )
        contract = rules.parse_number(data.contract_number, "contract_number")
        if is_toll_free(contract):
            raise RuleViolation(
                "toll-free-not-presentable",
                "a toll-free number cannot be the contract number",
                {"rule": "contract number is not toll-free", "number": contract},
            )
        now = utcnow_text()
        async with self.store.write() as tx:
            if await tenants.exists(tx, tenant.id):
                raise Conflict("id-taken", f"tenant id {tenant.id!r} exists", {"id": tenant.id})
            await require_number_free(tx, contract)
            device = await new_device(tx, tenant.id, data.basic_device, contract)
            number = Number(
                e164=contract,
                tenant_id=tenant.id,
                kind=NumberKind.CONTRACT,
                ring_group=(device.id,),
            )
            rules.check_tenant(tenant, [device], [number])
            await tenants.insert_tenant(tx, tenant, now)
            await devices.insert_device(tx, device, now)
            await numbers.insert_number(tx, number, now)
            note_tenant(tenant.id)  # the audit entry names the new tenant
        return tenant

    async def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            tenant = await tenants.load_tenant(tx, tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        return tenant

    async def list_tenants(
        self,
        principal: Principal,
        *,
        name_contains: str | None = None,
        status: TenantStatus | None = None,
        cursor: str | None = None,
        limit: int = rules.PAGE_DEFAULT,
    ) -> Page[Tenant]:
        """Ordered by (name, id). A tenant principal sees only itself."""
        wanted = None if status is None else TenantStatus(status)
        after = decode_cursor(cursor, 2)
        n = page_limit(limit)
        async with self.store.read() as tx:
            items = await tenants.list_tenants(
                tx,
                only=None if principal.is_operator else principal.tenant_id,
                name_contains=name_contains,
                status=wanted,
                after=(after[0], after[1]) if after else None,
                limit=n + 1,
            )
        return page_of(items, n, lambda t: [t.name, t.id])

    async def update_tenant(
        self, principal: Principal, tenant_id: str, data: TenantUpdate
    ) -> Tenant:
        """`identity_verified` and `status` are operator only. Un-verifying does not switch
        anything off (the operator decides)."""
        principal.require_tenant(tenant_id)
        if not isinstance(data.identity_verified, Unset) or not isinstance(data.status, Unset):
            principal.require_operator()
        changes = _changes(data)
        return await self._update(tenant_id, lambda t: replace(t, **changes))

    async def delete_tenant(self, principal: Principal, tenant_id: str) -> None:
        """Operator only; removes everything of the tenant (devices lose their bindings)."""
        principal.require_operator()
        async with self.store.write() as tx:
            await tenant_state(tx, tenant_id)
            await tenants.delete_tenant(tx, tenant_id)

    async def set_holidays(
        self, principal: Principal, tenant_id: str, days: Sequence[date]
    ) -> Tenant:
        """Replaces the tenant's holiday list (the "holiday" day kind of the schedule)."""
        principal.require_tenant(tenant_id)
        holidays = frozenset(fields.parse_date(d) for d in days)
        return await self._update(tenant_id, lambda t: replace(t, holidays=holidays))

    async def add_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        principal.require_tenant(tenant_id)
        d = fields.parse_date(day)
        return await self._update(tenant_id, lambda t: replace(t, holidays=t.holidays | {d}))

    async def remove_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        """Removing a day that is not a holiday is a no-op."""
        principal.require_tenant(tenant_id)
        d = fields.parse_date(day)
        return await self._update(tenant_id, lambda t: replace(t, holidays=t.holidays - {d}))

    async def _update(self, tenant_id: str, change: Callable[[Tenant], Tenant]) -> Tenant:
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            tenant = change(st.tenant)
            rules.check_timezone(tenant.timezone)
            await tenants.update_tenant(tx, tenant, utcnow_text())
        return tenant


def _changes(data: TenantUpdate) -> dict[str, Any]:
    """The `Tenant` fields a `TenantUpdate` sets, checked."""
    changes: dict[str, Any] = {}
    if not isinstance(data.name, Unset):
        changes["name"] = fields.text_field(data.name, "name", 1, rules.TENANT_NAME_MAX)
    if not isinstance(data.timezone, Unset):
        changes["timezone"] = rules.check_timezone(data.timezone)
    if not isinstance(data.identity_verified, Unset):
        changes["identity_verified"] = bool(data.identity_verified)
    if not isinstance(data.status, Unset):
        changes["status"] = fields.parse_enum(TenantStatus, data.status, "status")
    return changes
