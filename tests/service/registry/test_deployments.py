"""Uploaded networks in and out of Triton (``Deployments``) and the start-up recovery (``reconcile``), over a
real SQLite store, a model repository in a temporary folder and a ``FakeTritonGateway`` that records loads and
unloads (and fails them where a test says)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest

from service.domain import Preprocessing, parse_preprocessing
from service.errors import FailedPreconditionError, UnavailableError
from service.registry.deployments import Deployments, reconcile
from service.registry.means import MeanCache
from service.store import NetworkRecord, Store, TaskRecord
from service.tasks import TaskRunner
from service.triton.repository import ModelRepository
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeTritonGateway
from tests.service.registry.helpers import image_input, preprocessing_body

SIGNATURE = Signature((TensorSignature("x", "FP32", (-1, 3)),), (TensorSignature("y", "FP32", (-1, 2)),), 8)
PREPROCESSING = preprocessing_body(image_input("x", "mean.npy"))


class Gateway(FakeTritonGateway):
    """Records loads, unloads and forgets; ``on_load`` / ``on_unload`` run in them (and may raise)."""

    def __init__(self, models: Sequence[str] = ()) -> None:
        super().__init__(dict.fromkeys(models, SIGNATURE), {})
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.forgotten: list[str] = []
        self.on_load: Callable[[str], Awaitable[None]] | None = None
        self.on_unload: Callable[[str], Awaitable[None]] | None = None
        self.loaded_error: Exception | None = None

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        self.loads.append(model)
        if self.on_load is not None:
            await self.on_load(model)
        await super().load_model(model, timeout_s=timeout_s)

    async def unload_model(self, model: str) -> None:
        self.unloads.append(model)
        if self.on_unload is not None:
            await self.on_unload(model)
        await super().unload_model(model)

    async def loaded_models(self) -> set[str]:
        if self.loaded_error is not None:
            raise self.loaded_error
        return await super().loaded_models()

    def forget(self, model: str) -> None:
        self.forgotten.append(model)


@pytest.fixture
async def tasks(store: Store) -> AsyncIterator[TaskRunner[Any]]:
    runner: TaskRunner[Any] = TaskRunner(store)
    yield runner
    await runner.close()


async def add_network(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any], org: str = "acme", *, folder: bool = True
) -> NetworkRecord:
    """A network as an upload leaves it: its row (``deploying``), its pending task, its folder in place."""

    def place(network_id: str) -> None:
        if folder:
            (repository.folder(network_id) / "1").mkdir(parents=True)
            np.save(repository.folder(network_id) / "mean.npy", np.zeros(3, dtype=np.float32))

    return await store.insert_network(
        org,
        name="net",
        description="",
        metadata={},
        framework="onnx",
        preprocessing=PREPROCESSING,
        signature=SIGNATURE.to_json(),
        files=["m.onnx"],
        task=tasks.new(org, "deployment"),
        place=place,
    )


async def task_of(store: Store, record: NetworkRecord) -> TaskRecord:
    return (await store.get_tasks(record.organisation, [record.task_id]))[record.task_id]


def deployments(
    store: Store, repository: ModelRepository, gateway: Gateway, tasks: TaskRunner[Any], means: MeanCache | None = None
) -> Deployments:
    return Deployments(store, repository, gateway, tasks, means or MeanCache(), load_timeout_s=5.0)


# ---------------------------------------------------------------------------------------------- deploy


async def test_a_loaded_network_is_ready(store: Store, repository: ModelRepository, tasks: TaskRunner[Any]) -> None:
    record = await add_network(store, repository, tasks)
    model = repository.model_name(record.id)
    gateway = Gateway([model])
    await deployments(store, repository, gateway, tasks).deploy(record.id)
    assert gateway.loads == [model]
    stored = await store.get_network("acme", record.id)
    assert stored is not None
    assert stored.state == "ready"
    assert repository.folder(record.id).is_dir()


async def test_a_load_triton_refuses_removes_the_network_and_says_why(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    gateway = Gateway()

    async def refuse(model: str) -> None:
        raise UnavailableError("failed to load 'net-1': the graph is broken")

    gateway.on_load = refuse
    with pytest.raises(FailedPreconditionError, match="could not be deployed, and was removed: failed to load"):
        await deployments(store, repository, gateway, tasks).deploy(record.id)
    assert await store.get_network("acme", record.id) is None
    assert not repository.folder(record.id).exists()
    assert gateway.unloads == [repository.model_name(record.id)]
    assert (await task_of(store, record)).id == record.task_id  # the task stays: it carries the outcome


async def test_a_load_failing_with_a_bug_says_internal_error_only(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    gateway = Gateway()

    async def bug(model: str) -> None:
        raise KeyError("/secret/path")

    gateway.on_load = bug
    with pytest.raises(FailedPreconditionError) as raised:
        await deployments(store, repository, gateway, tasks).deploy(record.id)
    assert raised.value.message.endswith("was removed: internal error")
    assert "secret" not in raised.value.message
    assert await store.get_network("acme", record.id) is None


async def test_a_network_deleted_while_it_loads_is_unloaded(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    model = repository.model_name(record.id)
    gateway = Gateway([model])

    async def deleted_meanwhile(model: str) -> None:
        assert await store.delete_network("acme", record.id) is not None

    gateway.on_load = deleted_meanwhile
    with pytest.raises(FailedPreconditionError, match="deleted while it was being deployed"):
        await deployments(store, repository, gateway, tasks).deploy(record.id)
    assert gateway.unloads == [model]
    assert model not in gateway.loaded
    assert not repository.folder(record.id).exists()


async def test_a_cancelled_deployment_keeps_the_network_for_the_next_start(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    gateway = Gateway([repository.model_name(record.id)])
    gate = asyncio.Event()

    async def hang(model: str) -> None:
        await gate.wait()

    gateway.on_load = hang
    deploying = asyncio.create_task(deployments(store, repository, gateway, tasks).deploy(record.id))
    await asyncio.sleep(0.01)
    deploying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await deploying
    stored = await store.get_network("acme", record.id)
    assert stored is not None
    assert stored.state == "deploying"
    assert repository.folder(record.id).is_dir()
    assert gateway.unloads == []


# ---------------------------------------------------------------------------------------------- discard


async def test_discard_unloads_forgets_and_removes_the_folder(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    model = repository.model_name(record.id)
    gateway = Gateway([model])
    means = MeanCache()
    first = await means.get(record.id, repository.folder(record.id), _preprocessing())
    made = deployments(store, repository, gateway, tasks, means)
    await made.discard(record.id)
    assert (gateway.unloads, gateway.forgotten) == ([model], [model])
    assert model not in gateway.loaded
    assert not repository.folder(record.id).exists()
    assert first["mean.npy"].ravel().tolist() == [0.0, 0.0, 0.0]
    # The network's arrays were forgotten with it: the cache reads them again, from wherever it is told.
    elsewhere = repository.root / "elsewhere"
    elsewhere.mkdir()
    np.save(elsewhere / "mean.npy", np.ones(3, dtype=np.float32))
    again = await means.get(record.id, elsewhere, _preprocessing())
    assert again["mean.npy"].ravel().tolist() == [1.0, 1.0, 1.0]


async def test_an_unload_triton_refuses_is_logged_not_raised(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any], caplog: pytest.LogCaptureFixture
) -> None:
    record = await add_network(store, repository, tasks)
    gateway = Gateway()

    async def refuse(model: str) -> None:
        raise UnavailableError("Triton is away")

    gateway.on_unload = refuse
    with caplog.at_level(logging.WARNING, logger="service.registry.deployments"):
        await deployments(store, repository, gateway, tasks).discard(record.id)
    assert "could not unload model" in caplog.text
    assert "Triton is away" in caplog.text
    assert not repository.folder(record.id).exists()


def _preprocessing() -> Preprocessing:
    return parse_preprocessing(PREPROCESSING)


# ---------------------------------------------------------------------------------------------- resume


async def test_resume_retries_deployments_under_way(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    record = await add_network(store, repository, tasks)
    await store.finish_task(record.task_id, "error", "cancelled: the server shut down", None)
    gateway = Gateway([repository.model_name(record.id)])
    gateway.loaded.clear()
    await deployments(store, repository, gateway, tasks).resume()
    for _ in range(100):
        if (await task_of(store, record)).status != "pending":
            break
        await asyncio.sleep(0.01)
    done = await task_of(store, record)
    assert (done.status, done.error) == ("success", None)
    stored = await store.get_network("acme", record.id)
    assert stored is not None
    assert stored.state == "ready"
    assert gateway.loads == [repository.model_name(record.id)]


async def test_resume_unloads_models_of_ours_no_registry_has_and_loads_ready_ones_triton_lacks(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    ready = await add_network(store, repository, tasks)
    assert await store.set_network_state(ready.id, "ready")
    served = await add_network(store, repository, tasks)
    assert await store.set_network_state(served.id, "ready")
    ours, theirs = repository.model_name("999"), "colors"
    gateway = Gateway([repository.model_name(ready.id), repository.model_name(served.id), ours, theirs])
    gateway.loaded = {repository.model_name(served.id), ours, theirs}
    await deployments(store, repository, gateway, tasks).resume()
    assert gateway.unloads == [ours]  # a public model (not of ours) is left alone
    assert gateway.loads == [repository.model_name(ready.id)]  # the served one is not loaded again
    assert gateway.loaded == {repository.model_name(ready.id), repository.model_name(served.id), theirs}


async def test_resume_logs_what_triton_refuses_and_goes_on(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = await add_network(store, repository, tasks)
    second = await add_network(store, repository, tasks)
    for record in (first, second):
        assert await store.set_network_state(record.id, "ready")
    gateway = Gateway([repository.model_name(second.id)])  # the first one's model is unknown to Triton
    gateway.loaded_error = UnavailableError("no repository index")
    with caplog.at_level(logging.WARNING, logger="service.registry.deployments"):
        await deployments(store, repository, gateway, tasks).resume()
    assert gateway.loads == [repository.model_name(first.id), repository.model_name(second.id)]
    assert "could not read Triton's repository index" in caplog.text
    assert f"network {first.id} could not be loaded" in caplog.text
    assert repository.model_name(second.id) in gateway.loaded


# ---------------------------------------------------------------------------------------------- reconcile


async def test_reconcile_brings_folders_and_rows_back_in_line(
    store: Store, repository: ModelRepository, tasks: TaskRunner[Any]
) -> None:
    kept = await add_network(store, repository, tasks)
    lost = await add_network(store, repository, tasks, folder=False)
    staged = repository.new_staging()
    (staged / "1" / "model.onnx").write_bytes(b"half")
    orphan = repository.folder("77")
    (orphan / "1").mkdir(parents=True)
    foreign = repository.root / "colors"
    foreign.mkdir()
    await reconcile(store, repository)
    assert list(repository.staging.iterdir()) == []
    assert not orphan.exists()
    assert foreign.is_dir()  # not a folder of ours
    assert repository.folder(kept.id).is_dir()
    assert await store.get_network("acme", kept.id) is not None
    assert await store.get_network("acme", lost.id) is None
    task = await task_of(store, lost)
    assert task.status == "error"
    assert task.error is not None
    assert "files were lost" in task.error
    assert "upload it again" in task.error
    assert (await task_of(store, kept)).status == "pending"


async def test_reconcile_of_an_empty_service_does_nothing(store: Store, repository: ModelRepository) -> None:
    await reconcile(store, repository)
    assert not repository.root.exists()
    assert await store.all_networks() == []
