"""Schema migrations: numbered SQL files per dialect (``migrations/<dialect>/NNNN_name.sql``), applied in order
at start-up and recorded in ``schema_migrations``."""

from __future__ import annotations

import logging
from importlib import resources

from service.store.db import Database
from service.store.records import now, to_stamp

log = logging.getLogger("service.store")


class Migrations:
    """Mixed into ``Store``, which holds ``db``."""

    db: Database

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded in ``schema_migrations``; returns their names."""
        folder = resources.files("service.store") / "migrations" / self.db.dialect
        scripts = sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql"))
        applied: list[str] = []
        async with self.db.transaction() as tx:
            await self.db.lock_for_migrations(tx)
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)"
            )
            done = {int(r["version"]) for r in await tx.fetchall("SELECT version FROM schema_migrations")}
            for name, text in scripts:
                number = int(name.split("_", 1)[0])
                if number in done:
                    continue
                for statement in _statements(text):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (number, name, to_stamp(now())),
                )
                applied.append(name)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        return applied

    async def schema_version(self) -> int:
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"]) if row and row["v"] is not None else 0


def _statements(script: str) -> list[str]:
    """A migration script's statements (they end with ';' at the end of a line; '--' comments dropped)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]
