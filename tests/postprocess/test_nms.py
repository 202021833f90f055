"""NMS against OpenCV's C++ implementation and a plain Python loop, plus edge cases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

import postprocess.nms  # noqa: F401  (the module object is taken from sys.modules below)
from postprocess.boxes import box_iou
from postprocess.nms import batched_nms, nms, ranked_nms, score_order
from tests.postprocess.helpers import KERNELS, kernel

NMS_MODULE = sys.modules["postprocess.nms"]
THRESHOLDS = (0.0, 0.1, 0.25, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0)


def reference_nms(boxes: NDArray[Any], scores: NDArray[Any], groups: NDArray[Any], threshold: float) -> list[int]:
    """Greedy NMS one box at a time (stable order by decreasing score)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        if all(groups[j] != groups[i] or _iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def _iou(a: NDArray[Any], b: NDArray[Any]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def opencv_nms(
    boxes: NDArray[Any], scores: NDArray[Any], threshold: float, groups: NDArray[Any] | None = None
) -> list[int]:
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # OpenCV keeps scores strictly above score_threshold, which must be >= 0: the scores drawn are >= 1.
    as_float32 = scores.astype(np.float32).tolist()
    if groups is None:
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), as_float32, 0.0, threshold)
    else:
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), as_float32, groups.tolist(), 0.0, threshold)
    indices: list[int] = np.asarray(kept, dtype=np.int64).reshape(-1).tolist()
    return indices


@contextmanager
def small_blocks(
    block: int, first: int, greedy: int = 1024, growth: int = 2, screen: int = 16, chunk: int = 1 << 20
) -> Iterator[None]:
    """Force the numpy kernels' block-by-block path (and the cut of large blocks, the exact screening, small
    chunks of pairs) on small inputs."""
    with (
        mock.patch.object(NMS_MODULE, "_COMPILED", None),
        mock.patch.object(NMS_MODULE, "_PAIR_CHUNK", chunk),
        mock.patch.object(NMS_MODULE, "_SCREEN_PAIRS", screen),
        mock.patch.object(NMS_MODULE, "_BLOCK", block),
        mock.patch.object(NMS_MODULE, "_FIRST_BLOCK", first),
        mock.patch.object(NMS_MODULE, "_MAX_GREEDY", greedy),
        mock.patch.object(NMS_MODULE, "_GROWTH", growth),
    ):
        yield


@st.composite
def scene(draw: st.DrawFn, max_boxes: int = 40) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]:
    """Boxes with positive sizes on an integer grid, scores with ties (>= 1), groups, a threshold."""
    n = draw(st.integers(0, max_boxes))
    corners = draw(arrays(np.int64, (n, 2), elements=st.integers(0, 24)))
    sizes = draw(arrays(np.int64, (n, 2), elements=st.integers(1, 12)))
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float64)
    scores = draw(arrays(np.float32, (n,), elements=st.integers(1, 12).map(float)))
    groups = draw(arrays(np.int64, (n,), elements=st.integers(0, 3)))
    threshold = draw(st.sampled_from(THRESHOLDS))
    # OpenCV compares IoUs in float32: stay clear of boxes whose IoU sits on the threshold.
    assume(n == 0 or np.abs(box_iou(boxes, boxes) - threshold).min() > 1e-6)
    return boxes, scores, groups, threshold


@settings(max_examples=150, deadline=None)
@given(case=scene())
def test_nms_matches_opencv(case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]) -> None:
    boxes, scores, _, threshold = case
    assert nms(boxes, scores, threshold).tolist() == opencv_nms(boxes, scores, threshold)


@settings(max_examples=150, deadline=None)
@given(case=scene())
def test_batched_nms_matches_opencv(case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]) -> None:
    boxes, scores, groups, threshold = case
    assert batched_nms(boxes, scores, groups, threshold).tolist() == opencv_nms(boxes, scores, threshold, groups)


