"""Numbers and their ring groups: rows <-> `model.Number`.

A number's settings are columns of its row (options `opt_*`, after-hours `ah_*` with one
column per day kind holding 48 letters R/A/F, forwarding `fwd_*`); its ring group is the
ordered `ring_group_members` rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from ...model import (
    AfterHours,
    DayKind,
    Forwarding,
    Number,
    NumberKind,
    NumberOptions,
    SlotAction,
)
from ..base import Row, Tx
from .sql import marks

__all__ = [
    "all_numbers",
    "delete_number",
    "groups_of",
    "insert_number",
    "insert_numbers",
    "number_of",
    "save_ring_group",
    "slots_of",
    "slots_text",
    "taken",
    "update_number",
]

_LETTER = {SlotAction.RING: "R", SlotAction.ANNOUNCE: "A", SlotAction.FORWARD: "F"}
_ACTION = {v: k for k, v in _LETTER.items()}
_AH_COLUMN = {k: f"ah_{k.value}" for k in DayKind}
_COLUMNS = (
    "e164",
    "tenant_id",
    "kind",
    "label",
    "label_in_display_name",
    "app_ring_delay",
    "max_ring_time",
    "opt_after_hours",
    "opt_voicemail",
    "opt_forwarding",
    "opt_recording",
    "ah_enabled",
    *_AH_COLUMN.values(),
    "ah_announcement",
    "fwd_enabled",
    "fwd_target",
    "voicemail_ring_time",
    "recording_notice",
)
_NOW = f"${len(_COLUMNS) + 1}"
_INSERT = (
    f"INSERT INTO numbers ({', '.join(_COLUMNS)}, created_at, updated_at)"
    f" VALUES ({marks(len(_COLUMNS))}, {_NOW}, {_NOW})"
)
_UPDATE = (
    "UPDATE numbers SET "
    + ", ".join(f"{c} = ${i}" for i, c in enumerate(_COLUMNS, start=1) if i > 1)
    + f", updated_at = {_NOW} WHERE e164 = $1"
)
_MEMBER = "INSERT INTO ring_group_members (number, device_id, position) VALUES ($1, $2, $3)"


def slots_text(actions: Iterable[SlotAction]) -> str:
    return "".join(_LETTER[a] for a in actions)


def slots_of(text: str) -> tuple[SlotAction, ...]:
    return tuple(_ACTION[c] for c in text)


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


def groups_of(rows: Iterable[Row]) -> dict[str, list[str]]:
    """`ring_group_members` rows (in position order) -> number -> device ids."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["number"], []).append(r["device_id"])
    return groups


def _values(n: Number) -> tuple[Any, ...]:
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


async def taken(tx: Tx, e164: str) -> bool:
    """Whether any tenant has the number (a number belongs to one tenant)."""
    return bool(await tx.fetchval("SELECT 1 FROM numbers WHERE e164 = $1", e164))


async def all_numbers(tx: Tx) -> set[str]:
    return {r["e164"] for r in await tx.fetch("SELECT e164 FROM numbers")}


async def insert_number(tx: Tx, n: Number, now: str) -> None:
    await tx.execute(_INSERT, *_values(n), now)
    await save_ring_group(tx, n)


async def insert_numbers(tx: Tx, numbers: Sequence[Number], now: str) -> None:
    """Bulk insert (seed import), ring groups included."""
    if numbers:
        await tx.executemany(_INSERT, [(*_values(n), now) for n in numbers])
        members = [(n.e164, dev, i) for n in numbers for i, dev in enumerate(n.ring_group)]
        await tx.executemany(_MEMBER, members)


async def update_number(tx: Tx, n: Number, now: str) -> None:
    await tx.execute(_UPDATE, *_values(n), now)
    await save_ring_group(tx, n)


async def save_ring_group(tx: Tx, n: Number) -> None:
    await tx.execute("DELETE FROM ring_group_members WHERE number = $1", n.e164)
    await tx.executemany(_MEMBER, [(n.e164, dev, i) for i, dev in enumerate(n.ring_group)])


async def delete_number(tx: Tx, e164: str) -> None:
    await tx.execute("DELETE FROM numbers WHERE e164 = $1", e164)
