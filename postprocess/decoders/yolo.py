"""YOLO outputs: YOLOv2's region layer (v0.7 ``yolo_output``), and the YOLOv5 and YOLOv8 heads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from postprocess.boxes import BBOX_XFORM_CLIP, box_convert
from postprocess.decoders.base import (
    Candidates,
    Layout,
    batched,
    features_first,
    floating,
    get_tensor,
    nonzero_2d,
)
from postprocess.errors import InvalidConfigError
from postprocess.thresholds import at_or_above
from postprocess.types import Label

__all__ = ["YoloOutput", "Yolov5Output", "Yolov8Output"]

_LAYOUTS = ("auto", "channels_first", "channels_last")


def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise InvalidConfigError(f"layout must be one of {_LAYOUTS}, got {layout!r}")


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(over="ignore"):
        result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result


def _softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """Softmax over the last axis; rows holding NaN or infinite logits give NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        result: NDArray[np.float64] = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


@dataclass(frozen=True, slots=True)
class YoloOutput:
    """YOLOv2's region layer (darknet, darkflow): raw predictions on an ``H x W`` grid, ``A`` anchors per cell.

    Per image, the tensor holds ``A * (5 + L)`` channels, a block per anchor ``a`` of
    ``(tx, ty, tw, th, to, L class logits)``, either channel-first ``(A * (5 + L), H, W)`` (ONNX,
    Caffe, darknet) or channel-last ``(H, W, A * (5 + L))`` (darkflow's TensorFlow graph). At row ``r``
    and column ``c``, normalised to the image::

        cx = (c + sigmoid(tx)) / W          w = anchors[2a] * exp(tw) / W
        cy = (r + sigmoid(ty)) / H          h = anchors[2a + 1] * exp(th) / H
        score of label i = sigmoid(to) * softmax(logits)[i]

    with ``tw`` and ``th`` clamped at ``log(1000/16)`` before ``exp``, where darknet does not clamp: a box is at
    most 62.5 anchors wide (high), so the two differ only for an anchor narrower than 1/62.5 of the grid (0.21
    cells of a 13-cell grid), whose clamped box can stay inside the image where darknet's would cover it; for
    larger anchors both are wider than the image and clipped to it. ``anchors`` are ``(w0, h0, w1, h1, ...)`` in grid
    cells. ``region_id`` is ``a * H * W + r * W + c`` (darknet's order) whatever the layout.

    ``layout="auto"`` reads the layout from the shape: channel-first when the first axis has
    ``A * (5 + L)`` elements, channel-last when only the last one has; when both have (a grid as wide
    as the channels), channel-first wins. Say ``"channels_last"`` for such a darkflow graph.
    A batch axis in front is optional for a single image (the rank tells).
    """

    output_tensor: str
    anchors: tuple[float, ...]
    layout: Layout = "auto"

    def __post_init__(self) -> None:
        _check_layout(self.layout)
        if not self.anchors or len(self.anchors) % 2 or not all(math.isfinite(a) and a > 0 for a in self.anchors):
            raise InvalidConfigError(f"anchors must be positive (w, h) pairs, got {self.anchors!r}")

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """``(output_tensor,)``."""
        return (self.output_tensor,)

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Never: boxes are in grid units, normalised by the grid size."""
        return False

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """One :class:`Candidates` per image; see the class docstring for the layout."""
        n_labels = len(labels)
        n_anchors = len(self.anchors) // 2
        tensor = batched(get_tensor(outputs, self.output_tensor), 3, self.output_tensor)
        channels = n_anchors * (5 + n_labels)
        batch = tensor.shape[0]
        if features_first(self.layout, tensor.shape[1:], channels, prefer_first=True, name=self.output_tensor):
            _, _, height, width = tensor.shape
            blocks = tensor.reshape(batch, n_anchors, 5 + n_labels, height, width).transpose(0, 1, 3, 4, 2)
        else:
            _, height, width, _ = tensor.shape
            blocks = tensor.reshape(batch, height, width, n_anchors, 5 + n_labels).transpose(0, 3, 1, 2, 4)
        flat = blocks.reshape(batch, n_anchors * height * width, 5 + n_labels)  # (B, A*H*W, 5+L), darknet order
        anchors = np.asarray(self.anchors, dtype=np.float64).reshape(n_anchors, 2)
        return [self._decode_image(flat[i], anchors, height, width, discard_threshold) for i in range(batch)]

    @staticmethod
    def _decode_image(
        flat: NDArray[Any], anchors: NDArray[np.float64], height: int, width: int, discard_threshold: float
    ) -> Candidates:
        """flat ``(A*H*W, 5+L)`` raw predictions, anchors ``(A, 2)`` in grid cells."""
        objectness = _sigmoid(flat[:, 4].astype(np.float64))
        # A label's score is at most the objectness: rows below the threshold cannot have candidates.
        rows = np.flatnonzero(objectness >= discard_threshold)
        scores = objectness[rows, None] * _softmax(flat[rows, 5:].astype(np.float64))  # (R, L)
        picked, labels = nonzero_2d(scores >= discard_threshold)
        if picked.size == 0:
            return Candidates.empty(np.float64)
        regions = rows[picked]
        anchor, cell = np.divmod(regions, height * width)
        row, col = np.divmod(cell, width)
        t = flat[:, :4].take(regions, axis=0).astype(np.float64)  # (K, 4): tx, ty, tw, th
        with np.errstate(over="ignore", invalid="ignore"):
            cx = (col + _sigmoid(t[:, 0])) / width
            cy = (row + _sigmoid(t[:, 1])) / height
            w = anchors[anchor, 0] * np.exp(np.minimum(t[:, 2], BBOX_XFORM_CLIP)) / width
            h = anchors[anchor, 1] * np.exp(np.minimum(t[:, 3], BBOX_XFORM_CLIP)) / height
        boxes = box_convert(np.stack([cx, cy, w, h], axis=-1), "cxcywh", "xyxy")
        return Candidates(regions=regions.astype(np.int64), labels=labels, scores=scores[picked, labels], boxes=boxes)


@dataclass(frozen=True, slots=True)
class Yolov5Output:
    """An anchor-based YOLO head with objectness (YOLOv5, YOLOv7 exports), decoded boxes in input pixels.

    Per image ``(N, 5 + L)`` rows ``(cx, cy, w, h, objectness, L class probabilities)`` (e.g.
    ``25200 x 85`` at 640 x 640 with 80 labels), sigmoids already applied by the export. A label's
    score is ``objectness * probability``; class probabilities are assumed at most 1, so rows whose
    objectness is below the discard threshold are skipped. ``region_id`` is the row.

    ``layout="auto"`` accepts the transposed ``(5 + L, N)`` too, read from the shape (channel-last
    when both ends fit). Boxes are in pixels of the network input: give ``detect`` the
    ``input_size`` (or name a ``normalize_wrt_tensor``). A batch axis is optional for one image.
    """

    output_tensor: str
    layout: Layout = "auto"

    def __post_init__(self) -> None:
        _check_layout(self.layout)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """``(output_tensor,)``."""
        return (self.output_tensor,)

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Always: boxes are in pixels of the network input."""
        return True

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """One :class:`Candidates` per image; see the class docstring for the layout."""
        tensor = floating(batched(get_tensor(outputs, self.output_tensor), 2, self.output_tensor))
        first = features_first(
            self.layout, tensor.shape[1:], 5 + len(labels), prefer_first=False, name=self.output_tensor
        )
        rows_first = tensor.transpose(0, 2, 1) if first else tensor  # (B, N, 5+L)
        return [self._decode_image(image, discard_threshold) for image in rows_first]

    @staticmethod
    def _decode_image(rows: NDArray[np.floating[Any]], discard_threshold: float) -> Candidates:
        """rows ``(N, 5+L)``."""
        regions = np.flatnonzero(at_or_above(rows[:, 4], discard_threshold))
        kept = rows.take(regions, axis=0).astype(np.result_type(rows.dtype, np.float32), copy=False)  # (R, 5+L)
        scores = kept[:, 5:] * kept[:, 4:5]  # (R, L)
        picked, labels = nonzero_2d(at_or_above(scores, discard_threshold))
        if picked.size == 0:
            return Candidates.empty(scores.dtype)
        return Candidates(
            regions=regions[picked].astype(np.int64),
            labels=labels,
            scores=scores[picked, labels],
            boxes=box_convert(kept[:, :4].take(picked, axis=0), "cxcywh", "xyxy"),
        )


