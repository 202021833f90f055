"""The pretrained public models on real photographs (scikit-image's), through the real server and Triton.

The expected classes are those PyTorch itself gives on the same preprocessed tensors (``make pretrained`` writes
them, with their probabilities, to ``tools/pretrained/figures.json``); the astronaut's face box was drawn by hand
on the picture, independently of any detector.
"""

from __future__ import annotations

import io
import json
from typing import Any, TypeAlias

import numpy as np
import pytest
from google.protobuf import json_format
from PIL import Image
from skimage import data

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, recognition_pb2_grpc
from tests.helpers import ROOT

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
CLASSIFIER = "imagenet-efficientnet-lite0-v1"
FACES = "faces-v1"
FIGURES = json.loads((ROOT / "tools" / "pretrained" / "figures.json").read_text())

# Photograph → (classes that must all be in the top 5, classes one of which must be first).
EXPECTED_TOP5 = {
    "chelsea": ({"tabby", "tiger cat", "Egyptian cat"}, {"tabby", "tiger cat", "Egyptian cat"}),
    "coffee": ({"espresso", "cup"}, {"espresso"}),
    "rocket": ({"missile", "projectile", "space shuttle"}, {"missile", "projectile", "space shuttle"}),
    # ImageNet has no "motorcycle": its nearest classes.
    "motorcycle_left": ({"moped", "motor scooter"}, {"moped", "motor scooter"}),
}
# The astronaut's face (Eileen Collins), annotated by hand on the 512 x 512 picture: forehead below the fringe to
# chin, cheek to cheek, in pixels (xmin, ymin, xmax, ymax).
ASTRONAUT_FACE_PX = (180, 82, 274, 164)


def photograph(name: str) -> bytes:
    """One of scikit-image's bundled photographs as PNG bytes (lossless: the pixels PyTorch saw)."""
    # scikit-image ships no annotations for stereo_motorcycle (a pair of images, unlike the other photographs).
    pair = data.stereo_motorcycle() if name == "motorcycle_left" else None  # type: ignore[no-untyped-call]
    array = pair[0] if pair is not None else getattr(data, name)()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array)[..., :3]).save(buffer, format="PNG")
    return buffer.getvalue()


async def recognize(stub: Stub, spec_id: str, png: bytes, **kwargs: Any) -> dict[str, Any]:
    request = inference_pb2.RecognizeRequest(
        spec_id=spec_id, inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=png))], **kwargs
    )
    result: dict[str, Any] = json_format.MessageToDict(await stub.Recognize(request), preserving_proto_field_name=True)
    return result


def top5(result: dict[str, Any]) -> list[tuple[str, float]]:
    labels = result["outputs"][0]["labels"]
    ranked = sorted(labels.get("predicted", []) + labels.get("discarded", []), key=lambda p: -p["score"])
    return [(p["label_name"], p["score"]) for p in ranked[:5]]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


async def test_both_are_public_specifications(recognition: Stub) -> None:
    listed = await recognition.ListSpecifications(common_pb2.ListRequest(limit=100))
    assert {CLASSIFIER, FACES} <= {s.id for s in listed.results}
    spec = await recognition.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=CLASSIFIER))
    labels = spec.outputs[0].labels.labels
    assert len(labels) == 1000
    assert (labels[281].name, labels[282].name, labels[967].name) == ("tabby", "tiger cat", "espresso")


@pytest.mark.parametrize("name", sorted(EXPECTED_TOP5))
async def test_imagenet_top5_on_photographs(recognition: Stub, name: str) -> None:
    result = await recognize(recognition, CLASSIFIER, photograph(name), show_discarded=True, max_predictions=5)
    got = top5(result)
    all_of, first_of = EXPECTED_TOP5[name]
    names = [label for label, _ in got]
    assert all_of <= set(names), got
    assert names[0] in first_of, got
    # The service's preprocessing, Triton and post-processing give PyTorch's own probabilities (4 digits).
    reference = FIGURES["efficientnet-lite0"]["top5_torch"][name]
    assert names == [label for label, _ in reference]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in reference], atol=6e-5)


async def test_astronaut_face_found_at_iou_05(recognition: Stub) -> None:
    result = await recognize(recognition, FACES, photograph("astronaut"))
    predicted = result["outputs"][0]["labels"]["predicted"]
    assert len(predicted) == 1, predicted
    face = predicted[0]
    assert face["label_name"] == "face"
    assert face["score"] >= 0.5
    box = tuple(face["roi"]["bbox"][k] for k in ("xmin", "ymin", "xmax", "ymax"))
    truth = tuple(v / 512 for v in ASTRONAUT_FACE_PX)
    assert iou(box, truth) >= 0.5, (box, truth, iou(box, truth))


@pytest.mark.parametrize("name", ["coffee", "rocket", "motorcycle_left"])
async def test_no_face_where_there_is_none(recognition: Stub, name: str) -> None:
    result = await recognize(recognition, FACES, photograph(name))
    assert result["outputs"][0].get("labels", {}).get("predicted", []) == []
