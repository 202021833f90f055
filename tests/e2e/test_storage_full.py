"""Storage that runs out under a real ``sightline serve``: an upload that cannot be written is refused with
RESOURCE_EXHAUSTED (reason STORAGE_FULL), leaves nothing behind, and the server goes on serving.

The limit is real, set from outside on the server process: ``RLIMIT_FSIZE``, under which the kernel refuses
to grow a file past the limit (EFBIG), as a full disk refuses with ENOSPC; no root or mount is needed.
"""

from __future__ import annotations

import hashlib
import resource
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from deepomatic.api.client import Client as RestClient
from deepomatic.api.exceptions import BadStatus

from service._proto.sightline.v1 import common_pb2, networks_pb2, networks_pb2_grpc, tasks_pb2
from tests.e2e.external import ExternalService, free_port
from tests.e2e.helpers import reason
from tests.helpers import (
    COLORS_PREPROCESSING,
    Client,
    TritonFixture,
    colors_files,
    network_message,
    upload_messages,
    wait_task,
)

PREFIX = "full-net-"
LIMIT = 3 * 1024 * 1024


def big_upload() -> list[networks_pb2.CreateNetworkRequest]:
    """A valid declaration of an ONNX network and a 6 MiB file, larger than the server may write."""
    data = bytes(6 * 1024 * 1024)
    network = network_message("too big for the disk")
    declared = [
        networks_pb2.NetworkFile(name="model.onnx", size=len(data), sha256=hashlib.sha256(data).hexdigest()),
        networks_pb2.NetworkFile(
            name="mean.npy",
            size=len(colors_files()["mean.npy"]),
            sha256=hashlib.sha256(colors_files()["mean.npy"]).hexdigest(),
        ),
    ]
    return upload_messages(network, {"model.onnx": data, "mean.npy": colors_files()["mean.npy"]}, declared=declared)


def ours(triton: TritonFixture) -> set[str]:
    return {p.name for p in triton.models.iterdir() if p.name.startswith(PREFIX)}


REST_PORT = free_port()


@pytest.fixture
def service(triton: TritonFixture, tmp_path: Path) -> Iterator[ExternalService]:
    with ExternalService(
        tmp_path,
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_MODELS_DIR=str(triton.models),
        SIGHTLINE_MODEL_NAME_PREFIX=PREFIX,
        SIGHTLINE_REST_PORT=str(REST_PORT),
    ).running() as running:
        assert running.process is not None
        resource.prlimit(running.process.pid, resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
        yield running


async def test_an_upload_that_fills_the_storage_is_refused_leaves_nothing_and_the_server_goes_on(
    service: ExternalService, triton: TritonFixture, tmp_path: Path
) -> None:
    before = ours(triton)
    messages = big_upload()

    # The synchronous client, then the asyncio one (which needs the server to read a refused stream to its end).
    with grpc.insecure_channel(service.address) as sync_channel:
        stub = networks_pb2_grpc.NetworkServiceStub(sync_channel)
        with pytest.raises(grpc.RpcError) as sync_error:
            stub.CreateNetwork(iter(messages), timeout=60)
    async with grpc.aio.insecure_channel(service.address) as channel:
        client = Client.over(channel)

        async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
            for message in messages:
                yield message

        with pytest.raises(grpc.aio.AioRpcError) as aio_error:
            await client.networks.CreateNetwork(stream(), timeout=60)

        for error in (sync_error.value, aio_error.value):
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert reason(error) == "STORAGE_FULL"
            details = error.details() or ""
            assert "storage is full (File too large)" in details
            assert "nothing of this request was kept" in details

        # The v0.7 REST facade, through the official client: 507 Insufficient Storage, which it does not retry.
        big = tmp_path / "model.onnx"
        big.write_bytes(bytes(6 * 1024 * 1024))
        rest = RestClient(host=f"http://127.0.0.1:{REST_PORT}", api_key="unused: API keys are off on loopback")
        with big.open("rb") as model, pytest.raises(BadStatus) as refused:
            rest.Network.create(
                name="too big", framework="onnx", preprocessing=COLORS_PREPROCESSING, files={"model.onnx": model}
            )
        assert refused.value.status_code == 507, refused.value.content
        assert refused.value.json()["reason"] == "STORAGE_FULL"
        big.unlink()

        # Nothing half-written: no staged files, no model folder, no network row.
        staging = tmp_path / "staging"
        assert not (staging.exists() and any(staging.iterdir())), list(staging.iterdir())
        assert ours(triton) == before
        listed = await client.networks.ListNetworks(common_pb2.ListRequest(limit=1000))
        assert not [n for n in listed.results if n.id.isdigit()]

        # The operator is told, in the log.
        assert "the server's storage is full" in service.tail(200)

        # The server goes on: a network that fits is uploaded, deployed and listed, under the same limit.
        created = await client.upload(network_message("fits"), colors_files())
        task = await wait_task(client.tasks, created.task_id, timeout_s=120)
        assert task.status == tasks_pb2.success, task.error
        assert ours(triton) == before | {f"{PREFIX}{created.id}"}
        await client.networks.DeleteNetwork(networks_pb2.DeleteNetworkRequest(network_id=created.id))
    service.assert_alive()
