"""The contract's JSON form is the v0.7 JSON: results, specifications, versions, and the seed's examples."""
# ruff: noqa: E501 - the seed examples stay verbatim, one per line.

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format

from postprocess.types import BBox, LabelsResult, Prediction
from service._proto.sightline.v1 import networks_pb2, recognition_pb2
from service.api.converters import result_to_proto, spec_to_proto, version_to_proto
from service.domain import (
    ClassificationPostProcessing,
    LabelDef,
    RecognitionResult,
    Roi,
    Specification,
    SpecOutput,
    Version,
    parse_post_processings,
    parse_preprocessing,
    post_processing_to_v07,
    preprocessing_to_v07,
)

PREPROCESSINGS = [
    '{"inputs":[{"tensor_name":"data","image":{"resize_type":"SQUASH","data_type":"FLOAT32","dimension_order":"NCHW","pixel_scaling":255.0,"mean_file":"imagenet_mean.binaryproto","target_size":"224x224","color_channels":"BGR"}}],"batched_output":true}',
    '{"inputs":[{"tensor_name":"data","image":{"resize_type":"NETWORK","data_type":"FLOAT32","dimension_order":"NCHW","pixel_scaling":255.0,"mean_file":"imagenet_mean.binaryproto","target_size":"800","color_channels":"BGR"}},{"tensor_name":"im_info","constant":{"shape":[3],"data":["data.1","data.2",1.0]}}],"batched_output":false}',
    '{"inputs":[{"tensor_name":"map/TensorArrayStack/TensorArrayGatherV3:0","image":{"resize_type":"CROP","data_type":"FLOAT32","dimension_order":"NHWC","pixel_scaling":2.0,"mean_file":"unitary_mean.npy","target_size":"299x299","color_channels":"BGR"}}],"batched_output":true}',
    '{"inputs":[{"tensor_name":"image_tensor:0","image":{"resize_type":"NETWORK","data_type":"UINT8","dimension_order":"NHWC","pixel_scaling":255.0,"mean_file":"","target_size":"500","color_channels":"RGB"}}],"batched_output":true}',
]

POST_PROCESSINGS = [
    '{"classification":{"output_tensor":"inception_v3/logits/predictions"}}',
    '{"detection":{"anchored_output":{"anchors_tensor":"rois","scores_tensor":"cls_prob","offsets_tensor":"bbox_pred"},"discard_threshold":0.025,"nms_threshold":0.3,"normalize_wrt_tensor":"im_info"}}',
    '{"detection":{"direct_output":{"boxes_tensor":"detection_boxes:0","scores_tensor":"detection_scores:0","classes_tensor":"detection_classes:0"},"discard_threshold":0.025,"nms_threshold":0.3,"normalize_wrt_tensor":""}}',
    '{"detection":{"yolo_output":{"output_tensor":"import/output:0","anchors":[1.3221,1.73145,3.19275,4.00944,5.05587,8.09892,9.47112,4.84053,11.2364,10.0071]},"discard_threshold":0.025,"nms_threshold":0.3,"normalize_wrt_tensor":""}}',
]

RESULT_EXAMPLE = '{"outputs":[{"labels":{"predicted":[{"label_name":"sunglasses","label_id":9,"roi":{"region_id":1,"bbox":{"xmin":0.312604159,"ymin":0.366485775,"ymax":0.5318923,"xmax":0.666821837}},"score":0.990304172,"threshold":0.347}],"discarded":[]}}]}'


def to_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def approx(value: Any) -> Any:
    """Floats compared at float32 precision, everything else exactly."""
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-6)
    return value


@pytest.mark.parametrize("text", PREPROCESSINGS)
def test_seed_preprocessings_round_trip_through_protobuf_and_domain(text: str) -> None:
    expected = json.loads(text)
    message = json_format.Parse(text, networks_pb2.Preprocessing())
    assert to_dict(message) == approx(expected)
    domain = parse_preprocessing(to_dict(message))
    assert preprocessing_to_v07(domain) == approx(expected)


