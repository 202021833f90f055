"""Persistence of the registry (networks, specifications, versions), the tasks and the API keys.

``Store`` holds every query the service makes, written once in the SQL that SQLite and PostgreSQL share, over a
``Database`` driver (``service.store.db``). Schema changes are numbered migration files per dialect
(``migrations/<dialect>/NNNN_name.sql``), applied in order at start-up and recorded in ``schema_migrations``.

Every query on user resources takes the caller's organisation: a row of another organisation is not found.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from service.store.db import Database, Row, Transaction, open_database

__all__ = [
    "ApiKeyRecord",
    "Database",
    "NetworkRecord",
    "SpecRecord",
    "Store",
    "TaskRecord",
    "VersionRecord",
    "now",
    "open_store",
]

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    id: str
    organisation: str
    name: str
    description: str
    metadata: dict[str, Any]
    framework: str
    preprocessing: dict[str, Any]
    signature: dict[str, Any]
    """The network's inputs and outputs as read from its files (names, dtypes, shapes, batching)."""
    files: list[str]
    state: str
    """``deploying``, ``ready``."""
    task_id: str
    create_date: datetime
    update_date: datetime


@dataclass(frozen=True, slots=True)
class SpecRecord:
    id: str
    organisation: str
    name: str
    description: str
    metadata: dict[str, Any]
    outputs: list[Any]
    current_version_id: str | None
    update_date: datetime


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: str
    organisation: str
    spec_id: str
    network_id: str
    post_processings: list[Any]
    spec_name: str
    network_name: str | None
    """``None`` when the network is a public one (the catalog knows its name)."""
    update_date: datetime


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    organisation: str
    kind: str
    """``inference`` or ``deployment``."""
    status: str
    error: str | None
    data: Any
    date_created: datetime
    date_updated: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    organisation: str
    kind: str
    key_hash: str
    description: str
    created_at: datetime
    revoked_at: datetime | None


def _network(row: Row) -> NetworkRecord:
    return NetworkRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        name=row["name"],
        description=row["description"],
        metadata=_json(row["metadata"]),
        framework=row["framework"],
        preprocessing=_json(row["preprocessing"]),
        signature=_json(row["signature"]),
        files=_json(row["files"]),
        state=row["state"],
        task_id=row["task_id"],
        create_date=_date(row["create_date"]),
        update_date=_date(row["update_date"]),
    )


def _spec(row: Row) -> SpecRecord:
    return SpecRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        name=row["name"],
        description=row["description"],
        metadata=_json(row["metadata"]),
        outputs=_json(row["outputs"]),
        current_version_id=row["current_version_id"],
        update_date=_date(row["update_date"]),
    )


def _version(row: Row) -> VersionRecord:
    return VersionRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        spec_id=str(row["spec_id"]),
        network_id=row["network_id"],
        post_processings=_json(row["post_processings"]),
        spec_name=row["spec_name"],
        network_name=row["network_name"],
        update_date=_date(row["update_date"]),
    )


def _task(row: Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        organisation=row["organisation"],
        kind=row["kind"],
        status=row["status"],
        error=row["error"],
        data=_json(row["data"]) if row["data"] is not None else None,
        date_created=_date(row["date_created"]),
        date_updated=_date(row["date_updated"]),
    )


def _key(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        organisation=row["organisation"],
        kind=row["kind"],
        key_hash=row["key_hash"],
        description=row["description"],
        created_at=_date(row["created_at"]),
        revoked_at=_date(row["revoked_at"]) if row["revoked_at"] is not None else None,
    )


def _user_id(resource_id: str) -> int | None:
    """User ids are decimal strings; anything else (a public id) is no row of ours."""
    return int(resource_id) if resource_id.isdigit() and len(resource_id) < 19 else None


_VERSION_SELECT = """
SELECT v.id, v.organisation, v.spec_id, v.network_id, v.post_processings, v.update_date,
       s.name AS spec_name, n.name AS network_name
FROM versions v
JOIN specifications s ON s.id = v.spec_id
LEFT JOIN networks n ON CAST(n.id AS TEXT) = v.network_id
"""

