"""Voicemail messages: `voicemail.MessageInfo` rows, the audio in the same row (BYTEA/BLOB).
Written through `Store.data()` (no routing version bump)."""

from __future__ import annotations

from datetime import datetime

from ...records import MessageInfo, NewMessage
from ..base import Row, Tx
from .sql import marks, ts, ts_text

__all__ = [
    "MAILBOX_CHANNEL",
    "count",
    "delete_ids",
    "delete_older_than",
    "get_audio",
    "info_of",
    "insert",
    "list_for",
    "lock_mailbox",
    "notify_changed",
    "set_heard",
]

MAILBOX_CHANNEL = "softswitch_mailboxes"

_COLS = "id, tenant_id, mailbox, caller, dialled, received_at, duration, heard"


def info_of(row: Row) -> MessageInfo:
    return MessageInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        mailbox=row["mailbox"],
        caller=row["caller"],
        dialled=row["dialled"],
        received_at=ts(row["received_at"]),
        duration=float(row["duration"]),
        heard=bool(row["heard"]),
    )


async def count(tx: Tx, tenant_id: str, mailbox: str) -> int:
    return int(
        await tx.fetchval(
            "SELECT COUNT(*) FROM voicemail_messages WHERE tenant_id = $1 AND mailbox = $2",
            tenant_id,
            mailbox,
        )
    )


async def insert(tx: Tx, message_id: str, m: NewMessage) -> None:
    await tx.execute(
        "INSERT INTO voicemail_messages (id, tenant_id, mailbox, caller, dialled, received_at,"
        " duration, heard, audio) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8)",
        message_id,
        m.tenant_id,
        m.mailbox,
        m.caller,
        m.dialled,
        ts_text(m.received_at),
        m.seconds,
        m.pcm,
    )


async def list_for(tx: Tx, tenant_id: str, mailboxes: tuple[str, ...]) -> list[MessageInfo]:
    """The mailboxes' messages, newest first."""
    if not mailboxes:
        return []
    rows = await tx.fetch(
        f"SELECT {_COLS} FROM voicemail_messages WHERE tenant_id = $1"
        f" AND mailbox IN ({marks(len(mailboxes), 2)}) ORDER BY received_at DESC, id DESC",
        tenant_id,
        *mailboxes,
    )
    return [info_of(r) for r in rows]


async def get_audio(tx: Tx, tenant_id: str, message_id: str) -> tuple[MessageInfo, bytes] | None:
    row = await tx.fetchrow(
        f"SELECT {_COLS}, audio FROM voicemail_messages WHERE id = $1 AND tenant_id = $2",
        message_id,
        tenant_id,
    )
    return None if row is None else (info_of(row), bytes(row["audio"]))


async def set_heard(tx: Tx, tenant_id: str, message_id: str, heard: bool) -> MessageInfo | None:
    row = await tx.fetchrow(
        f"UPDATE voicemail_messages SET heard = $3 WHERE id = $1 AND tenant_id = $2"
        f" RETURNING {_COLS}",
        message_id,
        tenant_id,
        heard,
    )
    return None if row is None else info_of(row)


async def delete_ids(tx: Tx, tenant_id: str, ids: tuple[str, ...]) -> list[MessageInfo]:
    """Delete the tenant's messages among `ids`; returns what was deleted."""
    if not ids:
        return []
    rows = await tx.fetch(
        f"DELETE FROM voicemail_messages WHERE tenant_id = $1 AND id IN ({marks(len(ids), 2)})"
        f" RETURNING {_COLS}",
        tenant_id,
        *ids,
    )
    return [info_of(r) for r in rows]


async def delete_older_than(tx: Tx, cutoff: datetime, limit: int) -> list[MessageInfo]:
    """At most `limit` messages received before `cutoff` (the retention sweeper's batch)."""
    rows = await tx.fetch(
        f"DELETE FROM voicemail_messages WHERE id IN (SELECT id FROM voicemail_messages"
        f" WHERE received_at < $1 ORDER BY received_at LIMIT {int(limit)}) RETURNING {_COLS}",
        ts_text(cutoff),
    )
    return [info_of(r) for r in rows]


async def lock_mailbox(tx: Tx, dialect: str, tenant_id: str, mailbox: str) -> None:
    """Serialise deposits into one mailbox until the transaction ends (PostgreSQL: an advisory
    lock; SQLite serialises every writer already)."""
    if dialect == "postgresql":
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"vm:{tenant_id}:{mailbox}")


async def notify_changed(tx: Tx, dialect: str, changed: set[tuple[str, str]]) -> None:
    """PostgreSQL: tell other processes which mailboxes changed, on commit."""
    if dialect != "postgresql":
        return
    for tenant_id, mailbox in sorted(changed):
        await tx.execute("SELECT pg_notify($1, $2)", MAILBOX_CHANNEL, f"{tenant_id}\t{mailbox}")
