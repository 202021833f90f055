"""Greedy non-maximum suppression (NMS) on numpy arrays, after torchvision's ``ops/boxes.py``.

Semantics are those of torchvision's ``nms`` and OpenCV's ``cv2.dnn.NMSBoxes``: boxes are visited by
decreasing score (ties: lower index first, a stable sort), and a box is dropped when its IoU with a box
already kept is strictly greater than ``iou_threshold``.

How it runs without a loop per box. Two boxes can only have an IoU above ``t`` if their x-intervals
overlap by more than ``t`` times the wider one, so a sweep over boxes sorted by ``x1``
(``searchsorted``) lists the candidate pairs, whose IoUs are computed in one vectorised pass: the
"suppresses" edges of an acyclic graph ordered by score. Greedy NMS keeps a box iff no kept box of
higher score suppresses it, which is resolved by peeling the graph from its roots, a vectorised step
per link of the longest chain of suppressions (a handful in practice).

Boxes go by blocks of decreasing score: the first (64 boxes) is resolved among itself; each next one
(4 times larger, up to 4096) is first screened against the boxes kept so far, and only its survivors
are resolved among themselves. A cluster of duplicates thus costs about its size times the few boxes
kept there, not its size squared, and the work stops once ``max_output`` boxes are kept. Inputs whose
boxes barely overlap skip the blocks and go in one pass. Memory stays bounded however the boxes pile up.

``batched_nms`` uses torchvision's coordinate-offset trick on the sweep keys only: each group's
x-intervals are shifted by ``group * (extent + 1)`` so that boxes of different groups never meet,
while IoUs are computed on the original coordinates (no loss of precision to the offsets).

Non-finite boxes (NaN or infinite coordinates) neither suppress nor are suppressed; NaN scores rank last.

A compiled kernel (``postprocess/_greedy.c``, built with the package) runs the same greedy NMS one box at a
time in C, each box against the kept boxes of its group, ranking included: it is the fastest on small inputs
(no numpy call per step) and on clusters of duplicates (few kept boxes per group). Its cost is the number of
boxes times the boxes kept in their group, so past a budget of box comparisons (``_COMPILED_PER_BOX``) it stops
and the numpy kernels above decide the boxes left (many boxes kept per group: the sweep). Where the extension
is not built the numpy kernels do everything; they are the reference the tests hold it to, result for result.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from postprocess.boxes import box_area

__all__ = ["batched_nms", "nms", "rank_rows", "ranked_nms", "score_order"]

_BLOCK = 4096
"""Largest block of boxes screened at once against the boxes kept so far."""

_FIRST_BLOCK = 64
"""First block: the best boxes, resolved among themselves before they screen the next, growing blocks."""

_GROWTH = 4
"""Each block is this many times larger than the previous one, up to _BLOCK."""

_MAX_GREEDY = 1024
"""Most boxes of a block resolved among themselves at once (bounds their pairs to about _MAX_GREEDY**2 / 2)."""

_SCREEN_PAIRS = 16
"""Above this many pairs per candidate, screening pairs kept boxes and candidates exactly, both ways."""

_ONE_PASS_PAIRS = 1 << 14
"""Up to this many overlapping pairs (plus 16 per box), all boxes are resolved in one pass, without blocks."""

_PAIR_CHUNK = 1 << 20
"""Candidate pairs generated per vectorised step."""

_MAX_GROUP = 1 << 20
"""Integer groups below this are used as they are; others are renumbered (``np.unique``)."""


class _Kernel(Protocol):
    """``postprocess._greedy``, the compiled kernel (its stub, ``_greedy.pyi``, documents the arguments)."""

    def nms(
        self,
        boxes: NDArray[np.float64],
        scores: NDArray[Any],
        groups: NDArray[Any] | None,
        iou_threshold: float,
        max_output: int,
        per_box: int,
        base: int,
        out: NDArray[np.int64],
        order: NDArray[np.int64],
        /,
    ) -> tuple[int, int]: ...

    def ranked(
        self,
        boxes: NDArray[np.float64],
        groups: NDArray[Any] | None,
        iou_threshold: float,
        max_output: int,
        known_kept: int,
        count_from: int,
        per_box: int,
        base: int,
        out: NDArray[np.intp],
        /,
    ) -> tuple[int, int]: ...

    def rank(
        self, scores: NDArray[Any], tiebreak: NDArray[Any] | None, mask: NDArray[np.bool_], out: NDArray[np.intp], /
    ) -> int: ...


def _load_kernel() -> _Kernel | None:
    try:
        from postprocess import _greedy
    except ImportError:  # not built (no compiler where it was installed): the numpy kernels do everything
        return None
    # It writes 8-byte positions: intp must be int64 (every 64-bit platform).
    return _greedy if np.dtype(np.intp).itemsize == 8 else None


_COMPILED: _Kernel | None = _load_kernel()
"""The compiled kernel, or ``None`` when it is not built; the tests set it to ``None`` to run numpy alone."""

_COMPILED_PER_BOX = 512
"""The compiled kernel's budget: once it has compared more than ``_COMPILED_BASE + _COMPILED_PER_BOX * r``
pairs of boxes over its first ``r`` boxes, it stops there, and the numpy kernels decide the boxes from ``r``
on, the ones it kept passed as ``known_kept`` (nothing it did is lost).

