"""Detection: from a network's raw output tensors to v0.7 predictions with boxes.

One image's pipeline, after the decoder (chosen by the version's post-processing) has produced its
candidates, one per (region, label) pair:

1. ``discard_threshold``: candidates scoring below it are dropped (inside the decoder, first of all).
2. Boxes in pixels are divided by the network input's size (``normalize_wrt_tensor``, else
   ``input_size``), then clipped to ``[0, 1]``. Candidates with a NaN or infinite score or coordinate
   are dropped (a warning gives their count), so are boxes left empty by the clipping (width or height 0).
3. Per-label thresholds split the rest into predicted (``score >= threshold``) and discarded.
4. Class-aware NMS at ``nms_threshold``: a box is dropped when a better-scored box *of the same label*
   overlaps it with an IoU above the threshold. Predicted boxes go first, so a discarded box never
   removes a predicted one (within a label every predicted score is above every discarded score);
   discarded boxes are deduplicated among themselves and against the predicted ones.
5. Optional class-agnostic NMS (``class_agnostic_nms``, an IoU threshold) among the predicted boxes,
   whatever their labels. Discarded alternatives are left alone.
6. Each list sorted by decreasing score (ties: lower ``region_id``, then label order) and cut to
   ``max_predictions``.

``region_id`` is the candidate region's index in the output (a proposal, a grid cell and anchor, an
anchor point, a row): the alternative labels of one region share it across the predicted and the
discarded lists.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from postprocess.boxes import clip_boxes_to_image, normalize_boxes
from postprocess.decoders.base import Candidates, OutputDecoder
from postprocess.errors import InvalidConfigError, MissingTensorError, OutputShapeError, PostprocessError
from postprocess.nms import rank_rows, ranked_nms
from postprocess.thresholds import DETECTION_THRESHOLD, at_or_above, resolve_thresholds
from postprocess.types import BBox, Label, LabelsResult, Prediction

__all__ = ["DetectionConfig", "check_output_shapes", "detect", "reframe"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """A version's detection post-processing, with the specification's labels.

    Attributes:
        output: the output's decoder, which names its tensors (``AnchoredOutput``, ``DirectOutput``,
            ``YoloOutput``, ``Yolov5Output``, ``Yolov8Output``, or any :class:`OutputDecoder`).
        labels: the specification's labels, in the order of the network's outputs.
        thresholds: one threshold per label, or ``None`` (or empty) for v0.7's 0.8.
        nms_threshold: IoU in ``[0, 1]`` above which a box of the same label and a lower score is dropped
            (1 disables NMS).
        discard_threshold: candidates scoring below it are dropped before anything else.
        normalize_wrt_tensor: when boxes are in pixels, the tensor holding the network input's height
            then width (``im_info``); ``""`` when boxes are normalised (YOLOv5/v8 then use ``input_size``).
        class_agnostic_nms: an IoU in ``[0, 1]`` for a second NMS among the predicted boxes of all
            labels, or ``None`` (v0.7's behaviour) for none.
    """

    output: OutputDecoder
    labels: tuple[Label, ...]
    thresholds: tuple[float, ...] | None
    nms_threshold: float
    discard_threshold: float
    normalize_wrt_tensor: str = ""
    class_agnostic_nms: float | None = None
    _limits: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", tuple(self.thresholds))
        if not self.labels:
            raise InvalidConfigError("a detection output needs at least one label")
        ids = [label.id for label in self.labels]
        if len(set(ids)) != len(ids):
            raise InvalidConfigError(f"label ids must be unique, got {ids}")
        _check_unit("nms_threshold", self.nms_threshold)
        _check_unit("discard_threshold", self.discard_threshold)
        if self.class_agnostic_nms is not None:
            _check_unit("class_agnostic_nms", self.class_agnostic_nms)
        object.__setattr__(self, "_limits", resolve_thresholds(self.thresholds, len(self.labels), DETECTION_THRESHOLD))

    @property
    def label_thresholds(self) -> tuple[float, ...]:
        """The threshold of each label, defaults resolved."""
        return tuple(self._limits.tolist())

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Every tensor ``detect`` reads: the output's, then ``normalize_wrt_tensor`` if it is used."""
        names = self.output.tensor_names
        if self.normalize_wrt_tensor and self.output.boxes_in_pixels(self.normalize_wrt_tensor):
            names = (*names, self.normalize_wrt_tensor)
        return names


_MAX_CHECK_VALUES = 1 << 24
"""Tensors larger than this (per image) are not built to check a layout: the check is skipped for them."""


def check_output_shapes(output: OutputDecoder, labels: Sequence[Label], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Whether an output's tensors, of the given per-image shapes, fit its layout for these labels.

    The decoder itself decides, on tensors of zeros of those shapes, so this check and decoding cannot disagree.
    A dimension of ``-1`` (any size) counts as 0: unknown dimensions are candidate or grid counts, which every
    layout takes in any size. Tensors missing from ``shapes``, of unknown rank (``()``), or too large to build are
    not checked.

    Raises:
        OutputShapeError: the shapes cannot fit the layout (the message says what the layout expects).
    """
    names = output.tensor_names
    if any(not shapes.get(n) for n in names):
        return
    sizes = {n: tuple(max(d, 0) for d in shapes[n]) for n in names}
    if any(math.prod(shape) > _MAX_CHECK_VALUES for shape in sizes.values()):
        return
    tensors = {n: np.zeros(shape, dtype=np.float32) for n, shape in sizes.items()}
    try:
        # A discard threshold above every score: only the shape checks run, no candidate is decoded.
        output.decode(tensors, labels, discard_threshold=math.inf)
    except OutputShapeError as exc:
        declared = ", ".join(f"{n!r} {list(shapes[n])}" for n in names)
        unknown = " (-1: any size, tried as 0)" if any(d < 0 for n in names for d in shapes[n]) else ""
        raise OutputShapeError(
            f"the network's outputs {declared} per image{unknown} do not fit {len(labels)} labels: {exc}"
        ) from None


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidConfigError(f"{name} must be in [0, 1], got {value}")


def detect(
    outputs: Mapping[str, NDArray[Any]],
    config: DetectionConfig,
    *,
    max_predictions: int = 100,
    input_size: tuple[int, int] | None = None,
    with_discarded: bool = True,
) -> list[LabelsResult]:
    """Predictions of each image of a batch, per the module's pipeline.

    Args:
        outputs: tensors by name as Triton returns them, with a leading batch axis (a single image's
            tensors may come without it). When boxes are in pixels and the post-processing names a
            ``normalize_wrt_tensor`` (an *input* such as ``im_info``), that tensor must be here too,
            ``(B, >=2)`` or ``(>=2,)``: height then width; if it is absent, ``input_size`` is used.
        config: the post-processing.
        max_predictions: at most this many predicted and at most this many discarded per image.
        input_size: ``(height, width)`` of the network input in pixels, for boxes in pixels.
        with_discarded: ``False`` skips the discarded list (left empty), which saves its NMS when the
            request does not show discarded predictions. The predicted list is the same either way.

    Returns:
        One :class:`LabelsResult` per image, in batch order; each prediction has a ``region_id`` and a
        ``bbox`` normalised to ``[0, 1]`` (top-left origin, relative to the network input).

    Raises:
        MissingTensorError: a tensor is missing, or pixel boxes have no size to be divided by.
        OutputShapeError: a tensor's shape does not fit the output's layout.
        InvalidConfigError: ``max_predictions`` is negative.
    """
    if max_predictions < 0:
        raise InvalidConfigError(f"max_predictions must be >= 0, got {max_predictions}")
    candidates = config.output.decode(outputs, config.labels, config.discard_threshold)
    sizes: NDArray[np.float64] | None = None
    if config.output.boxes_in_pixels(config.normalize_wrt_tensor):
        sizes = _image_sizes(outputs, config.normalize_wrt_tensor, input_size, len(candidates))
    return [
        _select(image, config, None if sizes is None else sizes[i], max_predictions, with_discarded)
        for i, image in enumerate(candidates)
    ]


def _image_sizes(
    outputs: Mapping[str, NDArray[Any]], name: str, input_size: tuple[int, int] | None, batch: int
) -> NDArray[np.float64]:
    """``(B, 2)`` float64 (height, width) per image, from the named tensor or ``input_size``."""
    if name and name in outputs:
        tensor = np.asarray(outputs[name], dtype=np.float64)
        rows = tensor[np.newaxis] if tensor.ndim == 1 else tensor
        if rows.ndim != 2 or rows.shape[1] < 2 or rows.shape[0] not in (1, batch):
            raise OutputShapeError(
                f"tensor {name!r} has shape {tensor.shape}: expected (height, width, ...) for each of {batch} images"
            )
        sizes = rows[:, :2]
    elif input_size is not None:
        sizes = np.asarray(input_size, dtype=np.float64).reshape(1, 2)
    elif name:
        raise MissingTensorError(f"tensor {name!r} (normalize_wrt_tensor) is missing from the outputs")
    else:
        raise MissingTensorError("boxes are in pixels of the network input: give input_size or a normalize_wrt_tensor")
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise OutputShapeError(f"image sizes must be positive, got {sizes.tolist()}")
    return np.broadcast_to(sizes, (batch, 2))


def _select(
    candidates: Candidates,
    config: DetectionConfig,
    size: NDArray[np.float64] | None,
    limit: int,
    with_discarded: bool,
) -> LabelsResult:
    """Thresholds, NMS and ``max_predictions`` for one image's candidates."""
    scores, labels, regions = candidates.scores, candidates.labels, candidates.regions
    boxes = candidates.boxes if size is None else normalize_boxes(candidates.boxes, size)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
        boxes = clip_boxes_to_image(boxes)
    if not finite.all():
        logger.warning("ignored %d detection candidates with a NaN or infinite score or box", int((~finite).sum()))
    usable = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    passed = usable & at_or_above(scores, config._limits[labels])
    tiebreak = regions * len(config.labels) + labels

    # Rows by decreasing score, then region, then label.
    predicted = rank_rows(scores, passed, tiebreak)
    below = (
        rank_rows(scores, usable & ~passed, tiebreak) if with_discarded and limit > 0 else np.empty(0, dtype=np.intp)
    )
    # One class-aware pass over both lists: predicted first, then discarded. NMS only compares boxes of
    # one label, and within a label every predicted score is above every discarded one, so this order
    # ranks each label's boxes as their scores do; the discarded list needs no more than `limit` kept.
    # Without discarded results nor a second NMS, predicted boxes after the first `limit` don't matter.
    pool = np.concatenate([predicted, below]) if below.size else predicted
    whole_predicted = below.size > 0 or config.class_agnostic_nms is not None
    survivors = pool[
        ranked_nms(
            boxes.take(pool, axis=0),
            labels[pool],
            config.nms_threshold,
            max_output=limit if below.size or not whole_predicted else None,
            count_from=predicted.size if below.size else 0,
        )
    ]
    split = int(np.count_nonzero(passed[survivors]))
    kept, alternatives = survivors[:split], survivors[split:][:limit]
    shown = kept
    if config.class_agnostic_nms is not None:
        shown = kept[ranked_nms(boxes.take(kept, axis=0), None, config.class_agnostic_nms, max_output=limit)]
    shown = shown[:limit]

    def build(rows: NDArray[np.intp]) -> tuple[Prediction, ...]:
        return _predictions(rows, regions, labels, scores, boxes, config)

    return LabelsResult(predicted=build(shown), discarded=build(alternatives))


def _predictions(
    rows: NDArray[np.intp],
    regions: NDArray[np.int64],
    labels: NDArray[np.intp],
    scores: NDArray[np.floating[Any]],
    boxes: NDArray[np.float64],
    config: DetectionConfig,
) -> tuple[Prediction, ...]:
    spec = config.labels
    label_rows = labels[rows]
    new = object.__new__
    set_label_id, set_label_name, set_score, set_threshold, set_region_id, set_bbox, set_track_id = _PREDICTION_SLOTS
    set_xmin, set_ymin, set_xmax, set_ymax = _BBOX_SLOTS
    built: list[Prediction] = []
    for region, label, score, threshold, (x1, y1, x2, y2) in zip(
        regions[rows].tolist(),
        label_rows.tolist(),
        scores[rows].astype(np.float64).tolist(),
        config._limits[label_rows].tolist(),
        boxes.take(rows, axis=0).tolist(),
        strict=True,
    ):
        # The frozen dataclasses' __init__, without its per-field lookups: the slots are filled directly
        # (equal objects; a test checks it), which halves the cost of building results.
        box = new(BBox)
        set_xmin(box, x1)
        set_ymin(box, y1)
        set_xmax(box, x2)
        set_ymax(box, y2)
        prediction = new(Prediction)
        set_label_id(prediction, spec[label].id)
        set_label_name(prediction, spec[label].name)
        set_score(prediction, score)
        set_threshold(prediction, threshold)
        set_region_id(prediction, region)
        set_bbox(prediction, box)
        set_track_id(prediction, None)
        built.append(prediction)
    return tuple(built)


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The ``__set__`` of each named slot of a slotted class, checked to be all of its fields, in order."""
    if tuple(f.name for f in fields(cls)) != names:
        raise TypeError(f"{cls.__name__} fields changed: update detection._predictions")
    return tuple(getattr(cls, name).__set__ for name in names)


_PREDICTION_SLOTS = _slot_setters(
    Prediction, ("label_id", "label_name", "score", "threshold", "region_id", "bbox", "track_id")
)
_BBOX_SLOTS = _slot_setters(BBox, ("xmin", "ymin", "xmax", "ymax"))


def reframe(result: LabelsResult, window: BBox) -> LabelsResult:
    """Express boxes relative to the network input in the coordinates of the image it was made from.

    ``window`` is where the network input's unit square lies in the image's normalised coordinates:
    a centre crop of the image (``CROP``, or a request's ``bbox``) gives a window inside ``[0, 1]``; an
    image padded to fit (``FILL``) gives a window larger than ``[0, 1]`` (negative ``xmin`` when padded
    on the left). Each coordinate maps as ``x -> window.xmin + x * (window.xmax - window.xmin)``, then
    boxes are clipped to ``[0, 1]``; predictions whose box is left empty (all in the padding) are
    dropped. Predictions without a box are kept as they are.
    """
    if not (window.xmax > window.xmin and window.ymax > window.ymin):
        raise PostprocessError(f"window must have a positive width and height, got {window}")
    sx = window.xmax - window.xmin
    sy = window.ymax - window.ymin

    def move(predictions: Sequence[Prediction]) -> tuple[Prediction, ...]:
        moved: list[Prediction] = []
        for p in predictions:
            if p.bbox is None:
                moved.append(p)
                continue
            box = BBox(
                xmin=_unit(window.xmin + p.bbox.xmin * sx),
                ymin=_unit(window.ymin + p.bbox.ymin * sy),
                xmax=_unit(window.xmin + p.bbox.xmax * sx),
                ymax=_unit(window.ymin + p.bbox.ymax * sy),
            )
            if box.xmax > box.xmin and box.ymax > box.ymin:
                moved.append(replace(p, bbox=box))
        return tuple(moved)

    return LabelsResult(predicted=move(result.predicted), discarded=move(result.discarded))


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
