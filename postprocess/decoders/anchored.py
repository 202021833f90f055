"""Faster-RCNN style outputs: proposals, per-label scores and per-label box offsets (v0.7 ``anchored_output``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from postprocess.boxes import box_convert, decode_box_deltas
from postprocess.decoders.base import Candidates, batched, floating, get_tensor, nonzero_2d, same_batch
from postprocess.errors import InvalidConfigError, OutputShapeError
from postprocess.thresholds import at_or_above
from postprocess.types import Label

__all__ = ["AnchoredOutput"]


@dataclass(frozen=True, slots=True)
class AnchoredOutput:
    """Names and layout of a Faster-RCNN style output (as Caffe's py-faster-rcnn gives it).

    Per image, with ``N`` proposals and ``L`` labels:

    - ``anchors_tensor``: ``(N, 5)`` rows ``(proposal score, x, y, width, height)``, ``(x, y)`` the
      top-left corner (the first column is ignored; ``(N, 4)`` without it is accepted too). With
      ``anchor_format="xyxy"`` the last four columns are ``(x1, y1, x2, y2)`` instead, as in
      py-faster-rcnn's ``rois`` blob ``(batch index, x1, y1, x2, y2)``.
    - ``scores_tensor``: ``(N, L + 1)`` probabilities, background first: column ``i + 1`` is label ``i``.
    - ``offsets_tensor``: ``(N, (L + 1) * 4)`` or ``(N, L + 1, 4)`` deltas ``(dx, dy, dw, dh)`` per label,
      background first.

    The box of proposal ``n`` for label ``i`` applies that label's deltas to the proposal
    (:func:`~postprocess.boxes.decode_box_deltas`: ``dw`` and ``dh`` divided by ``weights`` then clamped
    before ``exp``). Boxes come out in the proposals' units: pixels of the network input when the
    post-processing names a ``normalize_wrt_tensor`` (``im_info``: height, width), else normalised.
    ``region_id`` is the proposal's row ``n``.

    A batch axis in front of every tensor is optional for a single image (the anchors' rank tells).
    """

    anchors_tensor: str
    scores_tensor: str
    offsets_tensor: str
    anchor_format: Literal["xywh", "xyxy"] = "xywh"
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.anchor_format not in ("xywh", "xyxy"):
            raise InvalidConfigError(f"anchor_format must be 'xywh' or 'xyxy', got {self.anchor_format!r}")
        if len(self.weights) != 4 or not all(math.isfinite(w) and w > 0 for w in self.weights):
            raise InvalidConfigError(f"weights must be 4 positive numbers, got {self.weights!r}")

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """``(anchors_tensor, scores_tensor, offsets_tensor)``."""
        return (self.anchors_tensor, self.scores_tensor, self.offsets_tensor)

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Boxes are in pixels exactly when a ``normalize_wrt_tensor`` is named."""
        return bool(normalize_wrt_tensor)

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """One :class:`Candidates` per image; see the class docstring for the layout."""
        n_labels = len(labels)
        raw_anchors = get_tensor(outputs, self.anchors_tensor)
        anchors = batched(raw_anchors, 2, self.anchors_tensor)
        scores = floating(batched(get_tensor(outputs, self.scores_tensor), 2, self.scores_tensor))
        raw_offsets = get_tensor(outputs, self.offsets_tensor)
        # Offsets may be (N, (L+1)*4) or (N, L+1, 4): only the anchors' rank says whether a batch axis is there.
        unbatched = raw_anchors.ndim == 2
        offsets = raw_offsets[np.newaxis] if unbatched else raw_offsets
        batch = same_batch({self.anchors_tensor: anchors, self.scores_tensor: scores, self.offsets_tensor: offsets})
        n = anchors.shape[1]
        if anchors.shape[2] not in (4, 5):
            raise OutputShapeError(f"anchors {self.anchors_tensor!r} have shape {raw_anchors.shape}: expected (N, 5)")
        if scores.shape[1:] != (n, n_labels + 1):
            raise OutputShapeError(
                f"scores {self.scores_tensor!r} have shape {scores.shape[1:]} per image: expected ({n}, {n_labels + 1})"
                " (background first)"
            )
        if offsets.ndim not in (3, 4) or offsets.shape[1] != n or math.prod(offsets.shape[2:]) != (n_labels + 1) * 4:
            raise OutputShapeError(
                f"offsets {self.offsets_tensor!r} have shape {raw_offsets.shape}: expected ({n}, {(n_labels + 1) * 4})"
            )
        offsets = offsets.reshape(batch, n, n_labels + 1, 4)  # (B, N, L+1, 4)
        return [self._decode_image(anchors[i], scores[i], offsets[i], discard_threshold) for i in range(batch)]

    def _decode_image(
        self,
        anchors: NDArray[Any],
        scores: NDArray[np.floating[Any]],
        offsets: NDArray[Any],
        discard_threshold: float,
    ) -> Candidates:
        """anchors ``(N, 4|5)``, scores ``(N, L+1)``, offsets ``(N, L+1, 4)``."""
        label_scores = scores[:, 1:]  # (N, L): background dropped
        regions, rows = nonzero_2d(at_or_above(label_scores, discard_threshold))
        if regions.size == 0:
            return Candidates.empty(scores.dtype)
        proposals = box_convert(anchors[:, -4:].take(regions, axis=0), self.anchor_format, "xyxy")
        deltas = offsets[regions, rows + 1]  # (K, 4)
        with np.errstate(over="ignore", invalid="ignore"):
            boxes = decode_box_deltas(proposals, deltas, self.weights)
        return Candidates(
            regions=regions.astype(np.int64), labels=rows, scores=label_scores[regions, rows], boxes=boxes
        )
