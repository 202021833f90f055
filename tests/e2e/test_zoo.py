"""The trained public models through the service: right answers on hand-placed scenes, same answers as offline."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pytest
from google.protobuf import json_format

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2_grpc, streams_pb2
from zoo import fixtures, scenes, video
from zoo.evaluate_service import spec_of
from zoo.runtime import REPOSITORY, ZOO_MODELS, OfflineModel

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
ONE_SHAPE = [c for c in fixtures.CASES if len(c.placements) == 1]


async def recognize(stub: Stub, spec_id: str, png: bytes, **kwargs: Any) -> dict[str, Any]:
    request = inference_pb2.RecognizeRequest(
        spec_id=spec_id, inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=png))], **kwargs
    )
    result: dict[str, Any] = json_format.MessageToDict(await stub.Recognize(request), preserving_proto_field_name=True)
    return result


async def test_every_zoo_model_is_a_public_specification(recognition: Stub) -> None:
    listed = await recognition.ListSpecifications(common_pb2.ListRequest(limit=100))
    ids = {s.id for s in listed.results}
    assert {spec_of(m) for m in ZOO_MODELS} <= ids


@pytest.mark.parametrize("case", ONE_SHAPE, ids=lambda c: c.name)
async def test_classifier_names_the_shape(recognition: Stub, case: fixtures.Case) -> None:
    result = await recognize(recognition, spec_of("shapes-classifier"), case.png(), show_discarded=True)
    assert fixtures.check_classification(result, case) == []


@pytest.mark.parametrize("case", fixtures.CASES, ids=lambda c: c.name)
async def test_tagger_tags_every_shape_and_colour(recognition: Stub, case: fixtures.Case) -> None:
    result = await recognize(recognition, spec_of("shapes-tagger"), case.png())
    assert fixtures.check_tags(result, case) == []


@pytest.mark.parametrize("detector", fixtures.DETECTORS)
@pytest.mark.parametrize("case", fixtures.CASES, ids=lambda c: c.name)
async def test_detectors_find_each_shape_at_iou_07(recognition: Stub, detector: str, case: fixtures.Case) -> None:
    result = await recognize(recognition, spec_of(detector), case.png())
    assert fixtures.check_detection(result, case) == []


@pytest.mark.parametrize("model", ZOO_MODELS)
async def test_service_answers_equal_the_offline_run(recognition: Stub, model: str) -> None:
    """Sightline's preprocessing, Triton and post-processing give what onnxruntime + the zoo's code give."""
    offline = OfflineModel(REPOSITORY / model)
    kind = "classification" if model == "shapes-classifier" else "detection"
    for scene in scenes.eval_set(kind, 6):
        png = scene.png()
        expected = offline.predict(png)
        got = await recognize(recognition, spec_of(model), png, show_discarded=True, max_predictions=100)
        for want, have in zip(expected["outputs"], got["outputs"], strict=True):
            for key in ("predicted", "discarded"):
                a, b = want["labels"][key], have["labels"].get(key, [])
                assert [p["label_name"] for p in a] == [p["label_name"] for p in b], (model, key)
                np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b], rtol=1e-4, atol=1e-5)
                boxes_a = [list(p["roi"]["bbox"].values()) for p in a if "roi" in p]
                boxes_b = [[p["roi"]["bbox"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for p in b if "roi" in p]
                np.testing.assert_allclose(boxes_a, boxes_b, atol=1e-4)


async def test_tracking_keeps_ids_on_the_sample_video(recognition: Stub) -> None:
    """The sample video's four shapes keep one track id each over 50 frames (no id switch)."""
    frames = list(video.frames(seconds=2.0))
    requests = [
        streams_pb2.StreamRecognizeRequest(
            config=streams_pb2.StreamConfig(spec_id=spec_of("shapes-yolo"), tracking=True, max_in_flight=4)
        )
    ]
    for i, frame in enumerate(frames):
        raw = streams_pb2.RawImage(
            width=frame.image.shape[1],
            height=frame.image.shape[0],
            format=streams_pb2.RGB24,
            data=frame.image.tobytes(),
        )
        requests.append(streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw)))
    responses = [r async for r in recognition.StreamRecognize(iter(requests))]
    assert len(responses) == len(frames)
    ids_per_shape: dict[str, set[int]] = {}
    matched = 0
    for response, frame in zip(responses, frames, strict=True):
        for obj in frame.objects:
            best = max(
                (p for p in response.result.outputs[0].labels.predicted if p.label_name == obj.shape),
                key=lambda p: fixtures.box_iou(
                    (p.roi.bbox.xmin, p.roi.bbox.ymin, p.roi.bbox.xmax, p.roi.bbox.ymax), obj.box
                ),
                default=None,
            )
            if (
                best is not None
                and fixtures.box_iou(
                    (best.roi.bbox.xmin, best.roi.bbox.ymin, best.roi.bbox.xmax, best.roi.bbox.ymax), obj.box
                )
                >= 0.5
            ):
                ids_per_shape.setdefault(obj.shape, set()).add(best.track_id)
                matched += 1
    assert matched >= 0.9 * sum(len(f.objects) for f in frames)
    assert all(len(ids) == 1 for ids in ids_per_shape.values()), ids_per_shape
