"""Health of uploaded networks, reflection as grpc.reflection.v1, probes on the metrics page, the "ready" line.

The reflection requests are written as their bytes on the wire (field numbers from grpc-proto's
``grpc/reflection/v1/reflection.proto``) and sent on the v1 method path, as grpcurl and Postman send them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from service._proto.sightline.v1 import networks_pb2
from service.auth import KeyKind, create_key
from service.server import Application, running
from tests.e2e.external import ExternalService, scrape, wait_until
from tests.helpers import Client, TritonFixture, colors_files, network_message, registry_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


async def check(channel: grpc.aio.Channel, service: str, key: str = "") -> int:
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=10
    )
    return int(response.status)


async def check_code(channel: grpc.aio.Channel, service: str, key: str = "") -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await check(channel, service, key)
    return error.value.code()


# ------------------------------------------------------------------------------------------- reflection v1


def _string_field(number: int, value: str) -> bytes:
    data = value.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


async def reflect_v1(channel: grpc.aio.Channel, requests: list[bytes]) -> list[reflection_pb2.ServerReflectionResponse]:
    """ServerReflectionInfo on the v1 path; the responses parsed with v1alpha's classes (the same field numbers)."""
    call = channel.stream_stream(
        V1_METHOD,
        request_serializer=lambda b: b,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return [r async for r in call(iter(requests), timeout=10)]


async def test_reflection_v1_lists_and_describes_every_service(channel: grpc.aio.Channel) -> None:
    list_services = _string_field(7, "*")  # ServerReflectionRequest.list_services = 7
    by_symbol = _string_field(4, "sightline.v1.RecognitionService")  # file_containing_symbol = 4
    itself = _string_field(4, "grpc.reflection.v1.ServerReflection")
    listed, described, reflection = await reflect_v1(channel, [list_services, by_symbol, itself])

    names = {s.name for s in listed.list_services_response.service}
    assert {
        "sightline.v1.RecognitionService",
        "sightline.v1.NetworkService",
        "sightline.v1.TaskService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files if f.package == "sightline.v1" for s in f.service for m in s.method}
    assert {"Recognize", "Infer", "StreamRecognize", "ListSpecifications"} <= methods

    (own,) = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in reflection.file_descriptor_response.file_descriptor_proto
    ]
    assert own.package == "grpc.reflection.v1"
    assert [m.input_type for s in own.service for m in s.method] == [".grpc.reflection.v1.ServerReflectionRequest"]


async def test_reflection_v1_answers_an_unknown_symbol_with_not_found(channel: grpc.aio.Channel) -> None:
    (answer,) = await reflect_v1(channel, [_string_field(4, "no.such.Service")])
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# ------------------------------------------------------------------------------------------- probe metrics


async def test_health_and_reflection_calls_are_counted(app: Application, channel: grpc.aio.Channel) -> None:
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    check_ok = 'sightline_requests_total{code="OK",method="/grpc.health.v1.Health/Check"}'
    check_missing = 'sightline_requests_total{code="NOT_FOUND",method="/grpc.health.v1.Health/Check"}'
    reflection_ok = f'sightline_requests_total{{code="OK",method="{V1_METHOD}"}}'
    watch = 'sightline_requests_total{code="CANCELLED",method="/grpc.health.v1.Health/Watch"}'
    before = await asyncio.to_thread(scrape, url)

    for _ in range(3):
        assert await check(channel, "") == SERVING
    assert await check_code(channel, "model/no-such-model") == grpc.StatusCode.NOT_FOUND
    await reflect_v1(channel, [_string_field(7, "*")])
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await stream.read()).status == SERVING
    stream.cancel()

    async def counted() -> dict[str, float]:
        for _ in range(50):  # the cancelled Watch is counted once the server has seen it end
            after = await asyncio.to_thread(scrape, url)
            if after.get(watch, 0) > before.get(watch, 0):
                return after
            await asyncio.sleep(0.1)
        return after

    after = await counted()
    assert after.get(check_ok, 0) - before.get(check_ok, 0) == 3
    assert after.get(check_missing, 0) - before.get(check_missing, 0) == 1
    assert after.get(reflection_ok, 0) - before.get(reflection_ok, 0) == 1
    assert after.get(watch, 0) - before.get(watch, 0) == 1
    seconds = 'sightline_request_seconds_count{code="OK",method="/grpc.health.v1.Health/Check"}'
    assert after.get(seconds, 0) - before.get(seconds, 0) == 3