@pytest.mark.parametrize("text", POST_PROCESSINGS)
def test_seed_post_processings_round_trip(text: str) -> None:
    expected = json.loads(text)
    message = json_format.Parse(text, recognition_pb2.PostProcessing())
    assert to_dict(message) == approx(expected)
    (domain,) = parse_post_processings([to_dict(message)])
    assert post_processing_to_v07(domain) == approx(expected)


def test_result_shape_is_the_v07_example() -> None:
    prediction = Prediction(
        label_id=9,
        label_name="sunglasses",
        score=0.990304172,
        threshold=0.347,
        region_id=1,
        bbox=BBox(0.312604159, 0.366485775, 0.666821837, 0.5318923),
    )
    message = result_to_proto(RecognitionResult((LabelsResult((prediction,), ()),)))
    expected = json.loads(RESULT_EXAMPLE)
    got = to_dict(message)
    # json_format leaves out empty lists; the CLI prints them (always_print_fields_with_no_presence).
    expected["outputs"][0]["labels"].pop("discarded")
    assert got == approx(expected)
    full = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert full["outputs"][0]["labels"]["discarded"] == []


def test_zero_values_still_print() -> None:
    """Label id 0, region 0 and a box at the origin are v0.7 values, not absent ones."""
    prediction = Prediction(
        label_id=0, label_name="circle", score=0.9, threshold=0.5, region_id=0, bbox=BBox(0, 0, 0.5, 0.5)
    )
    got = to_dict(result_to_proto(RecognitionResult((LabelsResult((prediction,), ()),))))
    p = got["outputs"][0]["labels"]["predicted"][0]
    assert p["label_id"] == 0
    assert p["roi"] == {"region_id": 0, "bbox": {"xmin": 0.0, "ymin": 0.0, "xmax": 0.5, "ymax": 0.5}}


STAMP = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_specification_shape() -> None:
    spec = Specification(
        id="shapes-v1",
        name="Shapes",
        description="",
        metadata={"owner": "demo"},
        current_version_id="shapes-v1.1",
        update_date=STAMP,
        outputs=(SpecOutput((LabelDef(0, "circle"), LabelDef(7, "star")), exclusive=False, roi=Roi.NONE),),
    )
    got = to_dict(spec_to_proto(spec))
    assert got == {
        "id": "shapes-v1",
        "name": "Shapes",
        "description": "",
        "metadata": {"owner": "demo"},
        "update_date": "2026-11-30T12:00:00Z",
        "current_version_id": "shapes-v1.1",
        "outputs": [
            {
                "labels": {
                    "labels": [{"id": 0, "name": "circle"}, {"id": 7, "name": "star"}],
                    "exclusive": False,
                    "roi": "NONE",
                }
            }
        ],
    }
    listed = to_dict(spec_to_proto(spec, with_outputs=False))
    assert "outputs" not in listed
    no_version = to_dict(spec_to_proto(Specification(id="x", name="x", outputs=spec.outputs)))
    assert "current_version_id" not in no_version  # v0.7: null


def test_version_shape() -> None:
    version = Version(
        id="shapes-v1.1",
        spec_id="shapes-v1",
        network_id="shapes-classifier",
        post_processings=(ClassificationPostProcessing("prob", (0.3, 0.4)),),
        spec_name="Shapes",
        network_name="Shapes classifier",
        update_date=STAMP,
    )
    assert to_dict(version_to_proto(version)) == approx(
        {
            "id": "shapes-v1.1",
            "spec_id": "shapes-v1",
            "network_id": "shapes-classifier",
            "post_processings": [{"classification": {"output_tensor": "prob", "thresholds": [0.3, 0.4]}}],
            "spec_name": "Shapes",
            "network_name": "Shapes classifier",
            "update_date": "2026-11-30T12:00:00Z",
        }
    )
