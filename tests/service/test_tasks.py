from __future__ import annotations

import asyncio

import pytest

from service.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from service.tasks import TaskRunner, TaskStatus


async def test_task_goes_from_pending_to_success() -> None:
    runner: TaskRunner[int] = TaskRunner()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 42

    task = runner.submit(work)
    assert runner.get(task.id).status is TaskStatus.PENDING
    gate.set()
    await asyncio.sleep(0.01)
    done = runner.get(task.id)
    assert (done.status, done.data, done.error) == (TaskStatus.SUCCESS, 42, None)
    assert done.date_updated >= done.date_created


async def test_domain_errors_are_kept_and_internal_ones_hidden() -> None:
    runner: TaskRunner[int] = TaskRunner()

    async def bad() -> int:
        raise InvalidArgumentError("the image is empty")

    async def broken() -> int:
        raise KeyError("secret internals")

    a, b = runner.submit(bad), runner.submit(broken)
    await asyncio.sleep(0.01)
    assert runner.get(a.id).error == "the image is empty"
    assert runner.get(b.id).error == "internal error"


async def test_bounded_queue_and_retention() -> None:
    runner: TaskRunner[int] = TaskRunner(max_pending=2, max_kept=3)
    gate = asyncio.Event()

    async def wait() -> int:
        await gate.wait()
        return 1

    first = runner.submit(wait)
    runner.submit(wait)
    with pytest.raises(ResourceExhaustedError):
        runner.submit(wait)
    gate.set()
    await asyncio.sleep(0.01)
    for _ in range(3):
        runner.submit(wait)
        await asyncio.sleep(0.01)
    with pytest.raises(NotFoundError):
        runner.get(first.id)
    with pytest.raises(InvalidArgumentError):
        runner.get_many([])
    await runner.close()


async def test_close_cancels_running_tasks() -> None:
    runner: TaskRunner[int] = TaskRunner()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    task = runner.submit(forever)
    await asyncio.sleep(0)
    await runner.close()
    assert runner.get(task.id).status is TaskStatus.ERROR
    assert runner.pending == 0
