"""TensorFlow detection API style outputs: final boxes, scores and label ids (v0.7 ``direct_output``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from postprocess.boxes import box_convert
from postprocess.decoders.base import Candidates, batched, floating, get_tensor, same_batch
from postprocess.errors import InvalidConfigError, OutputShapeError
from postprocess.thresholds import at_or_above
from postprocess.types import Label

__all__ = ["DirectOutput"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DirectOutput:
    """Names and layout of an output that gives one box, score and label per detection.

    Per image, with ``N`` detections:

    - ``boxes_tensor``: ``(N, 4)`` rows ``(xmin, ymin, xmax, ymax)``, top-left origin, normalised unless
      the post-processing names a ``normalize_wrt_tensor`` (then in pixels of the network input). The
      TensorFlow detection API itself writes ``(ymin, xmin, ymax, xmax)``: say ``box_format="yxyx"``.
    - ``scores_tensor``: ``(N,)`` scores.
    - ``classes_tensor``: ``(N,)`` the specification's label ids (not rows), integers or floats holding
      integers (rounded to the nearest). Rows whose id is not a label of the specification (the
      detection API's padding, a label the specification left out) are ignored (logged at debug level).

    ``region_id`` is the detection's row. A batch axis in front of every tensor is optional for a
    single image (the ranks tell).
    """

    boxes_tensor: str
    scores_tensor: str
    classes_tensor: str
    box_format: Literal["xyxy", "yxyx"] = "xyxy"

    def __post_init__(self) -> None:
        if self.box_format not in ("xyxy", "yxyx"):
            raise InvalidConfigError(f"box_format must be 'xyxy' or 'yxyx', got {self.box_format!r}")

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """``(boxes_tensor, scores_tensor, classes_tensor)``."""
        return (self.boxes_tensor, self.scores_tensor, self.classes_tensor)

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Boxes are in pixels exactly when a ``normalize_wrt_tensor`` is named."""
        return bool(normalize_wrt_tensor)

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """One :class:`Candidates` per image; see the class docstring for the layout."""
        boxes = batched(get_tensor(outputs, self.boxes_tensor), 2, self.boxes_tensor)
        scores = floating(batched(get_tensor(outputs, self.scores_tensor), 1, self.scores_tensor))
        classes = batched(get_tensor(outputs, self.classes_tensor), 1, self.classes_tensor)
        batch = same_batch({self.boxes_tensor: boxes, self.scores_tensor: scores, self.classes_tensor: classes})
        n = scores.shape[1]
        if boxes.shape[1:] != (n, 4) or classes.shape[1:] != (n,):
            raise OutputShapeError(
                f"direct output: boxes {boxes.shape[1:]}, scores {scores.shape[1:]} and classes {classes.shape[1:]}"
                f" per image; expected ({n}, 4), ({n},) and ({n},)"
            )
        label_ids = np.array([label.id for label in labels], dtype=np.int64)
        id_order = np.argsort(label_ids, kind="stable")
        sorted_ids = label_ids[id_order]
        return [
            self._decode_image(boxes[i], scores[i], classes[i], sorted_ids, id_order, discard_threshold)
            for i in range(batch)
        ]

    def _decode_image(
        self,
        boxes: NDArray[Any],
        scores: NDArray[np.floating[Any]],
        classes: NDArray[Any],
        sorted_ids: NDArray[np.int64],
        id_order: NDArray[np.intp],
        discard_threshold: float,
    ) -> Candidates:
        """boxes ``(N, 4)``, scores ``(N,)``, classes ``(N,)``; ``sorted_ids[k]`` is the id of label ``id_order[k]``."""
        regions = np.flatnonzero(at_or_above(scores, discard_threshold))
        if regions.size == 0 or sorted_ids.size == 0:
            return Candidates.empty(scores.dtype)
        ids = classes[regions]
        valid = np.ones(ids.shape, dtype=bool)
        if np.issubdtype(ids.dtype, np.floating):
            valid = np.isfinite(ids) & (np.abs(ids) < 2.0**62)
            ids = np.where(valid, np.rint(ids), 0)
        ids = ids.astype(np.int64)
        slots = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
        known = valid & (sorted_ids[slots] == ids)
        if not known.all():
            logger.debug("ignored %d detections whose class is not a label id", int((~known).sum()))
        regions = regions[known]
        if regions.size == 0:
            return Candidates.empty(scores.dtype)
        return Candidates(
            regions=regions.astype(np.int64),
            labels=id_order[slots[known]],
            scores=scores[regions],
            boxes=box_convert(boxes.take(regions, axis=0), self.box_format, "xyxy"),
        )
