"""v0.7 validation: every bad field is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from google.protobuf import json_format

from service._proto.sightline.v1 import networks_pb2
from service.domain import (
    ClassificationPostProcessing,
    DetectionPostProcessing,
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
    message.inputs[0].image.resize_type = 42  # an enum number this server does not know
    raw = json_format.MessageToDict(message, preserving_proto_field_name=True)
    with pytest.raises(InvalidArgumentError, match="42 is not one of SQUASH"):
        parse_preprocessing(raw)


SPEC = {
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