Measured (one comparison costs about 1 ns; the numpy kernels 0.5-15 µs a box on inputs that keep many boxes
per group): on clusters of duplicates a box costs a few comparisons and the compiled kernel decides
everything. On spread-out boxes, all kept (1000 to 60,000 boxes, 1 to 80 groups, on a grid or scattered),
this budget gives 0.24-1.4x the numpy kernels' time: 3-4x faster where groups keep hundreds of boxes each,
up to 1.4x slower where one group keeps 2000-10,000 scattered boxes (the sweep's best case: its one-pass
shortcut, which a continuation with ``known_kept`` cannot take). A larger budget (1024) was faster on grids
and slower on scattered boxes (1.8x the numpy kernels on 4000 of one group), a smaller one (256) slower on grids."""

_COMPILED_BASE = 1 << 16
"""See :data:`_COMPILED_PER_BOX`: comparisons allowed whatever the number of boxes (65,536, some 70 µs)."""


def nms(
    boxes: ArrayLike, scores: ArrayLike, iou_threshold: float, *, max_output: int | None = None
) -> NDArray[np.int64]:
    """Greedy NMS of xyxy boxes.

    Args:
        boxes: ``(N, 4)`` xyxy boxes, any real dtype (computed in float64).
        scores: ``(N,)`` scores, any real dtype.
        iou_threshold: ``>= 0``; a box whose IoU with a kept box is greater is dropped.
        max_output: keep at most this many boxes (the first ones of the full result; exact,
            since a box's fate depends only on boxes of higher score).

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.
    """
    b, s = _check(boxes, scores, iou_threshold, max_output)
    if _COMPILED is not None:
        return _compiled_nms(_COMPILED, b, s, None, iou_threshold, max_output)
    order = score_order(s)
    return order[_nms_ranked(b.take(order, axis=0), None, iou_threshold, max_output)].astype(np.int64)


def batched_nms(
    boxes: ArrayLike, scores: ArrayLike, idxs: ArrayLike, iou_threshold: float, *, max_output: int | None = None
) -> NDArray[np.int64]:
    """Greedy NMS applied independently to the boxes of each group (category).

    Boxes of different groups never suppress each other.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        idxs: ``(N,)`` group of each box (any values that ``np.unique`` can sort: label ids...).
        iou_threshold: ``>= 0``, as in :func:`nms`.
        max_output: keep at most this many boxes over all groups, as in :func:`nms`.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.
    """
    b, s = _check(boxes, scores, iou_threshold, max_output)
    groups = np.asarray(idxs)
    if groups.shape != s.shape:
        raise ValueError(f"idxs must have shape {s.shape}, got {groups.shape}")
    if _COMPILED is not None:
        # Integers as they are (the kernel only compares them); anything else numbered by np.unique.
        return _compiled_nms(
            _COMPILED, b, s, groups if _integers(groups) else _renumber(groups), iou_threshold, max_output
        )
    dense = _sweep_groups(groups) if np.issubdtype(groups.dtype, np.integer) else _renumber(groups)
    order = score_order(s)
    return order[_nms_ranked(b.take(order, axis=0), dense[order], iou_threshold, max_output)].astype(np.int64)


def _renumber(groups: NDArray[Any]) -> NDArray[np.intp]:
    """Group numbers ``0, 1, ...`` in the order of the sorted distinct values (``np.unique``)."""
    dense: NDArray[np.intp] = np.unique(groups, return_inverse=True)[1].reshape(-1)
    return dense


def _integers(groups: NDArray[Any]) -> bool:
    """Whether the compiled kernel reads these groups as they are: integers (or booleans) in native byte order."""
    return groups.dtype.kind in "biu" and groups.dtype.isnative


def _sweep_groups(groups: NDArray[Any]) -> NDArray[np.intp]:
    """Integer groups as the numpy kernels take them: below ``_MAX_GROUP`` as they are, others numbered."""
    if groups.size and groups.min() >= 0 and groups.max() < _MAX_GROUP:
        return groups.astype(np.intp)
    return _renumber(groups)


def _compiled_nms(
    kernel: _Kernel,
    boxes: NDArray[np.float64],
    scores: NDArray[Any],
    groups: NDArray[Any] | None,
    iou_threshold: float,
    max_output: int | None,
) -> NDArray[np.int64]:
    """NMS by the compiled kernel, ranking included; the numpy kernels finish what its budget leaves."""
    if scores.dtype != np.float32 and scores.dtype != np.float64:
        scores = scores.astype(np.float64)  # as score_order ranks them
    n = boxes.shape[0]
    out = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    limit = -1 if max_output is None else max_output
    count, stop = kernel.nms(boxes, scores, groups, iou_threshold, limit, _COMPILED_PER_BOX, _COMPILED_BASE, out, order)
    if stop < 0:
        return out[:count]
    # The boxes kept so far (best first), then the undecided ones in rank order: the sweep decides the latter.
    pool = np.concatenate([out[:count], order[stop:]])
    rest = _numpy_ranked(
        boxes.take(pool, axis=0),
        None if groups is None else _sweep_groups(groups)[pool],
        iou_threshold,
        max_output,
        count,
        0,
    )
    kept: NDArray[np.int64] = pool[rest]
    return kept


def ranked_nms(
    boxes: NDArray[np.float64],
    groups: NDArray[np.integer[Any]] | None,
    iou_threshold: float,
    *,
    max_output: int | None = None,
    known_kept: int = 0,
    count_from: int = 0,
) -> NDArray[np.intp]:
    """NMS of boxes already in rank order (best first), for callers that rank by their own key.

    Args:
        boxes: ``(N, 4)`` float64 xyxy boxes, best first.
        groups: ``(N,)`` group numbers in ``[0, 2**20)`` (boxes of different groups never suppress each
            other), or ``None`` for a single group.
        iou_threshold: ``>= 0``.
        max_output: keep at most this many.
        known_kept: the first ``known_kept`` boxes are known to survive (the result of an earlier NMS at
            the same threshold): they are not checked among themselves.
        count_from: ``max_output`` counts only the kept boxes at positions ``>= count_from``: every kept
            box before it is returned, then at most ``max_output`` of the others (``detect`` ranks its
            predicted boxes, then its discarded ones, and caps the discarded list alone).

    Returns:
        ``(K,)`` increasing positions of the kept boxes.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
    _check_limits(iou_threshold, max_output)
    if not 0 <= known_kept <= boxes.shape[0]:
        raise ValueError(f"known_kept must be in [0, {boxes.shape[0]}], got {known_kept}")
    if count_from < 0:
        raise ValueError(f"count_from must be >= 0, got {count_from}")
    return _nms_ranked(boxes, groups, iou_threshold, max_output, known_kept, count_from)


def score_order(scores: ArrayLike, tiebreak: NDArray[np.integer[Any]] | None = None) -> NDArray[np.intp]:
    """Indices that sort ``scores`` by decreasing value, ties by increasing ``tiebreak``, NaN last.

    Args:
        scores: ``(N,)`` real scores.
        tiebreak: ``(N,)`` integers, or ``None`` for the index itself (a stable sort).

    Returns:
        ``(N,)`` intp permutation. Entries equal on both keys come in an unspecified order.
    """
    values = np.asarray(scores)
    secondary = np.arange(values.size) if tiebreak is None else np.asarray(tiebreak)
    if values.size == 0:
        return np.empty(0, dtype=np.intp)
    if (
        values.size > _SMALL
        and values.dtype in (np.float16, np.float32)
        and secondary.min() >= 0
        and secondary.max() < 1 << 31
    ):
        # One int64 key (a sort 2-3x faster than a stable argsort): the float32 bits mapped to an
        # order-preserving unsigned integer, reversed for a decreasing order, then the tiebreak.
        bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
        ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))
        ascending[np.isnan(values)] = 0
        packed = ((~ascending).astype(np.int64) << np.int64(31)) | secondary.astype(np.int64)
        if tiebreak is None:
            packed.sort()
            return (packed & np.int64((1 << 31) - 1)).astype(np.intp)
        return np.argsort(packed)
    reals = values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)
    if tiebreak is None:
        return np.argsort(-reals, kind="stable")
    order: NDArray[np.intp] = np.lexsort((secondary, -reals))
    return order


