"""Golden tests of each decoder: hand-built tensors whose right boxes are known."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from postprocess import (
    AnchoredOutput,
    BBox,
    DetectionConfig,
    DirectOutput,
    InvalidConfigError,
    Label,
    LabelsResult,
    MissingTensorError,
    OutputShapeError,
    YoloOutput,
    Yolov5Output,
    Yolov8Output,
    detect,
)
from postprocess.boxes import BBOX_XFORM_CLIP

ABC = (Label(5, "a"), Label(9, "b"), Label(2, "c"))


def summary(result: LabelsResult) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """(label_id, region_id, score) of the predicted and discarded lists."""

    def rows(predictions: tuple) -> list[tuple[int, int, float]]:  # type: ignore[type-arg]
        return [(p.label_id, p.region_id, round(p.score, 6)) for p in predictions]

    return rows(result.predicted), rows(result.discarded)


def assert_box(actual: BBox | None, expected: tuple[float, float, float, float]) -> None:
    assert actual is not None
    np.testing.assert_allclose([actual.xmin, actual.ymin, actual.xmax, actual.ymax], expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------ anchored


def anchored_outputs() -> dict[str, NDArray[Any]]:
    anchors = np.array([[0.9, 100, 50, 200, 100], [0.8, 0, 0, 40, 40]], dtype=np.float32)  # (x, y, w, h)
    scores = np.array([[0.05, 0.9, 0.05], [0.5, 0.01, 0.49]], dtype=np.float32)  # background first
    offsets = np.zeros((2, 3, 4), dtype=np.float32)
    offsets[0, 1] = [0.1, -0.2, math.log(2.0), 0.0]  # proposal 0, label "a"
    return {
        "rois": anchors[None],
        "cls_prob": scores[None],
        "bbox_pred": offsets.reshape(1, 2, 12),
        "im_info": np.array([[200, 400, 1.0]], dtype=np.float32),
    }


ANCHORED = DetectionConfig(
    AnchoredOutput("rois", "cls_prob", "bbox_pred"),
    ABC[:2],
    thresholds=(0.8, 0.4),
    nms_threshold=0.3,
    discard_threshold=0.025,
    normalize_wrt_tensor="im_info",
)


def test_anchored_golden() -> None:
    (result,) = detect(anchored_outputs(), ANCHORED)
    assert summary(result) == ([(5, 0, 0.9), (9, 1, 0.49)], [(9, 0, 0.05)])
    # proposal 0 = (100, 50)-(300, 150); label a: centre (220, 80), size (400, 100) -> (20, 30)-(420, 130) px
    assert_box(result.predicted[0].bbox, (20 / 400, 30 / 200, 1.0, 130 / 200))
    assert_box(result.predicted[1].bbox, (0.0, 0.0, 40 / 400, 40 / 200))
    assert_box(result.discarded[0].bbox, (0.25, 0.25, 0.75, 0.75))
    assert result.predicted[0].threshold == 0.8


def test_anchored_layout_variants_agree() -> None:
    outputs = anchored_outputs()
    (expected,) = detect(outputs, ANCHORED)
    # Without the batch axis, offsets as (N, L+1, 4), anchors as (x1, y1, x2, y2) rows.
    xyxy = outputs["rois"][0].copy()
    xyxy[:, 3:] += xyxy[:, 1:3]
    unbatched = {
        "rois": xyxy,
        "cls_prob": outputs["cls_prob"][0],
        "bbox_pred": outputs["bbox_pred"][0].reshape(2, 3, 4),
        "im_info": outputs["im_info"][0],
    }
    config = DetectionConfig(
        AnchoredOutput("rois", "cls_prob", "bbox_pred", anchor_format="xyxy"),
        ABC[:2],
        (0.8, 0.4),
        0.3,
        0.025,
        "im_info",
    )
    assert detect(unbatched, config) == [expected]
    # Four-column anchors (no score column) and a batch of two identical images.
    four = {k: np.concatenate([v, v]) for k, v in outputs.items()}
    four["rois"] = four["rois"][:, :, 1:]
    assert detect(four, ANCHORED) == [expected, expected]


def test_anchored_exp_is_clamped() -> None:
    outputs = anchored_outputs()
    outputs["bbox_pred"] = outputs["bbox_pred"].copy()
    outputs["bbox_pred"][0, 0, 4:8] = [0, 0, 1e4, 1e4]
    (result,) = detect(outputs, ANCHORED)
    assert_box(result.predicted[0].bbox, (0.0, 0.0, 1.0, 1.0))


def test_anchored_shape_errors() -> None:
    outputs = anchored_outputs()
    with pytest.raises(OutputShapeError, match="background first"):
        detect({**outputs, "cls_prob": outputs["cls_prob"][:, :, :2]}, ANCHORED)
    with pytest.raises(OutputShapeError, match="offsets"):
        detect({**outputs, "bbox_pred": outputs["bbox_pred"][:, :, :8]}, ANCHORED)
    with pytest.raises(OutputShapeError, match="batch size"):
        detect({**outputs, "cls_prob": np.concatenate([outputs["cls_prob"]] * 2)}, ANCHORED)
    with pytest.raises(MissingTensorError, match="bbox_pred"):
        detect({k: v for k, v in outputs.items() if k != "bbox_pred"}, ANCHORED)
    with pytest.raises(InvalidConfigError, match="anchor_format"):
        AnchoredOutput("r", "s", "o", anchor_format="cxcywh")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- direct


def direct_outputs(box_format: str = "xyxy") -> dict[str, NDArray[Any]]:
    boxes = np.array(
        [
            [0.1, 0.2, 0.5, 0.6],
            [0.1, 0.2, 0.5, 0.62],  # same object, lower score: suppressed
            [0.6, 0.6, 0.9, 0.9],
            [0.0, 0.0, 0.0, 0.0],  # padding
            [0.3, 0.3, 0.4, 0.4],  # a class that is not in the specification
        ],
        dtype=np.float32,
    )
    if box_format == "yxyx":
        boxes = boxes[:, [1, 0, 3, 2]]
    return {
        "detection_boxes:0": boxes[None],
        "detection_scores:0": np.array([[0.95, 0.9, 0.85, 0.0, 0.9]], dtype=np.float32),
        "detection_classes:0": np.array([[9.0, 9.0, 2.0, 0.0, 99.0]], dtype=np.float32),
    }


def direct_config(box_format: str = "xyxy") -> DetectionConfig:
    output = DirectOutput("detection_boxes:0", "detection_scores:0", "detection_classes:0", box_format)  # type: ignore[arg-type]
    return DetectionConfig(output, ABC, None, 0.3, 0.025)


def test_direct_golden() -> None:
    (result,) = detect(direct_outputs(), direct_config())
    assert summary(result) == ([(9, 0, 0.95), (2, 2, 0.85)], [])
    assert_box(result.predicted[0].bbox, (0.1, 0.2, 0.5, 0.6))
    assert_box(result.predicted[1].bbox, (0.6, 0.6, 0.9, 0.9))
    assert [p.threshold for p in result.predicted] == [0.8, 0.8]


def test_direct_variants() -> None:
    (expected,) = detect(direct_outputs(), direct_config())
    assert detect(direct_outputs("yxyx"), direct_config("yxyx")) == [expected]
    integer_classes = direct_outputs()
    integer_classes["detection_classes:0"] = integer_classes["detection_classes:0"].astype(np.int64)
    assert detect(integer_classes, direct_config()) == [expected]
    unbatched = {name: tensor[0] for name, tensor in direct_outputs().items()}
    assert detect(unbatched, direct_config()) == [expected]
    # Pixel boxes with a normalize_wrt_tensor (height, width) per image.
    pixels = direct_outputs()
    pixels["detection_boxes:0"] = pixels["detection_boxes:0"] * np.array([300, 100, 300, 100], dtype=np.float32)
    pixels["size"] = np.array([[100, 300]])
    config = DetectionConfig(direct_config().output, ABC, None, 0.3, 0.025, normalize_wrt_tensor="size")
    (in_pixels,) = detect(pixels, config)
    assert summary(in_pixels) == summary(expected)
    assert_box(in_pixels.predicted[0].bbox, (0.1, 0.2, 0.5, 0.6))


def test_direct_shape_errors() -> None:
    outputs = direct_outputs()
    with pytest.raises(OutputShapeError, match="direct output"):
        detect({**outputs, "detection_classes:0": outputs["detection_classes:0"][:, :3]}, direct_config())
    with pytest.raises(OutputShapeError, match="dimensions per image"):
        detect({**outputs, "detection_scores:0": outputs["detection_scores:0"][..., None, None]}, direct_config())


# ---------------------------------------------------------------------------------------------------- yolo

ANCHORS = (1.0, 0.5, 1.5, 1.0)  # two anchors, in grid cells


def yolo_channel_first(height: int = 2, width: int = 3) -> NDArray[Any]:
    """(A * (5 + C), H, W) with one object: anchor 1, row 0, column 1."""
    tensor = np.zeros((2, 8, height, width), dtype=np.float32)
    tensor[:, 4] = -20.0  # objectness ~ 0 everywhere
    tensor[1, :, 0, 1] = [math.log(1 / 3), 0.0, 0.0, math.log(0.5), 20.0, 0.0, 5.0, 0.0]
    return tensor.reshape(16, height, width)


def yolo_expected_score() -> float:
    return float(1 / (1 + math.exp(-20.0)) * math.exp(5.0) / (math.exp(5.0) + 2.0))


def yolo_config(layout: str = "auto") -> DetectionConfig:
    return DetectionConfig(YoloOutput("output", ANCHORS, layout), ABC, None, 0.3, 0.025)  # type: ignore[arg-type]


def test_yolo_golden() -> None:
    (result,) = detect({"output": yolo_channel_first()[None]}, yolo_config())
    assert summary(result) == ([(9, 7, round(yolo_expected_score(), 6))], [])
    # centre ((1 + 1/4) / 3, (0 + 1/2) / 2), size (1.5 / 3, 1.0 * 0.5 / 2)
    cx, cy, w, h = 1.25 / 3, 0.25, 0.5, 0.25
    assert_box(result.predicted[0].bbox, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def darknet_box(
    t: tuple[float, float, float, float], row: int, col: int, anchor: tuple[float, float], grid: int
) -> tuple[float, float, float, float]:
    """darknet's get_region_box (no clamp), clipped to the image as the pipeline clips every box."""
    sig = 1 / (1 + math.exp(-t[0])), 1 / (1 + math.exp(-t[1]))
    cx, cy = (col + sig[0]) / grid, (row + sig[1]) / grid
    w, h = anchor[0] * math.exp(t[2]) / grid, anchor[1] * math.exp(t[3]) / grid
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return x0, y0, x1, y1


