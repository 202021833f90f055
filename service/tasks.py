"""Asynchronous tasks (v0.7): a task is created pending, runs in the background, ends success or error.

Task records live in a ``TaskBackend``: the registry's database in the service (so that a task created through
one replica can be read through another), memory in unit tests. The work itself runs in the replica that
created the task. The runner bounds its concurrency (a full queue answers RESOURCE_EXHAUSTED) and the number of
finished inference tasks kept (the oldest are forgotten first). Tasks belong to an organisation: another one's
task is not found.

Two kinds: ``inference`` (``Infer``: the data is the recognition result; the REST facade's network inference:
raw tensors) and ``deployment`` (the deployment of an
uploaded network: no data, an error says why it failed).
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
from typing import Any, Generic, Protocol, TypeVar

from postprocess.types import BBox, LabelsResult, Prediction
from service.domain import RecognitionResult
from service.domain.results import TaskData, TensorsResult
from service.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError, as_domain_error
from service.store import TaskRecord

__all__ = [
    "MemoryTaskBackend",
    "Task",
    "TaskBackend",
    "TaskRunner",
    "TaskStatus",
    "decode_result",
    "encode_result",
]

log = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_ORGANISATION = "local"


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


class TaskBackend(Protocol):
    """Where task records are kept (``service.store.Store`` is one)."""

    async def insert_task(self, task: TaskRecord) -> None: ...

    async def finish_task(self, task_id: str, status: str, error: str | None, data: Any) -> None: ...

    async def get_tasks(self, organisation: str, task_ids: Sequence[str]) -> dict[str, TaskRecord]: ...

    async def prune_tasks(self, keep: int) -> int: ...


class MemoryTaskBackend:
    """Task records in this process only (unit tests, tools)."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()

    async def insert_task(self, task: TaskRecord) -> None:
        self._tasks[task.id] = task

    async def finish_task(self, task_id: str, status: str, error: str | None, data: Any) -> None:
        if (task := self._tasks.get(task_id)) is not None:
            self._tasks[task_id] = replace(task, status=status, error=error, data=data, date_updated=_now())
            self._tasks.move_to_end(task_id)

    async def get_tasks(self, organisation: str, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        return {i: t for i in task_ids if (t := self._tasks.get(i)) is not None and t.organisation == organisation}

    async def prune_tasks(self, keep: int) -> int:
        finished = [i for i, t in self._tasks.items() if t.status != "pending" and t.kind == "inference"]
        for task_id in finished[: max(0, len(finished) - keep)]:
            del self._tasks[task_id]
        return max(0, len(finished) - keep)


def _now() -> datetime:
    return datetime.now(UTC)


def _identity(value: Any) -> Any:
    return value


class TaskRunner(Generic[R]):
    """Runs coroutines as tasks and keeps their outcomes in a backend for ``GetTask``.

    ``encode`` turns a result into JSON-ready data for the backend, ``decode`` reads it back.
    """

    def __init__(
        self,
        backend: TaskBackend | None = None,
        *,
        encode: Callable[[R], Any] = _identity,
        decode: Callable[[Any], R] = _identity,
        max_pending: int = 256,
        max_kept: int = 10_000,
        prune_every: int = 1,
        stale_after_s: float | None = None,
    ) -> None:
        self._backend = backend if backend is not None else MemoryTaskBackend()
        self._encode = encode
        self._decode = decode
        self._max_pending = max_pending
        self._max_kept = max_kept
        self._prune_every = prune_every
        self._finished = 0
        self._running: set[asyncio.Task[None]] = set()
        self._local: set[str] = set()  # ids of the tasks running in this replica
        self._stale_after_s = stale_after_s

    @property
    def pending(self) -> int:
        return len(self._running)

    def new(self, organisation: str = DEFAULT_ORGANISATION, kind: str = "inference") -> TaskRecord:
        """A pending task record, not stored yet (the registry stores it with the network it tracks)."""
        now = _now()
        return TaskRecord(str(uuid.uuid4()), organisation, kind, "pending", None, None, now, now)

    async def submit(self, work: Callable[[], Awaitable[R]], *, organisation: str = DEFAULT_ORGANISATION) -> Task[R]:
        """Store a pending inference task and run ``work`` in the background."""
        if len(self._running) >= self._max_pending:
            raise ResourceExhaustedError(
                f"{len(self._running)} tasks are already pending; retry later", retry_after_s=1.0
            )
        record = self.new(organisation)
        await self._backend.insert_task(record)
        self.start(record, work)
        return self._task(record)

    def start(self, record: TaskRecord, work: Callable[[], Awaitable[R | None]]) -> None:
        """Run ``work`` for an already stored pending task; its outcome finishes the task."""
        runner = asyncio.create_task(self._run(record, work), name=f"task-{record.id}")
        self._running.add(runner)
        self._local.add(record.id)
        runner.add_done_callback(self._running.discard)
        runner.add_done_callback(lambda _: self._local.discard(record.id))

    async def _run(self, record: TaskRecord, work: Callable[[], Awaitable[R | None]]) -> None:
        status, error, data = "success", None, None
        try:
            result = await work()
            data = None if result is None else self._encode(result)
        except asyncio.CancelledError:
            await self._finish(record.id, "error", "cancelled: the server shut down", None)
            raise
        except Exception as exc:
            known = as_domain_error(exc)
            if known is not exc:  # a fault, or storage that ran out: the operator has to know
                log.exception("task %s failed", record.id)
            status, error = "error", "internal error" if known is None else known.message
        await self._finish(record.id, status, error, data)

    async def _finish(self, task_id: str, status: str, error: str | None, data: Any) -> None:
        try:
            await self._backend.finish_task(task_id, status, error, data)
            self._finished += 1
            if self._finished % self._prune_every == 0:
                await self._backend.prune_tasks(self._max_kept)
        except Exception:
            log.exception("could not record the outcome of task %s", task_id)

    def _task(self, record: TaskRecord) -> Task[R]:
        return Task(
            id=record.id,
            status=TaskStatus(record.status),
            date_created=record.date_created,
            date_updated=record.date_updated,
            error=record.error,
            data=None if record.data is None else self._decode(record.data),
        )

    async def get(self, task_id: str, *, organisation: str = DEFAULT_ORGANISATION) -> Task[R]:
        if not task_id:
            raise InvalidArgumentError.field("task_id", "must not be empty")
        found = await self._backend.get_tasks(organisation, [task_id])
        if (record := found.get(task_id)) is None:
            raise NotFoundError("task", task_id)
        return self._task(await self._unless_stale(record))

    async def get_many(self, task_ids: Sequence[str], *, organisation: str = DEFAULT_ORGANISATION) -> list[Task[R]]:
        if not task_ids:
            raise InvalidArgumentError.field("task_ids", "must name at least one task")
        if len(task_ids) > 1000:
            raise InvalidArgumentError.field("task_ids", f"names {len(task_ids)} tasks; at most 1000 at once")
        if not all(task_ids):
            raise InvalidArgumentError.field("task_ids", "must not hold an empty id")
        found = await self._backend.get_tasks(organisation, list(dict.fromkeys(task_ids)))
        for task_id in task_ids:
            if task_id not in found:
                raise NotFoundError("task", task_id)
        checked = {t: await self._unless_stale(found[t]) for t in found}
        return [self._task(checked[t]) for t in task_ids]

    async def _unless_stale(self, record: TaskRecord) -> TaskRecord:
        """A pending inference task that outlived ``stale_after_s`` and does not run here: its replica stopped, so
        it is recorded (and answered) as an error rather than left pending for ever."""
        if (
            self._stale_after_s is None
            or record.status != "pending"
            or record.kind != "inference"
            or record.id in self._local
            or (_now() - record.date_created).total_seconds() <= self._stale_after_s
        ):
            return record
        error = "lost: the server running this task stopped before it finished; submit it again"
        await self._backend.finish_task(record.id, "error", error, None)
        return replace(record, status="error", error=error, date_updated=_now())

    async def close(self) -> None:
        """Cancel the tasks still running and wait for them (they are recorded as errors)."""
        running = list(self._running)
        for runner in running:
            runner.cancel()
        await asyncio.gather(*running, return_exceptions=True)


# ------------------------------------------------------------------------------- recognition results as JSON


def _prediction_to_json(p: Prediction) -> dict[str, Any]:
    body: dict[str, Any] = {"label_id": p.label_id, "label_name": p.label_name, "score": p.score}
    body["threshold"] = p.threshold
    if p.region_id is not None:
        body["region_id"] = p.region_id
    if p.bbox is not None:
        body["bbox"] = [p.bbox.xmin, p.bbox.ymin, p.bbox.xmax, p.bbox.ymax]
    if p.track_id is not None:
        body["track_id"] = p.track_id
    return body


def _prediction_from_json(body: dict[str, Any]) -> Prediction:
    box = body.get("bbox")
    return Prediction(
        label_id=int(body["label_id"]),
        label_name=str(body["label_name"]),
        score=float(body["score"]),
        threshold=float(body["threshold"]),
        region_id=body.get("region_id"),
        bbox=BBox(*(float(v) for v in box)) if box is not None else None,
        track_id=body.get("track_id"),
    )


def encode_result(result: TaskData) -> dict[str, Any]:
    """A task's result as JSON-ready data (how it is stored): ``{"outputs": ...}`` for a recognition result,
    ``{"tensors": [{"name", "shape", "data"}]}`` for raw tensors."""
    if isinstance(result, TensorsResult):
        return result.to_v07()
    return {
        "outputs": [
            {
                "predicted": [_prediction_to_json(p) for p in out.predicted],
                "discarded": [_prediction_to_json(p) for p in out.discarded],
            }
            for out in result.outputs
        ]
    }


def decode_result(data: Any) -> TaskData:
    if "tensors" in data:
        return TensorsResult.from_v07(data)
    return RecognitionResult(
        tuple(
            LabelsResult(
                tuple(_prediction_from_json(p) for p in out["predicted"]),
                tuple(_prediction_from_json(p) for p in out["discarded"]),
            )
            for out in data["outputs"]
        )
    )
