"""The store on each test database (SQLite; PostgreSQL when SIGHTLINE_TEST_POSTGRES_DSN is set), and the
registry's failure paths with a Triton that refuses to load."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from service.auth import Authenticator, KeyKind, UnauthenticatedError, create_key, revoke_key
from service.catalog import Catalog
from service.errors import NotFoundError, PermissionDeniedError
from service.registry import NetworkDraft, Registry, UploadFile, reconcile
from service.settings import BUNDLED_REPOSITORY
from service.store import Store, TaskRecord, open_store
from service.tasks import TaskRunner, TaskStatus
from service.triton.gateway import ModelLoadError
from service.triton.repository import ModelRepository
from service.triton.tensors import Signature
from tests.helpers import COLORS, DATABASES, fresh_database


@pytest.fixture(params=DATABASES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(await fresh_database(request.param), tmp_path)
    yield opened
    await opened.close()


async def test_migrations_are_recorded_and_applied_once(store: Store) -> None:
    assert await store.schema_version() == 1
    assert await store.migrate() == []


def _task(task_id: str, organisation: str = "acme", kind: str = "inference", status: str = "pending") -> TaskRecord:
    now = datetime.now(UTC)
    return TaskRecord(task_id, organisation, kind, status, None, None, now, now)


async def _network(store: Store, organisation: str = "acme", placed: list[str] | None = None) -> str:
    record = await store.insert_network(
        organisation,
        name="n",
        description="",
        metadata={"k": [1, 2]},
        framework="onnx",
        preprocessing={"inputs": []},
        signature={"inputs": [], "outputs": [], "max_batch_size": 0},
        files=["model.onnx"],
        task=_task(f"deploy-{uuid.uuid4().hex}", organisation, "deployment"),
        place=(placed.append if placed is not None else lambda _: None),
    )
    return record.id


async def test_resources_belong_to_their_organisation(store: Store) -> None:
    placed: list[str] = []
    network_id = await _network(store, placed=placed)
    assert placed == [network_id]
    assert (await store.get_network("acme", network_id)) is not None
    assert await store.get_network("globex", network_id) is None
    assert await store.get_network("acme", "colors") is None
    assert await store.update_network("globex", network_id, {"name": "x"}) is None
    assert await store.delete_network("globex", network_id) is None
    updated = await store.update_network("acme", network_id, {"name": "renamed", "metadata": {"a": 1}})
    assert updated is not None
    assert (updated.name, updated.metadata) == ("renamed", {"a": 1})
    count, rows = await store.list_networks("globex", 0, 10)
    assert (count, rows) == (0, [])
    spec = await store.insert_spec("acme", name="s", description="", metadata={}, outputs=[{"labels": {}}])
    assert await store.insert_version("globex", spec_id=spec.id, network_id=network_id, post_processings=[]) is None


async def test_a_place_that_fails_commits_nothing(store: Store) -> None:
    def fail(_: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await store.insert_network(
            "acme",
            name="n",
            description="",
            metadata={},
            framework="onnx",
            preprocessing={},
            signature={},
            files=[],
            task=_task("t-failed"),
            place=fail,
        )
    assert await store.all_networks() == []
    assert await store.get_tasks("acme", ["t-failed"]) == {}


async def test_versions_cascade_and_current_version_follows(store: Store) -> None:
    network_id = await _network(store)
    spec = await store.insert_spec("acme", name="s", description="", metadata={}, outputs=[])
    v1 = await store.insert_version("acme", spec_id=spec.id, network_id=network_id, post_processings=[{"a": 1}])
    v2 = await store.insert_version("acme", spec_id=spec.id, network_id="colors", post_processings=[{"b": 2}])
    assert v1 is not None
    assert v2 is not None
    assert (v1.spec_name, v1.network_name, v2.network_name) == ("s", "n", None)
    assert (await store.get_spec("acme", spec.id)).current_version_id == v1.id  # type: ignore[union-attr]
    count, versions = await store.list_versions("acme", spec.id, 0, 10)
    assert (count, [v.id for v in versions]) == (2, [v1.id, v2.id])
    await store.delete_network("acme", network_id)
    assert await store.get_version("acme", v1.id) is None
    assert (await store.get_spec("acme", spec.id)).current_version_id == v2.id  # type: ignore[union-attr]
    await store.delete_version("acme", v2.id)
    assert (await store.get_spec("acme", spec.id)).current_version_id is None  # type: ignore[union-attr]
    v3 = await store.insert_version("acme", spec_id=spec.id, network_id="colors", post_processings=[])
    assert v3 is not None
    await store.delete_spec("acme", spec.id)
    assert await store.get_version("acme", v3.id) is None


async def test_tasks_are_kept_pruned_and_scoped(store: Store) -> None:
    for i in range(5):
        await store.insert_task(_task(f"t{i}"))
        await store.finish_task(f"t{i}", "success", None, {"outputs": [i]})
    await store.insert_task(_task("running"))
    assert await store.prune_tasks(2) == 3
    kept = await store.get_tasks("acme", [f"t{i}" for i in range(5)] + ["running"])
    assert sorted(kept) == ["running", "t3", "t4"]
    assert kept["t4"].data == {"outputs": [4]}
    assert await store.get_tasks("globex", ["t4"]) == {}


async def test_api_keys_are_stored_hashed_and_revocable(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.READ, "ci")
    assert key not in json.dumps([str(k) for k in await store.list_keys()])
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    auth = Authenticator(store, cache_s=0)
    principal = await auth.authenticate({"x-api-key": key})
    assert (principal.organisation, principal.kind) == ("acme", KeyKind.READ)
    with pytest.raises(PermissionDeniedError):
        auth.authorize(principal, "/sightline.v1.RecognitionService/CreateSpecification")
    auth.authorize(principal, "/sightline.v1.RecognitionService/Recognize")
    await revoke_key(store, record.id)
    with pytest.raises(UnauthenticatedError):
        await auth.authenticate({"authorization": f"Bearer {key}"})
    with pytest.raises(NotFoundError):
        await revoke_key(store, "unknown")


class RefusingTriton:
    """A gateway whose Triton refuses every load (unit tests of the registry's clean-up)."""

    def __init__(self) -> None:
        self.unloaded: list[str] = []

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        raise ModelLoadError(f"failed to load '{model}': the backend crashed")

    async def unload_model(self, model: str) -> None:
        self.unloaded.append(model)

    async def loaded_models(self) -> set[str]:
        return set()

    def forget(self, model: str) -> None:
        pass

    async def infer(
        self, model: str, inputs: Any, outputs: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        raise AssertionError("not called")

    async def model_info(self, model: str) -> Signature:
        return Signature((), (), 32)

    async def model_ready(self, model: str) -> bool:
        return False

    async def server_live(self) -> bool:
        return True

    async def close(self) -> None:
        pass


async def _chunks(files: dict[str, bytes]) -> AsyncIterator[tuple[str, bytes]]:
    for name, data in files.items():
        yield name, data


async def test_a_network_triton_cannot_load_leaves_only_its_failed_task(store: Store, tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models", tmp_path / "staging")
    triton = RefusingTriton()
    tasks: TaskRunner[Any] = TaskRunner(store)
    registry = Registry(Catalog.load(BUNDLED_REPOSITORY), store, repository, triton, tasks)
    files = {"m.onnx": (COLORS / "1" / "model.onnx").read_bytes(), "mean.npy": (COLORS / "mean.npy").read_bytes()}
    body = json.loads((COLORS / "sightline.json").read_text())["network"]
    body.pop("id")
    draft = NetworkDraft(body, tuple(UploadFile(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()))
    network = await registry.create_network("acme", draft, _chunks(files))
    for _ in range(200):
        task = await tasks.get(network.task_id, organisation="acme")
        if task.status is not TaskStatus.PENDING:
            break
        await asyncio.sleep(0.01)
    assert task.status is TaskStatus.ERROR
    assert task.error is not None
    assert "the backend crashed" in task.error
    assert await store.all_networks() == []
    assert repository.folders() == {}
    assert triton.unloaded == [f"net-{network.id}"]
    with pytest.raises(NotFoundError):
        await registry.get_network("acme", network.id)
    with pytest.raises(PermissionDeniedError):
        await registry.delete_network("acme", "colors")


async def test_reconcile_removes_leftovers_on_both_sides(store: Store, tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models", tmp_path / "staging")
    (repository.staging / "half-an-upload").mkdir(parents=True)
    (tmp_path / "models" / "net-77" / "1").mkdir(parents=True)
    (tmp_path / "models" / "colors").mkdir()
    orphan = await _network(store)
    kept = await _network(store, placed=[])
    (tmp_path / "models" / f"net-{kept}").mkdir()
    await reconcile(store, repository)
    assert not any(repository.staging.iterdir())
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(["colors", f"net-{kept}"])
    assert [r.id for r in await store.all_networks()] == [kept]
    assert await store.get_network("acme", orphan) is None


def test_config_is_derived_from_the_graph(tmp_path: Path) -> None:
    from service.triton.repository import config_pbtxt, inspect_onnx

    signature = inspect_onnx(COLORS / "1" / "model.onnx", max_batch_size=16)
    assert signature.max_batch_size == 16
    config = text_format.Parse(config_pbtxt(signature), model_config_pb2.ModelConfig())
    tensors = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input]
    assert tensors == [("data", "TYPE_FP32", [3, 64, 64])]
    tensors = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.output]
    assert tensors == [("share", "TYPE_FP32", [6])]
    assert config.max_batch_size == 16
    assert config.HasField("dynamic_batching")
