"""Numbers: the contract number (comes with the tenant), additional and toll-free numbers,
with their label, ring timings and ring group (the `numbers` API resource).

Numbers are accepted in any form `model.normalize_number` takes ("03-1234-5678",
"+81312345678", …) and always returned in E.164. `NumberService.change` is the one path by
which a number's settings change: read the tenant's state, apply the change in memory,
check every tenant rule on the result, write (`number_settings` goes through it too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import fields, rules
from ..errors import Conflict, RuleViolation
from ..model import Number, NumberKind, Tenant
from ..store.base import Tx, utcnow_text
from ..store.queries import numbers
from .base import (
    UNSET,
    Page,
    Principal,
    StoreService,
    Unset,
    decode_cursor,
    find_number,
    page_limit,
    page_of,
    tenant_state,
)

__all__ = ["NumberChange", "NumberCreate", "NumberService", "NumberUpdate", "require_number_free"]

NumberChange = Callable[[Tenant, Number], Number]


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberCreate:
    """A new additional or toll-free number (the contract number comes with the tenant)."""

    number: str
    kind: NumberKind = NumberKind.ADDITIONAL
    ring_group: Sequence[str] | None = None  # device ids; None = every ID of the tenant
    label: str | None = None
    label_in_display_name: bool = False
    app_ring_delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberUpdate:
    ring_group: Sequence[str] | Unset = UNSET  # non-empty subset of the tenant's IDs
    label: str | Unset | None = UNSET
    label_in_display_name: bool | Unset = UNSET
    app_ring_delay: float | Unset = UNSET  # 0..rules.MAX_APP_RING_DELAY s
    max_ring_time: float | Unset = UNSET  # rules.MAX_RING_TIME_RANGE s
    voicemail_ring_time: int | Unset = UNSET  # one of model.VOICEMAIL_RING_TIMES
    recording_notice: bool | Unset = UNSET


class NumberService(StoreService):
    __slots__ = ()

    async def add_number(self, principal: Principal, tenant_id: str, data: NumberCreate) -> Number:
        """Additional or toll-free number. Errors: contract-number-exists (kind contract),
        too-many-additional-numbers, additional-numbers-exceed-additional-ids,
        toll-free-needs-several-ids, invalid-number (toll-free kind vs 0120/0800 prefix),
        number-taken, ring-group-empty, ring-group-not-own-ids, invalid-ring-delay."""
        principal.require_tenant(tenant_id)
        e164 = rules.parse_number(data.number)
        kind = fields.parse_enum(NumberKind, data.kind, "kind")
        if kind is NumberKind.CONTRACT:
            raise RuleViolation(
                "contract-number-exists",
                "a tenant has exactly one contract number; it comes with the tenant",
                {"rule": "contract numbers = 1", "limit": 1, "requested": 2},
            )
        rules.check_number_kind(e164, kind)
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            await require_number_free(tx, e164)
            group = (
                tuple(d.id for d in st.devices)
                if data.ring_group is None
                else tuple(str(x) for x in data.ring_group)
            )
            number = Number(
                e164=e164,
                tenant_id=tenant_id,
                kind=kind,
                ring_group=group,
                label=fields.optional_text(data.label, "label", rules.LABEL_MAX),
                label_in_display_name=bool(data.label_in_display_name),
                app_ring_delay=fields.number_field(data.app_ring_delay, "app_ring_delay"),
            )
            rules.check_tenant(st.tenant, st.devices, [*st.numbers, number], st.prompt_ids)
            await numbers.insert_number(tx, number, utcnow_text())
        return number

    async def get_number(self, principal: Principal, tenant_id: str, number: str) -> Number:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            return find_number(await tenant_state(tx, tenant_id), number)

    async def list_numbers(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        kind: NumberKind | None = None,
        cursor: str | None = None,
        limit: int = rules.PAGE_DEFAULT,
    ) -> Page[Number]:
        """Ordered by E.164."""
        principal.require_tenant(tenant_id)
        after = decode_cursor(cursor, 1)
        want = None if kind is None else fields.parse_enum(NumberKind, kind, "kind")
        async with self.store.read() as tx:
            st = await tenant_state(tx, tenant_id)
        # A tenant has at most a handful of numbers: filter the loaded state.
        items = [
            n
            for n in st.numbers
            if (want is None or n.kind is want) and (not after or n.e164 > after[0])
        ]
        n = page_limit(limit)
        return page_of(items[: n + 1], n, lambda x: [x.e164])

    async def update_number(
        self, principal: Principal, tenant_id: str, number: str, data: NumberUpdate
    ) -> Number:
        """Errors: ring-group-empty, ring-group-not-own-ids, invalid-ring-time,
        invalid-ring-delay, invalid-input (max ring time)."""
        principal.require_tenant(tenant_id)
        changes = _changes(data)
        return await self.change(tenant_id, number, lambda _t, n: replace(n, **changes))

    async def delete_number(self, principal: Principal, tenant_id: str, number: str) -> None:
        """Errors: contract-number-required (the contract number stays),
        number-presented-by-device (an ID presents it: change that ID first)."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            n = find_number(st, number)
            if n.kind is NumberKind.CONTRACT:
                raise RuleViolation(
                    "contract-number-required",
                    "the contract number cannot be removed",
                    {"rule": "contract numbers = 1", "number": n.e164},
                )
            users = [d.id for d in st.devices if d.presented_number == n.e164]
            if users:
                raise RuleViolation(
                    "number-presented-by-device",
                    "IDs present this number: change their caller ID first",
                    {"rule": "presented number ∈ tenant's numbers", "devices": users},
                )
            await numbers.delete_number(tx, n.e164)

    async def change(self, tenant_id: str, number: str, change: NumberChange) -> Number:
        """Apply `change(tenant, number)` to the tenant's number in one write transaction,
        after checking every tenant rule on the result. The caller checked the principal."""
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            old = find_number(st, number)
            new = change(st.tenant, old)
            nums = [new if n.e164 == old.e164 else n for n in st.numbers]
            rules.check_tenant(st.tenant, st.devices, nums, st.prompt_ids)
            await numbers.update_number(tx, new, utcnow_text())
        return new