def rank_rows(
    scores: NDArray[np.floating[Any]], mask: NDArray[np.bool_], tiebreak: NDArray[np.integer[Any]] | None = None
) -> NDArray[np.intp]:
    """The rows where ``mask`` is true, by decreasing score, ties by increasing ``tiebreak``, NaN last.

    ``rows[score_order(scores[rows], tiebreak[rows])]`` with ``rows = np.flatnonzero(mask)``, in one call
    where the compiled kernel is built (rows equal on both keys then stay in increasing order).

    Args:
        scores: ``(N,)`` floating scores.
        mask: ``(N,)`` bool, the rows to rank.
        tiebreak: ``(N,)`` integers, or ``None`` for the row itself.
    """
    if (
        _COMPILED is not None
        and (scores.dtype == np.float32 or scores.dtype == np.float64)
        and mask.dtype == np.bool_
        and (tiebreak is None or (tiebreak.dtype.kind == "i" and tiebreak.dtype.isnative))
    ):
        out = np.empty(mask.shape[0], dtype=np.intp)
        return out[: _COMPILED.rank(scores, tiebreak, mask, out)]
    rows = np.flatnonzero(mask)
    return rows[score_order(scores[rows], None if tiebreak is None else tiebreak[rows])]


def _check(
    boxes: ArrayLike, scores: ArrayLike, iou_threshold: float, max_output: int | None
) -> tuple[NDArray[np.float64], NDArray[Any]]:
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    if s.shape != (b.shape[0],):
        raise ValueError(f"scores must have shape ({b.shape[0]},), got {s.shape}")
    _check_limits(iou_threshold, max_output)
    return b, s


