"""API tokens: `records.TokenInfo` rows; the secret only as its SHA-256."""

from __future__ import annotations

from ...records import TokenInfo
from ..base import Row, Tx
from .sql import ts, ts_text

__all__ = [
    "delete_token",
    "get_token",
    "get_token_for_auth",
    "insert_token",
    "list_tokens",
    "token_of",
]


def token_of(row: Row) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        scope=row["scope"],
        tenant_id=row["tenant_id"],
        label=row["label"],
        created_at=ts(row["created_at"]),
    )


async def get_token(tx: Tx, token_id: str) -> tuple[TokenInfo, str] | None:
    """The token and the SHA-256 (hex) of its secret."""
    row = await tx.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token_id)
    return None if row is None else (token_of(row), row["secret_sha256"])


async def get_token_for_auth(tx: Tx, token_id: str) -> tuple[TokenInfo, str, str | None] | None:
    """The token, the SHA-256 (hex) of its secret and its tenant's status (None for operator
    tokens): one statement, so a suspension applies to the very next request."""
    row = await tx.fetchrow(
        "SELECT k.*, t.status AS tenant_status FROM api_tokens k"
        " LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
        token_id,
    )
    if row is None:
        return None
    return token_of(row), row["secret_sha256"], row["tenant_status"]


async def insert_token(tx: Tx, info: TokenInfo, secret_sha256: str) -> None:
    await tx.execute(
        "INSERT INTO api_tokens (id, secret_sha256, scope, tenant_id, label, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        info.id,
        secret_sha256,
        info.scope,
        info.tenant_id,
        info.label,
        ts_text(info.created_at),
    )


async def list_tokens(tx: Tx, tenant_id: str | None) -> list[TokenInfo]:
    """Every token, or one tenant's, in creation order."""
    if tenant_id is None:
        rows = await tx.fetch("SELECT * FROM api_tokens ORDER BY created_at, id")
    else:
        rows = await tx.fetch(
            "SELECT * FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id
        )
    return [token_of(r) for r in rows]


async def delete_token(tx: Tx, token_id: str) -> None:
    await tx.execute("DELETE FROM api_tokens WHERE id = $1", token_id)
