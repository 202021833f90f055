"""Asynchronous inference tasks: insert, finish, read, prune."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.store.db import Database, Transaction
from service.store.records import TaskRecord, dump_json, now, task_record, to_stamp


async def insert_task_row(tx: Transaction, task: TaskRecord) -> None:
    """Insert a task inside a transaction of the caller's (a network's deployment task is created with it)."""
    await tx.execute(
        "INSERT INTO tasks (id, organisation, kind, status, error, data, date_created, date_updated) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            task.id,
            task.organisation,
            task.kind,
            task.status,
            task.error,
            None if task.data is None else dump_json(task.data),
            to_stamp(task.date_created),
            to_stamp(task.date_updated),
        ),
    )


class TaskQueries:
    """Queries of one aggregate; mixed into ``Store``, which holds ``db``."""

    db: Database

    async def insert_task(self, task: TaskRecord) -> None:
        async with self.db.transaction() as tx:
            await insert_task_row(tx, task)

    async def finish_task(self, task_id: str, status: str, error: str | None, data: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE tasks SET status = ?, error = ?, data = ?, date_updated = ? WHERE id = ?",
                (status, error, None if data is None else dump_json(data), to_stamp(now()), task_id),
            )

    async def get_tasks(self, organisation: str, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        if not task_ids:
            return {}
        marks = ", ".join("?" for _ in task_ids)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT * FROM tasks WHERE organisation = ? AND id IN ({marks})", (organisation, *task_ids)
            )
        return {r["id"]: task_record(r) for r in rows}

    async def prune_tasks(self, keep: int) -> int:
        """Forget the finished tasks but the ``keep`` most recent ones."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM tasks WHERE status <> 'pending' AND kind = 'inference' AND id NOT IN "
                "(SELECT id FROM tasks WHERE status <> 'pending' AND kind = 'inference' "
                "ORDER BY date_updated DESC LIMIT ?)",
                (keep,),
            )