_NETWORK_FIELDS = ("name", "description", "metadata")
_SPEC_FIELDS = ("name", "description", "metadata", "current_version_id")


class Store:
    """The service's queries over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------------------------------- migrations

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
                    (number, name, _stamp(now())),
                )
                applied.append(name)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        return applied

    async def schema_version(self) -> int:
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"]) if row and row["v"] is not None else 0

    # --------------------------------------------------------------------------------------------- networks

    async def insert_network(
        self,
        organisation: str,
        *,
        name: str,
        description: str,
        metadata: Mapping[str, Any],
        framework: str,
        preprocessing: Mapping[str, Any],
        signature: Mapping[str, Any],
        files: Sequence[str],
        task: TaskRecord,
        place: Callable[[str], None],
    ) -> NetworkRecord:
        """Insert a network (state ``deploying``) and its deployment task; ``place(id)`` runs before the commit
        (it moves the model folder into the repository): if it raises, nothing is committed."""
        stamp = _stamp(now())
        async with self.db.transaction() as tx:
            await self._insert_task(tx, task)
            row = await tx.fetchone(
                "INSERT INTO networks (organisation, name, description, metadata, framework, preprocessing, "
                "signature, files, state, task_id, create_date, update_date) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'deploying', ?, ?, ?) RETURNING *",
                (
                    organisation,
                    name,
                    description,
                    _dump(dict(metadata)),
                    framework,
                    _dump(dict(preprocessing)),
                    _dump(dict(signature)),
                    _dump(list(files)),
                    task.id,
                    stamp,
                    stamp,
                ),
            )
            assert row is not None
            record = _network(row)
            place(record.id)
        return record

    async def get_network(self, organisation: str, network_id: str) -> NetworkRecord | None:
        if (key := _user_id(network_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM networks WHERE id = ? AND organisation = ?", (key, organisation))
        return _network(row) if row else None

    async def list_networks(self, organisation: str, offset: int, limit: int) -> tuple[int, list[NetworkRecord]]:
        async with self.db.transaction() as tx:
            count = await tx.fetchone("SELECT COUNT(*) AS n FROM networks WHERE organisation = ?", (organisation,))
            rows = await tx.fetchall(
                "SELECT * FROM networks WHERE organisation = ? ORDER BY id LIMIT ? OFFSET ?",
                (organisation, limit, offset),
            )
        return int(count["n"] if count else 0), [_network(r) for r in rows]

    async def update_network(
        self, organisation: str, network_id: str, changes: Mapping[str, Any]
    ) -> NetworkRecord | None:
        """Change name, description and metadata (the only mutable fields)."""
        if (key := _user_id(network_id)) is None:
            return None
        fields = [f for f in _NETWORK_FIELDS if f in changes]
        values = [_dump(dict(changes[f])) if f == "metadata" else changes[f] for f in fields]
        sets = "".join(f"{f} = ?, " for f in fields)
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"UPDATE networks SET {sets}update_date = ? WHERE id = ? AND organisation = ? RETURNING *",
                (*values, _stamp(now()), key, organisation),
            )
        return _network(row) if row else None

    async def set_network_state(self, network_id: str, state: str) -> bool:
        async with self.db.transaction() as tx:
            return await tx.execute("UPDATE networks SET state = ? WHERE id = ?", (state, int(network_id))) > 0

    async def delete_network(self, organisation: str | None, network_id: str) -> NetworkRecord | None:
        """Delete a network and its versions (specifications whose current version goes get their newest
        remaining one). ``organisation`` ``None``: whoever owns it (start-up reconciliation)."""
        if (key := _user_id(network_id)) is None:
            return None
        async with self.db.transaction() as tx:
            if organisation is None:
                row = await tx.fetchone("DELETE FROM networks WHERE id = ? RETURNING *", (key,))
            else:
                row = await tx.fetchone(
                    "DELETE FROM networks WHERE id = ? AND organisation = ? RETURNING *", (key, organisation)
                )
            if row is None:
                return None
            specs = await tx.fetchall("DELETE FROM versions WHERE network_id = ? RETURNING spec_id", (str(key),))
            for spec_id in {int(s["spec_id"]) for s in specs}:
                await self._fix_current_version(tx, spec_id)
        return _network(row)

    async def all_networks(self) -> list[NetworkRecord]:
        """Every organisation's networks (start-up reconciliation)."""
        async with self.db.transaction() as tx:
            return [_network(r) for r in await tx.fetchall("SELECT * FROM networks ORDER BY id")]

    # ------------------------------------------------------------------------------------------------ specs

    async def insert_spec(
        self, organisation: str, *, name: str, description: str, metadata: Mapping[str, Any], outputs: list[Any]
    ) -> SpecRecord:
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO specifications (organisation, name, description, metadata, outputs, update_date) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (organisation, name, description, _dump(dict(metadata)), _dump(outputs), _stamp(now())),
            )
        assert row is not None
        return _spec(row)

    async def get_spec(self, organisation: str, spec_id: str) -> SpecRecord | None:
        if (key := _user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT * FROM specifications WHERE id = ? AND organisation = ?", (key, organisation)
            )
        return _spec(row) if row else None

    async def list_specs(self, organisation: str, offset: int, limit: int) -> tuple[int, list[SpecRecord]]:
        async with self.db.transaction() as tx:
            count = await tx.fetchone(
                "SELECT COUNT(*) AS n FROM specifications WHERE organisation = ?", (organisation,)
            )
            rows = await tx.fetchall(
                "SELECT * FROM specifications WHERE organisation = ? ORDER BY id LIMIT ? OFFSET ?",
                (organisation, limit, offset),
            )
        return int(count["n"] if count else 0), [_spec(r) for r in rows]

    async def update_spec(self, organisation: str, spec_id: str, changes: Mapping[str, Any]) -> SpecRecord | None:
        """Change name, description, metadata and current_version_id (which must be a version of this spec:
        the caller checks it)."""
        if (key := _user_id(spec_id)) is None:
            return None
        fields = [f for f in _SPEC_FIELDS if f in changes]
        values = [_dump(dict(changes[f])) if f == "metadata" else changes[f] for f in fields]
        sets = "".join(f"{f} = ?, " for f in fields)
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"UPDATE specifications SET {sets}update_date = ? WHERE id = ? AND organisation = ? RETURNING *",
                (*values, _stamp(now()), key, organisation),
            )
        return _spec(row) if row else None

    async def delete_spec(self, organisation: str, spec_id: str) -> SpecRecord | None:
        """Delete a specification and its versions."""
        if (key := _user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "DELETE FROM specifications WHERE id = ? AND organisation = ? RETURNING *", (key, organisation)
            )
            if row is not None:
                await tx.execute("DELETE FROM versions WHERE spec_id = ?", (key,))
        return _spec(row) if row else None

    # --------------------------------------------------------------------------------------------- versions

    async def insert_version(
        self, organisation: str, *, spec_id: str, network_id: str, post_processings: list[Any]
    ) -> VersionRecord | None:
        """Insert a version of one of the organisation's specifications (``None`` if it has no such spec); the
        first version becomes the specification's current one."""
        if (key := _user_id(spec_id)) is None:
            return None
        async with self.db.transaction() as tx:
            spec = await tx.fetchone(
                "SELECT id, current_version_id FROM specifications WHERE id = ? AND organisation = ?",
                (key, organisation),
            )
            if spec is None:
                return None
            stamp = _stamp(now())
            row = await tx.fetchone(
                "INSERT INTO versions (organisation, spec_id, network_id, post_processings, update_date) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (organisation, key, network_id, _dump(post_processings), stamp),
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
        return _version(full)

    async def get_version(self, organisation: str, version_id: str) -> VersionRecord | None:
        if (key := _user_id(version_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"{_VERSION_SELECT} WHERE v.id = ? AND v.organisation = ?", (key, organisation))
        return _version(row) if row else None

    async def list_versions(
        self, organisation: str, spec_id: str | None, offset: int, limit: int
    ) -> tuple[int, list[VersionRecord]]:
        where, params = "v.organisation = ?", tuple[Any, ...]((organisation,))
        if spec_id is not None:
            where += " AND v.spec_id = ?"
            params += (_user_id(spec_id) or 0,)
        async with self.db.transaction() as tx:
            count = await tx.fetchone(f"SELECT COUNT(*) AS n FROM versions v WHERE {where}", params)
            rows = await tx.fetchall(
                f"{_VERSION_SELECT} WHERE {where} ORDER BY v.id LIMIT ? OFFSET ?", (*params, limit, offset)
            )
        return int(count["n"] if count else 0), [_version(r) for r in rows]

    async def delete_version(self, organisation: str, version_id: str) -> VersionRecord | None:
        """Delete a version; if it was its specification's current one, the newest remaining one (or none)
        becomes current."""
        if (key := _user_id(version_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"{_VERSION_SELECT} WHERE v.id = ? AND v.organisation = ?", (key, organisation))
            if row is None:
                return None
            await tx.execute("DELETE FROM versions WHERE id = ?", (key,))
            await self._fix_current_version(tx, int(row["spec_id"]))
        return _version(row)

    async def _fix_current_version(self, tx: Transaction, spec_id: int) -> None:
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
            (replacement, _stamp(now()), spec_id),
        )

    # ------------------------------------------------------------------------------------------------ tasks

    async def _insert_task(self, tx: Transaction, task: TaskRecord) -> None:
        await tx.execute(
            "INSERT INTO tasks (id, organisation, kind, status, error, data, date_created, date_updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.id,
                task.organisation,
                task.kind,
                task.status,
                task.error,
                None if task.data is None else _dump(task.data),
                _stamp(task.date_created),
                _stamp(task.date_updated),
            ),
        )

    async def insert_task(self, task: TaskRecord) -> None:
        async with self.db.transaction() as tx:
            await self._insert_task(tx, task)

    async def finish_task(self, task_id: str, status: str, error: str | None, data: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE tasks SET status = ?, error = ?, data = ?, date_updated = ? WHERE id = ?",
                (status, error, None if data is None else _dump(data), _stamp(now()), task_id),
            )

    async def get_tasks(self, organisation: str, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        if not task_ids:
            return {}
        marks = ", ".join("?" for _ in task_ids)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT * FROM tasks WHERE organisation = ? AND id IN ({marks})", (organisation, *task_ids)
            )
        return {r["id"]: _task(r) for r in rows}

    async def prune_tasks(self, keep: int) -> int:
        """Forget the finished tasks but the ``keep`` most recent ones."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM tasks WHERE status <> 'pending' AND kind = 'inference' AND id NOT IN "
                "(SELECT id FROM tasks WHERE status <> 'pending' AND kind = 'inference' "
                "ORDER BY date_updated DESC LIMIT ?)",
                (keep,),
            )

    # ------------------------------------------------------------------------------------------------- keys

    async def insert_key(self, key: ApiKeyRecord) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO api_keys (id, organisation, kind, key_hash, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.organisation, key.kind, key.key_hash, key.description, _stamp(key.created_at)),
            )

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return _key(row) if row else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        async with self.db.transaction() as tx:
            return [_key(r) for r in await tx.fetchall("SELECT * FROM api_keys ORDER BY created_at, id")]

    async def revoke_key(self, key_id: str) -> bool:
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_stamp(now()), key_id)
            )
        return changed > 0


def _statements(script: str) -> list[str]:
    """A migration script's statements (they end with ';' at the end of a line; '--' comments dropped)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


async def open_store(url: str, data_dir: Path, *, pool_size: int = 8) -> Store:
    """Open the database named by ``url`` (see ``open_database``) and bring its schema up to date."""
    store = Store(await open_database(url, data_dir, pool_size=pool_size))
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store
