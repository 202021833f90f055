"""The compiled NMS kernel (``postprocess/_greedy.c``) against the numpy kernels, its oracle: the same kept boxes
in the same order on many random scenes (clusters, ties, degenerate and non-finite boxes, one label and many,
empty inputs), also when it hands over to the numpy kernels part way, and the same ranking. The kernel must be
built in the project's environment, or every call would quietly take the numpy kernels."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import postprocess
import postprocess.nms
from postprocess.boxes import box_iou
from postprocess.nms import batched_nms, nms, rank_rows, ranked_nms, score_order
from tests.postprocess.helpers import kernel

NMS_MODULE = sys.modules["postprocess.nms"]
THRESHOLDS = (0.0, 0.1, 0.3, 0.45, 0.5, 0.7, 1.0)
COMPILED = ("default", "compiled-hands-over-at-once", "compiled-hands-over-early")

Scene = tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]

needs_the_kernel = pytest.mark.skipif(
    NMS_MODULE._COMPILED is None, reason="the compiled kernel is not built (test_the_compiled_kernel_is_built fails)"
)


def test_the_compiled_kernel_is_built() -> None:
    # `make` (pip install -e '.[dev]') builds it next to postprocess/nms.py; CI runs the tests in that environment.
    import postprocess._greedy as compiled

    assert NMS_MODULE._COMPILED is compiled


def test_without_the_extension_nms_takes_the_numpy_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(postprocess, "_greedy", raising=False)
    monkeypatch.setitem(sys.modules, "postprocess._greedy", None)  # makes its import fail
    assert NMS_MODULE._load_kernel() is None
    monkeypatch.setattr(NMS_MODULE, "_COMPILED", None)
    boxes = np.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3, dtype=int), 0.5).tolist() == [0, 2]


def _boxes(rng: np.random.Generator, kind: str, n: int) -> NDArray[np.float64]:
    if kind == "grid":  # integer corners: many exact ties of IoU, zero-size boxes
        corners = rng.integers(0, 30, (n, 2))
        grid: NDArray[np.float64] = np.concatenate([corners, corners + rng.integers(0, 12, (n, 2))], axis=1) * 1.0
        return grid
    if kind == "clusters":  # a detector's output: near-duplicates around a few objects
        centres = rng.uniform(0.0, 1.0, (int(rng.integers(1, 8)), 2))
        sizes = rng.uniform(0.05, 0.4, centres.shape)
        owner = rng.integers(0, len(centres), n)
        middle = centres[owner] + rng.normal(0.0, 0.02, (n, 2))
        half = sizes[owner] * rng.uniform(0.85, 1.15, (n, 2)) / 2
        return np.concatenate([middle - half, middle + half], axis=1)
    if kind == "uniform":  # corners anywhere: inverted (degenerate) boxes too
        return rng.uniform(0.0, 1.0, (n, 4))
    if kind == "non-finite":
        boxes = rng.normal(0.0, 1.0, (n, 4))
        boxes[rng.random((n, 4)) < 0.03] = np.nan
        boxes[rng.random((n, 4)) < 0.02] = np.inf
        boxes[rng.random((n, 4)) < 0.02] = -np.inf
        return boxes
    if kind == "spread":  # small boxes on a grid: nearly all kept, many per label
        side = int(np.ceil(np.sqrt(max(n, 1))))
        points = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2)[:n].astype(float)
        half = rng.uniform(0.2, 0.6, (n, 2))
        return np.concatenate([points - half, points + half], axis=1)
    if kind == "pile":  # one box, over and over
        corner = rng.uniform(0.0, 0.5, 2)
        return np.tile(np.concatenate([corner, corner + 0.5]), (n, 1))
    raise AssertionError(kind)


def _scores(rng: np.random.Generator, n: int) -> NDArray[Any]:
    kind = rng.integers(0, 6)
    if kind == 0:  # ties
        return rng.integers(0, 5, n).astype(np.float32)
    if kind == 1:
        scores = rng.uniform(0.0, 1.0, n)
        scores[rng.random(n) < 0.05] = np.nan
        return scores
    if kind == 2:  # float32 with NaN, -0.0 and 0.0, infinities
        choices = np.array([0.5, 0.25, -0.0, 0.0, np.nan, np.inf, -np.inf, 0.75], dtype=np.float32)
        return rng.choice(choices, n)
    if kind == 3:
        return rng.integers(-3, 3, n)  # integer scores: ranked as float64
    if kind == 4:
        return rng.uniform(0.0, 1.0, n).astype(np.float16)
    return rng.uniform(0.0, 1.0, n).astype(np.float32)


def _groups(rng: np.random.Generator, n: int) -> NDArray[Any]:
    kind = rng.integers(0, 8)
    if kind == 0:
        return np.zeros(n, dtype=np.intp)  # one label
    if kind == 1:
        return rng.integers(0, 80, n)  # many labels
    if kind == 2:
        return rng.integers(0, 3, n).astype(np.int32)
    if kind == 3:
        return rng.integers(-5, 5, n) * 10**12  # negative and huge ids
    if kind == 4:
        return (np.uint64(2**64 - 1) - rng.integers(0, 3, n).astype(np.uint64)).astype(np.uint64)
    if kind == 5:
        return rng.random(n) < 0.5  # booleans
    if kind == 6:
        return rng.choice(np.array(["cat", "dog", "car"]), n)  # not integers: numbered first
    return rng.integers(0, 1 << 25, n)  # ids past the sweep's direct range


def scenes(seed: int, count: int, sizes: tuple[int, ...] = (0, 1, 2, 5, 24, 25, 64, 65, 200, 700)) -> Iterator[Scene]:
    rng = np.random.default_rng(seed)
    kinds = ("grid", "clusters", "uniform", "non-finite", "spread", "pile")
    for _ in range(count):
        n = int(rng.choice(sizes))
        boxes = _boxes(rng, str(rng.choice(kinds)), n)
        yield boxes, _scores(rng, n), _groups(rng, n), float(rng.choice(THRESHOLDS))


def _same(name: str, function: Callable[..., NDArray[Any]], *args: Any, **kwargs: Any) -> None:
    """``function(*args, **kwargs)`` gives the same array under the kernel named as under the numpy kernels."""
    with kernel("numpy"):
        expected = function(*args, **kwargs)
    with kernel(name):
        found = function(*args, **kwargs)
    assert found.dtype == expected.dtype
    assert found.tolist() == expected.tolist()


@pytest.mark.parametrize("name", COMPILED)
def test_batched_nms_and_nms_match_the_numpy_kernels(name: str) -> None:
    for boxes, scores, groups, threshold in scenes(seed=COMPILED.index(name), count=300):
        limit = int(np.random.default_rng(len(boxes)).integers(0, 8))
        _same(name, batched_nms, boxes, scores, groups, threshold)
        _same(name, batched_nms, boxes, scores, groups, threshold, max_output=limit)
        _same(name, nms, boxes, scores, threshold)
        _same(name, nms, boxes, scores, threshold, max_output=limit)


@pytest.mark.parametrize("name", COMPILED)
def test_ranked_nms_matches_the_numpy_kernels(name: str) -> None:
    rng = np.random.default_rng(10 + COMPILED.index(name))
    for boxes, scores, groups, threshold in scenes(seed=20 + COMPILED.index(name), count=300):
        order = score_order(scores)
        ranked = boxes[order]
        dense = np.unique(groups, return_inverse=True)[1].reshape(-1)[order]
        limit = None if rng.random() < 0.3 else int(rng.integers(0, 8))
        count_from = int(rng.integers(0, len(boxes) + 1))
        _same(name, ranked_nms, ranked, dense, threshold, max_output=limit, count_from=count_from)
        _same(name, ranked_nms, ranked, None, threshold, max_output=limit, count_from=count_from)
        # Continuing an earlier NMS: its first kept boxes, then every box after the last of them.
        with kernel("numpy"):
            full = ranked_nms(ranked, dense, threshold)
        known = int(rng.integers(0, full.size + 1))
        pool = np.concatenate([full[:known], np.arange(full[known - 1] + 1 if known else 0, len(boxes))])
        _same(name, ranked_nms, ranked[pool], dense[pool], threshold, max_output=limit, known_kept=known)


@pytest.mark.parametrize("name", COMPILED)
def test_large_scenes_match_the_numpy_kernels(name: str) -> None:
    # Past the radix sort's and the GIL release's thresholds; spread-out boxes spend the default budget.
    for boxes, scores, groups, threshold in scenes(seed=30 + COMPILED.index(name), count=12, sizes=(3000, 6000)):
        _same(name, batched_nms, boxes, scores, groups, threshold)
        _same(name, batched_nms, boxes, scores, groups, threshold, max_output=50)


@needs_the_kernel
def test_the_default_budget_hands_over_on_many_boxes_kept_per_label() -> None:
    boxes = _boxes(np.random.default_rng(0), "spread", 4000)
    scores = np.linspace(1.0, 0.0, 4000)
    kernel_module = NMS_MODULE._COMPILED
    out, order = np.empty(4000, dtype=np.int64), np.empty(4000, dtype=np.int64)
    per_box, base = NMS_MODULE._COMPILED_PER_BOX, NMS_MODULE._COMPILED_BASE
    count, stop = kernel_module.nms(boxes, scores, None, 0.3, -1, per_box, base, out, order)
    assert 0 < stop < 4000  # every box kept: each compared with all the kept ones before it
    assert count == stop
    assert out[:count].tolist() == list(range(count))
    _same("default", nms, boxes, scores, 0.3)
    # Clusters of duplicates compare each box with a few kept ones: decided without handing over.
    clusters = _boxes(np.random.default_rng(1), "clusters", 4000)
    assert kernel_module.nms(clusters, scores, None, 0.3, -1, per_box, base, out, order)[1] == -1


@pytest.mark.parametrize("name", ["default", "numpy"])
def test_iou_on_the_threshold_is_computed_alike(name: str) -> None:
    # A pair suppresses at a threshold one ulp below its IoU and not at its IoU: both kernels compute the IoU
    # with the same operations, to the last bit.
    rng = np.random.default_rng(2)
    corners = rng.uniform(0.0, 1.0, (300, 2, 2))
    pairs = np.concatenate([corners, corners + rng.uniform(0.05, 0.5, (300, 2, 2))], axis=2)
    scores = np.array([0.9, 0.8])
    with kernel(name):
        for pair in pairs:
            iou = float(box_iou(pair[:1], pair[1:])[0, 0])
            if iou == 0.0:
                continue
            assert nms(pair, scores, iou).tolist() == [0, 1]
            assert nms(pair, scores, float(np.nextafter(iou, -1.0))).tolist() == [0]
            assert ranked_nms(pair, np.zeros(2, dtype=np.intp), iou).tolist() == [0, 1]


@pytest.mark.parametrize("name", ["default", "numpy"])
def test_strided_and_foreign_inputs(name: str) -> None:
    rng = np.random.default_rng(3)
    wide = _boxes(rng, "clusters", 800).repeat(2, axis=1)[:, ::2]  # rows and columns both strided
    fortran = np.asfortranarray(_boxes(rng, "clusters", 400))
    swapped = _boxes(rng, "grid", 400).astype(">f8")
    scores = rng.uniform(0.0, 1.0, 1600)[::2]
    groups = rng.integers(0, 4, 1600)[::2]
    for boxes in (wide, fortran, swapped):
        n = len(boxes)
        _same(name, batched_nms, boxes, scores[:n], groups[:n], 0.3)
        _same(name, batched_nms, boxes, scores[:n].astype(">f4"), groups[:n].astype(">i8"), 0.3)


def score_cases(seed: int) -> Iterator[tuple[int, NDArray[np.floating[Any]], NDArray[np.bool_]]]:
    """(n, scores, mask) for several sizes and both float widths: ties (with NaN, infinities and zeros of both
    signs, or without them), distinct scores, one score; a random mask of the rows to rank."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.5, 0.25, -0.0, 0.0, np.nan, 1.0, -np.inf])
    for n in (0, 1, 7, 64, 65, 300, 5000):
        for dtype in (np.float32, np.float64):
            for scores in (rng.choice(levels, n), rng.choice(levels[:4], n), rng.uniform(0.0, 1.0, n), np.full(n, 0.5)):
                yield n, scores.astype(dtype), rng.random(n) < 0.7