@dataclass(frozen=True, slots=True)
class Yolov8Output:
    """An anchor-free YOLO head (YOLOv8, YOLO11 exports), decoded boxes in input pixels.

    Per image ``(4 + L, N)`` (channel-first, as ultralytics exports it: e.g. ``84 x 8400`` at
    640 x 640 with 80 labels): rows ``cx, cy, w, h`` then ``L`` class probabilities (sigmoids applied),
    no objectness. A label's score is its probability. ``region_id`` is the column.

    ``layout="auto"`` accepts the transposed ``(N, 4 + L)`` too, read from the shape (channel-first
    when both ends fit). Boxes are in pixels of the network input: give ``detect`` the
    ``input_size`` (or name a ``normalize_wrt_tensor``). A batch axis is optional for one image.
    """

    output_tensor: str
    layout: Layout = "auto"

    def __post_init__(self) -> None:
        _check_layout(self.layout)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """``(output_tensor,)``."""
        return (self.output_tensor,)

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Always: boxes are in pixels of the network input."""
        return True

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """One :class:`Candidates` per image; see the class docstring for the layout."""
        tensor = floating(batched(get_tensor(outputs, self.output_tensor), 2, self.output_tensor))
        first = features_first(
            self.layout, tensor.shape[1:], 4 + len(labels), prefer_first=True, name=self.output_tensor
        )
        features_first_tensor = tensor if first else tensor.transpose(0, 2, 1)  # (B, 4+L, N)
        return [self._decode_image(image, discard_threshold) for image in features_first_tensor]

    @staticmethod
    def _decode_image(features: NDArray[np.floating[Any]], discard_threshold: float) -> Candidates:
        """features ``(4+L, N)``."""
        probabilities = features[4:]  # (L, N)
        labels, regions = nonzero_2d(at_or_above(probabilities, discard_threshold))
        if regions.size == 0:
            return Candidates.empty(features.dtype)
        return Candidates(
            regions=regions.astype(np.int64),
            labels=labels,
            scores=probabilities[labels, regions],
            boxes=box_convert(features[:4, regions].T, "cxcywh", "xyxy"),
        )
