"""The end-to-end tests' fixtures: Sightline servers (grpc.aio, port 0) over the session's real embedded Triton
(``triton``, in tests/conftest.py, which the fuzz tests share), their channels and typed stubs, a server whose only
public model is the slow one, registry servers on every test database, and TLS certificates. Every test here is
marked ``e2e``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import trustme

from service._proto.sightline.v1 import networks_pb2_grpc, recognition_pb2_grpc, tasks_pb2_grpc
from service.server import Application, running
from service.settings import Settings
from tests.helpers import DATABASES, Client, TritonFixture, encode, fresh_database, registry_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def solid_image() -> Callable[[tuple[int, int, int]], bytes]:
    """A PNG of one colour (80 x 60)."""

    def make(color: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> bytes:
        array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        array[:] = color
        return encode(array)

    return make


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


@pytest.fixture(scope="session", params=DATABASES)
async def registry_app(
    request: pytest.FixtureRequest, triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Application]:
    """A Sightline (no API keys: organisation ``local``) whose registry is on each test database in turn."""
    url = await fresh_database(request.param)
    settings = registry_settings(
        triton, tmp_path_factory.mktemp("registry"), url, f"reg-{request.param}-", max_upload_files=4
    )
    async with running(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def registry_client(registry_app: Application) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{registry_app.port}") as ch:
        yield Client.over(ch)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA (``ca``), a server certificate for localhost and 127.0.0.1 (``cert``, ``key``) and a client
    certificate with its key (``client``), as PEM files."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.sightline.test")
    paths = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client": folder / "client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths
