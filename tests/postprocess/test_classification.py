"""Classification and tagging: thresholds, order, label ids, limits and non-finite scores."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from postprocess import (
    CLASSIFICATION_THRESHOLD,
    TAGGING_THRESHOLD,
    InvalidConfigError,
    Label,
    LabelsResult,
    OutputShapeError,
    Prediction,
    classify,
    classify_batch,
    default_threshold,
)

LABELS = (Label(10, "cat"), Label(3, "dog"), Label(-7, "bird"), Label(42, "fish"))


def ids(predictions: tuple[Prediction, ...]) -> list[int]:
    return [p.label_id for p in predictions]


def test_exclusive_default_threshold_and_order() -> None:
    result = classify(np.array([0.02, 0.9, 0.05, 0.03], dtype=np.float32), LABELS, exclusive=True)
    assert ids(result.predicted) == [3, -7, 42]
    assert ids(result.discarded) == [10]
    top = result.predicted[0]
    assert top == Prediction(label_id=3, label_name="dog", score=top.score, threshold=CLASSIFICATION_THRESHOLD)
    assert top.score == pytest.approx(0.9)
    assert top.region_id is None
    assert top.bbox is None


def test_tagging_default_threshold() -> None:
    result = classify([0.2, 0.6, 0.5, 0.49], LABELS, exclusive=False)
    assert ids(result.predicted) == [3, -7]  # 0.5 is at the threshold: predicted
    assert ids(result.discarded) == [42, 10]
    assert {p.threshold for p in result.predicted + result.discarded} == {TAGGING_THRESHOLD}


def test_defaults_by_kind() -> None:
    assert default_threshold(exclusive=True) == 0.025
    assert default_threshold(exclusive=False) == 0.5
    assert default_threshold(exclusive=True, roi=True) == 0.8


def test_per_label_thresholds() -> None:
    result = classify([0.3, 0.3, 0.3, 0.3], LABELS, exclusive=False, thresholds=[0.1, 0.5, 0.3, 0.31])
    assert ids(result.predicted) == [10, -7]
    assert [p.threshold for p in result.predicted] == [0.1, 0.3]
    assert ids(result.discarded) == [3, 42]
    # protobuf cannot tell an empty repeated field from an absent one: empty means the default
    assert classify([0.3] * 4, LABELS, exclusive=False, thresholds=[]).predicted == ()


def test_threshold_compared_in_the_scores_precision() -> None:
    # float32(0.7) < 0.7 in float64, but a network writing 0.7 meets a 0.7 threshold.
    for dtype in (np.float16, np.float32, np.float64):
        result = classify(np.array([0.7, 0.1, 0.1, 0.1], dtype=dtype), LABELS, exclusive=False, thresholds=[0.7] * 4)
        assert ids(result.predicted) == [10], dtype


def test_ties_follow_label_order() -> None:
    result = classify([0.4, 0.4, 0.9, 0.4], LABELS, exclusive=False, thresholds=[0.0] * 4)
    assert ids(result.predicted) == [-7, 10, 3, 42]


def test_max_predictions_caps_each_list() -> None:
    scores = [0.9, 0.8, 0.1, 0.05]
    result = classify(scores, LABELS, exclusive=False, thresholds=[0.5] * 4, max_predictions=1)
    assert ids(result.predicted) == [10]
    assert ids(result.discarded) == [-7]
    assert classify(scores, LABELS, exclusive=True, max_predictions=0) == LabelsResult((), ())
    with pytest.raises(InvalidConfigError, match="max_predictions"):
        classify(scores, LABELS, exclusive=True, max_predictions=-1)


def test_non_finite_scores_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="postprocess.classification"):
        result = classify([np.nan, 0.9, np.inf, -np.inf], LABELS, exclusive=True)
    assert ids(result.predicted) == [3]
    assert result.discarded == ()
    assert "ignored 3 non-finite" in caplog.text


def test_shapes_and_dtypes() -> None:
    caffe = np.array([0.1, 0.2, 0.3, 0.4]).reshape(4, 1, 1)
    assert ids(classify(caffe, LABELS, exclusive=True).predicted) == [42, -7, 3, 10]
    assert ids(classify(np.array([0, 1, 0, 0]), LABELS, exclusive=False).predicted) == [3]
    with pytest.raises(OutputShapeError, match="4 labels"):
        classify(np.zeros(5), LABELS, exclusive=True)
    with pytest.raises(InvalidConfigError, match="3 thresholds"):
        classify(np.zeros(4), LABELS, exclusive=True, thresholds=[0.1, 0.2, 0.3])
    with pytest.raises(InvalidConfigError, match=r"in \[0, 1\]"):
        classify(np.zeros(4), LABELS, exclusive=True, thresholds=[0.1, 0.2, 0.3, float("nan")])
    with pytest.raises(InvalidConfigError, match=r"in \[0, 1\]: label 0 has 2"):
        classify(np.zeros(4), LABELS, exclusive=True, thresholds=[2, 0.2, 0.3, 0.4])


def test_batch() -> None:
    scores = np.array([[0.9, 0.05, 0.03, 0.02], [0.01, 0.01, 0.01, 0.97]], dtype=np.float32)
    first, second = classify_batch(scores, LABELS, exclusive=True)
    assert ids(first.predicted) == [10, 3, -7]
    assert ids(second.predicted) == [42]
    assert classify_batch(np.zeros((0, 4)), LABELS, exclusive=True) == []
    assert len(classify_batch(np.zeros((2, 4, 1, 1)), LABELS, exclusive=True)) == 2
    with pytest.raises(OutputShapeError, match="batch"):
        classify_batch(np.zeros(4), LABELS, exclusive=True)


@settings(max_examples=80, deadline=None)
@given(
    scores=arrays(np.float32, (4,), elements=st.floats(0, 1, width=32)),
    thresholds=st.lists(st.floats(0, 1), min_size=4, max_size=4),
    limit=st.integers(0, 5),
)
def test_partition_properties(scores: NDArray[Any], thresholds: list[float], limit: int) -> None:
    copy = scores.copy()
    result = classify(scores, LABELS, exclusive=True, thresholds=thresholds, max_predictions=limit)
    np.testing.assert_array_equal(scores, copy)
    full = classify(scores, LABELS, exclusive=True, thresholds=thresholds, max_predictions=10)
    assert len(full.predicted) + len(full.discarded) == 4
    assert result.predicted == full.predicted[:limit]
    assert result.discarded == full.discarded[:limit]
    for p in full.predicted:
        assert np.float32(p.score) >= np.float32(p.threshold)
    for p in full.discarded:
        assert np.float32(p.score) < np.float32(p.threshold)
    for part in (full.predicted, full.discarded):
        assert [p.score for p in part] == sorted((p.score for p in part), reverse=True)
