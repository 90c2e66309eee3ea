"""Versioned plain-SQL migrations, shared by SQLite and PostgreSQL.

`migrations/NNNN_name.sql` files run in order; `schema_version` records each one applied.
All pending files run in ONE transaction (DDL is transactional on both backends), so a
failed upgrade leaves the previous schema intact. Re-running is a no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from .base import Store, utcnow_text

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Split on ";" at the end of a line; "--" comment lines are dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        parts = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
        return [p.strip() for p in parts if p.strip()]


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        m = _FILE.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda mig: mig.version)


async def migrate(store: Store) -> list[int]:
    """Apply the missing migrations; return the versions applied now."""
    async with store.migration() as tx:
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {r["version"] for r in await tx.fetch("SELECT version FROM schema_version")}
        applied = []
        for mig in available():
            if mig.version in done:
                continue
            for stmt in mig.statements():
                await tx.execute(stmt)
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                mig.version,
                mig.name,
                utcnow_text(),
            )
            applied.append(mig.version)
        return applied


async def schema_version(store: Store) -> int:
    async with store.read() as tx:
        v = await tx.fetchval("SELECT MAX(version) FROM schema_version")
    return int(v or 0)
