"""A real ``sightline serve`` killed (SIGKILL) during an upload and restarted on the same data folder: the registry
and the model repository agree again, and nothing half-made is left or loaded. Also two replicas on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.sightline.v1 import common_pb2, networks_pb2, recognition_pb2, tasks_pb2
from service.server import running
from service.triton.gateway import GrpcTritonGateway
from tests.e2e.external import free_port
from tests.e2e.helpers import classification, colors_spec, recognize
from tests.helpers import (
    DATABASES,
    ROOT,
    Client,
    TritonFixture,
    colors_files,
    fresh_database,
    network_message,
    registry_settings,
    upload_messages,
    wait_task,
)

PREFIX = "crash-net-"


class Service:
    """``python -m service serve`` on the session's Triton, writing into its repository."""

    def __init__(self, triton: TritonFixture, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "SIGHTLINE_PORT": str(self.port),
            "SIGHTLINE_DATA_DIR": str(data_dir),
            "SIGHTLINE_TRITON_URL": triton.url,
            "SIGHTLINE_MODELS_DIR": str(triton.models),
            "SIGHTLINE_MODEL_NAME_PREFIX": PREFIX,
            "SIGHTLINE_METRICS_PORT": "-1",
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "serve", cwd=ROOT, env=self.env, stderr=asyncio.subprocess.DEVNULL
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(300):
                assert self.process.returncode is None, "sightline serve exited"
                with contextlib.suppress(grpc.aio.AioRpcError):
                    if (await health.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError("sightline serve did not become ready")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


async def _ours(triton: TritonFixture) -> tuple[set[str], set[str]]:
    """Our model folders in the repository, and our models Triton has loaded."""
    folders = {p.name for p in triton.models.iterdir() if p.name.startswith(PREFIX)}
    gateway = GrpcTritonGateway(triton.url)
    try:
        loaded = {m for m in await gateway.loaded_models() if m.startswith(PREFIX)}
    finally:
        await gateway.close()
    return folders, loaded


async def _user_networks(client: Client) -> set[str]:
    listed = await client.networks.ListNetworks(common_pb2.ListRequest(limit=1000))
    return {n.id for n in listed.results if n.id.isdigit()}


async def test_killed_during_an_upload_and_restarted(
    triton: TritonFixture, tmp_path: Path, solid_image: object
) -> None:
    service = Service(triton, tmp_path)
    staging = tmp_path / "staging"
    await service.start()
    try:
        # 1. Killed while the model's bytes arrive: nothing of it may remain.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            client = Client.over(channel)
            messages = upload_messages(network_message("killed"), colors_files(), chunk=100)

            async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
                for message in messages[:2]:
                    yield message
                await asyncio.Event().wait()

            call = client.networks.CreateNetwork(stream())
            for _ in range(200):
                if staging.exists() and any(p.stat().st_size for p in staging.rglob("*") if p.is_file()):
                    break
                await asyncio.sleep(0.02)
            assert any(staging.rglob("*.onnx")), "the upload was under way"
            await service.kill()
            call.cancel()
        await service.start()
        assert not any(staging.iterdir())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            client = Client.over(channel)
            assert await _user_networks(client) == set()
            assert await _ours(triton) == (set(), set())

            # 2. Killed right after the upload is accepted, while the model may still load: the restart resumes it.
            created = await client.upload(network_message("survivor"), colors_files())
        await service.kill()
        await service.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            client = Client.over(channel)
            task = await wait_task(client.tasks, created.task_id)
            assert task.status == tasks_pb2.success, task.error
            assert await _user_networks(client) == {created.id}
            assert await _ours(triton) == ({PREFIX + created.id}, {PREFIX + created.id})
            spec = await client.recognition.CreateSpecification(
                recognition_pb2.CreateSpecificationRequest(specification=colors_spec())
            )
            await client.recognition.CreateVersion(
                recognition_pb2.CreateVersionRequest(
                    version=recognition_pb2.Version(
                        spec_id=spec.id, network_id=created.id, post_processings=[classification()]
                    )
                )
            )
            result = await client.recognition.Recognize(recognize(solid_image((230, 20, 25)), spec_id=spec.id))  # type: ignore[operator]
            assert result.outputs[0].labels.predicted[0].label_name == "red"

        # 3. Stopped, then its folder lost and a stray folder added: the restart drops the row and the stray.
        await service.kill()
        stray = triton.models / f"{PREFIX}999"
        (stray / "1").mkdir(parents=True)
        for path in sorted((triton.models / f"{PREFIX}{created.id}").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (triton.models / f"{PREFIX}{created.id}").rmdir()
        await service.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            client = Client.over(channel)
            assert await _user_networks(client) == set()
            assert not stray.exists()
            task = await client.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=created.task_id))
            assert task.status == tasks_pb2.error
            assert "lost" in task.error
            spec = await client.recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=spec.id))
            assert not spec.HasField("current_version_id")
            folders, _ = await _ours(triton)
            assert folders == set()
    finally:
        await service.stop()
        gateway = GrpcTritonGateway(triton.url)
        with contextlib.suppress(Exception):
            for model in await gateway.loaded_models():
                if model.startswith(PREFIX):
                    await gateway.unload_model(model)
        await gateway.close()


@pytest.mark.parametrize("database", DATABASES)
async def test_a_task_created_on_one_replica_is_read_on_another(
    triton: TritonFixture, tmp_path: Path, database: str, solid_image: object
) -> None:
    url = await fresh_database(database)
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"  # one file, outside both data folders
    # Two replicas: one database, one model repository, a data folder each (a server refuses another's).
    one = registry_settings(triton, tmp_path / "one", url, f"rep-{database}-")
    two = registry_settings(triton, tmp_path / "two", url, f"rep-{database}-")
    async with (
        running(one) as a,
        running(two) as b,
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
    ):
        first, second = Client.over(ca), Client.over(cb)
        network = await first.deployed(network_message("shared"), colors_files())
        spec = await second.recognition.CreateSpecification(
            recognition_pb2.CreateSpecificationRequest(specification=colors_spec())
        )
        await first.recognition.CreateVersion(
            recognition_pb2.CreateVersionRequest(
                version=recognition_pb2.Version(
                    spec_id=spec.id, network_id=network.id, post_processings=[classification()]
                )
            )
        )
        infer = await first.recognition.Infer(recognize(solid_image((10, 220, 30)), spec_id=spec.id))  # type: ignore[operator]
        task = await wait_task(second.tasks, infer.task_id)
        assert task.status == tasks_pb2.success
        assert task.data.outputs[0].labels.predicted[0].label_name == "green"
        deployment = await second.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=network.task_id))
        assert deployment.status == tasks_pb2.success
        await second.networks.DeleteNetwork(networks_pb2.DeleteNetworkRequest(network_id=network.id))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await first.networks.GetNetwork(networks_pb2.GetNetworkRequest(network_id=network.id))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