@pytest.mark.parametrize("tw", [BBOX_XFORM_CLIP - 0.5, BBOX_XFORM_CLIP + 0.5, 8.0, 30.0])
def test_yolo_size_clamp_gives_darknets_box_for_the_v07_anchors(tw: float) -> None:
    """tw, th are clamped at log(1000/16) (darknet does not clamp): a box is then at most 62.5 anchors wide, which
    for the v0.7 example's smallest anchor (1.3221 cells) on a 13-cell grid is already wider than the image, so
    the clipped box is darknet's (#17 point 8a; docs/postprocess.md)."""
    anchors = (1.3221, 1.73145)
    tensor = np.zeros((6, 13, 13), dtype=np.float32)
    tensor[4] = -20.0
    t = (0.3, -0.2, tw, tw - 1.0)
    tensor[:, 6, 4] = [*t, 20.0, 0.0]
    config = DetectionConfig(YoloOutput("output", anchors), (Label(1, "a"),), None, 0.3, 0.025)
    (result,) = detect({"output": tensor}, config)
    (prediction,) = result.predicted
    assert_box(prediction.bbox, darknet_box(t, 6, 4, anchors, 13))


def test_yolo_layouts() -> None:
    channel_first = yolo_channel_first()
    (expected,) = detect({"output": channel_first}, yolo_config())
    channel_last = channel_first.transpose(1, 2, 0)  # darkflow: (H, W, A * (5 + C))
    assert detect({"output": channel_last[None]}, yolo_config()) == [expected]
    assert detect({"output": channel_last}, yolo_config("channels_last")) == [expected]
    with pytest.raises(OutputShapeError, match="first axis"):
        detect({"output": channel_last}, yolo_config("channels_first"))


