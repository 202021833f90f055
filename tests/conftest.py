"""Shared fixtures: one real embedded Triton per test session, and a real grpc.aio Sightline server over it."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from service._proto.sightline.v1 import (
    networks_pb2_grpc,
    recognition_pb2_grpc,
    tasks_pb2_grpc,
)
from service.server import Application, running
from service.settings import Settings
from service.triton.embedded import EmbeddedTriton

ROOT = Path(__file__).resolve().parent.parent


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def solid_image() -> Callable[[tuple[int, int, int]], bytes]:
    """A PNG of one colour (80 x 60)."""

    def make(color: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> bytes:
        array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        array[:] = color
        return encode(array)

    return make


@dataclass(frozen=True)
class TritonFixture:
    url: str
    models: Path
    """The writable repository the session's Triton serves besides the bundled one (test-only models)."""


@pytest.fixture(scope="session")
async def triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonFixture]:
    """A real embedded Triton over the bundled repository (plus test models), started once for the session."""
    work = tmp_path_factory.mktemp("triton")
    models = work / "models"
    models.mkdir()
    write_slow_model(models)
    embedded = EmbeddedTriton([ROOT / "model_repository", models], work)
    url = await embedded.start(timeout_s=300)
    yield TritonFixture(url, models)
    await embedded.stop()


@pytest.fixture(scope="session")
def triton_url(triton: TritonFixture) -> str:
    return triton.url


@pytest.fixture(scope="session")
async def app(triton_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Application]:
    settings = Settings(port=0, metrics_port=0, triton_url=triton_url, data_dir=tmp_path_factory.mktemp("data"))
    async with running(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def channel(app: Application) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def recognition(channel: grpc.aio.Channel) -> recognition_pb2_grpc.RecognitionServiceStub:
    return recognition_pb2_grpc.RecognitionServiceStub(channel)


@pytest.fixture(scope="session")
def networks(channel: grpc.aio.Channel) -> networks_pb2_grpc.NetworkServiceStub:
    return networks_pb2_grpc.NetworkServiceStub(channel)


@pytest.fixture(scope="session")
def tasks(channel: grpc.aio.Channel) -> tasks_pb2_grpc.TaskServiceStub:
    return tasks_pb2_grpc.TaskServiceStub(channel)


SLOW_CONFIG = """name: "slow-colors"
backend: "python"
max_batch_size: 8
input [{ name: "data" data_type: TYPE_FP32 dims: [3, 64, 64] }]
output [{ name: "share" data_type: TYPE_FP32 dims: [6] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def write_slow_model(repository: Path) -> None:
    """A test-only public model ``slow-colors-v1``: the colors answer, 60 ms an execution (Python backend)."""
    folder = repository / "slow-colors"
    (folder / "1").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "e2e" / "models" / "slow_colors.py", folder / "1" / "model.py")
    shutil.copy(ROOT / "model_repository" / "colors" / "mean.npy", folder / "mean.npy")
    (folder / "config.pbtxt").write_text(SLOW_CONFIG)
    meta = json.loads((ROOT / "model_repository" / "colors" / "sightline.json").read_text())
    meta["network"]["id"] = "slow-colors"
    meta["spec"]["id"] = "slow-colors-v1"
    meta["version"]["id"] = "slow-colors-v1.1"
    (folder / "sightline.json").write_text(json.dumps(meta))


@pytest.fixture(scope="session")
async def slow_app(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Application]:
    """A second Sightline server on the session's Triton whose only public model is ``slow-colors-v1``."""
    settings = Settings(
        port=0,
        metrics_port=0,
        triton_url=triton.url,
        data_dir=tmp_path_factory.mktemp("slow"),
        model_repository=triton.models,
    )
    async with running(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def slow_recognition(slow_app: Application) -> AsyncIterator[recognition_pb2_grpc.RecognitionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{slow_app.port}") as ch:
        yield recognition_pb2_grpc.RecognitionServiceStub(ch)