def test_rank_rows_matches_score_order() -> None:
    rng = np.random.default_rng(4)
    for n, scores, mask in score_cases(4):
        rows = np.flatnonzero(mask)
        # Distinct tiebreaks (small as detect's, negative, wide): the very order of score_order.
        for tiebreak in (rng.permutation(n), rng.permutation(n) - n // 2, rng.permutation(n) * 10**12):
            expected = rows[score_order(scores[rows], tiebreak[rows])].tolist()
            assert rank_rows(scores, mask, tiebreak).tolist() == expected
        assert rank_rows(scores, mask).tolist() == rows[score_order(scores[rows])].tolist()


@needs_the_kernel
def test_rank_rows_keeps_rows_equal_on_both_keys_in_order() -> None:
    # score_order leaves their order unspecified; the compiled kernel's sort is stable.
    rng = np.random.default_rng(5)
    for n, scores, mask in score_cases(5):
        rows = np.flatnonzero(mask)
        for tiebreak in (rng.integers(0, 3, n), np.zeros(n, dtype=np.int64)):
            found = rank_rows(scores, mask, tiebreak)
            keys = [(bool(np.isnan(scores[i])), -float(np.nan_to_num(scores[i])), int(tiebreak[i])) for i in found]
            assert sorted(found.tolist()) == rows.tolist()
            assert [(*key, int(i)) for key, i in zip(keys, found, strict=True)] == sorted(
                (*key, int(i)) for key, i in zip(keys, found, strict=True)
            )


@needs_the_kernel
def test_the_kernel_refuses_arguments_it_cannot_read() -> None:
    compiled = NMS_MODULE._COMPILED
    assert compiled is not None
    boxes, scores, out = np.zeros((3, 4)), np.zeros(3), np.empty(3, dtype=np.int64)
    order = np.empty(3, dtype=np.int64)
    bad: list[tuple[type[Exception], Callable[[], object]]] = [
        (TypeError, lambda: compiled.nms(np.zeros((3, 3)), scores, None, 0.5, -1, 1, 1, out, order)),
        (TypeError, lambda: compiled.nms(boxes, scores.astype(np.int64), None, 0.5, -1, 1, 1, out, order)),
        (TypeError, lambda: compiled.nms(boxes, scores, np.zeros(3), 0.5, -1, 1, 1, out, order)),
        (TypeError, lambda: compiled.nms(boxes, scores, np.zeros(2, dtype=int), 0.5, -1, 1, 1, out, order)),
        (TypeError, lambda: compiled.nms(boxes, scores, None, 0.5, -1, 1, 1, out[:2], order)),
        (TypeError, lambda: compiled.nms(boxes, scores, None, 0.5, -1, 1, 1, out.astype(np.float64), order)),
        (TypeError, lambda: compiled.nms(boxes.astype(">f8"), scores, None, 0.5, -1, 1, 1, out, order)),
        (ValueError, lambda: compiled.nms(boxes, scores, None, 0.5, -1, -1, 1, out, order)),
        (TypeError, lambda: compiled.nms(boxes, scores, None, 0.5, -1, 1, 1, out)),
        (TypeError, lambda: compiled.ranked(boxes, None, "0.5", -1, 0, 0, 1, 1, out)),
        (TypeError, lambda: compiled.rank(scores, None, np.ones(2, dtype=bool), out)),
    ]
    for error, call in bad:
        with pytest.raises(error):
            call()
    read_only = np.empty(3, dtype=np.int64)
    read_only.flags.writeable = False
    with pytest.raises((BufferError, ValueError, TypeError)):
        compiled.rank(scores, None, np.ones(3, dtype=bool), read_only)
