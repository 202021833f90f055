"""Tensor names as Triton serves them: a converted network's names as uploaded (``image_tensor:0``, a signature
key) rewritten, in a preprocessing and a post-processing, into the names its ONNX graph serves; a public network's
signature rewrites nothing."""

from __future__ import annotations

from service.domain import (
    ClassificationPostProcessing,
    DetectionPostProcessing,
    DirectOutput,
    parse_post_processings,
    parse_preprocessing,
)
from service.registry.tensor_names import PUBLIC_SIGNATURE, served_post_processing, served_preprocessing
from service.triton.tensors import Signature


def test_uploaded_names_resolve_to_served_names() -> None:
    signature = Signature(
        (),
        (),
        0,
        {"image_tensor:0": "image_tensor", "detection_boxes:0": "detection_boxes", "scores": "detection_scores"},
    )
    preprocessing = parse_preprocessing(
        {
            "inputs": [
                {
                    "tensor_name": "image_tensor:0",
                    "image": {
                        "dimension_order": "NHWC",
                        "resize_type": "SQUASH",
                        "target_size": "8x8",
                        "color_channels": "RGB",
                    },
                },
                {"tensor_name": "size", "constant": {"shape": [2], "data": ["image_tensor:0.1", 3]}},
            ]
        }
    )
    served = served_preprocessing(preprocessing, signature)
    assert [i.tensor_name for i in served.inputs] == ["image_tensor", "size"]
    assert served.inputs[1].constant is not None
    assert served.inputs[1].constant.data == ("image_tensor.1", 3.0)
    detection, classification = parse_post_processings(
        [
            {
                "detection": {
                    "direct_output": {
                        "boxes_tensor": "detection_boxes:0",
                        "scores_tensor": "scores",
                        "classes_tensor": "detection_classes",
                    },
                    "normalize_wrt_tensor": "image_tensor:0",
                }
            },
            {"classification": {"output_tensor": "detection_boxes:0"}},
        ]
    )
    mapped = served_post_processing(detection, signature)
    assert isinstance(mapped, DetectionPostProcessing)
    assert mapped.output == DirectOutput("detection_boxes", "detection_scores", "detection_classes")
    assert mapped.normalize_wrt_tensor == "image_tensor"
    assert served_post_processing(classification, signature) == ClassificationPostProcessing("detection_boxes")
    assert served_preprocessing(preprocessing, PUBLIC_SIGNATURE) is preprocessing
    assert served_post_processing(detection, PUBLIC_SIGNATURE) is detection