def test_yolo_ambiguous_layout_reads_channel_first_unless_told() -> None:
    # A 16 x 5 grid in channel-last: (16, 5, 16), the first and the last axes both fit 16 channels.
    channel_first = yolo_channel_first(height=16, width=5)
    channel_last = channel_first.transpose(1, 2, 0)
    (told,) = detect({"output": channel_last}, yolo_config("channels_last"))
    assert summary(told) == ([(9, 1 * 16 * 5 + 0 * 5 + 1, round(yolo_expected_score(), 6))], [])  # a*H*W + r*W + c
    (auto,) = detect({"output": channel_last}, yolo_config())
    assert detect({"output": channel_last}, yolo_config("channels_first")) == [auto]
    assert auto != told


def test_yolo_shape_errors() -> None:
    with pytest.raises(OutputShapeError, match="16 features"):
        detect({"output": np.zeros((15, 2, 3))}, yolo_config())
    with pytest.raises(InvalidConfigError, match="anchors"):
        YoloOutput("output", (1.0, 2.0, 3.0))
    with pytest.raises(InvalidConfigError, match="layout"):
        YoloOutput("output", ANCHORS, "nchw")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- yolov5


def yolov5_tensor() -> NDArray[Any]:
    return np.array(
        [
            [320, 320, 64, 128, 0.9, 0.1, 0.95, 0.2],
            [320, 320, 64, 128, 0.01, 1.0, 1.0, 1.0],  # objectness below the discard threshold
            [100, 100, 50, 50, 0.95, 0.9, 0.0, 0.0],
            [322, 318, 64, 128, 0.8, 0.0, 0.9, 0.0],  # duplicate of row 0
        ],
        dtype=np.float32,
    )


