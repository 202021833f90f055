"""Multi-object tracking across the frames of one stream: an IoU tracker with constant-velocity prediction.

Each track keeps its last box and its velocity (the change of the box per frame). On a new frame every live
track is moved forward by its velocity, then detections are matched to tracks of the **same label**, greedily by
decreasing IoU: first pairs at or above ``iou_threshold``, then, among what is left, pairs at or above a third
of it. A matched detection takes the track's id; an unmatched one starts a new track; a track unmatched for more
than ``max_age`` frames ends. Ids start at 1 and are never reused within a tracker.

Boxes are normalised xyxy (any consistent unit works); frames must be given in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from postprocess.boxes import box_iou
from postprocess.types import Prediction

__all__ = ["IouTracker"]


@dataclass(slots=True)
class _Track:
    id: int
    label_id: int
    box: NDArray[np.float64]
    velocity: NDArray[np.float64]
    missed: int = 0


class IouTracker:
    """Gives detections a ``track_id`` stable across frames. Not thread-safe: one per stream."""

    def __init__(self, *, iou_threshold: float = 0.3, max_age: int = 5, momentum: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self._iou_threshold = iou_threshold
        self._max_age = max_age
        self._momentum = momentum
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def update(self, detections: Sequence[Prediction]) -> tuple[Prediction, ...]:
        """The detections of the next frame, each with its ``track_id`` (detections without a box pass as is)."""
        boxed = [i for i, d in enumerate(detections) if d.bbox is not None]
        boxes = np.array(
            [[b.xmin, b.ymin, b.xmax, b.ymax] for b in (detections[i].bbox for i in boxed) if b is not None],
            dtype=np.float64,
        ).reshape(-1, 4)
        labels = np.array([detections[i].label_id for i in boxed], dtype=np.int64)
        predicted = np.array([t.box + t.velocity for t in self._tracks], dtype=np.float64).reshape(-1, 4)
        track_labels = np.array([t.label_id for t in self._tracks], dtype=np.int64)

        iou = box_iou(predicted, boxes) if len(predicted) and len(boxes) else np.zeros((len(predicted), len(boxes)))
        iou = np.where(track_labels[:, None] == labels[None, :], iou, 0.0)
        assigned: dict[int, int] = {}  # detection row -> track index
        # Two passes, as in ByteTrack's spirit: confident overlaps first, then looser ones for what is left (fast
        # objects overlap their predicted box little until their velocity is known).
        for threshold in (self._iou_threshold, self._iou_threshold / 3):
            _greedy_match(iou, threshold, assigned)
        ids: dict[int, int] = {}
        matched_tracks = set(assigned.values())
        for d, t in assigned.items():
            track = self._tracks[t]
            step = boxes[d] - track.box
            track.velocity = self._momentum * track.velocity + (1 - self._momentum) * step
            track.box = boxes[d]
            track.missed = 0
            ids[d] = track.id
        survivors = []
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.missed += 1
                track.box = track.box + track.velocity
            if track.missed <= self._max_age:
                survivors.append(track)
        for d in range(len(boxes)):
            if d not in assigned:
                track = _Track(self._next_id, int(labels[d]), boxes[d], np.zeros(4))
                self._next_id += 1
                survivors.append(track)
                ids[d] = track.id
        self._tracks = survivors

        out = list(detections)
        for d, i in enumerate(boxed):
            out[i] = replace(detections[i], track_id=ids[d])
        return tuple(out)


def _greedy_match(iou: NDArray[np.float64], threshold: float, assigned: dict[int, int]) -> None:
    """Pair tracks (rows) and detections (columns) by decreasing IoU at or above ``threshold``; updates ``assigned``
    (detection -> track), leaving pairs already made alone."""
    if not iou.size:
        return
    used = set(assigned.values())
    order = np.argsort(-iou, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, iou.shape)
    for t, d in zip(rows.tolist(), cols.tolist(), strict=True):
        if iou[t, d] < threshold:
            break
        if t in used or d in assigned:
            continue
        used.add(t)
        assigned[d] = t
