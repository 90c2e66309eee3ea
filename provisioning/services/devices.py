"""Devices (IDs): one device login each, app, desk IP phone or ATA (the `devices` resource).

Passwords are never stored nor returned: only HA1 (MD5 and SHA-256, with the service realm,
`provisioning.credentials`); `DeviceInfo` carries no hash at all. An ID joins ring groups when
it is created (every number's by default) and leaves them all when it is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import fields, rules
from ..credentials import ha1_pair
from ..errors import Conflict, NotFound
from ..model import Device, DeviceKind
from ..records import DeviceInfo
from ..store.base import Tx, utcnow_text
from ..store.queries import devices, meta, numbers
from .base import (
    UNSET,
    Page,
    Principal,
    StoreService,
    Unset,
    contract_number,
    decode_cursor,
    find_device,
    find_number,
    new_id,
    page_limit,
    page_of,
    require_tenant,
    tenant_state,
)

__all__ = ["DeviceCreate", "DeviceService", "DeviceUpdate", "new_device"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCreate:
    """A new ID. `presented_number` defaults to the contract number. `ring_numbers`: the
    numbers (any form) whose ring groups the new ID joins; None = every number of the tenant
    (the service's "every number can ring on every ID" default)."""

    kind: DeviceKind
    username: str
    password: str
    presented_number: str | None = None
    display_name: str | None = None
    free_calls_10min: bool = False  # apps only
    web_phonebook: bool = False
    id: str | None = None  # generated when None
    ring_numbers: Sequence[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceUpdate:
    display_name: str | Unset | None = UNSET
    presented_number: str | Unset = UNSET
    free_calls_10min: bool | Unset = UNSET
    web_phonebook: bool | Unset = UNSET
    password: str | Unset = UNSET  # re-hashed to HA1; never stored in clear


class DeviceService(StoreService):
    __slots__ = ()

    async def create_device(
        self, principal: Principal, tenant_id: str, data: DeviceCreate
    ) -> DeviceInfo:
        """Errors: username-taken, id-taken, presented-number-not-own, toll-free-not-presentable,
        free-calls-apps-only, not-found (a ring number)."""
        principal.require_tenant(tenant_id)
        now = utcnow_text()
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            device = await new_device(tx, tenant_id, data, contract_number(st).e164)
            joins = (
                {n.e164 for n in st.numbers}
                if data.ring_numbers is None
                else {find_number(st, x).e164 for x in data.ring_numbers}
            )
            nums = [
                replace(n, ring_group=(*n.ring_group, device.id)) if n.e164 in joins else n
                for n in st.numbers
            ]
            rules.check_tenant(st.tenant, [*st.devices, device], nums, st.prompt_ids)
            await devices.insert_device(tx, device, now)
            for n in nums:
                if n.e164 in joins:
                    await numbers.save_ring_group(tx, n)
            return await _info(tx, device.id)

    async def get_device(self, principal: Principal, tenant_id: str, device_id: str) -> DeviceInfo:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            info = await devices.get_info(tx, device_id, tenant_id)
        if info is None:
            raise NotFound("device", device_id)
        return info

    async def list_devices(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        kind: DeviceKind | None = None,
        username_contains: str | None = None,
        cursor: str | None = None,
        limit: int = rules.PAGE_DEFAULT,
    ) -> Page[DeviceInfo]:
        """Ordered by id."""
        principal.require_tenant(tenant_id)
        want = None if kind is None else fields.parse_enum(DeviceKind, kind, "kind")
        after = decode_cursor(cursor, 1)
        n = page_limit(limit)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            items = await devices.list_infos(
                tx,
                tenant_id,
                kind=want,
                username_contains=username_contains,
                after=(after[0],) if after else None,
                limit=n + 1,
            )
        return page_of(items, n, lambda d: [d.id])

    async def update_device(
        self, principal: Principal, tenant_id: str, device_id: str, data: DeviceUpdate
    ) -> DeviceInfo:
        """Errors: presented-number-not-own, toll-free-not-presentable, free-calls-apps-only."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            device = find_device(st, device_id)
            changes = _changes(data)
            if not isinstance(data.password, Unset):
                password = fields.check_password(data.password)
                md5, sha = ha1_pair(device.username, await meta.realm(tx), password)
                changes |= {"ha1_md5": md5, "ha1_sha256": sha}
            new = replace(device, **changes)
            devs = [new if d.id == device_id else d for d in st.devices]
            rules.check_tenant(st.tenant, devs, st.numbers, st.prompt_ids)
            await devices.update_device(tx, new, utcnow_text())
            return await _info(tx, device_id)

    async def delete_device(self, principal: Principal, tenant_id: str, device_id: str) -> None:
        """Removes the ID from every ring group. Refused: last-id (a tenant keeps ≥ 1 ID),
        additional-numbers-exceed-additional-ids, toll-free-needs-several-ids, ring-group-empty
        (the ID is the only member of some number's ring group: change that group first)."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await tenant_state(tx, tenant_id)
            find_device(st, device_id)
            devs = [d for d in st.devices if d.id != device_id]
            nums = [
                replace(n, ring_group=tuple(x for x in n.ring_group if x != device_id))
                for n in st.numbers
            ]
            rules.check_tenant(st.tenant, devs, nums, st.prompt_ids)
            await devices.delete_device(tx, device_id)

    async def release_device(
        self, principal: Principal, tenant_id: str, device_id: str
    ) -> DeviceInfo:
        """Release the logged-in device: bumps `release_seq` (Device.release_seq in the
        snapshot); the switch drops the ID's bindings and device lock when it sees the bump, so
        a new device can log in."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            device = find_device(await tenant_state(tx, tenant_id), device_id)
            new = replace(device, release_seq=device.release_seq + 1)
            await devices.update_device(tx, new, utcnow_text(), released=True)
            return await _info(tx, device_id)


def _changes(data: DeviceUpdate) -> dict[str, Any]:
    """The `Device` fields a `DeviceUpdate` sets, checked (the password aside)."""
    changes: dict[str, Any] = {}
    if not isinstance(data.display_name, Unset):
        changes["display_name"] = fields.optional_text(
            data.display_name, "display_name", rules.DISPLAY_NAME_MAX
        )
    if not isinstance(data.presented_number, Unset):
        changes["presented_number"] = rules.parse_number(data.presented_number, "presented_number")
    if not isinstance(data.free_calls_10min, Unset):
        changes["free_calls_10min"] = bool(data.free_calls_10min)
    if not isinstance(data.web_phonebook, Unset):
        changes["web_phonebook"] = bool(data.web_phonebook)
    return changes


async def new_device(tx: Tx, tenant_id: str, data: DeviceCreate, default_number: str) -> Device:
    """A checked new `Device` of the tenant (not written yet): username and id free, the
    password hashed with the store's realm. Used for the basic ID of a new tenant too."""
    username = fields.check_username(data.username)
    device_id = data.id or new_id("d")
    if await devices.username_taken(tx, username):
        raise Conflict(
            "username-taken", f"SIP username {username!r} is taken", {"username": username}
        )
    if await devices.id_taken(tx, device_id):
        raise Conflict("id-taken", f"device id {device_id!r} exists", {"id": device_id})
    md5, sha = ha1_pair(username, await meta.realm(tx), fields.check_password(data.password))
    return Device(
        id=device_id,
        tenant_id=tenant_id,
        username=username,
        kind=fields.parse_enum(DeviceKind, data.kind, "kind"),
        ha1_md5=md5,
        ha1_sha256=sha,
        presented_number=(
            rules.parse_number(data.presented_number, "presented_number")
            if data.presented_number
            else default_number
        ),
        display_name=fields.optional_text(
            data.display_name, "display_name", rules.DISPLAY_NAME_MAX
        ),
        free_calls_10min=bool(data.free_calls_10min),
        web_phonebook=bool(data.web_phonebook),
    )


async def _info(tx: Tx, device_id: str) -> DeviceInfo:
    info = await devices.get_info(tx, device_id)
    assert info is not None  # written in this very transaction
    return info
