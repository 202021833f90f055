"""Box maths on numpy arrays, after torchvision's ``ops/boxes.py``.

Boxes are arrays of shape ``(..., 4)``. Formats, named as in torchvision:

- ``"xyxy"``: ``(x1, y1, x2, y2)``, the top-left and the bottom-right corners;
- ``"xywh"``: ``(x1, y1, w, h)``, the top-left corner, the width and the height;
- ``"cxcywh"``: ``(cx, cy, w, h)``, the centre, the width and the height;
- ``"yxyx"``: ``(y1, x1, y2, x2)``, TensorFlow's order.

The origin is the top-left corner of the image: x runs right, y runs down. Coordinates are
continuous (no legacy ``+ 1`` pixel in widths or areas). A box whose ``x2 <= x1`` or ``y2 <= y1`` is
degenerate: its area and its IoU with any box are 0. Every function returns a new float64 array
and leaves its inputs unmodified.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BBOX_XFORM_CLIP",
    "BoxFormat",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes_to_image",
    "decode_box_deltas",
    "normalize_boxes",
    "paired_box_iou",
    "valid_boxes_mask",
]

BoxFormat = Literal["xyxy", "xywh", "cxcywh", "yxyx"]

BBOX_XFORM_CLIP = math.log(1000.0 / 16)
"""Upper bound of log-scale deltas before ``exp`` (torchvision's ``BoxCoder``): a box grows at most 62.5 times."""


def _as_boxes(boxes: ArrayLike, name: str = "boxes") -> NDArray[np.float64]:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {array.shape}")
    return array


def box_convert(boxes: ArrayLike, in_fmt: BoxFormat, out_fmt: BoxFormat) -> NDArray[np.float64]:
    """Convert boxes from ``in_fmt`` to ``out_fmt``.

    Args:
        boxes: ``(..., 4)`` array in ``in_fmt``.
        in_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``, ``"yxyx"``.
        out_fmt: likewise.

    Returns:
        ``(..., 4)`` float64 array in ``out_fmt`` (a copy, even when the formats are equal).
    """
    b = _as_boxes(boxes)
    a0, a1, a2, a3 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    if in_fmt == "xyxy":
        x1, y1, x2, y2 = a0, a1, a2, a3
    elif in_fmt == "yxyx":
        x1, y1, x2, y2 = a1, a0, a3, a2
    elif in_fmt == "xywh":
        x1, y1, x2, y2 = a0, a1, a0 + a2, a1 + a3
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a0 - 0.5 * a2, a1 - 0.5 * a3, a0 + 0.5 * a2, a1 + 0.5 * a3
    else:
        raise ValueError(f"unknown box format {in_fmt!r}")
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "yxyx":
        out = (y1, x1, y2, x2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    elif out_fmt == "cxcywh":
        out = (0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1)
    else:
        raise ValueError(f"unknown box format {out_fmt!r}")
    return np.stack(out, axis=-1)


def box_area(boxes: ArrayLike) -> NDArray[np.float64]:
    """Areas of ``(..., 4)`` xyxy boxes, shape ``(...)``, float64; 0 for degenerate boxes."""
    b = _as_boxes(boxes)
    widths = np.clip(b[..., 2] - b[..., 0], 0.0, None)
    heights = np.clip(b[..., 3] - b[..., 1], 0.0, None)
    areas: NDArray[np.float64] = widths * heights
    return areas


def _iou(
    a: NDArray[np.float64], b: NDArray[np.float64], area_a: NDArray[np.float64], area_b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """IoU of broadcast pairs of xyxy boxes given their areas; 0 where the union is empty."""
    widths = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    heights = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = widths * heights
    union = area_a + area_b - inter
    iou: NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> NDArray[np.float64]:
    """Intersection over union of every pair of xyxy boxes.

    Args:
        boxes1: ``(N, 4)`` xyxy.
        boxes2: ``(M, 4)`` xyxy.

    Returns:
        ``(N, M)`` float64 in ``[0, 1]``; 0 where both boxes are degenerate (empty union).
    """
    b1 = _as_boxes(boxes1, "boxes1")
    b2 = _as_boxes(boxes2, "boxes2")
    if b1.ndim != 2 or b2.ndim != 2:
        raise ValueError("box_iou takes (N, 4) and (M, 4) arrays")
    return _iou(b1[:, None, :], b2[None, :, :], box_area(b1)[:, None], box_area(b2)[None, :])


def paired_box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> NDArray[np.float64]:
    """IoU of ``boxes1[i]`` with ``boxes2[i]``: ``(N, 4)`` and ``(N, 4)`` xyxy give ``(N,)`` float64."""
    b1 = _as_boxes(boxes1, "boxes1")
    b2 = _as_boxes(boxes2, "boxes2")
    if b1.shape != b2.shape:
        raise ValueError(f"paired_box_iou takes boxes of equal shapes, got {b1.shape} and {b2.shape}")
    return _iou(b1, b2, box_area(b1), box_area(b2))


def clip_boxes_to_image(boxes: ArrayLike, size: tuple[float, float] = (1.0, 1.0)) -> NDArray[np.float64]:
    """Clip xyxy boxes to an image of ``size = (height, width)``: x to ``[0, width]``, y to ``[0, height]``.

    With the default size, clips normalised boxes to ``[0, 1]``. Returns ``(..., 4)`` float64.
    """
    b = _as_boxes(boxes)
    height, width = size
    upper = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(b, 0.0, upper)


def normalize_boxes(boxes: ArrayLike, size: ArrayLike) -> NDArray[np.float64]:
    """Divide pixel boxes (xyxy or xywh) by the image size, giving coordinates relative to it.

    Args:
        boxes: ``(..., 4)`` boxes in pixels.
        size: ``(height, width)``, or ``(..., 2)`` broadcastable against ``boxes[..., :2]``
            (one size per box or per image). Must be positive.

    Returns:
        ``(..., 4)`` float64.
    """
    b = _as_boxes(boxes)
    hw = np.asarray(size, dtype=np.float64)
    if hw.shape[-1:] != (2,) or not (hw > 0).all():
        raise ValueError(f"size must be positive (height, width) pairs, got {hw!r}")
    wh = hw[..., ::-1]
    normalized: NDArray[np.float64] = b / np.concatenate([wh, wh], axis=-1)
    return normalized


def decode_box_deltas(
    anchors: ArrayLike,
    deltas: ArrayLike,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    clip: float = BBOX_XFORM_CLIP,
) -> NDArray[np.float64]:
    """Apply Faster-RCNN box deltas to anchors (torchvision's ``BoxCoder.decode_single``).

    With an anchor of centre ``(cx, cy)`` and size ``(w, h)`` and deltas ``(dx, dy, dw, dh)`` divided by
    ``weights``, the box has centre ``(cx + dx * w, cy + dy * h)`` and size
    ``(w * exp(dw), h * exp(dh))``; ``dw`` and ``dh`` are clamped to ``clip`` before ``exp``.

    Args:
        anchors: ``(..., 4)`` xyxy anchors (proposals).
        deltas: ``(..., 4)`` ``(dx, dy, dw, dh)``, broadcastable against ``anchors``.
        weights: divisors of ``(dx, dy, dw, dh)`` (torchvision's Faster R-CNN uses ``(10, 10, 5, 5)``).
        clip: upper bound of ``dw`` and ``dh`` after weighting.

    Returns:
        ``(..., 4)`` float64 xyxy boxes in the anchors' units.
    """
    a = _as_boxes(anchors, "anchors")
    d = _as_boxes(deltas, "deltas") / np.asarray(weights, dtype=np.float64)
    widths = a[..., 2] - a[..., 0]
    heights = a[..., 3] - a[..., 1]
    ctr_x = a[..., 0] + 0.5 * widths + d[..., 0] * widths
    ctr_y = a[..., 1] + 0.5 * heights + d[..., 1] * heights
    half_w = 0.5 * widths * np.exp(np.minimum(d[..., 2], clip))
    half_h = 0.5 * heights * np.exp(np.minimum(d[..., 3], clip))
    return np.stack([ctr_x - half_w, ctr_y - half_h, ctr_x + half_w, ctr_y + half_h], axis=-1)


def valid_boxes_mask(boxes: ArrayLike) -> NDArray[np.bool_]:
    """``(...)`` bool: the ``(..., 4)`` xyxy box is finite and has a positive width and height."""
    b = _as_boxes(boxes)
    valid: NDArray[np.bool_] = np.isfinite(b).all(axis=-1) & (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])
    return valid
