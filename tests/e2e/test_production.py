"""The production surface: health (Check and Watch), reflection, metrics, request ids, tracing, drain, TLS."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.server import Application, running
from service.settings import Settings
from tests.e2e.helpers import COLORS, frame, request, slow_config
from tests.helpers import TritonFixture

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    return int(response.status)


async def test_health_of_process_services_and_models(channel: grpc.aio.Channel) -> None:
    for service in ("", "sightline.v1.RecognitionService", "sightline.v1.NetworkService", "model/colors"):
        assert await check(channel, service) == SERVING, service
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await check(channel, "model/no-such-model")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unreachable_triton_is_not_serving_and_unavailable(
    tmp_path: Path, solid_image: Callable[..., bytes]
) -> None:
    settings = Settings(port=0, metrics_port=-1, triton_url="127.0.0.1:9", data_dir=tmp_path, triton_timeout_s=2)
    async with running(settings) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        assert await check(channel, "") == SERVING
        assert await check(channel, "sightline.v1.RecognitionService") == NOT_SERVING
        assert await check(channel, "model/colors") == NOT_SERVING
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Recognize(request(solid_image(COLORS["red"])))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        status = rpc_status.from_call(error.value)
        assert status is not None
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


async def test_reflection_lists_every_service(app: Application) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(await asyncio.to_thread(database.get_services))
        assert {"sightline.v1.RecognitionService", "sightline.v1.TaskService", "grpc.health.v1.Health"} <= services
        descriptor = await asyncio.to_thread(database.FindFileContainingSymbol, "sightline.v1.RecognitionService")
        methods = {m.name for s in descriptor.service for m in s.method}
        assert {"Recognize", "Infer", "StreamRecognize", "ListSpecifications"} <= methods
    finally:
        channel.close()


async def test_metrics_count_requests_by_method_and_code(
    app: Application, recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: Callable[..., bytes]
) -> None:
    await recognition.Recognize(request(solid_image(COLORS["red"])))
    with pytest.raises(grpc.aio.AioRpcError):
        await recognition.Recognize(request(b"junk"))
    responses = [
        r
        async for r in recognition.StreamRecognize(
            iter(
                [
                    streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id="colors-v1")),
                    frame(0, "red"),
                ]
            )
        )
    ]
    assert len(responses) == 1
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
    ok = 'sightline_requests_total{code="OK",method="/sightline.v1.RecognitionService/Recognize"}'
    bad = 'sightline_requests_total{code="INVALID_ARGUMENT",method="/sightline.v1.RecognitionService/Recognize"}'
    assert ok in text
    assert bad in text
    assert "sightline_request_seconds_bucket" in text
    assert 'sightline_triton_seconds_count{model="colors"}' in text
    assert 'sightline_frames_total{status="OK"}' in text
    assert "sightline_streams_open" in text
    assert "sightline_tasks_pending" in text


async def test_request_id_and_trace_context(
    app: Application, recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: Callable[..., bytes]
) -> None:
    exporter = InMemorySpanExporter()
    app.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("x-request-id", "req-123"), ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"))
    call = recognition.Recognize(request(solid_image(COLORS["red"])), metadata=metadata)
    await call
    trailing = dict(await call.trailing_metadata() or ())
    assert trailing["x-request-id"] == "req-123"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["sightline.v1.RecognitionService/Recognize"]
    client = spans["triton.infer colors"]
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(request(b"junk"), metadata=(("x-request-id", "req-456"),))
    status = rpc_status.from_call(error.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
    assert info.metadata["request_id"] == "req-456"
    assert info.reason == "INVALID_ARGUMENT"


async def read_all(call: Any, into: list[streams_pb2.StreamRecognizeResponse]) -> None:
    while (response := await call.read()) is not grpc.aio.EOF:
        into.append(response)


async def test_drain_answers_held_frames_then_unavailable(triton: TritonFixture, tmp_path: Path) -> None:
    settings = Settings(
        port=0, metrics_port=-1, triton_url=triton.url, data_dir=tmp_path, model_repository=triton.models
    )
    async with running(settings) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="sightline.v1.RecognitionService")
        )
        assert (await watch.read()).status == SERVING

        async def producer() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
            yield slow_config(max_in_flight=2)
            for i in range(10_000):
                yield frame(i, "red")
                await asyncio.sleep(0.01)

        call = stub.StreamRecognize(producer())
        first = await call.read()
        assert first.status == streams_pb2.OK
        stopping = asyncio.create_task(app.stop(grace_s=10))
        assert (await watch.read()).status == NOT_SERVING
        answered = [first]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await read_all(call, answered)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (error.value.details() or "")
        ids = [r.frame_id for r in answered]
        assert ids == list(range(len(ids))), "every frame read before the drain is answered, in order"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Recognize(request(b"x", spec="slow-colors-v1"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_and_mutual_tls(
    triton: TritonFixture, tmp_path: Path, certificates: dict[str, Path], solid_image: Callable[..., bytes]
) -> None:
    ca = certificates["ca"].read_bytes()
    client_pem = certificates["client"].read_bytes()
    settings = Settings(
        port=0,
        metrics_port=-1,
        triton_url=triton.url,
        data_dir=tmp_path,
        tls_cert_file=certificates["cert"],
        tls_key_file=certificates["key"],
        tls_client_ca_file=certificates["ca"],
    )
    options = (("grpc.ssl_target_name_override", "localhost"),)
    async with running(settings) as app:
        target = f"127.0.0.1:{app.port}"
        with_cert = grpc.ssl_channel_credentials(ca, private_key=client_pem, certificate_chain=client_pem)
        async with grpc.aio.secure_channel(target, with_cert, options=options) as channel:
            stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
            result = await stub.Recognize(request(solid_image(COLORS["green"])))
            assert result.outputs[0].labels.predicted[0].label_name == "green"
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca), options=options) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await recognition_pb2_grpc.RecognitionServiceStub(channel).Recognize(request(b"x"), timeout=5)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE, "a client without a certificate is refused"
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await recognition_pb2_grpc.RecognitionServiceStub(channel).Recognize(request(b"x"), timeout=5)
        # The container's health check, configured by the server's own variables plus a client certificate.
        env = {
            **os.environ,
            "SIGHTLINE_TLS_CERT_FILE": str(certificates["cert"]),
            "SIGHTLINE_CLIENT_CA_FILE": str(certificates["ca"]),
            "SIGHTLINE_CLIENT_CERT_FILE": str(certificates["client"]),
            "SIGHTLINE_CLIENT_KEY_FILE": str(certificates["client"]),
            "SIGHTLINE_CLIENT_TLS_NAME": "localhost",
        }
        health = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "health", "--server", target, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await health.communicate()
        assert health.returncode == 0, out
        assert b"SERVING" in out
        plain = {k: v for k, v in env.items() if not k.startswith("SIGHTLINE_")}
        refused = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "health", "--server", target, env=plain, stderr=asyncio.subprocess.DEVNULL
        )
        assert await refused.wait() == 1, "a plaintext health check reached a TLS server"