@settings(max_examples=100, deadline=None)
@given(
    case=scene(max_boxes=60),
    block=st.integers(1, 16),
    first=st.integers(1, 8),
    greedy=st.integers(2, 8),
    growth=st.integers(2, 4),
    screen=st.sampled_from([0, 1, 16]),
    chunk=st.sampled_from([1, 7, 1 << 20]),
    max_output=st.integers(0, 12),
)
def test_block_path_matches_reference(
    case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float],
    block: int,
    first: int,
    greedy: int,
    growth: int,
    screen: int,
    chunk: int,
    max_output: int,
) -> None:
    boxes, scores, groups, threshold = case
    expected = reference_nms(boxes, scores, groups, threshold)
    with small_blocks(block, first, greedy, growth, screen, chunk):
        assert batched_nms(boxes, scores, groups, threshold).tolist() == expected
        assert batched_nms(boxes, scores, groups, threshold, max_output=max_output).tolist() == expected[:max_output]
        assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, np.zeros(len(boxes)), threshold)


@settings(max_examples=60, deadline=None)
@given(case=scene())
def test_inputs_are_not_modified(case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]) -> None:
    boxes, scores, groups, threshold = case
    copies = boxes.copy(), scores.copy(), groups.copy()
    for array in (boxes, scores, groups):
        array.flags.writeable = False
    batched_nms(boxes, scores, groups, threshold)
    nms(boxes, scores, threshold)
    for array, copy in zip((boxes, scores, groups), copies, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_empty_input_gives_a_typed_empty_result() -> None:
    kept = nms(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert kept.dtype == np.int64
    assert kept.shape == (0,)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), 0.5).shape == (0,)


def test_ties_keep_the_lower_index() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    assert nms(boxes, np.array([0.5, 0.9, 0.9]), 0.5).tolist() == [1]
    assert score_order(np.array([1.0, 3.0, 3.0, 2.0], dtype=np.float32)).tolist() == [1, 2, 3, 0]


def test_threshold_semantics() -> None:
    boxes = np.array([[0.0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]])  # IoU(0, 1) = 0.5 exactly
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2]  # suppression needs IoU strictly above
    assert nms(boxes, scores, 0.49).tolist() == [0, 2]
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2]
    touching = np.array([[0.0, 0, 1, 1], [1, 0, 2, 1]])
    assert nms(touching, np.array([0.9, 0.8]), 0.0).tolist() == [0, 1]
    assert nms(boxes, scores, 0.0).tolist() == [0, 2]


def test_groups_never_suppress_each_other() -> None:
    boxes = np.array([[0.0, 0, 10, 10]] * 4)
    kept = batched_nms(boxes, np.array([0.1, 0.9, 0.5, 0.7]), np.array([7, 3, 7, 3]), 0.5)
    assert kept.tolist() == [1, 2]
    # Any sortable group values: strings, negative or huge ids.
    assert batched_nms(boxes, np.ones(4), np.array(["a", "b", "a", "c"]), 0.5).tolist() == [0, 1, 3]
    assert batched_nms(boxes, np.ones(4), np.array([-5, 10**12, -5, 0]), 0.5).tolist() == [0, 1, 3]


def test_degenerate_and_non_finite_boxes_neither_suppress_nor_are_suppressed() -> None:
    boxes = np.array(
        [
            [0.0, 0, 10, 10],
            [0, 0, 0, 10],  # zero width
            [3, 3, 3, 3],  # a point
            [8, 8, 2, 2],  # inverted
            [0, 0, np.nan, 10],
            [0, 0, np.inf, 10],
            [0, 0, 10, 10],
        ]
    )
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.95, 0.6, 0.05])
    assert nms(boxes, scores, 0.3).tolist() == [4, 1, 2, 3, 5, 0]
    assert batched_nms(boxes, scores, np.zeros(7, dtype=int), 0.3).tolist() == [4, 1, 2, 3, 5, 0]


def test_nan_scores_rank_last() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, np.array([np.nan, 0.2, 0.1]), 0.5).tolist() == [1, 2]
    assert nms(boxes[::-1].copy(), np.array([0.1, np.nan, 0.2]), 0.5).tolist() == [2, 0]


def test_a_pile_of_identical_boxes_is_fast_and_keeps_one_per_group() -> None:
    n = 20_000
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (n, 1))
    groups = np.arange(n) % 5
    kept = batched_nms(boxes, np.linspace(1.0, 0.0, n), groups, 0.5)
    assert kept.tolist() == [0, 1, 2, 3, 4]