def _changes(data: NumberUpdate) -> dict[str, Any]:
    """The `Number` fields a `NumberUpdate` sets, checked for type (the tenant rules check
    the values once the change is applied)."""
    changes: dict[str, Any] = {}
    if not isinstance(data.ring_group, Unset):
        changes["ring_group"] = tuple(str(x) for x in data.ring_group)
    if not isinstance(data.label, Unset):
        changes["label"] = fields.optional_text(data.label, "label", rules.LABEL_MAX)
    if not isinstance(data.label_in_display_name, Unset):
        changes["label_in_display_name"] = bool(data.label_in_display_name)
    if not isinstance(data.app_ring_delay, Unset):
        changes["app_ring_delay"] = fields.number_field(data.app_ring_delay, "app_ring_delay")
    if not isinstance(data.max_ring_time, Unset):
        changes["max_ring_time"] = fields.number_field(data.max_ring_time, "max_ring_time")
    if not isinstance(data.voicemail_ring_time, Unset):
        changes["voicemail_ring_time"] = fields.int_field(
            data.voicemail_ring_time, "voicemail_ring_time"
        )
    if not isinstance(data.recording_notice, Unset):
        changes["recording_notice"] = bool(data.recording_notice)
    return changes


async def require_number_free(tx: Tx, e164: str) -> None:
    """`number-taken` if any tenant has the number already."""
    if await numbers.taken(tx, e164):
        raise Conflict(
            "number-taken",
            f"{e164} belongs to a tenant already",
            {"rule": "a number belongs to one tenant", "number": e164},
        )
