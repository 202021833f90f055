"""Specifications and their versions (a spec's current version is kept consistent with its versions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.store.db import Database, Transaction
from service.store.records import (
    SpecRecord,
    VersionRecord,
    dump_json,
    now,
    spec_record,
    to_stamp,
    update_clause,
    user_id,
    version_record,
)

_VERSION_SELECT = """
SELECT v.id, v.organisation, v.spec_id, v.network_id, v.post_processings, v.update_date,
       s.name AS spec_name, n.name AS network_name
FROM versions v
JOIN specifications s ON s.id = v.spec_id
LEFT JOIN networks n ON CAST(n.id AS TEXT) = v.network_id
"""

_SPEC_FIELDS = ("name", "description", "metadata", "current_version_id")


async def fix_current_version(tx: Transaction, spec_id: int) -> None:
    """After versions were deleted: a spec whose current version is gone takes its newest remaining one."""
    spec = await tx.fetchone("SELECT current_version_id FROM specifications WHERE id = ?", (spec_id,))
    if spec is None or spec["current_version_id"] is None:
        return
    current = await tx.fetchone("SELECT id FROM versions WHERE id = ?", (int(spec["current_version_id"]),))
    if current is not None:
        return
    newest = await tx.fetchone("SELECT MAX(id) AS id FROM versions WHERE spec_id = ?", (spec_id,))
    replacement = str(newest["id"]) if newest and newest["id"] is not None else None
    await tx.execute(
        "UPDATE specifications SET current_version_id = ?, update_date = ? WHERE id = ?",
        (replacement, to_stamp(now()), spec_id),
    )


class SpecQueries:
    """Queries of one aggregate; mixed into ``Store``, which holds ``db``."""

    db: Database

    async def insert_spec(
        self, organisation: str, *, name: str, description: str, metadata: Mapping[str, Any], outputs: list[Any]
    ) -> SpecRecord:
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO specifications (organisation, name, description, metadata, outputs, update_date) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (organisation, name, description, dump_json(dict(metadata)), dump_json(outputs), to_stamp(now())),
            )
        assert row is not None
        return spec_record(row)

    async def get_spec(self, organisation: str, spec_id: str) -> SpecRecord | None:
        if (key := user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT * FROM specifications WHERE id = ? AND organisation = ?", (key, organisation)
            )
        return spec_record(row) if row else None

    async def list_specs(self, organisation: str, offset: int, limit: int) -> tuple[int, list[SpecRecord]]:
        async with self.db.transaction() as tx:
            count = await tx.fetchone(
                "SELECT COUNT(*) AS n FROM specifications WHERE organisation = ?", (organisation,)
            )
            rows = await tx.fetchall(
                "SELECT * FROM specifications WHERE organisation = ? ORDER BY id LIMIT ? OFFSET ?",
                (organisation, limit, offset),
            )
        return int(count["n"] if count else 0), [spec_record(r) for r in rows]

    async def update_spec(self, organisation: str, spec_id: str, changes: Mapping[str, Any]) -> SpecRecord | None:
        """Change name, description, metadata and current_version_id (which must be a version of this spec:
        the caller checks it)."""
        if (key := user_id(spec_id)) is None:
            return None
        sets, values = update_clause(_SPEC_FIELDS, changes)
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"UPDATE specifications SET {sets}update_date = ? WHERE id = ? AND organisation = ? RETURNING *",
                (*values, to_stamp(now()), key, organisation),
            )
        return spec_record(row) if row else None

    async def delete_spec(self, organisation: str, spec_id: str) -> SpecRecord | None:
        """Delete a specification and its versions."""
        if (key := user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "DELETE FROM specifications WHERE id = ? AND organisation = ? RETURNING *", (key, organisation)
            )
            if row is not None:
                await tx.execute("DELETE FROM versions WHERE spec_id = ?", (key,))
        return spec_record(row) if row else None

    async def insert_version(
        self, organisation: str, *, spec_id: str, network_id: str, post_processings: list[Any]
    ) -> VersionRecord | None:
        """Insert a version of one of the organisation's specifications (``None`` if it has no such spec); the
        first version becomes the specification's current one."""
        if (key := user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            spec = await tx.fetchone(
                "SELECT id, current_version_id FROM specifications WHERE id = ? AND organisation = ?",
                (key, organisation),
            )
            if spec is None:
                return None
            stamp = to_stamp(now())
            row = await tx.fetchone(
                "INSERT INTO versions (organisation, spec_id, network_id, post_processings, update_date) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (organisation, key, network_id, dump_json(post_processings), stamp),
            )
            assert row is not None
            version_id = str(row["id"])
            if spec["current_version_id"] is None:
                await tx.execute(
                    "UPDATE specifications SET current_version_id = ?, update_date = ? WHERE id = ?",
                    (version_id, stamp, key),
                )
            full = await tx.fetchone(f"{_VERSION_SELECT} WHERE v.id = ?", (int(version_id),))
        assert full is not None
        return version_record(full)

    async def get_version(self, organisation: str, version_id: str) -> VersionRecord | None:
        if (key := user_id(version_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"{_VERSION_SELECT} WHERE v.id = ? AND v.organisation = ?", (key, organisation))
        return version_record(row) if row else None

    async def list_versions(
        self, organisation: str, spec_id: str | None, offset: int, limit: int
    ) -> tuple[int, list[VersionRecord]]:
        where, params = "v.organisation = ?", tuple[Any, ...]((organisation,))
        if spec_id is not None:
            where += " AND v.spec_id = ?"
            params += (user_id(spec_id) or 0,)
        async with self.db.transaction() as tx:
            count = await tx.fetchone(f"SELECT COUNT(*) AS n FROM versions v WHERE {where}", params)
            rows = await tx.fetchall(
                f"{_VERSION_SELECT} WHERE {where} ORDER BY v.id LIMIT ? OFFSET ?", (*params, limit, offset)
            )
        return int(count["n"] if count else 0), [version_record(r) for r in rows]

    async def delete_version(self, organisation: str, version_id: str) -> VersionRecord | None:
        """Delete a version; if it was its specification's current one, the newest remaining one (or none)
        becomes current."""
        if (key := user_id(version_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"{_VERSION_SELECT} WHERE v.id = ? AND v.organisation = ?", (key, organisation))
            if row is None:
                return None
            await tx.execute("DELETE FROM versions WHERE id = ?", (key,))
            await fix_current_version(tx, int(row["spec_id"]))
        return version_record(row)
