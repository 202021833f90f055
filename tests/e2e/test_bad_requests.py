"""Bad requests from outside get a clear status with what to fix, never INTERNAL or UNKNOWN, and leave nothing
half-made: bytes that are no message at all, NaN in metadata, ids of a megabyte, two keys, an upload that is
not a network. Bad images have their own file (test_bad_images.py)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, tasks_pb2
from service.auth import KeyKind, create_key
from service.server import Application, running
from tests.e2e.helpers import colors_spec, reason
from tests.helpers import Client, TritonFixture, network_message, registry_settings

RED = (Path(__file__).resolve().parents[2] / "samples" / "red.png").read_bytes()
GARBAGE = [b"\xff" * 7, b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)), b"\x12\x05abc"]
"""Bytes that do not parse as protobuf messages: a bad tag, a length past the end, a run of everything, a
truncated field."""


def details(error: grpc.aio.AioRpcError) -> list[object]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    found: list[object] = []
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.ResourceInfo):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                found.append(message)
    return found


def raw(channel: grpc.aio.Channel, method: str, kind: str) -> object:
    """A method of the server called with raw bytes (no serializer): what a broken client sends."""
    make = {
        "unary": channel.unary_unary,
        "client-stream": channel.stream_unary,
        "bidi": channel.stream_stream,
    }[kind]
    return make(method, request_serializer=None, response_deserializer=None)


UNARY = [
    "/sightline.v1.RecognitionService/Recognize",
    "/sightline.v1.RecognitionService/Infer",
    "/sightline.v1.RecognitionService/CreateSpecification",
    "/sightline.v1.RecognitionService/ListSpecifications",
    "/sightline.v1.NetworkService/InferNetwork",
    "/sightline.v1.NetworkService/UpdateNetwork",
    "/sightline.v1.TaskService/GetTask",
    "/sightline.v1.TaskService/BatchGetTasks",
]


@pytest.mark.parametrize("method", UNARY)
async def test_bytes_that_are_no_message_on_unary_calls(channel: grpc.aio.Channel, method: str) -> None:
    call = raw(channel, method, "unary")
    for garbage in GARBAGE:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(garbage, timeout=10)  # type: ignore[operator]
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert reason(caught.value) == "MALFORMED_REQUEST"
        assert "does not parse" in str(caught.value.details())


async def test_bytes_that_are_no_message_on_streams(channel: grpc.aio.Channel, recognition: object) -> None:
    config = b"\x0a\x0b\x0a\x09colors-v1"  # StreamRecognizeRequest{config{spec_id: "colors-v1"}}

    async def stream(*items: bytes) -> AsyncIterator[bytes]:
        for item in items:
            yield item

    bidi = raw(channel, "/sightline.v1.RecognitionService/StreamRecognize", "bidi")
    for garbage in GARBAGE:
        call = bidi(stream(config, garbage))  # type: ignore[operator]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert reason(caught.value) == "MALFORMED_REQUEST"

    upload = raw(channel, "/sightline.v1.NetworkService/CreateNetwork", "client-stream")
    for garbage in GARBAGE:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(stream(garbage))  # type: ignore[operator]
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert reason(caught.value) == "MALFORMED_REQUEST"


def _with_number(value: float) -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    metadata.update({"team": "vision", "nested": {"score": value}})
    return metadata


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_nan_and_inf_in_metadata(registry_client: Client, value: float) -> None:
    spec = colors_spec("NaN spec")
    spec.metadata.CopyFrom(_with_number(value))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry_client.recognition.CreateSpecification(
            recognition_pb2.CreateSpecificationRequest(specification=spec)
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = [d for d in details(caught.value) if isinstance(d, error_details_pb2.BadRequest)]
    assert [v.field for v in violations[0].field_violations] == ["specification.metadata.nested.score"]

    created = await registry_client.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec("finite"))
    )
    update = recognition_pb2.Specification(id=created.id, metadata=_with_number(value))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry_client.recognition.UpdateSpecification(
            recognition_pb2.UpdateSpecificationRequest(specification=update, update_mask={"paths": ["metadata"]})
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    kept = await registry_client.recognition.GetSpecification(
        recognition_pb2.GetSpecificationRequest(spec_id=created.id)
    )
    assert dict(kept.metadata) == {"team": "vision"}

    network = network_message("NaN network", metadata={"nested": {"score": 1.0}})
    network.metadata.CopyFrom(_with_number(value))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry_client.upload(network, {"colors.onnx": b"x"})
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.nested.score" in str(caught.value.details())


async def test_a_megabyte_id_is_quoted_short(channel: grpc.aio.Channel, recognition: object, tasks: object) -> None:
    stub = recognition  # the session server's RecognitionService stub
    long_id = "x" * 1_000_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=long_id))  # type: ignore[attr-defined]
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert len(str(caught.value.details())) < 300
    assert "1000000 characters" in str(caught.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id="t" * 100_000))  # type: ignore[attr-defined]
    assert caught.value.code() in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
    assert len(str(caught.value.details())) < 300
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Recognize(  # type: ignore[attr-defined]
            inference_pb2.RecognizeRequest(spec_id=long_id, inputs=[inference_pb2.Input(image={"content": RED})])
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_request_id_comes_back_on_errors(recognition: object) -> None:
    call = recognition.GetSpecification(  # type: ignore[attr-defined]
        recognition_pb2.GetSpecificationRequest(spec_id="no-such-spec"), metadata=(("x-request-id", "abc123"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "abc123") in tuple(caught.value.trailing_metadata() or ())
    ok = recognition.ListSpecifications(common_pb2.ListRequest(), metadata=(("x-request-id", "def456"),))  # type: ignore[attr-defined]
    await ok
    assert ("x-request-id", "def456") in tuple(await ok.trailing_metadata())
    # An id that could not travel back (too long, not printable) is replaced by one of the server's.
    odd = recognition.ListSpecifications(common_pb2.ListRequest(), metadata=(("x-request-id", "r" * 5000),))  # type: ignore[attr-defined]
    await odd
    echoed = dict(await odd.trailing_metadata())["x-request-id"]
    assert echoed != "r" * 5000
    assert len(echoed) == 32


@pytest.fixture(scope="module")
async def keyed_app(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Application]:
    settings = registry_settings(triton, tmp_path_factory.mktemp("keys"), "", "badreq-", auth="on")
    async with running(settings) as app:
        yield app


async def test_more_than_one_key_is_refused(keyed_app: Application) -> None:
    first = (await create_key(keyed_app.store, "acme", KeyKind.ADMIN))[1]
    second = (await create_key(keyed_app.store, "globex", KeyKind.ADMIN))[1]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{keyed_app.port}") as channel:
        client = Client.over(channel)
        request = common_pb2.ListRequest()
        await client.recognition.ListSpecifications(request, metadata=(("x-api-key", first),))
        await client.recognition.ListSpecifications(
            request, metadata=(("x-api-key", first), ("authorization", f"Bearer {first}"))
        )
        for metadata in (
            (("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")),
            (("authorization", f"Bearer {first}"), ("x-api-key", second)),
            (("x-api-key", first), ("x-api-key", second)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.recognition.ListSpecifications(request, metadata=metadata)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "more than one key" in str(caught.value.details())


async def test_an_upload_that_is_not_onnx_reveals_no_server_path(registry_client: Client) -> None:
    junk = b"this is not an ONNX file" * 40
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry_client.upload(network_message("junk"), {"colors.onnx": junk, "mean.npy": _mean()})
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
    message = str(caught.value.details())
    for path in ("staging", tempfile.gettempdir(), str(Path.cwd())):
        assert path not in message, message
    for detail in details(caught.value):
        if isinstance(detail, error_details_pb2.BadRequest):
            for violation in detail.field_violations:
                assert "staging" not in violation.description
    listed = await registry_client.networks.ListNetworks(common_pb2.ListRequest(limit=1000))
    assert "junk" not in [n.name for n in listed.results]


def _mean() -> bytes:
    path = Path(__file__).resolve().parents[2] / "model_repository" / "colors" / "mean.npy"
    return path.read_bytes()
