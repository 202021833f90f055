"""Domain results of post-processing: labels, boxes and predictions (v0.7 shapes).

All results are frozen, slotted dataclasses holding plain Python values, so that the service can
convert them to protobuf messages without touching numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BBox", "Label", "LabelsResult", "Prediction"]


@dataclass(frozen=True, slots=True)
class Label:
    """One label of a recognition specification.

    ``id`` is the user's label id (any integer, echoed as ``label_id``), not the row of the label in
    the network's output: row ``i`` of an output is ``labels[i]`` of the specification.
    """

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class BBox:
    """A box normalised to ``[0, 1]`` with the origin at the image's top-left corner.

    ``xmin <= xmax`` and ``ymin <= ymax``; x runs right along the width, y down along the height.
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """One label predicted (or discarded) for an image or a region of it.

    ``score`` is the network's confidence (a softmax or sigmoid probability) and ``threshold`` the
    label's threshold it was compared with (predicted when ``score >= threshold``). Detections carry a
    ``region_id`` (the index of the candidate region in the network's output, shared by the alternative
    labels of one region) and a ``bbox``; classification and tagging leave both to ``None``. In a stream
    with tracking, detections also carry a ``track_id`` that stays the same for one object across frames.
    """

    label_id: int
    label_name: str
    score: float
    threshold: float
    region_id: int | None = None
    bbox: BBox | None = None
    track_id: int | None = None


@dataclass(frozen=True, slots=True)
class LabelsResult:
    """The labels of one output for one image, each tuple sorted by decreasing score."""

    predicted: tuple[Prediction, ...]
    discarded: tuple[Prediction, ...]
