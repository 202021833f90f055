"""v0.7 validation: every bad field is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format

from postprocess import DetectionConfig, Label, detect
from service._proto.sightline.v1 import networks_pb2, recognition_pb2
from service.domain import (
    AnchoredOutput,
    ClassificationPostProcessing,
    DetectionPostProcessing,
    DirectOutput,
    LabelDef,
    Roi,
    Specification,
    SpecOutput,
    YoloOutput,
    check_version_against_spec,
    default_threshold,
    parse_network,
    parse_post_processings,
    parse_preprocessing,
    parse_specification,
    post_processing_to_v07,
)
from service.errors import InvalidArgumentError

IMAGE = {
    "dimension_order": "NCHW",
    "resize_type": "SQUASH",
    "target_size": "64x64",
    "color_channels": "RGB",
    "pixel_scaling": 255.0,
    "mean_file": "",
    "data_type": "FLOAT32",
}


def prep(**image: Any) -> dict[str, Any]:
    return {"inputs": [{"tensor_name": "data", "image": {**IMAGE, **image}}], "batched_output": True}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (prep(dimension_order="CHW"), "preprocessing.inputs[0].image.dimension_order"),
        (prep(resize_type="STRETCH"), "preprocessing.inputs[0].image.resize_type"),
        (prep(target_size="big"), "preprocessing.inputs[0].image.target_size"),
        (prep(target_size="0x10"), "preprocessing.inputs[0].image.target_size"),
        (prep(resize_type="NETWORK", target_size="64x32"), "preprocessing.inputs[0].image.target_size"),
        (prep(color_channels="CMYK"), "preprocessing.inputs[0].image.color_channels"),
        (prep(pixel_scaling=-1.0), "preprocessing.inputs[0].image.pixel_scaling"),
        (prep(data_type="FLOAT16"), "preprocessing.inputs[0].image.data_type"),
        ({"inputs": []}, "preprocessing.inputs"),
        ({"inputs": [{"tensor_name": "x", "constant": {"shape": [1], "data": [1.0]}}]}, "preprocessing.inputs"),
        (
            {
                "inputs": [
                    {"tensor_name": "data", "image": IMAGE},
                    {"tensor_name": "im_info", "constant": {"shape": [2], "data": ["data.1", "other.2"]}},
                ]
            },
            "preprocessing.inputs[1].constant.data[1]",
        ),
        (
            {
                "inputs": [
                    {"tensor_name": "data", "image": IMAGE},
                    {"tensor_name": "k", "constant": {"shape": [4], "data": [1.0]}},
                ]
            },
            "preprocessing.inputs[1].constant.shape",
        ),
    ],
)
def test_bad_preprocessing_names_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        parse_preprocessing(raw)
    assert [v.field for v in error.value.violations] == [field]
    assert field in error.value.message


def test_gray_alias_and_unknown_enum_numbers_from_protobuf() -> None:
    assert parse_preprocessing(prep(color_channels="GRAY")).inputs[0].image.color_channels.value == "L"  # type: ignore[union-attr]
    message = json_format.ParseDict(prep(), networks_pb2.Preprocessing())
    message.inputs[0].image.resize_type = 42  # type: ignore[assignment]  # an enum number this server does not know
    raw = json_format.MessageToDict(message, preserving_proto_field_name=True)
    with pytest.raises(InvalidArgumentError, match="42 is not one of SQUASH"):
        parse_preprocessing(raw)


SPEC: dict[str, Any] = {
    "name": "shapes",
    "outputs": [
        {"labels": {"labels": [{"id": 3, "name": "a"}, {"id": 9, "name": "b"}], "exclusive": True, "roi": "BBOX"}}
    ],
}


def test_specification_rules() -> None:
    spec = parse_specification(SPEC, spec_id="1")
    assert spec.outputs[0].labels == (LabelDef(3, "a"), LabelDef(9, "b"))
    duplicate = copy.deepcopy(SPEC)
    duplicate["outputs"][0]["labels"]["labels"][1]["id"] = 3
    with pytest.raises(InvalidArgumentError, match="unique"):
        parse_specification(duplicate, spec_id="1")
    with pytest.raises(InvalidArgumentError, match="outputs"):
        parse_specification({"name": "x", "outputs": []}, spec_id="1")


def test_version_must_fit_its_specification() -> None:
    spec = parse_specification(SPEC, spec_id="1")
    detection = parse_post_processings(
        [{"detection": {"yolo_output": {"output_tensor": "out", "anchors": [1, 1]}, "thresholds": [0.5, 0.6]}}]
    )
    check_version_against_spec(detection, spec)
    with pytest.raises(InvalidArgumentError, match="does not implement"):
        check_version_against_spec((ClassificationPostProcessing("prob"),), spec)
    with pytest.raises(InvalidArgumentError, match="has 2 entries but the specification has 1 outputs"):
        check_version_against_spec(detection * 2, spec)
    wrong = (DetectionPostProcessing(YoloOutput("out", (1.0, 1.0)), thresholds=(0.5,)),)
    with pytest.raises(InvalidArgumentError, match="1 values for 2 labels"):
        check_version_against_spec(wrong, spec)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"detection": {"yolo_output": {"output_tensor": "o", "anchors": [1.0]}}}, "anchors"),
        ({"detection": {"direct_output": {"boxes_tensor": "b", "scores_tensor": "s"}}}, "classes_tensor"),
        (
            {"detection": {"yolo_output": {"output_tensor": "o", "anchors": [1, 1]}, "nms_threshold": 1.5}},
            "nms_threshold",
        ),
        ({"detection": {}}, "needs exactly one of anchored_output"),
        ({"classification": {"output_tensor": ""}}, "output_tensor"),
        ({"classification": {"output_tensor": "p"}, "detection": {}}, "exactly one of classification or detection"),
    ],
)
def test_bad_post_processings(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        parse_post_processings([raw])


def test_v07_default_thresholds() -> None:
    label = (LabelDef(0, "a"),)
    assert default_threshold(SpecOutput(label, exclusive=True, roi=Roi.NONE)) == 0.025
    assert default_threshold(SpecOutput(label, exclusive=False, roi=Roi.NONE)) == 0.5
    assert default_threshold(SpecOutput(label, exclusive=True, roi=Roi.BBOX)) == 0.8


def test_network_framework_is_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="framework"):
        parse_network({"name": "n", "framework": "pytorch", "preprocessing": prep()}, network_id="1")
    assert parse_network({"name": "n", "framework": "onnx", "preprocessing": prep()}, network_id="1").name == "n"
    assert isinstance(Specification, type)


# The seed's two detection examples, in the layouts their frameworks give (#17 point 0).
TF_DIRECT: dict[str, Any] = {
    "detection": {
        "direct_output": {
            "boxes_tensor": "detection_boxes:0",
            "scores_tensor": "detection_scores:0",
            "classes_tensor": "detection_classes:0",
        },
        "discard_threshold": 0.025,
        "nms_threshold": 0.3,
        "normalize_wrt_tensor": "",
    }
}
CAFFE_ANCHORED: dict[str, Any] = {
    "detection": {
        "anchored_output": {"anchors_tensor": "rois", "scores_tensor": "cls_prob", "offsets_tensor": "bbox_pred"},
        "discard_threshold": 0.025,
        "nms_threshold": 0.3,
        "normalize_wrt_tensor": "im_info",
    }
}


def _detect_one(pp: Any, outputs: dict[str, Any]) -> tuple[float, ...]:
    config = DetectionConfig(
        pp.output, (Label(1, "a"),), (0.5,), pp.nms_threshold, pp.discard_threshold, pp.normalize_wrt_tensor
    )
    (result,) = detect(outputs, config)
    (prediction,) = result.predicted
    assert prediction.bbox is not None
    box = prediction.bbox
    return (box.xmin, box.ymin, box.xmax, box.ymax)


@pytest.mark.parametrize("framework", ["tensorflow-1.x", "tensorflow-2.x"])
def test_tensorflow_direct_output_reads_the_object_detection_apis_ymin_first_boxes(framework: str) -> None:
    (pp,) = parse_post_processings([TF_DIRECT], framework=framework)
    assert isinstance(pp, DetectionPostProcessing)
    outputs = {
        "detection_boxes:0": np.array([[[0.1, 0.2, 0.3, 0.6]]], np.float32),  # ymin, xmin, ymax, xmax
        "detection_scores:0": np.array([[0.9]], np.float32),
        "detection_classes:0": np.array([[1.0]], np.float32),
    }
    np.testing.assert_allclose(_detect_one(pp, outputs), (0.2, 0.1, 0.6, 0.3), atol=1e-6)
    # Printed with its layout, so that the stored version (parsed without a framework) reads back the same.
    printed = post_processing_to_v07(pp)
    assert printed["detection"]["direct_output"]["box_format"] == "YXYX"
    assert parse_post_processings([printed]) == (pp,)


def test_caffe_anchored_output_reads_py_faster_rcnn_rois() -> None:
    (pp,) = parse_post_processings([CAFFE_ANCHORED], framework="nv-caffe-0.x-mod")
    assert isinstance(pp, DetectionPostProcessing)
    outputs = {
        "rois": np.array([[0, 100, 50, 300, 250]], np.float32),  # batch index, x1, y1, x2, y2 (no batch axis)
        "cls_prob": np.array([[0.1, 0.9]], np.float32),
        "bbox_pred": np.zeros((1, 8), np.float32),
        "im_info": np.array([600, 800, 1.0], np.float32),  # height, width, scale
    }
    np.testing.assert_allclose(_detect_one(pp, outputs), (0.125, 50 / 600, 0.375, 250 / 600), atol=1e-6)
    assert parse_post_processings([post_processing_to_v07(pp)]) == (pp,)


def test_box_layouts_are_explicit_beyond_v07_frameworks() -> None:
    (onnx_direct,) = parse_post_processings([TF_DIRECT], framework="onnx")
    (onnx_anchored,) = parse_post_processings([CAFFE_ANCHORED], framework="onnx")
    assert isinstance(onnx_direct, DetectionPostProcessing)
    assert isinstance(onnx_direct.output, DirectOutput)
    assert isinstance(onnx_anchored, DetectionPostProcessing)
    assert isinstance(onnx_anchored.output, AnchoredOutput)
    assert (onnx_direct.output.box_format, onnx_anchored.output.anchor_format) == ("xyxy", "xywh")
    assert "box_format" not in post_processing_to_v07(onnx_direct)["detection"]["direct_output"], "v0.7 JSON kept"

    explicit = copy.deepcopy(TF_DIRECT)
    explicit["detection"]["direct_output"]["box_format"] = "XYXY"
    (tf_xyxy,) = parse_post_processings([explicit], framework="tensorflow-1.x")
    assert isinstance(tf_xyxy, DetectionPostProcessing)
    assert isinstance(tf_xyxy.output, DirectOutput)
    assert tf_xyxy.output.box_format == "xyxy", "an explicit layout wins over the framework's"
    anchored = copy.deepcopy(CAFFE_ANCHORED)
    anchored["detection"]["anchored_output"]["anchor_format"] = "ANCHOR_FORMAT_UNSPECIFIED"
    (caffe,) = parse_post_processings([anchored], framework="caffe")
    assert isinstance(caffe, DetectionPostProcessing)
    assert isinstance(caffe.output, AnchoredOutput)
    assert caffe.output.anchor_format == "xyxy"

    explicit["detection"]["direct_output"]["box_format"] = "CXCYWH"
    with pytest.raises(InvalidArgumentError, match="box_format") as error:
        parse_post_processings([explicit])
    assert "XYXY, YXYX" in str(error.value)


def test_box_layouts_travel_through_the_proto_contract() -> None:
    version = recognition_pb2.Version()
    json_format.ParseDict({"post_processings": [TF_DIRECT, CAFFE_ANCHORED]}, version)
    version.post_processings[0].detection.direct_output.box_format = recognition_pb2.DirectOutput.YXYX
    version.post_processings[1].detection.anchored_output.anchor_format = recognition_pb2.AnchoredOutput.XYXY
    body = json_format.MessageToDict(version, preserving_proto_field_name=True)
    direct, anchored = parse_post_processings(body["post_processings"])
    assert isinstance(direct, DetectionPostProcessing)
    assert isinstance(direct.output, DirectOutput)
    assert isinstance(anchored, DetectionPostProcessing)
    assert isinstance(anchored.output, AnchoredOutput)
    assert (direct.output.box_format, anchored.output.anchor_format) == ("yxyx", "xyxy")
    printed = [post_processing_to_v07(p) for p in (direct, anchored)]
    back = json_format.ParseDict({"post_processings": printed}, recognition_pb2.Version())
    assert back.post_processings[0].detection.direct_output.box_format == recognition_pb2.DirectOutput.YXYX
    assert back.post_processings[1].detection.anchored_output.anchor_format == recognition_pb2.AnchoredOutput.XYXY
