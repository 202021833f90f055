"""The upload use case (``Uploads.create``) without Triton: the public colors network's ONNX graph and mean file
uploaded into a real SQLite store and a model repository in a temporary folder, the deployment run against a
``FakeTritonGateway``. A declaration is refused before any byte is read or written; any later failure, a
cancellation included, leaves no staged file, no model folder and no row."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from service.convert import ConverterOptions, ConverterUnavailableError
from service.errors import InvalidArgumentError, ResourceExhaustedError, SightlineError
from service.registry import uploads as uploads_module
from service.registry.deployments import Deployments
from service.registry.drafts import NetworkDraft, UploadFile, UploadLimits
from service.registry.means import MeanCache
from service.registry.uploads import Uploads
from service.store import Store, open_store
from service.tasks import TaskRunner
from service.triton.repository import ModelRepository, inspect_onnx, signature_from_json
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeTritonGateway
from tests.helpers import COLORS_PREPROCESSING, colors_files

FILES = colors_files()  # colors.onnx, mean.npy
COLORS_SIGNATURE = Signature(
    (TensorSignature("data", "FP32", (-1, 3, 64, 64)),), (TensorSignature("share", "FP32", (-1, 6)),), 32
)


def announce(files: dict[str, bytes], **sizes: int) -> tuple[UploadFile, ...]:
    return tuple(
        UploadFile(name, sizes.get(name.replace(".", "_"), len(data)), hashlib.sha256(data).hexdigest())
        for name, data in files.items()
    )


def draft(
    files: tuple[UploadFile, ...] | None = None, *, framework: str = "onnx", **preprocessing: Any
) -> NetworkDraft:
    body = {
        "name": "my colours",
        "framework": framework,
        "preprocessing": {**COLORS_PREPROCESSING, **preprocessing},
    }
    return NetworkDraft(body, announce(FILES) if files is None else files)


class Chunks:
    """The chunks of an upload, with how many were read; ``hold_after`` chunks in, it waits for ever."""

    def __init__(self, chunks: Iterable[tuple[str, bytes]], *, hold_after: int | None = None) -> None:
        self._chunks = iter(list(chunks))
        self.read = 0
        self.hold_after = hold_after
        self.holding = asyncio.Event()

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        if self.hold_after is not None and self.read == self.hold_after:
            self.holding.set()
            await asyncio.Event().wait()
        chunk = next(self._chunks, None)
        if chunk is None:
            raise StopAsyncIteration
        self.read += 1
        return chunk


def chunked(files: dict[str, bytes], size: int = 4096) -> list[tuple[str, bytes]]:
    return [(n, d[i : i + size]) for n, d in files.items() for i in range(0, len(d), size)]


class World:
    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.repository = ModelRepository(root / "models", root / "staging")
        self.tasks: TaskRunner[Any] = TaskRunner(store)
        self.gateway = FakeTritonGateway({}, {})
        self.deployments = Deployments(store, self.repository, self.gateway, self.tasks, MeanCache())

    def uploads(self, limits: UploadLimits | None = None, converter: ConverterOptions | None = None) -> Uploads:
        return Uploads(self.store, self.repository, self.tasks, self.deployments, limits=limits, converter=converter)

    def serve(self, network_id: str, signature: Signature) -> None:
        self.gateway.models[self.repository.model_name(network_id)] = signature

    async def assert_nothing_left(self) -> None:
        staging = self.repository.staging
        assert not staging.exists() or list(staging.iterdir()) == []
        assert self.repository.folders() == {}
        assert await self.store.all_networks() == []


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await open_store("", tmp_path)
    made = World(store, tmp_path)
    yield made
    await made.tasks.close()
    await store.close()


async def test_an_upload_is_stored_placed_and_deployed(world: World) -> None:
    world.serve("1", COLORS_SIGNATURE)  # the first network of a fresh database; Triton may load it at once
    network = await world.uploads().create("acme", draft(), Chunks(chunked(FILES)))
    assert network.id == "1"
    assert network.name == "my colours"
    assert network.id.isdigit()
    folder = world.repository.folder(network.id)
    assert (folder / "1" / "model.onnx").read_bytes() == FILES["colors.onnx"]
    assert (folder / "mean.npy").read_bytes() == FILES["mean.npy"]
    assert (folder / "config.pbtxt").is_file()
    staging = world.repository.staging
    assert list(staging.iterdir()) == []
    record = await world.store.get_network("acme", network.id)
    assert record is not None
    assert (record.state, record.files) == ("deploying", ["colors.onnx", "mean.npy"])
    assert await world.store.get_network("globex", network.id) is None
    signature = signature_from_json(record.signature)
    assert [(t.name, t.dims[1:]) for t in signature.inputs] == [("data", (3, 64, 64))]
    assert [(t.name, t.dims[1:]) for t in signature.outputs] == [("share", (6,))]
    # Its task deploys it in the background: Triton loads the folder's model, and the network becomes ready.
    task_id = network.task_id
    assert task_id is not None
    for _ in range(200):
        if (await world.store.get_tasks("acme", [task_id]))[task_id].status != "pending":
            break
        await asyncio.sleep(0.005)
    assert (await world.store.get_tasks("acme", [task_id]))[task_id].status == "success"
    ready = await world.store.get_network("acme", network.id)
    assert ready is not None
    assert ready.state == "ready"


async def test_the_batch_size_limit_is_the_one_given_to_the_network(world: World) -> None:
    network = await world.uploads(UploadLimits(max_batch_size=4)).create("acme", draft(), Chunks(chunked(FILES)))
    record = await world.store.get_network("acme", network.id)
    assert record is not None
    assert signature_from_json(record.signature).max_batch_size == 4
    assert "max_batch_size: 4" in (world.repository.folder(network.id) / "config.pbtxt").read_text()


async def test_an_unbatched_network_gets_no_batching(world: World) -> None:
    """v0.7's batched_output false: Triton must not batch, whatever the graph's first dims."""
    network = await world.uploads().create("acme", draft(batched_output=False), Chunks(chunked(FILES)))
    record = await world.store.get_network("acme", network.id)
    assert record is not None
    assert signature_from_json(record.signature).max_batch_size == 0


# --------------------------------------------------------------------------- refused before any byte is read


@pytest.mark.parametrize(
    ("limits", "files", "error", "words"),
    [
        (UploadLimits(max_files=1), None, ResourceExhaustedError, "announces 2 files; at most 1"),
        (
            UploadLimits(max_bytes=100),
            None,
            ResourceExhaustedError,
            f"announces {sum(map(len, FILES.values()))} bytes; at most 100 (SIGHTLINE_MAX_UPLOAD_BYTES)",
        ),
        (UploadLimits(), announce(FILES, mean_npy=0), InvalidArgumentError, "must be positive, got 0"),
        (UploadLimits(), announce({"colors.onnx": FILES["colors.onnx"]}), InvalidArgumentError, "not uploaded"),
        (
            UploadLimits(),
            (*announce(FILES), UploadFile("../x.npy", 1, "0" * 64)),
            InvalidArgumentError,
            "is not a plain file name",
        ),
    ],
)
async def test_a_declaration_out_of_bounds_is_refused_before_any_byte(
    world: World,
    limits: UploadLimits,
    files: tuple[UploadFile, ...] | None,
    error: type[SightlineError],
    words: str,
) -> None:
    chunks = Chunks(chunked(FILES))
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        await world.uploads(limits).create("acme", draft(files), chunks)
    assert chunks.read == 0
    assert not world.repository.staging.exists()  # no staging folder was even made
    await world.assert_nothing_left()


async def test_a_tensorflow_upload_without_its_converter_is_refused_before_any_byte(
    world: World, tmp_path: Path
) -> None:
    tf = {"saved_model.pb": b"graph", "mean.npy": FILES["mean.npy"]}
    for converter, words in [
        (ConverterOptions(), "need the TensorFlow converter"),
        (ConverterOptions(tf_python=tmp_path / "absent" / "python"), "does not exist"),
    ]:
        chunks = Chunks(chunked(tf))
        with pytest.raises(ConverterUnavailableError, match=words) as raised:
            await world.uploads(converter=converter).create(
                "acme", draft(announce(tf), framework="tensorflow-2.x"), chunks
            )
        assert "SIGHTLINE_TF_PYTHON" in raised.value.message  # what to set
        assert chunks.read == 0
    await world.assert_nothing_left()


async def test_an_unknown_framework_is_refused_before_any_byte(world: World) -> None:
    chunks = Chunks(chunked(FILES))
    with pytest.raises(InvalidArgumentError):
        await world.uploads().create("acme", draft(framework="pytorch"), chunks)
    assert chunks.read == 0
    await world.assert_nothing_left()


# ------------------------------------------------------------------------- refused midway: nothing left behind


def field_of(error: InvalidArgumentError) -> list[str]:
    return [v.field for v in error.violations]


@pytest.mark.parametrize(
    ("chunks", "field", "words"),
    [
        ([("other.onnx", b"x")], "chunk.file_name", "'other.onnx' is not a file announced in the first message"),
        (
            [*chunked(FILES), ("mean.npy", b"!")],
            "chunk.data",
            f"'mean.npy' is larger than its announced {len(FILES['mean.npy'])} bytes",
        ),
        (
            chunked({"colors.onnx": FILES["colors.onnx"], "mean.npy": FILES["mean.npy"][:10]}),
            "chunk.data",
            f"'mean.npy': 10 of its announced {len(FILES['mean.npy'])} bytes arrived",
        ),
        (
            chunked({"colors.onnx": FILES["colors.onnx"], "mean.npy": bytes(len(FILES["mean.npy"]))}),
            "files",
            "'mean.npy': its SHA-256 is [0-9a-f]{64}, not the announced",
        ),
    ],
)
async def test_files_that_differ_from_their_declaration_leave_nothing(
    world: World, chunks: list[tuple[str, bytes]], field: str, words: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=words) as raised:
        await world.uploads().create("acme", draft(), Chunks(chunks))
    assert field_of(raised.value) == [field]
    await world.assert_nothing_left()


async def test_a_preprocessing_the_graph_does_not_take_leaves_nothing(world: World) -> None:
    inputs = [{**COLORS_PREPROCESSING["inputs"][0], "tensor_name": "pixels"}]
    with pytest.raises(InvalidArgumentError, match="'pixels' is not an input of the network") as raised:
        await world.uploads().create("acme", draft(inputs=inputs), Chunks(chunked(FILES)))
    assert field_of(raised.value) == ["preprocessing.inputs[0].tensor_name"]
    await world.assert_nothing_left()


async def test_a_graph_that_is_no_onnx_leaves_nothing(world: World) -> None:
    garbage = {"colors.onnx": b"not an onnx graph", "mean.npy": FILES["mean.npy"]}
    with pytest.raises(InvalidArgumentError):
        await world.uploads().create("acme", draft(announce(garbage)), Chunks(chunked(garbage)))
    await world.assert_nothing_left()


async def test_a_folder_that_cannot_be_placed_leaves_no_row_and_no_staged_file(world: World) -> None:
    squatter = world.repository.folder("1")  # the id the first network gets
    squatter.mkdir(parents=True)
    with pytest.raises(FileExistsError):
        await world.uploads().create("acme", draft(), Chunks(chunked(FILES)))
    assert list(world.repository.staging.iterdir()) == []
    assert await world.store.all_networks() == []
    assert squatter.is_dir()  # what was there stays


async def test_a_cancelled_upload_leaves_nothing(world: World) -> None:
    chunks = Chunks(chunked(FILES, size=16), hold_after=3)
    call = asyncio.create_task(world.uploads().create("acme", draft(), chunks))
    await asyncio.wait_for(chunks.holding.wait(), 5)
    assert len(list(world.repository.staging.iterdir())) == 1  # the upload was being staged
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await world.assert_nothing_left()


async def test_an_upload_cancelled_while_its_graph_is_read_returns_after_the_thread_and_leaves_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancellation comes while the worker thread reads the graph: the call ends only once the thread has
    (which goes on to write config.pbtxt), and the staging folder is removed after that."""
    started, release = threading.Event(), threading.Event()

    def slow_inspect(path: Path, *, max_batch_size: int, field: str = "files") -> Signature:
        started.set()
        release.wait(5)
        return inspect_onnx(path, max_batch_size=max_batch_size, field=field)

    monkeypatch.setattr(uploads_module, "inspect_onnx", slow_inspect)
    call = asyncio.create_task(world.uploads().create("acme", draft(), Chunks(chunked(FILES))))
    assert await asyncio.to_thread(started.wait, 5)
    call.cancel()
    await asyncio.sleep(0.05)
    assert not call.done()  # waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    await world.assert_nothing_left()