# ----------------------------------------------------------------------------------- uploaded networks


@pytest.fixture(scope="module")
async def keyed(
    triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Application, dict[str, str]]]:
    settings = registry_settings(triton, tmp_path_factory.mktemp("probes"), "", "probes-", auth="on")
    async with running(settings) as app:
        keys = {
            "acme": (await create_key(app.store, "acme", KeyKind.ADMIN))[1],
            "acme-read": (await create_key(app.store, "acme", KeyKind.READ))[1],
            "globex": (await create_key(app.store, "globex", KeyKind.ADMIN))[1],
        }
        yield app, keys


async def test_an_uploaded_network_is_visible_to_its_organisation_only(
    keyed: tuple[Application, dict[str, str]],
) -> None:
    app, keys = keyed
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        acme = Client.over(channel, keys["acme"])
        network = await acme.deployed(network_message("acme colours"), colors_files())
        service = f"model/{network.id}"
        assert await check(channel, service, keys["acme"]) == SERVING
        assert await check(channel, service, keys["acme-read"]) == SERVING
        # Another organisation, no key, a bad key: the network does not exist for them.
        assert await check_code(channel, service, keys["globex"]) == grpc.StatusCode.NOT_FOUND
        assert await check_code(channel, service) == grpc.StatusCode.NOT_FOUND
        assert await check_code(channel, service, "sl_nope_nope") == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await check(channel, service)
        assert "model/<network-id>" in (error.value.details() or "")
        # Public models and the process need no key.
        assert await check(channel, "model/colors") == SERVING
        assert await check(channel, "") == SERVING

        # Watch: SERVING, then SERVICE_UNKNOWN once the network is deleted.
        metadata = (("authorization", f"Bearer {keys['acme']}"),)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=service), metadata=metadata
        )
        assert (await asyncio.wait_for(watch.read(), 10)).status == SERVING
        await acme.networks.DeleteNetwork(networks_pb2.DeleteNetworkRequest(network_id=network.id), metadata=metadata)
        assert (await asyncio.wait_for(watch.read(), 10)).status == UNKNOWN
        watch.cancel()
        assert await check_code(channel, service, keys["acme"]) == grpc.StatusCode.NOT_FOUND


async def test_an_uploaded_network_is_visible_without_keys_when_they_are_off(
    registry_app: Application, registry_client: Client
) -> None:
    network = await registry_client.deployed(network_message("local colours"), colors_files())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{registry_app.port}") as channel:
        assert await check(channel, f"model/{network.id}") == SERVING
        await registry_client.networks.DeleteNetwork(networks_pb2.DeleteNetworkRequest(network_id=network.id))
        assert await check_code(channel, f"model/{network.id}") == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------------------------- ready line


def test_serve_logs_one_ready_line_once_every_model_is_loaded(tmp_path: Path) -> None:
    service = ExternalService(tmp_path)
    with service.running():
        # Health says SERVING for "" as soon as the server listens; the ready line may come a moment later.
        wait_until(lambda: "ready:" in service.log.read_text(), timeout_s=30, what="the ready line")
        log = service.log.read_text()
        ready = [line for line in log.splitlines() if re.search(r"\bready: \d+ public models loaded", line)]
        assert len(ready) == 1, log
        assert f"serving on 127.0.0.1:{service.port}" in ready[0]
        assert log.index("listening on") < log.index(ready[0])
        # When it is written, every public model answers SERVING.
        for model in ("colors", "shapes-yolo", "efficientnet-lite0", "blazeface-short"):
            assert service.health(f"model/{model}") == SERVING, model
    assert len(re.findall(r"\bready:", service.log.read_text())) == 1