def _check_limits(iou_threshold: float, max_output: int | None) -> None:
    if not iou_threshold >= 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold}")
    if max_output is not None and max_output < 0:
        raise ValueError(f"max_output must be >= 0, got {max_output}")


def _nms_ranked(
    boxes: NDArray[np.float64],
    groups: NDArray[np.integer[Any]] | None,
    iou_threshold: float,
    max_output: int | None,
    known_kept: int = 0,
    count_from: int = 0,
) -> NDArray[np.intp]:
    """Greedy NMS of boxes in rank order; returns the increasing positions of the kept ones.

    ``max_output`` counts only the kept boxes at positions ``>= count_from``: every kept box before
    ``count_from`` is returned, then at most ``max_output`` of the others.
    """
    n = boxes.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.intp)
    if _COMPILED is not None and (groups is None or _integers(groups)):
        out = np.empty(n, dtype=np.intp)
        limit = -1 if max_output is None else max_output
        count, stop = _COMPILED.ranked(
            boxes, groups, iou_threshold, limit, known_kept, count_from, _COMPILED_PER_BOX, _COMPILED_BASE, out
        )
        if stop < 0:
            return out[:count]
        # Its budget spent: the numpy kernels decide the boxes from `stop` on, knowing the ones kept before.
        pool = np.concatenate([out[:count], np.arange(stop, n)])
        rest = _numpy_ranked(
            boxes.take(pool, axis=0),
            None if groups is None else groups[pool],
            iou_threshold,
            max_output,
            count,
            int(np.searchsorted(pool, count_from)),
        )
        kept: NDArray[np.intp] = pool[rest]
        return kept
    return _numpy_ranked(boxes, groups, iou_threshold, max_output, known_kept, count_from)


def _numpy_ranked(
    boxes: NDArray[np.float64],
    groups: NDArray[np.integer[Any]] | None,
    iou_threshold: float,
    max_output: int | None,
    known_kept: int,
    count_from: int,
) -> NDArray[np.intp]:
    """:func:`_nms_ranked` by the numpy kernels alone (arguments as there; ``boxes`` not empty)."""
    n = boxes.shape[0]
    if n <= _SMALL:
        return _cut(_loop(boxes, groups, iou_threshold, known_kept), count_from, max_output)
    with np.errstate(invalid="ignore", over="ignore"):
        if known_kept or not _HEADS:
            return _sweep_ranked(boxes, groups, iou_threshold, max_output, known_kept, count_from)
        kept, rest = _heads(boxes, groups, iou_threshold)
        if rest.size:
            rest.sort()
            sub = _sweep_ranked(
                boxes.take(rest, axis=0),
                None if groups is None else groups[rest],
                iou_threshold,
                max_output,
                0,
                int(np.searchsorted(rest, count_from)),
            )
            kept = np.concatenate([kept, rest[sub]])
        kept.sort()
    return _cut(kept, count_from, max_output)


