"""Recognition end to end: a real grpc.aio server, the real embedded Triton, the bundled colors-v1 model."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from service._proto.sightline.v1 import (
    common_pb2,
    inference_pb2,
    networks_pb2,
    recognition_pb2,
    recognition_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from tests.e2e.helpers import COLORS, request
from tests.helpers import encode

SolidImage = Callable[..., bytes]


@pytest.mark.parametrize("name", list(COLORS))
async def test_dominant_colour_comes_first(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage, name: str
) -> None:
    result = await recognition.Recognize(request(solid_image(COLORS[name])))
    predicted = result.outputs[0].labels.predicted
    assert predicted[0].label_name == name
    assert predicted[0].score > 0.9
    assert predicted[0].threshold == pytest.approx(0.025)
    assert [p.score for p in predicted] == sorted((p.score for p in predicted), reverse=True)


async def test_result_is_the_v07_json(recognition: recognition_pb2_grpc.RecognitionServiceStub) -> None:
    # Two thirds blue, one third white: both above 0.025, blue first; the rest discarded.
    array = np.zeros((60, 90, 3), dtype=np.uint8)
    array[:, :60] = COLORS["blue"]
    array[:, 60:] = COLORS["white"]
    result = await recognition.Recognize(request(encode(array), show_discarded=True))
    data = json_format.MessageToDict(result, preserving_proto_field_name=True)
    labels = data["outputs"][0]["labels"]
    assert [p["label_name"] for p in labels["predicted"]] == ["blue", "white"]
    assert labels["predicted"][0]["score"] == pytest.approx(2 / 3, abs=0.02)
    assert set(labels["predicted"][0]) == {"label_name", "label_id", "score", "threshold"}
    assert labels["predicted"][0]["label_id"] == 2
    assert {p["label_name"] for p in labels["discarded"]} == {"red", "green", "yellow", "black"}
    assert all(p["score"] < p["threshold"] for p in labels["discarded"])


async def test_discarded_only_on_request_and_max_predictions(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    plain = await recognition.Recognize(request(solid_image(COLORS["red"])))
    assert len(plain.outputs[0].labels.discarded) == 0
    capped = await recognition.Recognize(request(solid_image(COLORS["red"]), show_discarded=True, max_predictions=2))
    assert len(capped.outputs[0].labels.predicted) <= 2
    assert len(capped.outputs[0].labels.discarded) == 2


async def test_data_uri_sources(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    png = solid_image(COLORS["green"])
    b64 = inference_pb2.ImageInput(source="data:image/png;base64," + base64.b64encode(png).decode())
    binary = inference_pb2.ImageInput(source="data:image/png;binary," + png.decode("latin-1"))
    for image in (b64, binary):
        result = await recognition.Recognize(
            inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image=image)])
        )
        assert result.outputs[0].labels.predicted[0].label_name == "green"


async def test_bbox_and_polygon_crop_before_recognition(
    recognition: recognition_pb2_grpc.RecognitionServiceStub,
) -> None:
    array = np.zeros((100, 100, 3), dtype=np.uint8)
    array[:] = COLORS["yellow"]
    array[50:, 50:] = COLORS["red"]
    req = request(encode(array))
    req.inputs[0].image.bbox.CopyFrom(common_pb2.BoundingBox(xmin=0.5, ymin=0.5, xmax=1.0, ymax=1.0))
    result = await recognition.Recognize(req)
    assert result.outputs[0].labels.predicted[0].label_name == "red"
    # A triangle inside the red quarter: its outside is painted black, so red then black.
    req = request(encode(array))
    for x, y in ((0.55, 0.55), (0.95, 0.55), (0.95, 0.95)):
        req.inputs[0].image.polygon.add(x=x, y=y)
    result = await recognition.Recognize(req)
    assert [p.label_name for p in result.outputs[0].labels.predicted][:2] == ["red", "black"]


async def test_recognize_by_version(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    req = inference_pb2.RecognizeRequest(
        version_id="colors-v1.1",
        inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=solid_image(COLORS["white"])))],
    )
    result = await recognition.Recognize(req)
    assert result.outputs[0].labels.predicted[0].label_name == "white"


async def test_infer_returns_a_task_that_ends_in_success(
    recognition: recognition_pb2_grpc.RecognitionServiceStub,
    tasks: tasks_pb2_grpc.TaskServiceStub,
    solid_image: SolidImage,
) -> None:
    response = await recognition.Infer(request(solid_image(COLORS["blue"])))
    assert response.task_id
    task = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=response.task_id))
    for _ in range(200):
        if task.status != tasks_pb2.pending:
            break
        await asyncio.sleep(0.02)
        task = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=response.task_id))
    assert task.status == tasks_pb2.success
    assert task.data.outputs[0].labels.predicted[0].label_name == "blue"
    shape = json_format.MessageToDict(task, preserving_proto_field_name=True)
    assert shape["status"] == "success"
    assert "error" not in shape
    assert {"id", "status", "date_created", "date_updated", "data"} <= set(shape)
    both = await tasks.BatchGetTasks(tasks_pb2.BatchGetTasksRequest(task_ids=[response.task_id, response.task_id]))
    assert [t.id for t in both.tasks] == [response.task_id] * 2


async def test_failed_task_reports_its_error(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, tasks: tasks_pb2_grpc.TaskServiceStub
) -> None:
    response = await recognition.Infer(request(b"not an image"))
    task = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=response.task_id))
    for _ in range(200):
        if task.status != tasks_pb2.pending:
            break
        await asyncio.sleep(0.02)
        task = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=response.task_id))
    assert task.status == tasks_pb2.error
    assert "could not be decoded" in task.error


async def test_public_specs_and_networks(
    recognition: recognition_pb2_grpc.RecognitionServiceStub,
    networks: object,
) -> None:
    listed = await recognition.ListSpecifications(common_pb2.ListRequest())
    ids = [s.id for s in listed.results]
    assert "colors-v1" in ids
    assert listed.count == len(ids)
    assert all(len(s.outputs) == 0 for s in listed.results), "outputs are left out of lists"
    spec = await recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id="colors-v1"))
    assert [lab.name for lab in spec.outputs[0].labels.labels] == ["red", "green", "blue", "yellow", "black", "white"]
    assert spec.current_version_id == "colors-v1.1"
    version = await recognition.GetVersion(recognition_pb2.GetVersionRequest(version_id=spec.current_version_id))
    assert version.network_id == "colors"
    assert version.post_processings[0].classification.output_tensor == "share"
    network = await networks.GetNetwork(networks_pb2.GetNetworkRequest(network_id="colors"))  # type: ignore[attr-defined]
    assert network.preprocessing.inputs[0].image.target_size == "64x64"
    page = await recognition.ListSpecifications(common_pb2.ListRequest(offset=0, limit=1))
    assert len(page.results) == 1
    assert page.count == listed.count


async def test_concurrent_requests_are_batched_and_right(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    names = list(COLORS) * 8
    results = await asyncio.gather(*(recognition.Recognize(request(solid_image(COLORS[n]))) for n in names))
    assert [r.outputs[0].labels.predicted[0].label_name for r in results] == names


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("req", "code", "words"),
    [
        (inference_pb2.RecognizeRequest(spec_id="colors-v1"), grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
        (request(b""), grpc.StatusCode.INVALID_ARGUMENT, "no image"),
        (request(b"GIF89a-but-not-really"), grpc.StatusCode.INVALID_ARGUMENT, "could not be decoded"),
        (request(b"x", spec="no-such-spec"), grpc.StatusCode.NOT_FOUND, "no-such-spec"),
        (request(b"x", spec=""), grpc.StatusCode.INVALID_ARGUMENT, "spec_id or version_id"),
        (request(b"x", max_predictions=0), grpc.StatusCode.INVALID_ARGUMENT, "max_predictions"),
    ],
)
async def test_bad_requests_get_clear_statuses(
    recognition: recognition_pb2_grpc.RecognitionServiceStub,
    req: inference_pb2.RecognizeRequest,
    code: grpc.StatusCode,
    words: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(req)
    assert error.value.code() == code
    assert words in (error.value.details() or "")


async def test_truncated_image(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    array = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    jpeg = encode(array, "JPEG")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(request(jpeg[: len(jpeg) // 2]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "truncated" in (error.value.details() or "")


@pytest.mark.parametrize(
    "box",
    [
        common_pb2.BoundingBox(xmin=-0.1, ymin=0, xmax=0.5, ymax=0.5),
        common_pb2.BoundingBox(xmin=0, ymin=0, xmax=1.5, ymax=0.5),
        common_pb2.BoundingBox(xmin=0.6, ymin=0, xmax=0.5, ymax=0.5),
        common_pb2.BoundingBox(xmin=0.1, ymin=0.1),
    ],
)
async def test_bad_bbox(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage, box: common_pb2.BoundingBox
) -> None:
    req = request(solid_image(COLORS["red"]))
    req.inputs[0].image.bbox.CopyFrom(box)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(req)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bbox" in (error.value.details() or "")


async def test_error_details_name_the_field(recognition: recognition_pb2_grpc.RecognitionServiceStub) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(inference_pb2.RecognizeRequest(spec_id="colors-v1"))
    status = rpc_status.from_call(error.value)
    assert status is not None
    violations: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(v.field for v in bad.field_violations)
    assert violations == ["inputs"]


async def test_unknown_task_and_empty_ids(tasks: tasks_pb2_grpc.TaskServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await tasks.BatchGetTasks(tasks_pb2.BatchGetTasksRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_server_keeps_serving_after_bad_input(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, solid_image: SolidImage
) -> None:
    for junk in (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, b"\xff\xd8\xff" + b"\x01" * 100, bytes(range(256))):
        with pytest.raises(grpc.aio.AioRpcError):
            await recognition.Recognize(request(junk))
    result = await recognition.Recognize(request(solid_image(COLORS["black"])))
    assert result.outputs[0].labels.predicted[0].label_name == "black"
