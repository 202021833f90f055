"""v0.7 default thresholds and their resolution per label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from postprocess.errors import InvalidConfigError

__all__ = [
    "CLASSIFICATION_THRESHOLD",
    "DETECTION_THRESHOLD",
    "TAGGING_THRESHOLD",
    "at_or_above",
    "default_threshold",
    "resolve_thresholds",
]

CLASSIFICATION_THRESHOLD = 0.025
"""Default threshold of an exclusive output without roi (softmax classification)."""

TAGGING_THRESHOLD = 0.5
"""Default threshold of a non-exclusive output without roi (sigmoid tagging)."""

DETECTION_THRESHOLD = 0.8
"""Default threshold of an output with a bounding box (detection)."""


def default_threshold(*, exclusive: bool, roi: bool = False) -> float:
    """The v0.7 default threshold of an output: detection if ``roi``, else classification or tagging."""
    if roi:
        return DETECTION_THRESHOLD
    return CLASSIFICATION_THRESHOLD if exclusive else TAGGING_THRESHOLD


def resolve_thresholds(thresholds: Sequence[float] | None, n_labels: int, default: float) -> NDArray[np.float64]:
    """Per-label thresholds as a float64 array of shape ``(n_labels,)``.

    ``None`` (or an empty sequence, which protobuf cannot tell from an absent repeated field) gives
    ``default`` for every label. Otherwise there must be one threshold in ``[0, 1]`` per label (scores are
    probabilities: a threshold above 1 would silently predict nothing, one below 0 everything).

    Raises:
        InvalidConfigError: wrong length, or a threshold that is not a number in ``[0, 1]``.
    """
    if thresholds is None or len(thresholds) == 0:
        return np.full(n_labels, default, dtype=np.float64)
    values = np.asarray(thresholds, dtype=np.float64)
    if values.shape != (n_labels,):
        raise InvalidConfigError(f"{len(thresholds)} thresholds given for {n_labels} labels: give one per label")
    outside = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))  # NaN fails both comparisons
    if outside.size:
        i = int(outside[0])
        raise InvalidConfigError(f"thresholds must be in [0, 1]: label {i} has {thresholds[i]}")
    return values


def at_or_above(scores: NDArray[np.floating[Any]], thresholds: float | NDArray[np.float64]) -> NDArray[np.bool_]:
    """``scores >= thresholds``, compared in the precision of ``scores``.

    Thresholds are rounded to the scores' dtype first, so that a float32 score written as ``0.7``
    passes a ``0.7`` threshold (``np.float32(0.7) < 0.7`` in float64). NaN scores never pass.

    Args:
        scores: ``(...)`` floating array.
        thresholds: a scalar or an array broadcastable to ``scores``.

    Returns:
        bool array of the broadcast shape.
    """
    return np.greater_equal(scores, np.asarray(thresholds, dtype=scores.dtype))