def _cut(kept: NDArray[np.intp], count_from: int, max_output: int | None) -> NDArray[np.intp]:
    """The kept positions before ``count_from``, then the first ``max_output`` of the others."""
    if max_output is None:
        return kept
    return kept[: int(np.searchsorted(kept, count_from)) + max_output]


def _loop(
    boxes: NDArray[np.float64], groups: NDArray[np.integer[Any]] | None, iou_threshold: float, known_kept: int
) -> NDArray[np.intp]:
    """Greedy NMS one box at a time in Python floats, for a handful of boxes (no numpy call per step).

    The same IEEE operations as :meth:`_Columns.overlap`, so the same IoUs to the last bit.
    """
    rows = boxes.tolist()
    labels = [0] * len(rows) if groups is None else groups.tolist()
    kept: list[int] = list(range(known_kept))
    by_label: dict[int, list[tuple[float, float, float, float, float]]] = {}
    for i in kept:
        x1, y1, x2, y2 = rows[i]
        if math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2):
            by_label.setdefault(labels[i], []).append((x1, y1, x2, y2, max(x2 - x1, 0.0) * max(y2 - y1, 0.0)))
    for i in range(known_kept, len(rows)):
        x1, y1, x2, y2 = rows[i]
        if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)):
            kept.append(i)  # neither suppresses nor is suppressed
            continue
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        same = by_label.setdefault(labels[i], [])
        for a1, b1, a2, b2, other_area in same:
            # min and max spelled out (faster); a pair apart on one axis has an IoU of 0.
            width = (x2 if x2 < a2 else a2) - (x1 if x1 > a1 else a1)
            if width <= 0.0:
                continue
            height = (y2 if y2 < b2 else b2) - (y1 if y1 > b1 else b1)
            if height <= 0.0:
                continue
            inter = width * height
            union = area + other_area - inter
            if union > 0.0 and inter / union > iou_threshold:
                break
        else:
            kept.append(i)
            same.append((x1, y1, x2, y2, area))
    return np.array(kept, dtype=np.intp)


_SMALL = 24
"""Up to this many boxes, NMS runs as a plain loop (:func:`_loop`): numpy's per-call costs would dominate."""

_HEADS = True
"""Whether NMS starts with the heads kernel (:func:`_heads`); the tests turn it off to get the sweep alone."""

_HEADS_PROGRESS = 4
"""The heads kernel goes on while each round removes at least 1 / this of the boxes left."""

_HEADS_ROUNDS = 64
"""Most rounds of the heads kernel before the sweep takes over."""


