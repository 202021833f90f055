"""Classification (exclusive labels) and tagging (multi-label) from a score vector."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from postprocess.errors import InvalidConfigError, OutputShapeError
from postprocess.thresholds import at_or_above, default_threshold, resolve_thresholds
from postprocess.types import Label, LabelsResult, Prediction

__all__ = ["classify", "classify_batch"]

logger = logging.getLogger(__name__)


def classify(
    scores: ArrayLike,
    labels: Sequence[Label],
    *,
    exclusive: bool,
    thresholds: Sequence[float] | None = None,
    max_predictions: int = 100,
) -> LabelsResult:
    """Split one image's labels into predicted and discarded.

    Args:
        scores: the network's probabilities for one image, ``(L,)`` (softmax for an exclusive output,
            sigmoid otherwise); any shape of ``L`` elements is accepted (Caffe's ``(L, 1, 1)``).
            Integer dtypes are read as float64. Score ``i`` belongs to ``labels[i]``.
        labels: the specification's labels, in the order of the network's output.
        exclusive: the specification's ``exclusive``; picks the default threshold (0.025 exclusive,
            0.5 otherwise).
        thresholds: one threshold per label, or ``None`` (or empty) for the default.
        max_predictions: at most this many predicted and at most this many discarded labels.

    Returns:
        ``predicted``: labels whose score is at or above their threshold (compared in the precision of
        ``scores``); ``discarded``: the others. Each sorted by decreasing score, ties in label order.
        Labels with a NaN or infinite score are in neither list (a warning is logged).

    Raises:
        OutputShapeError: ``scores`` does not hold one score per label.
        InvalidConfigError: bad thresholds or a negative ``max_predictions``.
    """
    values = _as_scores(scores)
    if values.size != len(labels):
        raise OutputShapeError(
            f"scores of shape {values.shape} for {len(labels)} labels: expected {len(labels)} values"
        )
    if max_predictions < 0:
        raise InvalidConfigError(f"max_predictions must be >= 0, got {max_predictions}")
    limits = resolve_thresholds(thresholds, len(labels), default_threshold(exclusive=exclusive))
    return _classify(values.reshape(-1), tuple(labels), limits, max_predictions)


def classify_batch(
    scores: ArrayLike,
    labels: Sequence[Label],
    *,
    exclusive: bool,
    thresholds: Sequence[float] | None = None,
    max_predictions: int = 100,
) -> list[LabelsResult]:
    """:func:`classify` for each image of a batched output.

    Args:
        scores: ``(B, L)``, or ``(B, ...)`` with ``L`` elements per image.

    Returns:
        One :class:`LabelsResult` per image, in batch order.
    """
    values = _as_scores(scores)
    if values.ndim < 2 or math.prod(values.shape[1:]) != len(labels):
        raise OutputShapeError(
            f"scores of shape {values.shape} for {len(labels)} labels: expected (batch, {len(labels)})"
        )
    if max_predictions < 0:
        raise InvalidConfigError(f"max_predictions must be >= 0, got {max_predictions}")
    limits = resolve_thresholds(thresholds, len(labels), default_threshold(exclusive=exclusive))
    batch = values.reshape(values.shape[0], len(labels))
    label_tuple = tuple(labels)
    return [_classify(row, label_tuple, limits, max_predictions) for row in batch]


def _as_scores(scores: ArrayLike) -> NDArray[np.floating[Any]]:
    values = np.asarray(scores)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    return values


def _classify(
    scores: NDArray[np.floating[Any]], labels: tuple[Label, ...], thresholds: NDArray[np.float64], limit: int
) -> LabelsResult:
    """``scores`` ``(L,)`` floating, ``thresholds`` ``(L,)`` float64."""
    finite = np.isfinite(scores)
    rows = np.flatnonzero(finite)
    if rows.size < scores.size:
        logger.warning("ignored %d non-finite classification scores", scores.size - rows.size)
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    passed = at_or_above(scores[rows], thresholds[rows])
    return LabelsResult(
        predicted=_predictions(rows[passed][:limit], scores, labels, thresholds),
        discarded=_predictions(rows[~passed][:limit], scores, labels, thresholds),
    )


def _predictions(
    rows: NDArray[np.intp],
    scores: NDArray[np.floating[Any]],
    labels: tuple[Label, ...],
    thresholds: NDArray[np.float64],
) -> tuple[Prediction, ...]:
    return tuple(
        Prediction(label_id=labels[row].id, label_name=labels[row].name, score=score, threshold=threshold)
        for row, score, threshold in zip(
            rows.tolist(), scores[rows].astype(np.float64).tolist(), thresholds[rows].tolist(), strict=True
        )
    )
