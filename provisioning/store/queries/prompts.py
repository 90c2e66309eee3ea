"""Uploaded prompts: `records.PromptInfo` rows, the audio in the same row (BYTEA / BLOB)."""

from __future__ import annotations

from ...records import PromptInfo
from ..base import Row, Tx
from .sql import ts, ts_text

__all__ = [
    "count",
    "delete_prompt",
    "get_with_audio",
    "ids",
    "info_of",
    "insert_prompt",
    "list_infos",
]

_COLS = "id, tenant_id, name, content_type, size, created_at"  # never the audio by accident


def info_of(row: Row) -> PromptInfo:
    return PromptInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        content_type=row["content_type"],
        size=int(row["size"]),
        created_at=ts(row["created_at"]),
    )


async def count(tx: Tx, tenant_id: str) -> int:
    return int(await tx.fetchval("SELECT COUNT(*) FROM prompts WHERE tenant_id = $1", tenant_id))


async def ids(tx: Tx, tenant_id: str) -> frozenset[str]:
    rows = await tx.fetch("SELECT id FROM prompts WHERE tenant_id = $1", tenant_id)
    return frozenset(r["id"] for r in rows)


async def insert_prompt(tx: Tx, info: PromptInfo, audio: bytes) -> None:
    await tx.execute(
        "INSERT INTO prompts (id, tenant_id, name, content_type, size, audio, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        info.id,
        info.tenant_id,
        info.name,
        info.content_type,
        info.size,
        bytes(audio),
        ts_text(info.created_at),
    )


async def list_infos(tx: Tx, tenant_id: str) -> list[PromptInfo]:
    rows = await tx.fetch(
        f"SELECT {_COLS} FROM prompts WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    return [info_of(r) for r in rows]


async def get_with_audio(tx: Tx, tenant_id: str, prompt_id: str) -> tuple[PromptInfo, bytes] | None:
    row = await tx.fetchrow(
        f"SELECT {_COLS}, audio FROM prompts WHERE id = $1 AND tenant_id = $2",
        prompt_id,
        tenant_id,
    )
    return None if row is None else (info_of(row), bytes(row["audio"]))


async def delete_prompt(tx: Tx, prompt_id: str) -> None:
    await tx.execute("DELETE FROM prompts WHERE id = $1", prompt_id)
