"""Rows <-> model objects, shared by the service and the snapshot builder.

Everything here takes an open transaction (`Tx`) and speaks the common SQL subset. Booleans
come back as 0/1 from SQLite, hence the `bool()` calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any

from ..model import (
    AfterHours,
    DayKind,
    Device,
    DeviceKind,
    Forwarding,
    Gateway,
    Number,
    NumberKind,
    NumberOptions,
    SlotAction,
    Tenant,
    TenantStatus,
)
from .base import Row, Tx

_LETTER = {SlotAction.RING: "R", SlotAction.ANNOUNCE: "A", SlotAction.FORWARD: "F"}
_ACTION = {v: k for k, v in _LETTER.items()}
_AH_COLUMN = {k: f"ah_{k.value}" for k in DayKind}


def slots_text(actions: Iterable[SlotAction]) -> str:
    return "".join(_LETTER[a] for a in actions)


def slots_of(text: str) -> tuple[SlotAction, ...]:
    return tuple(_ACTION[c] for c in text)


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantState:
    """Everything the tenant rules look at, loaded in one transaction."""

    tenant: Tenant
    devices: tuple[Device, ...]
    numbers: tuple[Number, ...]
    prompt_ids: frozenset[str]


# --------------------------------------------------------------------------- reading


def tenant_of(row: Row, holidays: Iterable[str] = ()) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        timezone=row["timezone"],
        identity_verified=bool(row["identity_verified"]),
        status=TenantStatus(row["status"]),
        holidays=frozenset(date.fromisoformat(h) for h in holidays),
    )


def device_of(row: Row) -> Device:
    return Device(
        id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        kind=DeviceKind(row["kind"]),
        ha1_md5=row["ha1_md5"],
        ha1_sha256=row["ha1_sha256"],
        presented_number=row["presented_number"],
        display_name=row["display_name"],
        free_calls_10min=bool(row["free_calls_10min"]),
        web_phonebook=bool(row["web_phonebook"]),
        release_seq=int(row["release_seq"]),
    )


def number_of(row: Row, ring_group: Iterable[str]) -> Number:
    return Number(
        e164=row["e164"],
        tenant_id=row["tenant_id"],
        kind=NumberKind(row["kind"]),
        ring_group=tuple(ring_group),
        label=row["label"],
        label_in_display_name=bool(row["label_in_display_name"]),
        app_ring_delay=float(row["app_ring_delay"]),
        max_ring_time=float(row["max_ring_time"]),
        options=NumberOptions(
            after_hours=bool(row["opt_after_hours"]),
            voicemail=bool(row["opt_voicemail"]),
            forwarding=bool(row["opt_forwarding"]),
            recording=bool(row["opt_recording"]),
        ),
        after_hours=AfterHours(
            enabled=bool(row["ah_enabled"]),
            slots=MappingProxyType({k: slots_of(row[c]) for k, c in _AH_COLUMN.items()}),
            announcement=row["ah_announcement"],
        ),
        forwarding=Forwarding(enabled=bool(row["fwd_enabled"]), target=row["fwd_target"]),
        voicemail_ring_time=int(row["voicemail_ring_time"]),
        recording_notice=bool(row["recording_notice"]),
    )


def gateway_of(row: Row) -> Gateway:
    return Gateway(
        id=row["id"],
        name=row["name"],
        host=row["host"],
        port=int(row["port"]),
        transport=row["transport"],
        allowed_sources=tuple(json.loads(row["allowed_sources"])),
    )


def _groups(rows: Iterable[Row]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["number"], []).append(r["device_id"])
    return groups


async def load_tenant(tx: Tx, tenant_id: str) -> Tenant | None:
    row = await tx.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
    if row is None:
        return None
    days = await tx.fetch(
        "SELECT day FROM tenant_holidays WHERE tenant_id = $1 ORDER BY day", tenant_id
    )
    return tenant_of(row, [d["day"] for d in days])


async def load_holidays(tx: Tx, tenant_ids: Sequence[str]) -> dict[str, list[str]]:
    """Holidays of several tenants in one query."""
    out: dict[str, list[str]] = {}
    if not tenant_ids:
        return out
    marks = ", ".join(f"${i}" for i in range(1, len(tenant_ids) + 1))
    rows = await tx.fetch(
        f"SELECT tenant_id, day FROM tenant_holidays WHERE tenant_id IN ({marks}) ORDER BY day",
        *tenant_ids,
    )
    for r in rows:
        out.setdefault(r["tenant_id"], []).append(r["day"])
    return out


async def load_state(tx: Tx, tenant_id: str) -> TenantState | None:
    tenant = await load_tenant(tx, tenant_id)
    if tenant is None:
        return None
    devs = await tx.fetch("SELECT * FROM devices WHERE tenant_id = $1 ORDER BY id", tenant_id)
    nums = await tx.fetch("SELECT * FROM numbers WHERE tenant_id = $1 ORDER BY e164", tenant_id)
    members = await tx.fetch(
        "SELECT m.number, m.device_id FROM ring_group_members m"
        " JOIN numbers n ON n.e164 = m.number WHERE n.tenant_id = $1"
        " ORDER BY m.number, m.position",
        tenant_id,
    )
    prompts = await tx.fetch("SELECT id FROM prompts WHERE tenant_id = $1", tenant_id)
    groups = _groups(members)
    return TenantState(
        tenant=tenant,
        devices=tuple(device_of(r) for r in devs),
        numbers=tuple(number_of(r, groups.get(r["e164"], ())) for r in nums),
        prompt_ids=frozenset(p["id"] for p in prompts),
    )


@dataclass(frozen=True, slots=True)
class Everything:
    version: int
    realm: str
    tenants: list[Tenant]
    devices: list[Device]
    numbers: list[Number]
    gateways: list[Gateway]


async def load_everything(tx: Tx) -> Everything:
    """The whole routing picture in a handful of full-table reads (one transaction)."""
    meta = await tx.fetchrow("SELECT version, realm FROM meta WHERE id = 1")
    assert meta is not None
    holidays: dict[str, list[str]] = {}
    for r in await tx.fetch("SELECT tenant_id, day FROM tenant_holidays"):
        holidays.setdefault(r["tenant_id"], []).append(r["day"])
    tenants = [
        tenant_of(r, holidays.get(r["id"], ()))
        for r in await tx.fetch("SELECT * FROM tenants ORDER BY id")
    ]
    devices = [device_of(r) for r in await tx.fetch("SELECT * FROM devices ORDER BY id")]
    groups = _groups(
        await tx.fetch("SELECT number, device_id FROM ring_group_members ORDER BY number, position")
    )
    numbers = [
        number_of(r, groups.get(r["e164"], ()))
        for r in await tx.fetch("SELECT * FROM numbers ORDER BY e164")
    ]
    gateways = [gateway_of(r) for r in await tx.fetch("SELECT * FROM gateways ORDER BY id")]
    return Everything(int(meta["version"]), meta["realm"], tenants, devices, numbers, gateways)


# --------------------------------------------------------------------------- writing


def _tenant_values(t: Tenant) -> tuple[Any, ...]:
    return (t.id, t.name, t.timezone, t.identity_verified, t.status.value)


async def insert_tenant(tx: Tx, t: Tenant, now: str) -> None:
    await tx.execute(
        "INSERT INTO tenants (id, name, timezone, identity_verified, status, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        *_tenant_values(t),
        now,
    )
    await save_holidays(tx, t)


async def update_tenant(tx: Tx, t: Tenant, now: str) -> None:
    await tx.execute(
        "UPDATE tenants SET name = $2, timezone = $3, identity_verified = $4, status = $5,"
        " updated_at = $6 WHERE id = $1",
        *_tenant_values(t),
        now,
    )
    await save_holidays(tx, t)


async def save_holidays(tx: Tx, t: Tenant) -> None:
    await tx.execute("DELETE FROM tenant_holidays WHERE tenant_id = $1", t.id)
    if t.holidays:
        await tx.executemany(
            "INSERT INTO tenant_holidays (tenant_id, day) VALUES ($1, $2)",
            [(t.id, d.isoformat()) for d in sorted(t.holidays)],
        )


_DEVICE_COLS = (
    "id, tenant_id, username, kind, ha1_md5, ha1_sha256, presented_number, display_name,"
    " free_calls_10min, web_phonebook, release_seq"
)


def _device_values(d: Device) -> tuple[Any, ...]:
    return (
        d.id,
        d.tenant_id,
        d.username,
        d.kind.value,
        d.ha1_md5,
        d.ha1_sha256,
        d.presented_number,
        d.display_name,
        d.free_calls_10min,
        d.web_phonebook,
        d.release_seq,
    )


async def insert_device(tx: Tx, d: Device, now: str) -> None:
    await tx.execute(
        f"INSERT INTO devices ({_DEVICE_COLS}, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        *_device_values(d),
        now,
    )


async def update_device(tx: Tx, d: Device, now: str, *, released: bool = False) -> None:
    await tx.execute(
        "UPDATE devices SET tenant_id = $2, username = $3, kind = $4, ha1_md5 = $5,"
        " ha1_sha256 = $6, presented_number = $7, display_name = $8, free_calls_10min = $9,"
        " web_phonebook = $10, release_seq = $11, updated_at = $12"
        + (", release_requested_at = $12" if released else "")
        + " WHERE id = $1",
        *_device_values(d),
        now,
    )


_NUMBER_COLS = (
    "e164, tenant_id, kind, label, label_in_display_name, app_ring_delay, max_ring_time,"
    " opt_after_hours, opt_voicemail, opt_forwarding, opt_recording, ah_enabled, ah_weekday,"
    " ah_saturday, ah_sunday, ah_holiday, ah_announcement, fwd_enabled, fwd_target,"
    " voicemail_ring_time, recording_notice"
)
_N_NUMBER_COLS = 21


def _number_values(n: Number) -> tuple[Any, ...]:
    o, ah = n.options, n.after_hours
    return (
        n.e164,
        n.tenant_id,
        n.kind.value,
        n.label,
        n.label_in_display_name,
        float(n.app_ring_delay),
        float(n.max_ring_time),
        o.after_hours,
        o.voicemail,
        o.forwarding,
        o.recording,
        ah.enabled,
        *(slots_text(ah.slots[k]) for k in DayKind),
        ah.announcement,
        n.forwarding.enabled,
        n.forwarding.target,
        int(n.voicemail_ring_time),
        n.recording_notice,
    )


async def insert_number(tx: Tx, n: Number, now: str) -> None:
    marks = ", ".join(f"${i}" for i in range(1, _N_NUMBER_COLS + 1))
    now_mark = f"${_N_NUMBER_COLS + 1}"
    await tx.execute(
        f"INSERT INTO numbers ({_NUMBER_COLS}, created_at, updated_at)"
        f" VALUES ({marks}, {now_mark}, {now_mark})",
        *_number_values(n),
        now,
    )
    await save_ring_group(tx, n)


async def update_number(tx: Tx, n: Number, now: str) -> None:
    cols = [c.strip() for c in _NUMBER_COLS.split(",")]
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=1) if i > 1)
    await tx.execute(
        f"UPDATE numbers SET {sets}, updated_at = ${_N_NUMBER_COLS + 1} WHERE e164 = $1",
        *_number_values(n),
        now,
    )
    await save_ring_group(tx, n)


async def save_ring_group(tx: Tx, n: Number) -> None:
    await tx.execute("DELETE FROM ring_group_members WHERE number = $1", n.e164)
    await tx.executemany(
        "INSERT INTO ring_group_members (number, device_id, position) VALUES ($1, $2, $3)",
        [(n.e164, dev, i) for i, dev in enumerate(n.ring_group)],
    )


async def save_gateway(tx: Tx, g: Gateway, now: str, *, insert: bool) -> None:
    values = (g.id, g.name, g.host, int(g.port), g.transport, json.dumps(list(g.allowed_sources)))
    if insert:
        await tx.execute(
            "INSERT INTO gateways (id, name, host, port, transport, allowed_sources,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            *values,
            now,
        )
    else:
        await tx.execute(
            "UPDATE gateways SET name = $2, host = $3, port = $4, transport = $5,"
            " allowed_sources = $6, updated_at = $7 WHERE id = $1",
            *values,
            now,
        )


async def insert_many(
    tx: Tx,
    tenants: Sequence[Tenant],
    devices: Sequence[Device],
    numbers: Sequence[Number],
    now: str,
) -> None:
    """Bulk insert (seed import): one batched statement per table."""
    if tenants:
        await tx.executemany(
            "INSERT INTO tenants (id, name, timezone, identity_verified, status, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            [(*_tenant_values(t), now) for t in tenants],
        )
    holidays = [(t.id, d.isoformat()) for t in tenants for d in sorted(t.holidays)]
    if holidays:
        await tx.executemany(
            "INSERT INTO tenant_holidays (tenant_id, day) VALUES ($1, $2)", holidays
        )
    if devices:
        await tx.executemany(
            f"INSERT INTO devices ({_DEVICE_COLS}, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            [(*_device_values(d), now) for d in devices],
        )
    if numbers:
        marks = ", ".join(f"${i}" for i in range(1, _N_NUMBER_COLS + 1))
        now_mark = f"${_N_NUMBER_COLS + 1}"
        await tx.executemany(
            f"INSERT INTO numbers ({_NUMBER_COLS}, created_at, updated_at)"
            f" VALUES ({marks}, {now_mark}, {now_mark})",
            [(*_number_values(n), now) for n in numbers],
        )
        members = [(n.e164, dev, i) for n in numbers for i, dev in enumerate(n.ring_group)]
        await tx.executemany(
            "INSERT INTO ring_group_members (number, device_id, position) VALUES ($1, $2, $3)",
            members,
        )