YOLOV5 = DetectionConfig(Yolov5Output("output0"), ABC, (0.5, 0.5, 0.5), 0.45, 0.025)


def test_yolov5_golden() -> None:
    (result,) = detect({"output0": yolov5_tensor()[None]}, YOLOV5, input_size=(640, 640))
    score = round(float(np.float32(0.9) * np.float32(0.95)), 6)
    assert summary(result) == ([(9, 0, score), (5, 2, score)], [(2, 0, 0.18), (5, 0, 0.09)])
    assert_box(result.predicted[0].bbox, (288 / 640, 256 / 640, 352 / 640, 384 / 640))
    assert_box(result.predicted[1].bbox, (75 / 640, 75 / 640, 125 / 640, 125 / 640))
    assert result.discarded[0].bbox == result.predicted[0].bbox


def test_yolov5_transposed_and_sizes() -> None:
    (expected,) = detect({"output0": yolov5_tensor()[None]}, YOLOV5, input_size=(640, 640))
    assert detect({"output0": yolov5_tensor().T}, YOLOV5, input_size=(640, 640)) == [expected]
    with pytest.raises(MissingTensorError, match="input_size"):
        detect({"output0": yolov5_tensor()}, YOLOV5)


# -------------------------------------------------------------------------------------------------- yolov8


def yolov8_tensor() -> NDArray[Any]:
    columns = np.array(
        [
            [320, 240, 100, 80, 0.85, 0.3, 0.0],
            [10, 10, 30, 30, 0.0, 0.0, 0.99],  # crosses the top-left corner: clipped
            [500, 400, 20, 20, 0.01, 0.01, 0.01],  # below the discard threshold
        ],
        dtype=np.float32,
    )
    return columns.T  # (4 + L, N), as ultralytics exports it


YOLOV8 = DetectionConfig(Yolov8Output("output0"), ABC, (0.5, 0.5, 0.5), 0.7, 0.025)


def test_yolov8_golden() -> None:
    (result,) = detect({"output0": yolov8_tensor()[None]}, YOLOV8, input_size=(480, 640))
    assert summary(result) == ([(2, 1, 0.99), (5, 0, 0.85)], [(9, 0, 0.3)])
    assert_box(result.predicted[0].bbox, (0.0, 0.0, 25 / 640, 25 / 480))
    assert_box(result.predicted[1].bbox, (270 / 640, 200 / 480, 370 / 640, 280 / 480))