def _heads(
    boxes: NDArray[np.float64], groups: NDArray[np.integer[Any]] | None, iou_threshold: float
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Greedy NMS by rounds over every group at once, while it removes boxes quickly.

    In each round, the best box left in each group (its head) is kept, being outranked only by kept
    boxes that did not suppress it, and every box of its group that it suppresses is dropped: a round
    costs one vectorised pass over the boxes left, and there are as many as the most boxes kept in one
    group. That suits clusters of duplicates (a few rounds remove nearly everything) and fails on many
    boxes kept per group, so it stops as soon as a round removes less than 1 / _HEADS_PROGRESS of the
    boxes left. No kept box suppresses a box left then, so greedy NMS among the boxes left (the sweep)
    gives their fate. Non-finite boxes are kept at once: they neither suppress nor are suppressed.

    Returns:
        ``(kept, rest)``: positions kept (unordered) and positions still undecided (unordered).
    """
    n = boxes.shape[0]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    columns = _Columns(x1, y1, x2, y2, box_area(boxes))
    finite = np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2)
    if groups is None:
        rest = np.arange(n)
        labels = np.zeros(n, dtype=np.intp)
    else:
        # By group, rank order within each group: one int64 key, a sort faster than a stable argsort.
        packed = (groups.astype(np.int64) << np.int64(32)) | np.arange(n, dtype=np.int64)
        packed.sort()
        rest = (packed & np.int64(0xFFFFFFFF)).astype(np.intp)
        labels = groups[rest]
    kept = [rest[~finite[rest]]]
    if not finite.all():
        labels = labels[finite[rest]]
        rest = rest[finite[rest]]
    for _ in range(_HEADS_ROUNDS):
        m = rest.size
        if m == 0:
            break
        starts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        firsts = np.concatenate([np.zeros(1, dtype=np.intp), starts])
        heads = rest[firsts]
        kept.append(heads)
        # Each box left, against its group's head; the head itself leaves too.
        lengths = np.diff(np.append(firsts, m))
        stays = ~columns.overlap(rest, np.repeat(heads, lengths), iou_threshold)
        stays[firsts] = False
        rest = rest[stays]
        labels = labels[stays]
        if (m - rest.size) * _HEADS_PROGRESS < m:
            break
    return np.concatenate(kept), rest


def _sweep_ranked(
    boxes: NDArray[np.float64],
    groups: NDArray[np.integer[Any]] | None,
    iou_threshold: float,
    max_output: int | None,
    known_kept: int = 0,
    count_from: int = 0,
) -> NDArray[np.intp]:
    """Greedy NMS by the sweep and blocks (module docstring); arguments as :func:`_nms_ranked`."""
    block = _BLOCK
    n = boxes.shape[0]
    limit = n if max_output is None else max_output
    head = min(count_from, n)
    if n == 0 or (limit == 0 and head == 0):
        return np.empty(0, dtype=np.intp)
    geometry = _Geometry(boxes, groups, iou_threshold)
    if n <= block:
        # Few overlapping pairs (sparse boxes): one pass over all of them beats the blocks' overheads.
        everything = np.arange(n)
        sweep = geometry.sweep(everything)
        if int(np.maximum(sweep[2] - np.arange(1, n + 1), 0).sum()) <= _ONE_PASS_PAIRS + 16 * n:
            return _cut(everything[geometry.greedy(everything, sweep, trusted=known_kept)], head, max_output)
    kept = np.arange(known_kept)
    screen = _Screen(geometry, kept)
    size = min(block, _FIRST_BLOCK)
    start = known_kept
    while start < n and (start < head or kept.size - int(np.searchsorted(kept, head)) < limit):
        stop = min(n, start + size)
        candidates = np.arange(start, stop)
        if kept.size:
            candidates = candidates[~screen.hits(candidates)]
        if candidates.size > _MAX_GREEDY:
            # Too many survivors to pair them all: resolve the first ones, revisit the rest next time.
            candidates = candidates[:_MAX_GREEDY]
            stop = int(candidates[-1]) + 1
        if candidates.size > 1:
            candidates = candidates[geometry.greedy(candidates)]
        kept = np.concatenate([kept, candidates])
        screen.add(candidates)
        start = stop
        size = min(_GROWTH * size, block)
    return _cut(kept, head, max_output)


class _Screen:
    """The boxes kept so far, sorted by their sweep key ``lo``, to screen new candidates against.

    A kept box ``k`` can only suppress a candidate ``c`` if ``lo_c < reach_k`` when it starts first, or
    ``lo_k < reach_c`` otherwise: the kept boxes to pair with ``c`` start in
    ``[lo_c - span, reach_c)``, ``span`` the largest ``reach - lo`` of a kept box.
    """

    __slots__ = ("by_lo", "geometry", "lo", "span")

    def __init__(self, geometry: _Geometry, kept: NDArray[np.intp]) -> None:
        self.geometry = geometry
        self.by_lo = kept[np.argsort(geometry.lo[kept], kind="stable")]
        self.lo = geometry.lo[self.by_lo]
        self.span = 0.0
        self._widen(kept)

    def _widen(self, kept: NDArray[np.intp]) -> None:
        spans = self.geometry.reach[kept] - self.geometry.lo[kept]
        spans = spans[np.isfinite(spans)]
        if spans.size:
            self.span = max(self.span, float(spans.max()))

    def add(self, kept: NDArray[np.intp]) -> None:
        if kept.size:
            new = kept[np.argsort(self.geometry.lo[kept], kind="stable")]
            new_lo = self.geometry.lo[new]
            where = np.searchsorted(self.lo, new_lo, side="right")
            self.by_lo = np.insert(self.by_lo, where, new)
            self.lo = np.insert(self.lo, where, new_lo)
            self._widen(kept)

    def hits(self, candidates: NDArray[np.intp]) -> NDArray[np.bool_]:
        """For each candidate, whether a kept box suppresses it. Bool ``(len(candidates),)``."""
        g = self.geometry
        cand_lo = g.lo[candidates]
        starts = np.searchsorted(self.lo, cand_lo - self.span, side="left")
        ends = np.searchsorted(self.lo, g.reach[candidates], side="left")
        if int(np.maximum(ends - starts, 0).sum()) > _SCREEN_PAIRS * candidates.size:
            # Many kept boxes, some wide: pairing each way exactly is cheaper than the superset.
            return self._hits_both_ways(candidates, cand_lo)
        hit = np.zeros(candidates.size, dtype=bool)
        for q, t in _range_pairs(starts, ends):
            over = g.columns.overlap(self.by_lo[t], candidates[q], g.iou_threshold)
            hit[q[over]] = True
        return hit

    def _hits_both_ways(self, candidates: NDArray[np.intp], cand_lo: NDArray[np.float64]) -> NDArray[np.bool_]:
        g = self.geometry
        hit = np.zeros(candidates.size, dtype=bool)
        # Kept boxes starting within each candidate's reach: lo_c <= lo_k < reach_c.
        starts = np.searchsorted(self.lo, cand_lo, side="left")
        ends = np.searchsorted(self.lo, g.reach[candidates], side="left")
        for q, t in _range_pairs(starts, ends):
            over = g.columns.overlap(self.by_lo[t], candidates[q], g.iou_threshold)
            hit[q[over]] = True
        # Candidates starting strictly after each kept box and within its reach: lo_k < lo_c < reach_k.
        order = np.argsort(cand_lo, kind="stable")
        sorted_lo = cand_lo[order]
        starts = np.searchsorted(sorted_lo, self.lo, side="right")
        ends = np.searchsorted(sorted_lo, g.reach[self.by_lo], side="left")
        for q, t in _range_pairs(starts, ends):
            over = g.columns.overlap(self.by_lo[q], candidates[order[t]], g.iou_threshold)
            hit[order[t[over]]] = True
        return hit


class _Geometry:
    """Boxes in rank order, with their areas and sweep keys; answers overlap questions by position.

    The sweep keys of a box are ``lo = x1`` and ``reach = x2 - t * (x2 - x1)`` (``t`` the IoU
    threshold), shifted by ``group * span`` for batched NMS, ``-inf`` for non-finite boxes: a box
    ``b`` with ``lo_a <= lo_b`` can only have an IoU above ``t`` with ``a`` if ``lo_b < reach_a``
    (their x-overlap must exceed ``t`` times the width of ``a``).
    """

    __slots__ = ("columns", "iou_threshold", "lo", "reach")

    def __init__(
        self, boxes: NDArray[np.float64], groups: NDArray[np.integer[Any]] | None, iou_threshold: float
    ) -> None:
        x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
        self.columns = _Columns(x1, y1, x2, y2, box_area(boxes))
        self.iou_threshold = iou_threshold
        finite = np.isfinite(boxes).all(axis=1)
        all_finite = bool(finite.all())
        # A hair less than t: rounding must never cut a pair whose IoU is above t.
        shrink = min(iou_threshold, 1.0) * (1.0 - 1e-9)
        self.lo = x1.copy()
        self.reach = x2 - shrink * np.maximum(x2 - x1, 0.0)
        if groups is not None and finite.any():
            # The offset exceeds every x-extent: group g's intervals end before group g+1's begin.
            extent = x2.max() - x1.min() if all_finite else x2[finite].max() - x1[finite].min()
            offsets = groups.astype(np.float64) * (max(float(extent), 0.0) + 1.0)
            self.lo += offsets
            self.reach += offsets
        if not all_finite:
            self.lo[~finite] = -np.inf
            self.reach[~finite] = -np.inf

    def sweep(self, candidates: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """``(order, by_lo, ends)``: ``by_lo = candidates[order]`` sorted by ``lo``, and for each of them
        the end (in that order) of the later candidates starting within its reach."""
        order = np.argsort(self.lo[candidates], kind="stable")
        by_lo = candidates[order]
        ends = np.searchsorted(self.lo[by_lo], self.reach[by_lo], side="left")
        return order, by_lo, ends

    def greedy(
        self,
        candidates: NDArray[np.intp],
        sweep: tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]] | None = None,
        trusted: int = 0,
    ) -> NDArray[np.bool_]:
        """Greedy NMS among ``candidates`` (increasing positions). Bool keep mask ``(len(candidates),)``.

        The first ``trusted`` candidates are known to be kept: no edge between two of them is followed.
        """
        m = candidates.size
        order, by_lo, ends = self.sweep(candidates) if sweep is None else sweep
        local = self.columns.take(by_lo)
        sources: list[NDArray[np.intp]] = []
        targets: list[NDArray[np.intp]] = []
        for p, q in _range_pairs(np.arange(1, m + 1), ends):
            over = local.overlap(p, q, self.iou_threshold)
            a = order[p[over]]
            b = order[q[over]]
            later = np.maximum(a, b)
            if trusted:
                a, b, later = a[later >= trusted], b[later >= trusted], later[later >= trusted]
            sources.append(np.minimum(a, b))
            targets.append(later)
        if not sources:
            return np.ones(m, dtype=bool)
        return _resolve(m, np.concatenate(sources), np.concatenate(targets))


class _Columns:
    """xyxy boxes as contiguous columns, with their areas."""

    __slots__ = ("areas", "x1", "x2", "y1", "y2")

    def __init__(
        self,
        x1: NDArray[np.float64],
        y1: NDArray[np.float64],
        x2: NDArray[np.float64],
        y2: NDArray[np.float64],
        areas: NDArray[np.float64],
    ) -> None:
        self.x1, self.y1, self.x2, self.y2, self.areas = x1, y1, x2, y2, areas

    def take(self, rows: NDArray[np.intp]) -> _Columns:
        return _Columns(self.x1[rows], self.y1[rows], self.x2[rows], self.y2[rows], self.areas[rows])

    def overlap(self, a: NDArray[np.intp], b: NDArray[np.intp], iou_threshold: float) -> NDArray[np.bool_]:
        """``iou(a[k], b[k]) > iou_threshold`` for each pair k (IoU 0 when the union is empty)."""
        widths = np.minimum(self.x2[a], self.x2[b])
        widths -= np.maximum(self.x1[a], self.x1[b])
        heights = np.minimum(self.y2[a], self.y2[b])
        heights -= np.maximum(self.y1[a], self.y1[b])
        np.maximum(widths, 0.0, out=widths)
        np.maximum(heights, 0.0, out=heights)
        inter = widths * heights
        union = self.areas[a] + self.areas[b]
        union -= inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        over: NDArray[np.bool_] = iou > iou_threshold
        return over


def _resolve(m: int, sources: NDArray[np.intp], targets: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Keep mask of greedy NMS given its "suppresses" edges (``sources[k] < targets[k]`` in rank).

    Peels the acyclic graph from its roots: an undecided box with no edge left from an undecided box
    is kept, and every box it points to is suppressed; edges touching a decided box no longer matter.
    Each step is vectorised; there are as many as the longest chain of suppressions (a few in practice).
    """
    keep = np.ones(m, dtype=bool)
    decided = np.zeros(m, dtype=bool)
    while sources.size:
        roots = np.ones(m, dtype=bool)
        roots[targets] = False
        suppressed = targets[roots[sources]]
        keep[suppressed] = False
        decided |= roots
        decided[suppressed] = True
        live = ~(decided[sources] | decided[targets])
        sources = sources[live]
        targets = targets[live]
    return keep


def _range_pairs(
    starts: NDArray[np.intp], ends: NDArray[np.intp]
) -> Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """Yield ``(q, t)`` for every query ``q`` and ``t`` in ``[starts[q], ends[q])``, in chunks of about _PAIR_CHUNK."""
    counts = np.maximum(ends - starts, 0)
    cumulative = np.cumsum(counts)
    n = counts.size
    if n == 0 or cumulative[-1] == 0:
        return
    q0 = 0
    done = 0
    while q0 < n:
        q1 = min(n, max(q0 + 1, int(np.searchsorted(cumulative, done + _PAIR_CHUNK, side="right"))))
        c = counts[q0:q1]
        total = int(cumulative[q1 - 1]) - done
        if total:
            queries = np.repeat(np.arange(q0, q1), c)
            firsts = np.repeat(starts[q0:q1] - (cumulative[q0:q1] - c - done), c)
            yield queries, np.arange(total) + firsts
        done = int(cumulative[q1 - 1])
        q0 = q1
