"""The registry end to end, as a user meets it: upload a network, describe its outputs, recognise through it.

Runs on every test database (SQLite, and PostgreSQL when SIGHTLINE_TEST_POSTGRES_DSN is set), against the real
Triton of the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from onnx import TensorProto, helper

from service._proto.sightline.v1 import (
    common_pb2,
    inference_pb2,
    networks_pb2,
    networks_pb2_grpc,
    recognition_pb2,
    tasks_pb2,
)
from service.api import linger as linger_module
from service.server import Application
from tests.e2e.helpers import classification, colors_spec, recognize, violations
from tests.helpers import COLORS_PREPROCESSING, Client, colors_files, network_message, upload_messages, wait_task

SolidImage = Callable[..., bytes]
RED = (230, 20, 25)


@pytest.fixture(scope="module")
async def colors_network(registry_client: Client) -> networks_pb2.Network:
    return await registry_client.deployed(network_message("my colours", description="uploaded"), colors_files())


async def test_uploaded_network_recognises_like_the_public_model(
    registry_client: Client, registry_app: Application, colors_network: networks_pb2.Network, solid_image: SolidImage
) -> None:
    c = registry_client
    assert colors_network.id.isdigit()
    assert json_format.MessageToDict(colors_network.preprocessing) == json_format.MessageToDict(
        json_format.ParseDict(COLORS_PREPROCESSING, networks_pb2.Preprocessing())
    )
    folder = registry_app.registry._repo.folder(colors_network.id)
    assert (folder / "1" / "model.onnx").is_file()
    assert 'backend: "onnxruntime"' in (folder / "config.pbtxt").read_text()

    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec())
    )
    assert spec.id.isdigit()
    assert not spec.HasField("current_version_id")
    version = await c.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(
                spec_id=spec.id, network_id=colors_network.id, post_processings=[classification()]
            )
        )
    )
    assert (version.spec_name, version.network_name) == ("My colours", "my colours")
    spec = await c.recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=spec.id))
    assert spec.current_version_id == version.id

    image = solid_image(RED)
    mine = await c.recognition.Recognize(recognize(image, spec_id=spec.id))
    public = await c.recognition.Recognize(recognize(image, spec_id="colors-v1"))
    by_version = await c.recognition.Recognize(recognize(image, version_id=version.id))
    assert [p.label_name for p in mine.outputs[0].labels.predicted] == ["red"]
    assert [(p.label_name, p.score) for p in mine.outputs[0].labels.predicted] == [
        (p.label_name, p.score) for p in public.outputs[0].labels.predicted
    ]
    assert mine.outputs[0].labels.predicted[0].label_id == 10
    assert by_version == mine

    infer = await c.recognition.Infer(recognize(image, spec_id=spec.id))
    task = await wait_task(c.tasks, infer.task_id)
    assert task.status == tasks_pb2.success
    assert task.data == mine

    raw = await c.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id=colors_network.id,
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))],
            output_tensors=["share"],
        )
    )
    assert [t.name for t in raw.tensors] == ["share"]
    assert list(raw.tensors[0].shape) == [1, 6]
    assert raw.tensors[0].data[0] == pytest.approx(mine.outputs[0].labels.predicted[0].score, abs=1e-5)


async def test_lists_merge_public_and_own_resources(
    registry_client: Client, colors_network: networks_pb2.Network
) -> None:
    c = registry_client
    everything = await c.networks.ListNetworks(common_pb2.ListRequest(limit=1000))
    ids = [n.id for n in everything.results]
    assert everything.count == len(ids)
    assert "colors" in ids
    assert colors_network.id in ids
    publics = sum(1 for i in ids if not i.isdigit())
    page = await c.networks.ListNetworks(common_pb2.ListRequest(offset=publics, limit=1))
    assert page.count == everything.count
    assert [n.id for n in page.results] == [ids[publics]]
    versions = await c.recognition.ListVersions(recognition_pb2.ListVersionsRequest(spec_id="colors-v1"))
    assert [v.id for v in versions.results] == ["colors-v1.1"]


async def test_update_changes_only_mutable_fields(
    registry_client: Client, colors_network: networks_pb2.Network
) -> None:
    c = registry_client
    metadata = struct_pb2.Struct()
    metadata.update({"owner": "ana"})
    updated = await c.networks.UpdateNetwork(
        networks_pb2.UpdateNetworkRequest(
            network=networks_pb2.Network(id=colors_network.id, name="renamed", metadata=metadata)
        )
    )
    assert (updated.name, dict(updated.metadata), updated.description) == ("renamed", {"owner": "ana"}, "uploaded")
    assert updated.framework == "onnx"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.networks.UpdateNetwork(
            networks_pb2.UpdateNetworkRequest(
                network=networks_pb2.Network(id=colors_network.id, framework="tensorflow-1.x"),
                update_mask=field_mask_pb2.FieldMask(paths=["framework"]),
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error.value) == ["update_mask.paths[0]"]

    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec("immutable"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.recognition.UpdateSpecification(
            recognition_pb2.UpdateSpecificationRequest(specification=colors_spec("x"), update_mask=None)
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error.value) == ["outputs"]
    renamed = await c.recognition.UpdateSpecification(
        recognition_pb2.UpdateSpecificationRequest(
            specification=recognition_pb2.Specification(id=spec.id, name="new name", description="d")
        )
    )
    assert (renamed.name, renamed.description, len(renamed.outputs)) == ("new name", "d", 1)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.recognition.UpdateSpecification(
            recognition_pb2.UpdateSpecificationRequest(
                specification=recognition_pb2.Specification(id=spec.id, current_version_id="colors-v1.1")
            )
        )
    assert violations(error.value) == ["current_version_id"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.recognition.DeleteSpecification(recognition_pb2.DeleteSpecificationRequest(spec_id="colors-v1"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("post_processings", "field"),
    [
        ([], "post_processings"),
        ([classification(), classification()], "post_processings"),
        ([classification(thresholds=[0.5, 0.5])], "post_processings[0].classification.thresholds"),
        ([classification("nope")], "post_processings[0].classification.output_tensor"),
        (
            [
                json_format.ParseDict(
                    {"detection": {"yolov8_output": {"output_tensor": "share"}}}, recognition_pb2.PostProcessing()
                )
            ],
            "post_processings[0]",
        ),
    ],
)
async def test_versions_are_validated(
    registry_client: Client,
    colors_network: networks_pb2.Network,
    post_processings: list[recognition_pb2.PostProcessing],
    field: str,
) -> None:
    c = registry_client
    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec())
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.recognition.CreateVersion(
            recognition_pb2.CreateVersionRequest(
                version=recognition_pb2.Version(
                    spec_id=spec.id, network_id=colors_network.id, post_processings=post_processings
                )
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error.value) == [field]


async def test_a_version_on_a_public_network_and_version_deletion(registry_client: Client) -> None:
    c = registry_client
    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(specification=colors_spec("on public"))
    )
    first, second = [
        await c.recognition.CreateVersion(
            recognition_pb2.CreateVersionRequest(
                version=recognition_pb2.Version(
                    spec_id=spec.id, network_id="colors", post_processings=[classification(thresholds=[t] * 6)]
                )
            )
        )
        for t in (0.1, 0.2)
    ]
    assert second.network_name == "Dominant colour"
    listed = await c.recognition.ListVersions(recognition_pb2.ListVersionsRequest(spec_id=spec.id))
    assert [v.id for v in listed.results] == [first.id, second.id]
    await c.recognition.DeleteVersion(recognition_pb2.DeleteVersionRequest(version_id=first.id))
    spec = await c.recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=spec.id))
    assert spec.current_version_id == second.id
    await c.recognition.DeleteSpecification(recognition_pb2.DeleteSpecificationRequest(spec_id=spec.id))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.recognition.GetVersion(recognition_pb2.GetVersionRequest(version_id=second.id))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def tiny_classifier(*, batch: int | str = 1) -> bytes:
    """A network from outside the project: NHWC uint8-free float input (1, 8, 8, 3) → softmax over 3 classes
    (which of the red, green or blue channels is brightest)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 8, 8, 3])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [10.0])
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[axes, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


TINY_PREPROCESSING = {
    "inputs": [
        {
            "tensor_name": "image",
            "image": {
                "dimension_order": "NHWC",
                "resize_type": "SQUASH",
                "target_size": "8x8",
                "color_channels": "RGB",
                "pixel_scaling": 1.0,
                "mean_file": "zero.npy",
                "data_type": "FLOAT32",
            },
        }
    ]
}


def npy(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


async def test_an_outside_network_with_a_fixed_batch_is_deployed_used_and_deleted(
    registry_client: Client, registry_app: Application, solid_image: SolidImage
) -> None:
    c = registry_client
    files = {"tiny.onnx": tiny_classifier(batch=1), "zero.npy": npy(np.zeros((1, 1, 3), dtype=np.float32))}
    network = await c.deployed(network_message("tiny", TINY_PREPROCESSING), files)
    folder = registry_app.registry._repo.folder(network.id)
    assert "max_batch_size: 1" in (folder / "config.pbtxt").read_text()
    body = {"name": "rgb", "outputs": [{"labels": {"labels": [{"id": i, "name": n} for i, n in enumerate("rgb")]}}]}
    spec = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(
            specification=json_format.ParseDict(body, recognition_pb2.Specification())
        )
    )
    spec_json = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    assert spec_json["outputs"][0]["labels"]["exclusive"] is False
    await c.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(
                spec_id=spec.id, network_id=network.id, post_processings=[classification("probabilities")]
            )
        )
    )
    result = await c.recognition.Recognize(recognize(solid_image((10, 200, 30)), spec_id=spec.id))
    assert result.outputs[0].labels.predicted[0].label_name == "g"

    model = registry_app.registry._repo.model_name(network.id)
    assert await registry_app.gateway.model_ready(model)
    await c.networks.DeleteNetwork(networks_pb2.DeleteNetworkRequest(network_id=network.id))
    assert not folder.exists()
    assert not await registry_app.gateway.model_ready(model)
    spec = await c.recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=spec.id))
    assert not spec.HasField("current_version_id"), "the version went with its network"
    for call in (
        c.networks.GetNetwork(networks_pb2.GetNetworkRequest(network_id=network.id)),
        c.recognition.Recognize(recognize(solid_image((10, 200, 30)), spec_id=spec.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BAD_UPLOADS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    ("../evil.onnx", {}, grpc.StatusCode.INVALID_ARGUMENT, "files[0].name"),
    ("/etc/passwd.onnx", {}, grpc.StatusCode.INVALID_ARGUMENT, "files[0].name"),
    (".hidden.onnx", {}, grpc.StatusCode.INVALID_ARGUMENT, "files[0].name"),
    ("model.onnx", {"sha256": "0" * 64}, grpc.StatusCode.INVALID_ARGUMENT, "files"),
    ("model.onnx", {"size": 10_000}, grpc.StatusCode.INVALID_ARGUMENT, "chunk.data"),
    ("model.onnx", {"size": 10}, grpc.StatusCode.INVALID_ARGUMENT, "chunk.data"),
    ("model.onnx", {"framework": "nv-caffe-0.x-mod"}, grpc.StatusCode.INVALID_ARGUMENT, "framework"),
    ("model.onnx", {"framework": "pytorch"}, grpc.StatusCode.INVALID_ARGUMENT, "framework"),
    ("model.onnx", {"garbage": True}, grpc.StatusCode.INVALID_ARGUMENT, "files"),
    ("model.onnx", {"tensor": "input"}, grpc.StatusCode.INVALID_ARGUMENT, "preprocessing.inputs[0].tensor_name"),
    ("model.onnx", {"target": "32x32"}, grpc.StatusCode.INVALID_ARGUMENT, "preprocessing.inputs[0]"),
    ("model.onnx", {"files": 5}, grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
]


@pytest.mark.parametrize(("name", "change", "code", "field"), BAD_UPLOADS)
async def test_bad_uploads_are_refused_and_leave_nothing(
    registry_client: Client,
    registry_app: Application,
    name: str,
    change: dict[str, Any],
    code: grpc.StatusCode,
    field: str,
) -> None:
    c = registry_client
    before = (await c.networks.ListNetworks(common_pb2.ListRequest())).count
    model = b"not an onnx graph" if change.get("garbage") else colors_files()["colors.onnx"]
    files = {name: model, "mean.npy": colors_files()["mean.npy"]}
    declared = [
        networks_pb2.NetworkFile(
            name=n, size=change.get("size", len(d)) if n == name else len(d), sha256=change.get("sha256", sha(d))
        )
        for n, d in files.items()
    ]
    declared += [
        networks_pb2.NetworkFile(name=f"extra{i}.npy", size=1, sha256="0" * 64) for i in range(change.get("files", 0))
    ]
    preprocessing = {
        "inputs": [
            {
                "tensor_name": change.get("tensor", "data"),
                "image": {**COLORS_PREPROCESSING["inputs"][0]["image"], "target_size": change.get("target", "64x64")},
            }
        ]
    }
    network = network_message("bad", preprocessing)
    network.framework = change.get("framework", "onnx")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.upload(network, files, declared=declared)
    assert error.value.code() == code, error.value.details()
    if field:
        assert violations(error.value) == [field], error.value.details()
    assert (await c.networks.ListNetworks(common_pb2.ListRequest())).count == before
    staging = registry_app.registry._repo.staging
    assert not any(staging.iterdir()) if staging.exists() else True
    assert registry_app.registry._repo.folders().keys() == {
        n.id for n in (await c.networks.ListNetworks(common_pb2.ListRequest(limit=1000))).results if n.id.isdigit()
    }


def refused_upload(size: int) -> list[networks_pb2.CreateNetworkRequest]:
    """A CreateNetwork call refused at its first message (an unknown framework), followed by ``size`` bytes."""
    network = network_message("refused")
    network.framework = "pytorch"
    return upload_messages(network, {"model.onnx": bytes(size)})


def sync_upload(port: int, messages: list[networks_pb2.CreateNetworkRequest]) -> tuple[grpc.StatusCode, int]:
    """Stream ``messages`` with grpcio's synchronous client; the call's code and how many messages were pulled."""
    pulled = 0

    def requests() -> Iterator[networks_pb2.CreateNetworkRequest]:
        nonlocal pulled
        for message in messages:
            pulled += 1
            yield message

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = networks_pb2_grpc.NetworkServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.CreateNetwork(requests(), timeout=60)
    return error.value.code(), pulled


async def test_a_refused_upload_is_read_to_its_end_so_that_asyncio_clients_get_its_status(
    registry_client: Client, registry_app: Application
) -> None:
    # grpcio's asyncio client turns the status of a call ended while it writes into INTERNAL (grpc/grpc#36066);
    # the servicer reads the rest of a refused upload first, so the client finishes writing and sees the real code.
    messages = refused_upload(4 * 1024 * 1024)
    code, pulled = await asyncio.to_thread(sync_upload, registry_app.port, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert pulled == len(messages), "the server read the refused upload to its end before answering"

    async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
        for message in messages:
            yield message

    codes = []
    for _ in range(25):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await registry_client.networks.CreateNetwork(stream())
        codes.append(error.value.code())
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}, codes


async def test_a_refused_upload_past_the_linger_bound_is_answered_without_reading_it_all(
    registry_app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(linger_module, "LINGER_BYTES", 1024 * 1024)
    messages = refused_upload(32 * 1024 * 1024)
    code, pulled = await asyncio.to_thread(sync_upload, registry_app.port, messages)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert pulled < len(messages) // 2, f"{pulled} of {len(messages)} messages were read"


async def test_an_upload_given_up_midway_leaves_nothing(registry_client: Client, registry_app: Application) -> None:
    c = registry_client
    messages = upload_messages(network_message("abandoned"), colors_files(), chunk=100)
    sent = asyncio.Event()

    async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
        for message in messages[:2]:
            yield message
        sent.set()
        await asyncio.Event().wait()

    call = c.networks.CreateNetwork(stream())
    await sent.wait()
    staging = registry_app.registry._repo.staging
    for _ in range(100):
        if staging.exists() and any(staging.iterdir()):
            break
        await asyncio.sleep(0.02)
    assert any(staging.iterdir()), "the upload is staged"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(100):
        if not any(staging.iterdir()):
            break
        await asyncio.sleep(0.02)
    assert not any(staging.iterdir())
