"""Devices (IDs): rows <-> `model.Device` (with its HA1 hashes, for the snapshot and the
rules) and `records.DeviceInfo` (what the API shows: no hash, with timestamps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...model import Device, DeviceKind
from ...records import DeviceInfo
from ..base import Row, Tx, parse_ts
from .sql import Where, like, ts

__all__ = [
    "count_all",
    "delete_device",
    "device_of",
    "get_info",
    "id_taken",
    "info_of",
    "insert_device",
    "insert_devices",
    "list_infos",
    "taken_ids_and_usernames",
    "update_device",
    "username_taken",
]

_COLS = (
    "id, tenant_id, username, kind, ha1_md5, ha1_sha256, presented_number, display_name,"
    " free_calls_10min, web_phonebook, release_seq"
)
_INSERT = (
    f"INSERT INTO devices ({_COLS}, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
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


def info_of(row: Row) -> DeviceInfo:
    return DeviceInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        kind=DeviceKind(row["kind"]),
        presented_number=row["presented_number"],
        display_name=row["display_name"],
        free_calls_10min=bool(row["free_calls_10min"]),
        web_phonebook=bool(row["web_phonebook"]),
        release_seq=int(row["release_seq"]),
        release_requested_at=parse_ts(row["release_requested_at"]),
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
    )


def _values(d: Device) -> tuple[Any, ...]:
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


async def username_taken(tx: Tx, username: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM devices WHERE username = $1", username))


async def id_taken(tx: Tx, device_id: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM devices WHERE id = $1", device_id))


async def taken_ids_and_usernames(tx: Tx) -> tuple[set[str], set[str]]:
    rows = await tx.fetch("SELECT id, username FROM devices")
    return {r["id"] for r in rows}, {r["username"] for r in rows}


async def count_all(tx: Tx) -> int:
    return int(await tx.fetchval("SELECT COUNT(*) FROM devices"))


async def get_info(tx: Tx, device_id: str, tenant_id: str | None = None) -> DeviceInfo | None:
    """The device, if it exists (and belongs to `tenant_id` when given)."""
    if tenant_id is None:
        row = await tx.fetchrow("SELECT * FROM devices WHERE id = $1", device_id)
    else:
        row = await tx.fetchrow(
            "SELECT * FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant_id
        )
    return None if row is None else info_of(row)


async def list_infos(
    tx: Tx,
    tenant_id: str,
    *,
    kind: DeviceKind | None,
    username_contains: str | None,
    after: tuple[str] | None,
    limit: int,
) -> list[DeviceInfo]:
    """At most `limit` of the tenant's devices in id order, after the key `after`."""
    q = Where()
    q.add("tenant_id = {}", tenant_id)
    if kind is not None:
        q.add("kind = {}", kind.value)
    if username_contains:
        q.add("LOWER(username) LIKE {} ESCAPE '\\'", like(username_contains))
    q.after("id", after)
    rows = await tx.fetch(q.sql("SELECT * FROM devices", "id", limit), *q.args)
    return [info_of(r) for r in rows]


async def insert_device(tx: Tx, d: Device, now: str) -> None:
    await tx.execute(_INSERT, *_values(d), now)


async def insert_devices(tx: Tx, devices: Sequence[Device], now: str) -> None:
    """Bulk insert (seed import)."""
    if devices:
        await tx.executemany(_INSERT, [(*_values(d), now) for d in devices])


async def update_device(tx: Tx, d: Device, now: str, *, released: bool = False) -> None:
    """`released`: also stamp `release_requested_at` (a "release the device" request)."""
    await tx.execute(
        "UPDATE devices SET tenant_id = $2, username = $3, kind = $4, ha1_md5 = $5,"
        " ha1_sha256 = $6, presented_number = $7, display_name = $8, free_calls_10min = $9,"
        " web_phonebook = $10, release_seq = $11, updated_at = $12"
        + (", release_requested_at = $12" if released else "")
        + " WHERE id = $1",
        *_values(d),
        now,
    )


async def delete_device(tx: Tx, device_id: str) -> None:
    """Ring group memberships go with it (ON DELETE CASCADE)."""
    await tx.execute("DELETE FROM devices WHERE id = $1", device_id)
