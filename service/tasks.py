"""Asynchronous inference tasks (v0.7): a task is created pending, runs in the background, ends success or error.

Tasks live in memory here, bounded in number (oldest finished ones are forgotten first) and in concurrency (a
full queue answers RESOURCE_EXHAUSTED rather than growing without bound).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar

from service.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError, SightlineError

__all__ = ["Task", "TaskRunner", "TaskStatus"]

log = logging.getLogger(__name__)

R = TypeVar("R")


class TaskStatus(enum.Enum):
    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Task(Generic[R]):
    id: str
    status: TaskStatus
    date_created: datetime
    date_updated: datetime
    error: str | None = None
    data: R | None = None


class TaskRunner(Generic[R]):
    """Runs coroutines as tasks and keeps their outcomes for ``GetTask``."""

    def __init__(self, *, max_pending: int = 256, max_kept: int = 10_000) -> None:
        self._max_pending = max_pending
        self._max_kept = max_kept
        self._tasks: OrderedDict[str, Task[R]] = OrderedDict()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._running)

    def submit(self, work: Callable[[], Awaitable[R]]) -> Task[R]:
        if len(self._running) >= self._max_pending:
            raise ResourceExhaustedError(
                f"{len(self._running)} tasks are already pending; retry later", retry_after_s=1.0
            )
        now = datetime.now(UTC)
        task: Task[R] = Task(id=str(uuid.uuid4()), status=TaskStatus.PENDING, date_created=now, date_updated=now)
        self._keep(task)
        runner = asyncio.create_task(self._run(task, work), name=f"task-{task.id}")
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        return task

    async def _run(self, task: Task[R], work: Callable[[], Awaitable[R]]) -> None:
        try:
            data = await work()
        except SightlineError as exc:
            self._keep(replace(task, status=TaskStatus.ERROR, error=exc.message, date_updated=datetime.now(UTC)))
        except asyncio.CancelledError:
            self._keep(
                replace(
                    task,
                    status=TaskStatus.ERROR,
                    error="cancelled: the server shut down",
                    date_updated=datetime.now(UTC),
                )
            )
            raise
        except Exception:
            log.exception("task %s failed", task.id)
            self._keep(replace(task, status=TaskStatus.ERROR, error="internal error", date_updated=datetime.now(UTC)))
        else:
            self._keep(replace(task, status=TaskStatus.SUCCESS, data=data, date_updated=datetime.now(UTC)))

    def _keep(self, task: Task[R]) -> None:
        self._tasks[task.id] = task
        self._tasks.move_to_end(task.id)
        while len(self._tasks) > self._max_kept:
            oldest = next(iter(self._tasks))
            if self._tasks[oldest].status is TaskStatus.PENDING:
                break
            del self._tasks[oldest]

    def get(self, task_id: str) -> Task[R]:
        if not task_id:
            raise InvalidArgumentError.field("task_id", "must not be empty")
        if (task := self._tasks.get(task_id)) is None:
            raise NotFoundError("task", task_id)
        return task

    def get_many(self, task_ids: Sequence[str]) -> list[Task[R]]:
        if not task_ids:
            raise InvalidArgumentError.field("task_ids", "must name at least one task")
        if len(task_ids) > 1000:
            raise InvalidArgumentError.field("task_ids", f"names {len(task_ids)} tasks; at most 1000 at once")
        return [self.get(t) for t in task_ids]

    async def close(self) -> None:
        """Cancel the tasks still running and wait for them."""
        running = list(self._running)
        for runner in running:
            runner.cancel()
        await asyncio.gather(*running, return_exceptions=True)
