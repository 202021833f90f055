"""Networks: insert, read, list, update, state, delete."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from service.store.db import Database
from service.store.records import (
    NetworkRecord,
    TaskRecord,
    dump_json,
    network_record,
    now,
    to_stamp,
    update_clause,
    user_id,
)
from service.store.specs import fix_current_version
from service.store.tasks import insert_task_row

_NETWORK_FIELDS = ("name", "description", "metadata")


class NetworkQueries:
    """Queries of one aggregate; mixed into ``Store``, which holds ``db``."""

    db: Database

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
        stamp = to_stamp(now())
        async with self.db.transaction() as tx:
            await insert_task_row(tx, task)
            row = await tx.fetchone(
                "INSERT INTO networks (organisation, name, description, metadata, framework, preprocessing, "
                "signature, files, state, task_id, create_date, update_date) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'deploying', ?, ?, ?) RETURNING *",
                (
                    organisation,
                    name,
                    description,
                    dump_json(dict(metadata)),
                    framework,
                    dump_json(dict(preprocessing)),
                    dump_json(dict(signature)),
                    dump_json(list(files)),
                    task.id,
                    stamp,
                    stamp,
                ),
            )
            assert row is not None
            record = network_record(row)
            place(record.id)
        return record

    async def get_network(self, organisation: str, network_id: str) -> NetworkRecord | None:
        if (key := user_id(network_id)) is None:
            return None
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM networks WHERE id = ? AND organisation = ?", (key, organisation))
        return network_record(row) if row else None

    async def list_networks(self, organisation: str, offset: int, limit: int) -> tuple[int, list[NetworkRecord]]:
        async with self.db.transaction() as tx:
            count = await tx.fetchone("SELECT COUNT(*) AS n FROM networks WHERE organisation = ?", (organisation,))
            rows = await tx.fetchall(
                "SELECT * FROM networks WHERE organisation = ? ORDER BY id LIMIT ? OFFSET ?",
                (organisation, limit, offset),
            )
        return int(count["n"] if count else 0), [network_record(r) for r in rows]

    async def update_network(
        self, organisation: str, network_id: str, changes: Mapping[str, Any]
    ) -> NetworkRecord | None:
        """Change name, description and metadata (the only mutable fields)."""
        if (key := user_id(network_id)) is None:
            return None
        sets, values = update_clause(_NETWORK_FIELDS, changes)
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"UPDATE networks SET {sets}update_date = ? WHERE id = ? AND organisation = ? RETURNING *",
                (*values, to_stamp(now()), key, organisation),
            )
        return network_record(row) if row else None

    async def set_network_state(self, network_id: str, state: str) -> bool:
        async with self.db.transaction() as tx:
            return await tx.execute("UPDATE networks SET state = ? WHERE id = ?", (state, int(network_id))) > 0

    async def delete_network(self, organisation: str | None, network_id: str) -> NetworkRecord | None:
        """Delete a network and its versions (specifications whose current version goes get their newest
        remaining one). ``organisation`` ``None``: whoever owns it (start-up reconciliation)."""
        if (key := user_id(network_id)) is None:
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
                await fix_current_version(tx, spec_id)
        return network_record(row)

    async def all_networks(self) -> list[NetworkRecord]:
        """Every organisation's networks (start-up reconciliation)."""
        async with self.db.transaction() as tx:
            return [network_record(r) for r in await tx.fetchall("SELECT * FROM networks ORDER BY id")]
