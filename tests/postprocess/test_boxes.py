"""Box maths: golden values, and properties against a scalar reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from postprocess.boxes import (
    BBOX_XFORM_CLIP,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    decode_box_deltas,
    normalize_boxes,
    paired_box_iou,
    valid_boxes_mask,
)

FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")


def reference_iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes, one float at a time."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


@st.composite
def xyxy_boxes(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> NDArray[Any]:
    """``(N, 4)`` float64 xyxy boxes on a coarse grid (exact arithmetic), possibly degenerate."""
    n = draw(st.integers(min_size, max_size))
    corners = draw(arrays(np.int64, (n, 2), elements=st.integers(-20, 40)))
    sizes = draw(arrays(np.int64, (n, 2), elements=st.integers(0, 25)))
    boxes: NDArray[Any] = np.concatenate([corners, corners + sizes], axis=1).astype(np.float64) / 4.0
    return boxes


def test_box_convert_golden() -> None:
    xyxy = np.array([[10.0, 20.0, 50.0, 80.0]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "xywh"), [[10, 20, 40, 60]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "cxcywh"), [[30, 50, 40, 60]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "yxyx"), [[20, 10, 80, 50]])
    np.testing.assert_array_equal(box_convert([[30, 50, 40, 60]], "cxcywh", "xyxy"), xyxy)
    assert box_convert(np.zeros((0, 4)), "xyxy", "cxcywh").shape == (0, 4)
    assert box_convert(np.zeros((2, 3, 4), dtype=np.float32), "xywh", "xyxy").dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(boxes=xyxy_boxes(), fmt_in=st.sampled_from(FORMATS), fmt_out=st.sampled_from(FORMATS))
def test_box_convert_round_trips(boxes: NDArray[Any], fmt_in: str, fmt_out: str) -> None:
    start = box_convert(boxes, "xyxy", fmt_in)  # type: ignore[arg-type]
    copy = start.copy()
    back = box_convert(box_convert(start, fmt_in, fmt_out), fmt_out, fmt_in)  # type: ignore[arg-type]
    np.testing.assert_allclose(back, start, atol=1e-9)
    np.testing.assert_array_equal(start, copy)


def test_box_convert_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        box_convert(np.zeros((3, 5)), "xyxy", "xywh")
    with pytest.raises(ValueError, match="unknown box format"):
        box_convert(np.zeros((1, 4)), "xyxy", "ltrb")  # type: ignore[arg-type]


def test_box_area_and_degenerate_boxes() -> None:
    boxes = np.array([[0, 0, 2, 3], [1, 1, 1, 5], [3, 3, 1, 1]], dtype=np.float64)
    np.testing.assert_array_equal(box_area(boxes), [6, 0, 0])
    np.testing.assert_array_equal(valid_boxes_mask(boxes), [True, False, False])
    assert not valid_boxes_mask(np.array([[0, 0, np.nan, 1], [0, 0, np.inf, 1]])).any()


@settings(max_examples=80, deadline=None)
@given(a=xyxy_boxes(), b=xyxy_boxes())
def test_box_iou_matches_reference(a: NDArray[Any], b: NDArray[Any]) -> None:
    a_copy, b_copy = a.copy(), b.copy()
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b))
    assert iou.dtype == np.float64
    expected = [[reference_iou(x, y) for y in b.tolist()] for x in a.tolist()]
    np.testing.assert_allclose(iou, np.array(expected).reshape(len(a), len(b)), rtol=1e-12, atol=1e-15)
    assert ((iou >= 0) & (iou <= 1)).all()
    np.testing.assert_array_equal(box_iou(b, a), iou.T)
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)


@settings(max_examples=60, deadline=None)
@given(boxes=xyxy_boxes(min_size=1), scale=st.sampled_from([0.5, 2.0, 8.0]), shift=st.integers(-10, 10))
def test_box_iou_is_invariant_to_scale_and_shift(boxes: NDArray[Any], scale: float, shift: int) -> None:
    moved = boxes * scale + shift
    np.testing.assert_allclose(box_iou(moved, moved), box_iou(boxes, boxes), atol=1e-12)
    diagonal = np.diag(box_iou(boxes, boxes))
    np.testing.assert_array_equal(diagonal, np.where(box_area(boxes) > 0, 1.0, 0.0))
    np.testing.assert_allclose(paired_box_iou(boxes, moved[::-1]), np.diag(box_iou(boxes, moved[::-1])))


def test_box_iou_golden() -> None:
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 1.0, 1.0], [5, 5, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 0.25, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_clip_and_normalize() -> None:
    boxes = np.array([[-10.0, 5.0, 700.0, 300.0]])
    np.testing.assert_array_equal(clip_boxes_to_image(boxes, (480, 640)), [[0, 5, 640, 300]])
    np.testing.assert_array_equal(clip_boxes_to_image([[-0.5, 0.2, 1.5, 0.9]]), [[0, 0.2, 1, 0.9]])
    np.testing.assert_allclose(normalize_boxes(boxes, (480, 640)), [[-10 / 640, 5 / 480, 700 / 640, 300 / 480]])
    per_box = normalize_boxes(np.array([[10.0, 10, 20, 20], [10, 10, 20, 20]]), np.array([[100, 200], [20, 40]]))
    np.testing.assert_allclose(per_box, [[0.05, 0.1, 0.1, 0.2], [0.25, 0.5, 0.5, 1.0]])
    with pytest.raises(ValueError, match="positive"):
        normalize_boxes(boxes, (0, 640))


def test_decode_box_deltas_golden() -> None:
    anchors = np.array([[10.0, 20.0, 30.0, 60.0]] * 4)  # centre (20, 40), size (20, 40)
    deltas = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],
            [0.5, -0.25, 0.0, 0.0],
            [0.0, 0.0, math.log(2.0), math.log(0.5)],
            [0.0, 0.0, 50.0, 50.0],  # clamped before exp
        ]
    )
    decoded = decode_box_deltas(anchors, deltas)
    np.testing.assert_allclose(decoded[0], [10, 20, 30, 60])
    np.testing.assert_allclose(decoded[1], [20, 10, 40, 50])
    np.testing.assert_allclose(decoded[2], [0, 30, 40, 50])
    half = 0.5 * math.exp(BBOX_XFORM_CLIP)
    np.testing.assert_allclose(decoded[3], [20 - 20 * half, 40 - 40 * half, 20 + 20 * half, 40 + 40 * half])
    weighted = decode_box_deltas(anchors[:1], [[5.0, 0.0, 0.0, 0.0]], weights=(10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(weighted, [[20, 20, 40, 60]])
