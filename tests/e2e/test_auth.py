"""API keys and organisations: who may call what, and what each organisation can see.

A server with keys required, on every test database. Organisation ``acme`` owns a network, a specification, a
version and a task; organisation ``globex`` tries every RPC on each of them and finds nothing (NOT_FOUND, so that
existence does not leak); acme's read key runs inference but changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.sightline.v1 import (
    common_pb2,
    inference_pb2,
    networks_pb2,
    recognition_pb2,
    streams_pb2,
    tasks_pb2,
)
from service.auth import KeyKind, create_key
from service.server import Application, running
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


@dataclass
class World:
    app: Application
    channel: grpc.aio.Channel
    acme: Client
    acme_read: Client
    globex: Client
    keys: dict[str, str]
    network: networks_pb2.Network
    spec: recognition_pb2.Specification
    version: recognition_pb2.Version
    task_id: str
    image: bytes


@pytest.fixture(scope="module", params=DATABASES)
async def world(
    request: pytest.FixtureRequest,
    triton: TritonFixture,
    tmp_path_factory: pytest.TempPathFactory,
    solid_image: Callable[..., bytes],
) -> AsyncIterator[World]:
    url = await fresh_database(request.param)
    settings = registry_settings(triton, tmp_path_factory.mktemp("auth"), url, f"auth-{request.param}-", auth="on")
    async with running(settings) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        keys = {
            "acme": (await create_key(app.store, "acme", KeyKind.ADMIN))[1],
            "acme-read": (await create_key(app.store, "acme", KeyKind.READ))[1],
            "globex": (await create_key(app.store, "globex", KeyKind.ADMIN))[1],
        }
        acme = Client.over(channel, keys["acme"])
        network = await acme.deployed(network_message("acme colours"), colors_files())
        spec = await acme.recognition.CreateSpecification(
            recognition_pb2.CreateSpecificationRequest(specification=colors_spec("acme")), metadata=acme.metadata
        )
        version = await acme.recognition.CreateVersion(
            recognition_pb2.CreateVersionRequest(
                version=recognition_pb2.Version(
                    spec_id=spec.id, network_id=network.id, post_processings=[classification()]
                )
            ),
            metadata=acme.metadata,
        )
        image = solid_image((230, 20, 25))
        infer = await acme.recognition.Infer(recognize(image, spec_id=spec.id), metadata=acme.metadata)
        yield World(
            app,
            channel,
            acme,
            Client.over(channel, keys["acme-read"]),
            Client.over(channel, keys["globex"]),
            keys,
            network,
            spec,
            version,
            infer.task_id,
            image,
        )


Call = Callable[[Client, World], Awaitable[object]]


async def _stream(c: Client, w: World, **target: Any) -> object:
    config = streams_pb2.StreamConfig(**target)
    frame = streams_pb2.Frame(frame_id=1, encoded=w.image)
    messages = [streams_pb2.StreamRecognizeRequest(config=config), streams_pb2.StreamRecognizeRequest(frame=frame)]
    return [r async for r in c.recognition.StreamRecognize(iter(messages), metadata=c.metadata)]


def _image_input(w: World) -> list[inference_pb2.Input]:
    return [inference_pb2.Input(image=inference_pb2.ImageInput(content=w.image))]


ON_ACME_RESOURCES: dict[str, Call] = {
    "network: GetNetwork": lambda c, w: c.networks.GetNetwork(
        networks_pb2.GetNetworkRequest(network_id=w.network.id), metadata=c.metadata
    ),
    "network: UpdateNetwork": lambda c, w: c.networks.UpdateNetwork(
        networks_pb2.UpdateNetworkRequest(network=networks_pb2.Network(id=w.network.id, name="mine")),
        metadata=c.metadata,
    ),
    "network: DeleteNetwork": lambda c, w: c.networks.DeleteNetwork(
        networks_pb2.DeleteNetworkRequest(network_id=w.network.id), metadata=c.metadata
    ),
    "network: InferNetwork": lambda c, w: c.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(network_id=w.network.id, inputs=_image_input(w)), metadata=c.metadata
    ),
    "network: CreateVersion on an own spec": lambda c, w: _version_on_own_spec(c, w),
    "spec: GetSpecification": lambda c, w: c.recognition.GetSpecification(
        recognition_pb2.GetSpecificationRequest(spec_id=w.spec.id), metadata=c.metadata
    ),
    "spec: UpdateSpecification": lambda c, w: c.recognition.UpdateSpecification(
        recognition_pb2.UpdateSpecificationRequest(specification=recognition_pb2.Specification(id=w.spec.id, name="x")),
        metadata=c.metadata,
    ),
    "spec: DeleteSpecification": lambda c, w: c.recognition.DeleteSpecification(
        recognition_pb2.DeleteSpecificationRequest(spec_id=w.spec.id), metadata=c.metadata
    ),
    "spec: ListVersions": lambda c, w: c.recognition.ListVersions(
        recognition_pb2.ListVersionsRequest(spec_id=w.spec.id), metadata=c.metadata
    ),
    "spec: CreateVersion": lambda c, w: c.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(spec_id=w.spec.id, network_id="colors", post_processings=[classification()])
        ),
        metadata=c.metadata,
    ),
    "spec: Recognize": lambda c, w: c.recognition.Recognize(recognize(w.image, spec_id=w.spec.id), metadata=c.metadata),
    "spec: Infer": lambda c, w: c.recognition.Infer(recognize(w.image, spec_id=w.spec.id), metadata=c.metadata),
    "spec: StreamRecognize": lambda c, w: _stream(c, w, spec_id=w.spec.id),
    "version: GetVersion": lambda c, w: c.recognition.GetVersion(
        recognition_pb2.GetVersionRequest(version_id=w.version.id), metadata=c.metadata
    ),
    "version: DeleteVersion": lambda c, w: c.recognition.DeleteVersion(
        recognition_pb2.DeleteVersionRequest(version_id=w.version.id), metadata=c.metadata
    ),
    "version: Recognize": lambda c, w: c.recognition.Recognize(
        recognize(w.image, version_id=w.version.id), metadata=c.metadata
    ),
    "version: Infer": lambda c, w: c.recognition.Infer(
        recognize(w.image, version_id=w.version.id), metadata=c.metadata
    ),
    "version: StreamRecognize": lambda c, w: _stream(c, w, version_id=w.version.id),
    "task: GetTask": lambda c, w: c.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=w.task_id), metadata=c.metadata),
    "task: BatchGetTasks": lambda c, w: c.tasks.BatchGetTasks(
        tasks_pb2.BatchGetTasksRequest(task_ids=[w.task_id]), metadata=c.metadata
    ),
    "deployment task: GetTask": lambda c, w: c.tasks.GetTask(
        tasks_pb2.GetTaskRequest(task_id=w.network.task_id), metadata=c.metadata
    ),
}


async def _version_on_own_spec(c: Client, w: World) -> object:
    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec("globex")), metadata=c.metadata
    )
    return await c.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(
                spec_id=spec.id, network_id=w.network.id, post_processings=[classification()]
            )
        ),
        metadata=c.metadata,
    )


@pytest.mark.parametrize("name", list(ON_ACME_RESOURCES))
async def test_another_organisation_finds_nothing(world: World, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ON_ACME_RESOURCES[name](world.globex, world)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value.details()


async def test_another_organisation_lists_only_public_and_its_own(world: World) -> None:
    acme_ids = {world.network.id, world.spec.id, world.version.id}
    g = world.globex
    listed = [
        await g.networks.ListNetworks(common_pb2.ListRequest(limit=1000), metadata=g.metadata),
        await g.recognition.ListSpecifications(common_pb2.ListRequest(limit=1000), metadata=g.metadata),
        await g.recognition.ListVersions(recognition_pb2.ListVersionsRequest(limit=1000), metadata=g.metadata),
    ]
    for response in listed:
        ids = {r.id for r in response.results}
        assert "colors" in ids or "colors-v1" in ids or "colors-v1.1" in ids
        assert not ids & acme_ids
        assert response.count == len(ids)
    own = await world.acme.networks.ListNetworks(common_pb2.ListRequest(limit=1000), metadata=world.acme.metadata)
    assert world.network.id in {n.id for n in own.results}
    public = await g.recognition.Recognize(recognize(world.image, spec_id="colors-v1"), metadata=g.metadata)
    assert public.outputs[0].labels.predicted[0].label_name == "red"


async def test_a_read_key_runs_inference_only(world: World) -> None:
    r = world.acme_read
    result = await r.recognition.Recognize(recognize(world.image, spec_id=world.spec.id), metadata=r.metadata)
    assert result.outputs[0].labels.predicted[0].label_name == "red"
    task = await wait_task(r.tasks, world.task_id, r.metadata)
    assert task.status == tasks_pb2.success
    await r.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(network_id=world.network.id, inputs=_image_input(world)), metadata=r.metadata
    )
    frames = await _stream(r, world, spec_id=world.spec.id)
    assert isinstance(frames, list)
    assert [f.status for f in frames] == [streams_pb2.OK]


READ_KEY_REFUSED: dict[str, Call] = {
    **{
        k: v
        for k, v in ON_ACME_RESOURCES.items()
        if k.split(": ")[1].startswith(("Get", "Update", "Delete", "List", "Create"))
    },
    "CreateNetwork": lambda c, w: c.upload(network_message("read"), colors_files()),
    "CreateSpecification": lambda c, w: c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec()), metadata=c.metadata
    ),
    "ListNetworks": lambda c, w: c.networks.ListNetworks(common_pb2.ListRequest(), metadata=c.metadata),
    "ListSpecifications": lambda c, w: c.recognition.ListSpecifications(common_pb2.ListRequest(), metadata=c.metadata),
}
for _inference in ("task: GetTask", "deployment task: GetTask"):
    READ_KEY_REFUSED.pop(_inference)


@pytest.mark.parametrize("name", list(READ_KEY_REFUSED))
async def test_a_read_key_cannot_change_or_browse(world: World, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await READ_KEY_REFUSED[name](world.acme_read, world)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, error.value.details()


async def test_a_refused_key_on_a_long_upload_is_told_so_every_time(world: World) -> None:
    # The key is refused before the upload is read; the rest is read and dropped before the status goes out, or
    # grpcio's asyncio client, still writing, reports INTERNAL instead (grpc/grpc#36066).
    messages = upload_messages(network_message("refused"), {"model.onnx": bytes(4 * 1024 * 1024)})

    async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
        for message in messages:
            yield message

    for client, code in ((world.acme_read, grpc.StatusCode.PERMISSION_DENIED), (Client.over(world.channel), None)):
        codes = []
        for _ in range(10):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await client.networks.CreateNetwork(stream(), metadata=client.metadata)
            codes.append(error.value.code())
        assert set(codes) == {code or grpc.StatusCode.UNAUTHENTICATED}, codes


async def test_calls_without_a_good_key_are_unauthenticated(world: World) -> None:
    stub = Client.over(world.channel).recognition
    for metadata in [(), (("authorization", "Bearer sl_000000000000_" + "x" * 43),), (("x-api-key", "nonsense"),)]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ListSpecifications(common_pb2.ListRequest(), metadata=metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = await stub.ListSpecifications(common_pb2.ListRequest(), metadata=(("x-api-key", world.keys["globex"]),))
    assert ok.count >= 1
    health = health_pb2_grpc.HealthStub(world.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING


async def _cli(data_dir: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {"SIGHTLINE_DATA_DIR": str(data_dir), "SIGHTLINE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "keys",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_keys_from_the_command_line_and_revocation(world: World) -> None:
    settings = world.app.registry._repo
    data_dir = settings.staging.parent
    url = _dsn(world) if world.app.store.dialect == "postgres" else ""
    code, out, err = await _cli(data_dir, url, "create", "--org", "initech", "--kind", "admin", "--description", "ci")
    assert code == 0, err
    key = out.strip()
    client = Client.over(world.channel, key)
    spec = await client.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec("initech")), metadata=client.metadata
    )
    code, out, _ = await _cli(data_dir, url, "list")
    assert code == 0
    key_id = key.split("_")[1]
    assert any(line.startswith(key_id) and "initech" in line and "active" in line for line in out.splitlines())
    assert key not in out
    code, _, err = await _cli(data_dir, url, "revoke", key_id)
    assert code == 0, err
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await client.recognition.GetSpecification(
            recognition_pb2.GetSpecificationRequest(spec_id=spec.id), metadata=client.metadata
        )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    code, _, err = await _cli(data_dir, url, "create", "--org", "../bad", "--kind", "read")
    assert code == 1
    assert "organisation" in err


def _dsn(world: World) -> str:
    return str(world.app.store.db._pool.conninfo)  # type: ignore[attr-defined]


def test_spec_json_round_trip_is_unchanged() -> None:
    spec = colors_spec()
    assert json_format.MessageToDict(spec, preserving_proto_field_name=True)["outputs"][0]["labels"]["roi"] == "NONE"


async def test_the_cli_sends_the_api_key_from_the_environment(world: World) -> None:
    async def recognize_cli(env: dict[str, str]) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "recognize",
            "--spec",
            world.spec.id,
            "--json",
            "--server",
            f"127.0.0.1:{world.app.port}",
            "samples/red.png",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    base = {k: v for k, v in os.environ.items() if k != "SIGHTLINE_API_KEY"}
    code, out, _ = await recognize_cli({**base, "SIGHTLINE_API_KEY": world.keys["acme-read"]})
    assert code == 0
    assert '"label_name": "red"' in out
    code, _, err = await recognize_cli(base)
    assert code == 1
    assert "UNAUTHENTICATED" in err
    code, _, err = await recognize_cli({**base, "SIGHTLINE_API_KEY": world.keys["globex"]})
    assert code == 1
    assert "NOT_FOUND" in err, "another organisation's spec does not exist for globex"