def test_a_chain_of_suppressions_resolves_greedily() -> None:
    # Each box overlaps its neighbours only: kept, dropped, kept, dropped...
    n = 300
    x = np.arange(n, dtype=np.float64) * 0.5
    boxes = np.stack([x, np.zeros(n), x + 1.0, np.ones(n)], axis=1)
    scores = np.linspace(1.0, 0.5, n)
    expected = reference_nms(boxes, scores, np.zeros(n), 0.3)
    assert expected == list(range(0, n, 2))
    assert nms(boxes, scores, 0.3).tolist() == expected
    with small_blocks(16, 4, greedy=5):
        assert nms(boxes, scores, 0.3).tolist() == expected


def test_ranked_nms_uses_the_given_order() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]])
    assert ranked_nms(boxes, None, 0.5).tolist() == [0]
    assert ranked_nms(boxes, np.array([0, 1, 1]), 0.5).tolist() == [0, 1]
    assert ranked_nms(boxes, None, 0.5, max_output=0).tolist() == []
    # Boxes known to be kept are trusted, not checked among themselves.
    assert ranked_nms(boxes, None, 0.5, known_kept=2).tolist() == [0, 1]
    with pytest.raises(ValueError, match="known_kept"):
        ranked_nms(boxes, None, 0.5, known_kept=4)


@settings(max_examples=60, deadline=None)
@given(case=scene(max_boxes=50), cut=st.integers(0, 50))
def test_known_kept_continues_an_earlier_nms(
    case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float], cut: int
) -> None:
    boxes, scores, groups, threshold = case
    order = score_order(scores)
    ranked, ranked_groups = boxes[order], groups[order]
    full = ranked_nms(ranked, ranked_groups, threshold).tolist()
    head = [i for i in full if i < cut]
    pool = np.array(head + list(range(cut, len(order))), dtype=np.intp)
    with small_blocks(4, 2, greedy=3, screen=cut % 2 * 16):
        rest = ranked_nms(ranked[pool], ranked_groups[pool], threshold, known_kept=len(head))
    assert pool[rest].tolist() == full


def test_score_order() -> None:
    scores = np.array([0.5, np.nan, -0.0, 0.0, 0.5, -1.0, np.inf], dtype=np.float32)
    assert score_order(scores).tolist() == [6, 0, 4, 2, 3, 5, 1]
    assert score_order(scores.astype(np.float64)).tolist() == [6, 0, 4, 2, 3, 5, 1]
    tiebreak = np.array([9, 0, 0, 1, 1, 0, 0])
    assert score_order(scores, tiebreak).tolist() == [6, 4, 0, 2, 3, 5, 1]
    assert score_order(scores.astype(np.float64), tiebreak).tolist() == [6, 4, 0, 2, 3, 5, 1]
    assert score_order(np.array([1, 3, 2])).tolist() == [1, 2, 0]
    assert score_order(np.zeros(0, dtype=np.float32)).tolist() == []


def test_invalid_arguments() -> None:
    boxes = np.zeros((2, 4))
    with pytest.raises(ValueError, match="boxes"):
        nms(np.zeros((2, 3)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(boxes, np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(boxes, np.zeros(2), -0.1)
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(boxes, np.zeros(2), float("nan"))
    with pytest.raises(ValueError, match="max_output"):
        nms(boxes, np.zeros(2), 0.5, max_output=-1)
    with pytest.raises(ValueError, match="idxs"):
        batched_nms(boxes, np.zeros(2), np.zeros(3), 0.5)


# The kernels: the compiled one (postprocess/_greedy.c; also made to hand over to numpy), and the numpy ones: a
# plain loop (a handful of boxes), the heads rounds (clusters of duplicates) handing over to the sweep, and the
# sweep alone (the implementation before the heads kernel, kept as an oracle).


@st.composite
def clusters(draw: st.DrawFn, max_clusters: int = 6) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]:
    """Clusters of near-duplicate boxes (a real object's candidates), some of several groups, plus strays."""
    parts = []
    for _ in range(draw(st.integers(0, max_clusters))):
        size = draw(st.integers(1, 30))
        corner = draw(arrays(np.int64, (1, 2), elements=st.integers(0, 60)))
        extent = draw(arrays(np.int64, (1, 2), elements=st.integers(8, 30)))
        jitter = draw(arrays(np.int64, (size, 4), elements=st.integers(-2, 2)))
        parts.append(np.concatenate([corner, corner + extent], axis=1) + jitter)
    strays = draw(st.integers(0, 10))
    corners = draw(arrays(np.int64, (strays, 2), elements=st.integers(0, 90)))
    sizes = draw(arrays(np.int64, (strays, 2), elements=st.integers(1, 10)))
    parts.append(np.concatenate([corners, corners + sizes], axis=1))
    boxes = np.concatenate(parts).astype(np.float64)
    n = boxes.shape[0]
    scores = draw(arrays(np.float32, (n,), elements=st.integers(1, 40).map(float)))
    groups = draw(arrays(np.int64, (n,), elements=st.integers(0, draw(st.integers(0, 3)))))
    threshold = draw(st.sampled_from(THRESHOLDS))
    assume(n == 0 or np.abs(box_iou(boxes, boxes) - threshold).min() > 1e-6)
    return boxes, scores, groups, threshold


@settings(max_examples=150, deadline=None)
@given(
    case=st.one_of(scene(max_boxes=60), clusters()),
    name=st.sampled_from(sorted(KERNELS)),
    max_output=st.one_of(st.none(), st.integers(0, 12)),
    count_from=st.integers(0, 40),
)
def test_every_kernel_matches_the_reference(
    case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float],
    name: str,
    max_output: int | None,
    count_from: int,
) -> None:
    boxes, scores, groups, threshold = case
    expected = reference_nms(boxes, scores, groups, threshold)
    with kernel(name):
        assert batched_nms(boxes, scores, groups, threshold).tolist() == expected
        assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, np.zeros(len(boxes)), threshold)
        order = score_order(scores)
        full = ranked_nms(boxes[order], groups[order], threshold).tolist()
        assert order[full].tolist() == expected
        found = ranked_nms(boxes[order], groups[order], threshold, max_output=max_output, count_from=count_from)
    tail = [k for k in full if k >= count_from]
    assert found.tolist() == [k for k in full if k < count_from] + tail[:max_output]