def test_yolov8_layouts() -> None:
    (expected,) = detect({"output0": yolov8_tensor()}, YOLOV8, input_size=(480, 640))
    assert detect({"output0": yolov8_tensor().T[None]}, YOLOV8, input_size=(480, 640)) == [expected]
    config = DetectionConfig(Yolov8Output("output0", "channels_last"), ABC, (0.5, 0.5, 0.5), 0.7, 0.025)
    assert detect({"output0": yolov8_tensor().T}, config, input_size=(480, 640)) == [expected]
    with pytest.raises(OutputShapeError, match="7 features"):
        detect({"output0": np.zeros((8, 100), dtype=np.float32)}, YOLOV8, input_size=(480, 640))


# ------------------------------------------------------------------------------- decoders against scalar maths


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 6),
    seed=st.integers(0, 2**16),
    discard=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_anchored_decode_matches_scalar_maths(n: int, seed: int, discard: float) -> None:
    rng = np.random.default_rng(seed)
    anchors = np.concatenate([rng.random((n, 1)), rng.uniform(0, 50, (n, 2)), rng.uniform(1, 50, (n, 2))], axis=1)
    scores = rng.dirichlet(np.ones(4), n) if n else np.zeros((0, 4))
    offsets = rng.normal(0, 0.5, (n, 16))
    output = AnchoredOutput("a", "s", "o")
    (candidates,) = output.decode({"a": anchors, "s": scores, "o": offsets}, ABC, discard)
    expected = {}
    for i in range(n):
        _, x, y, w, h = anchors[i]
        for label in range(3):
            if scores[i, label + 1] >= discard:
                dx, dy, dw, dh = offsets[i, 4 * (label + 1) : 4 * (label + 2)]
                cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
                pw, ph = w * math.exp(min(dw, BBOX_XFORM_CLIP)), h * math.exp(min(dh, BBOX_XFORM_CLIP))
                expected[(i, label)] = (scores[i, label + 1], [cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2])
    found = {
        (int(r), int(lab)): (s, box)
        for r, lab, s, box in zip(
            candidates.regions, candidates.labels, candidates.scores, candidates.boxes, strict=True
        )
    }
    assert found.keys() == expected.keys()
    for key, (score, box) in expected.items():
        assert found[key][0] == score
        np.testing.assert_allclose(found[key][1], box, rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    seed=st.integers(0, 2**16),
    discard=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_yolo_decode_matches_scalar_maths(grid: tuple[int, int], seed: int, discard: float) -> None:
    height, width = grid
    rng = np.random.default_rng(seed)
    tensor = rng.normal(0, 2, (2, 8, height, width))
    output = YoloOutput("t", ANCHORS)
    (candidates,) = output.decode({"t": tensor.reshape(16, height, width)}, ABC, discard)

    def sigmoid(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    expected = {}
    for a in range(2):
        for r in range(height):
            for c in range(width):
                tx, ty, tw, th, to, *logits = tensor[a, :, r, c]
                exps = [math.exp(v) for v in logits]
                for label in range(3):
                    score = sigmoid(to) * exps[label] / sum(exps)
                    if score >= discard:
                        cx, cy = (c + sigmoid(tx)) / width, (r + sigmoid(ty)) / height
                        w = ANCHORS[2 * a] * math.exp(min(tw, BBOX_XFORM_CLIP)) / width
                        h = ANCHORS[2 * a + 1] * math.exp(min(th, BBOX_XFORM_CLIP)) / height
                        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                        expected[(a * height * width + r * width + c, label)] = (score, box)
    found = {
        (int(r), int(lab)): (s, box)
        for r, lab, s, box in zip(
            candidates.regions, candidates.labels, candidates.scores, candidates.boxes, strict=True
        )
    }
    assert found.keys() == expected.keys()
    for key, (score, box) in expected.items():
        assert found[key][0] == pytest.approx(score, rel=1e-12)
        np.testing.assert_allclose(found[key][1], box, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(dtype: type) -> None:
    tensor: NDArray[Any] = yolov8_tensor().astype(dtype)
    (result,) = detect({"output0": tensor[None]}, YOLOV8, input_size=(480, 640))
    assert [(p.label_id, p.region_id) for p in result.predicted] == [(2, 1), (5, 0)]
    assert [(p.label_id, p.region_id) for p in result.discarded] == [(9, 0)]
    assert result.predicted[0].score == float(tensor[6, 1])
