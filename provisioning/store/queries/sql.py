"""What every query module shares: WHERE clauses with numbered placeholders, LIKE patterns,
timestamp columns.

SQL is written PostgreSQL-style (`$1, $2 …`) in the subset both backends share; the SQLite
store rewrites the placeholders (see `provisioning.store.base`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["Where", "like", "marks", "ts", "ts_text"]


class Where:
    """WHERE clauses with `{}` placeholders, numbered $1, $2 … in the order they are added."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def add(self, clause: str, *args: Any) -> None:
        numbered = [f"${len(self.args) + i + 1}" for i in range(len(args))]
        self.clauses.append(clause.format(*numbered))
        self.args.extend(args)

    def after(self, columns: str, keys: tuple[str, ...] | None) -> None:
        """Keyset pagination: rows strictly after `keys` in `columns` order (a row value
        comparison, which both backends evaluate lexicographically)."""
        if keys:
            self.add(f"({columns}) > ({', '.join('{}' for _ in keys)})", *keys)

    def sql(self, select: str, order: str, limit: int) -> str:
        where = f" WHERE {' AND '.join(self.clauses)}" if self.clauses else ""
        return f"{select}{where} ORDER BY {order} LIMIT {int(limit)}"


def like(text: str) -> str:
    """A case-insensitive "contains" pattern for `LOWER(col) LIKE $n ESCAPE '\\'`."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def marks(count: int, start: int = 1) -> str:
    """ "$1, $2, …" for `count` values."""
    return ", ".join(f"${i}" for i in range(start, start + count))


def ts(text: str) -> datetime:
    """A timestamp column (ISO-8601 UTC text, see store.base) as an aware datetime."""
    return datetime.fromisoformat(text)


def ts_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
