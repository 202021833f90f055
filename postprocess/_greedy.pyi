"""Greedy class-aware NMS, compiled from ``_greedy.c`` (``postprocess.nms`` calls it; numpy is its reference).

Arrays are read through the buffer protocol, with any strides, in native byte order: boxes ``(N, 4)`` float32
or float64 xyxy, scores float32 or float64, groups and tiebreaks any integers (or booleans), or ``None``. Results
go to ``out``, a writable contiguous int64 array at least ``N`` long. A budget of box comparisons,
``base + per_box * r`` over the first ``r`` boxes, bounds the work: once spent, ``stop`` is the rank of the first
box left undecided and ``out`` holds the boxes kept before it; ``stop`` is -1 when every box is decided.
"""

from typing import Any

from numpy.typing import NDArray

def nms(
    boxes: NDArray[Any],
    scores: NDArray[Any],
    groups: NDArray[Any] | None,
    iou_threshold: float,
    max_output: int,
    per_box: int,
    base: int,
    out: NDArray[Any],
    order: NDArray[Any],
    /,
) -> tuple[int, int]:
    """NMS by decreasing score (ties: lower index; NaN last): ``(count, stop)``, the kept indices best first in
    ``out[:count]`` (at most ``max_output``; -1: no limit), the rank order of every box in ``order``."""

def ranked(
    boxes: NDArray[Any],
    groups: NDArray[Any] | None,
    iou_threshold: float,
    max_output: int,
    known_kept: int,
    count_from: int,
    per_box: int,
    base: int,
    out: NDArray[Any],
    /,
) -> tuple[int, int]:
    """NMS of boxes in rank order, the first ``known_kept`` kept unchecked: ``(count, stop)``, the kept positions
    in ``out[:count]``, increasing: all those below ``count_from``, then at most ``max_output`` others."""

def rank(scores: NDArray[Any], tiebreak: NDArray[Any] | None, mask: NDArray[Any], out: NDArray[Any], /) -> int:
    """The rows where ``mask`` is true by decreasing score (NaN last), ties by increasing ``tiebreak`` (or row),
    into ``out``; returns their count."""