@settings(max_examples=100, deadline=None)
@given(case=clusters(max_clusters=10), name=st.sampled_from(sorted(KERNELS)))
def test_clusters_match_opencv(case: tuple[NDArray[Any], NDArray[Any], NDArray[Any], float], name: str) -> None:
    boxes, scores, groups, threshold = case
    with kernel(name):
        assert batched_nms(boxes, scores, groups, threshold).tolist() == opencv_nms(boxes, scores, threshold, groups)
        assert nms(boxes, scores, threshold).tolist() == opencv_nms(boxes, scores, threshold)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_non_finite_boxes_in_every_kernel(name: str) -> None:
    boxes = np.array([[0.0, 0, 10, 10], [0, 0, np.nan, 10], [0, 0, np.inf, 10], [1, 1, 10, 10], [0, 0, 0, 10]])
    scores = np.array([0.5, 0.9, 0.8, 0.7, 0.95])
    with kernel(name):
        assert nms(boxes, scores, 0.3).tolist() == [4, 1, 2, 3]
        assert ranked_nms(boxes, None, 0.3, known_kept=1).tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize("name", ["default", "numpy"])
def test_a_large_pile_is_decided_at_once(name: str) -> None:
    # 80 groups of 8400 identical boxes: one round of the heads kernel decides everything, and the compiled
    # kernel compares each box with one kept box.
    n = 8400 * 80
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (n, 1))
    with kernel(name):
        kept = batched_nms(boxes, np.full(n, 0.5, dtype=np.float32), np.arange(n) % 80, 0.45)
    assert kept.tolist() == list(range(80))


def test_count_from_is_validated() -> None:
    with pytest.raises(ValueError, match="count_from"):
        ranked_nms(np.zeros((2, 4)), None, 0.5, count_from=-1)


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(np.float32, st.integers(0, 200), elements=st.sampled_from([0.0, -0.0, 0.5, 1.0, np.nan, -np.inf])),
    data=st.data(),
)
def test_score_order_packed_key_matches_a_stable_sort(scores: NDArray[Any], data: st.DataObject) -> None:
    tiebreak = data.draw(arrays(np.int64, scores.shape, elements=st.integers(0, 5)))
    expected = sorted(range(scores.size), key=lambda i: (np.isnan(scores[i]), -float(np.nan_to_num(scores[i])), i))
    assert score_order(scores).tolist() == expected
    by_tiebreak = score_order(scores, tiebreak).tolist()
    keys = [(bool(np.isnan(scores[i])), -float(np.nan_to_num(scores[i])), int(tiebreak[i])) for i in by_tiebreak]
    assert keys == sorted(keys)
