"""Shared fixtures: one real embedded Triton per test session, and a real grpc.aio Sightline server over it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
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


@pytest.fixture(scope="session")
async def triton_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real embedded Triton over the bundled repository, started once for the whole session."""
    work = tmp_path_factory.mktemp("triton")
    (work / "models").mkdir()
    triton = EmbeddedTriton([ROOT / "model_repository", work / "models"], work)
    url = await triton.start(timeout_s=300)
    yield url
    await triton.stop()


@pytest.fixture(scope="session")
async def app(triton_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Application]:
    settings = Settings(port=0, triton_url=triton_url, data_dir=tmp_path_factory.mktemp("data"))
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
