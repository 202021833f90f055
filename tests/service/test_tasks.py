from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from postprocess.types import BBox, LabelsResult, Prediction
from service.domain import RecognitionResult
from service.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from service.store import TaskRecord
from service.tasks import MemoryTaskBackend, TaskRunner, TaskStatus, decode_result, encode_result


async def test_task_goes_from_pending_to_success() -> None:
    runner: TaskRunner[int] = TaskRunner()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 42

    task = await runner.submit(work)
    assert (await runner.get(task.id)).status is TaskStatus.PENDING
    gate.set()
    await asyncio.sleep(0.01)
    done = await runner.get(task.id)
    assert (done.status, done.data, done.error) == (TaskStatus.SUCCESS, 42, None)
    assert done.date_updated >= done.date_created


async def test_domain_errors_are_kept_and_internal_ones_hidden() -> None:
    runner: TaskRunner[int] = TaskRunner()

    async def bad() -> int:
        raise InvalidArgumentError("the image is empty")

    async def broken() -> int:
        raise KeyError("secret internals")

    a, b = await runner.submit(bad), await runner.submit(broken)
    await asyncio.sleep(0.01)
    assert (await runner.get(a.id)).error == "the image is empty"
    assert (await runner.get(b.id)).error == "internal error"


async def test_bounded_queue_and_retention() -> None:
    runner: TaskRunner[int] = TaskRunner(max_pending=2, max_kept=3)
    gate = asyncio.Event()

    async def wait() -> int:
        await gate.wait()
        return 1

    first = await runner.submit(wait)
    await runner.submit(wait)
    with pytest.raises(ResourceExhaustedError):
        await runner.submit(wait)
    gate.set()
    await asyncio.sleep(0.01)
    for _ in range(3):
        await runner.submit(wait)
        await asyncio.sleep(0.01)
    with pytest.raises(NotFoundError):
        await runner.get(first.id)
    with pytest.raises(InvalidArgumentError):
        await runner.get_many([])
    await runner.close()


async def test_tasks_belong_to_their_organisation() -> None:
    runner: TaskRunner[int] = TaskRunner()

    async def work() -> int:
        return 1

    task = await runner.submit(work, organisation="acme")
    assert (await runner.get(task.id, organisation="acme")).id == task.id
    with pytest.raises(NotFoundError):
        await runner.get(task.id, organisation="globex")
    with pytest.raises(NotFoundError):
        await runner.get_many([task.id], organisation="globex")


async def test_close_cancels_running_tasks() -> None:
    runner: TaskRunner[int] = TaskRunner()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    task = await runner.submit(forever)
    await asyncio.sleep(0)
    await runner.close()
    assert (await runner.get(task.id)).status is TaskStatus.ERROR
    assert runner.pending == 0


def test_results_round_trip_through_json() -> None:
    result = RecognitionResult(
        (
            LabelsResult(
                (Prediction(3, "cat", 0.9, 0.5, region_id=1, bbox=BBox(0.1, 0.2, 0.3, 0.4), track_id=7),),
                (Prediction(4, "dog", 0.1, 0.5),),
            ),
        )
    )
    assert decode_result(encode_result(result)) == result


async def test_a_task_left_pending_by_a_stopped_replica_ends_in_error() -> None:
    backend = MemoryTaskBackend()
    old = datetime.now(UTC) - timedelta(hours=1)
    orphan = TaskRecord("orphan", "local", "inference", "pending", None, None, old, old)
    deploying = TaskRecord("deploying", "local", "deployment", "pending", None, None, old, old)
    await backend.insert_task(orphan)
    await backend.insert_task(deploying)
    runner: TaskRunner[int] = TaskRunner(backend, stale_after_s=600)
    lost = await runner.get("orphan")
    assert lost.status is TaskStatus.ERROR
    assert "stopped" in (lost.error or "")
    assert (await backend.get_tasks("local", ["orphan"]))["orphan"].status == "error", "recorded, not only answered"
    assert (await runner.get("deploying")).status is TaskStatus.PENDING, "deployments are the registry's business"

    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return 1

    young: TaskRunner[int] = TaskRunner(backend, stale_after_s=1e-9)
    running = await young.submit(slow)
    await asyncio.sleep(0.01)
    assert (await young.get(running.id)).status is TaskStatus.PENDING, "a task running here is never stale"
    gate.set()
    await young.close()
