"""The zoo's own decoders of its detectors' raw outputs (numpy), for validation during training.

They follow the v0.7 layouts documented in ``docs/zoo.md``; the documented figures come from the project's
``postprocess`` package instead, so the two implementations check each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Detections", "decode_anchored", "decode_direct", "decode_yolo", "nms"]

Detections = tuple[NDArray[Any], NDArray[Any], NDArray[Any]]
"""``(boxes (K, 4) normalised xmin, ymin, xmax, ymax; scores (K,); label row numbers (K,))``."""


def _sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    result: NDArray[Any] = 1.0 / (1.0 + np.exp(-x))
    return result


def _iou(box: NDArray[Any], boxes: NDArray[Any]) -> NDArray[Any]:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    result: NDArray[Any] = inter / np.maximum(area + areas - inter, 1e-12)
    return result


def nms(boxes: NDArray[Any], scores: NDArray[Any], labels: NDArray[Any], iou: float, discard: float) -> Detections:
    """Per-label greedy NMS of candidates scoring at least ``discard``; sorted by decreasing score."""
    keep_mask = scores >= discard
    boxes, scores, labels = boxes[keep_mask], scores[keep_mask], labels[keep_mask]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i, idx in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(idx)
        rest = order[i + 1 :]
        same = labels[rest] == labels[idx]
        suppressed[i + 1 :] |= same & (_iou(boxes[idx], boxes[rest]) > iou)
    k = np.array(keep, dtype=np.int64)
    return boxes[k].reshape(-1, 4), scores[k], labels[k]


def decode_yolo(output: NDArray[Any], anchors: list[float], iou: float, discard: float) -> Detections:
    """One image's ``(A * (5 + C), H, W)`` region output; anchors (w, h) in grid units."""
    a = len(anchors) // 2
    _, h, w = output.shape
    out = output.reshape(a, -1, h, w)
    c = out.shape[1] - 5
    rows, cols = np.mgrid[0:h, 0:w]
    aw = np.array(anchors[0::2])[:, None, None]
    ah = np.array(anchors[1::2])[:, None, None]
    cx = (cols + _sigmoid(out[:, 0])) / w
    cy = (rows + _sigmoid(out[:, 1])) / h
    bw = aw * np.exp(np.minimum(out[:, 2], 10.0)) / w
    bh = ah * np.exp(np.minimum(out[:, 3], 10.0)) / h
    logits = out[:, 5:]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    scores = _sigmoid(out[:, 4])[:, None] * probs  # (A, C, H, W)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)  # (A, H, W, 4)
    boxes = np.repeat(boxes[:, None], c, axis=1).reshape(-1, 4)
    labels = np.broadcast_to(np.arange(c)[None, :, None, None], scores.shape).reshape(-1)
    return nms(np.clip(boxes, 0.0, 1.0), scores.reshape(-1), labels, iou, discard)


def decode_anchored(
    anchors: NDArray[Any],
    scores: NDArray[Any],
    offsets: NDArray[Any],
    im_info: NDArray[Any],
    iou: float,
    discard: float,
) -> Detections:
    """One image's ``anchors (N, 5)`` (score, x, y, w, h in pixels), ``scores (N, L+1)``, ``offsets (N, (L+1)*4)``."""
    n, c1 = scores.shape
    x, y, w, h = (anchors[:, k : k + 1] for k in range(1, 5))
    d = offsets.reshape(n, c1, 4)
    cx = x + w / 2 + d[..., 0] * w
    cy = y + h / 2 + d[..., 1] * h
    bw = w * np.exp(np.minimum(d[..., 2], 4.135))
    bh = h * np.exp(np.minimum(d[..., 3], 4.135))
    height, width = float(im_info[0]), float(im_info[1])
    boxes = np.stack([(cx - bw / 2) / width, (cy - bh / 2) / height, (cx + bw / 2) / width, (cy + bh / 2) / height], -1)
    boxes = boxes[:, 1:].reshape(-1, 4)
    labels = np.broadcast_to(np.arange(c1 - 1)[None], (n, c1 - 1)).reshape(-1)
    return nms(np.clip(boxes, 0.0, 1.0), scores[:, 1:].reshape(-1), labels, iou, discard)


def decode_direct(
    boxes: NDArray[Any], scores: NDArray[Any], classes: NDArray[Any], label_ids: list[int], iou: float, discard: float
) -> Detections:
    """One image's ``boxes (K, 4)``, ``scores (K,)``, ``classes (K,)`` holding label ids (mapped to rows)."""
    rows = np.array([label_ids.index(round(float(c))) for c in classes], dtype=np.int64)
    return nms(boxes, scores, rows, iou, discard)
