"""Benchmark of detection post-processing: decode + thresholds + NMS, against OpenCV and a Python loop.

Run from the repository root (``make bench`` does the first)::

    python bench/postprocess_bench.py            # or: python -m bench.postprocess_bench; --repeat N, --seed S

Three families of synthetic scenes:

- *realistic*: a real detector's output, where each object lights up a cluster of same-label
  near-duplicates and nearly every other score is below the discard threshold: YOLOv8
  ``(1, 84, 8400)``, YOLOv5 ``(1, 25200, 85)`` (both 640 x 640, 80 labels), the anchored layout
  (Faster-RCNN, 300 proposals x 21 scores) and the direct layout (TF detection API, 300 rows);
- *bench* (the scenes this benchmark had first): the same, with looser clusters and confusable labels;
- *adversarial*: thousands of candidates above the threshold: a pile (every anchor on one box, 8 labels
  at 0.5: 67,200 candidates, an untrained network) and spread-out small boxes (2000 boxes of 3 labels
  that do not overlap at IoU 0.3: every one kept).

For each, the outputs are decoded as ``detect`` does it (``discard_threshold`` 0.025, boxes normalised
and clipped) and the candidates go through class-aware NMS on the same arrays:
``postprocess.nms.batched_nms`` (``nms``: its compiled kernel, handing over to the numpy kernels where
many boxes are kept per label), the same on the numpy kernels alone (``numpy``: the implementation
before the compiled kernel, and what runs where it is not built), OpenCV's C++
``cv2.dnn.NMSBoxesBatched`` (given the decoded xywh boxes, float32 scores and labels: its time is the
NMS alone, no conversion) and, on the realistic and bench scenes, a plain per-box Python loop. The
ratio ``opencv/ours`` compares decode + NMS on each side: ``(decode + opencv) / (decode + nms)``,
above 1 when ``postprocess`` is faster; ``nms-only`` compares the NMS calls alone. ``detect`` is the
whole post-processing end to end (v0.7 settings: thresholds 0.8, predicted and discarded lists of at
most 100 each, result objects included), ``detect-pred`` the same with ``with_discarded=False``, and
``opencv/pred`` is ``(decode + opencv) / detect-pred``. A last line times 10 boxes (the fixed floor).
Times are interleaved medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (python bench/postprocess_bench.py) rather than with -m
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from numpy.typing import NDArray

import postprocess.nms
from postprocess import AnchoredOutput, DetectionConfig, DirectOutput, Label, Yolov5Output, Yolov8Output, detect
from postprocess.boxes import box_convert, clip_boxes_to_image, normalize_boxes
from postprocess.nms import batched_nms

__all__ = ["main"]

DISCARD = 0.025
NMS = 0.3


@dataclass(frozen=True)
class Scene:
    name: str
    outputs: dict[str, NDArray[Any]]
    config: DetectionConfig
    input_size: tuple[int, int] | None


def _objects(rng: np.random.Generator, count: int, height: int, width: int, n_labels: int) -> NDArray[np.float64]:
    """``(count, 5)``: cx, cy, w, h in pixels, label."""
    w = rng.uniform(0.05, 0.5, count) * width
    h = rng.uniform(0.05, 0.5, count) * height
    cx = rng.uniform(w / 2, width - w / 2)
    cy = rng.uniform(h / 2, height - h / 2)
    return np.stack([cx, cy, w, h, rng.integers(0, n_labels, count)], axis=1)


def _class_scores(
    rng: np.random.Generator, strength: NDArray[np.float64], labels: NDArray[np.int64], n_labels: int
) -> NDArray[np.float32]:
    """``(N, L)`` sigmoid scores: low background, the object's label at ``strength``, two confusable labels lower."""
    n = strength.size
    logits = rng.normal(-8.0, 1.2, (n, n_labels))
    scores = 1.0 / (1.0 + np.exp(-logits))
    rows = np.flatnonzero(strength > 0)
    scores[rows, labels[rows]] = np.maximum(scores[rows, labels[rows]], strength[rows])
    for shift in (1, 7):
        confusable = (labels[rows] + shift) % n_labels
        scores[rows, confusable] = np.maximum(
            scores[rows, confusable], strength[rows] * rng.uniform(0.02, 0.3, rows.size)
        )
    return scores.astype(np.float32)


def _anchor_points(strides: tuple[int, ...], size: int, per_cell: int) -> NDArray[np.float64]:
    """``(N, 2)`` centres of the grid cells of each stride, each repeated ``per_cell`` times."""
    points = []
    for stride in strides:
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1) * stride + stride / 2
        points.append(np.repeat(centres, per_cell, axis=0))
    result: NDArray[np.float64] = np.concatenate(points).astype(np.float64)
    return result


def _yolo_candidates(
    rng: np.random.Generator, points: NDArray[np.float64], objects: NDArray[np.float64], n_labels: int
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Boxes ``(N, 4)`` cxcywh and class scores ``(N, L)`` for anchor points near or far from objects."""
    n = points.shape[0]
    boxes = np.concatenate([points, rng.uniform(8, 64, (n, 2))], axis=1)
    strength = np.zeros(n)
    labels = np.zeros(n, dtype=np.int64)
    for cx, cy, w, h, label in objects:
        d2 = ((points[:, 0] - cx) / (0.25 * w)) ** 2 + ((points[:, 1] - cy) / (0.25 * h)) ** 2
        near = (d2 < 4.0) & (0.95 * np.exp(-d2) > strength)
        jitter = rng.normal(0.0, 0.06, (int(near.sum()), 4)) * np.array([w, h, w, h])
        boxes[near] = np.array([cx, cy, w, h]) + jitter
        strength[near] = 0.95 * np.exp(-d2[near])
        labels[near] = int(label)
    return boxes, _class_scores(rng, strength, labels, n_labels)


def yolov8_scene(rng: np.random.Generator) -> Scene:
    labels = tuple(Label(i, f"class-{i}") for i in range(80))
    points = _anchor_points((8, 16, 32), 640, 1)  # 8400
    boxes, scores = _yolo_candidates(rng, points, _objects(rng, 12, 640, 640, 80), 80)
    tensor = np.concatenate([boxes.astype(np.float32), scores], axis=1).T[np.newaxis]  # (1, 84, 8400)
    config = DetectionConfig(Yolov8Output("output0"), labels, None, NMS, DISCARD)
    return Scene("YOLOv8 8400 x 80", {"output0": np.ascontiguousarray(tensor)}, config, (640, 640))


def yolov5_scene(rng: np.random.Generator) -> Scene:
    labels = tuple(Label(i, f"class-{i}") for i in range(80))
    points = _anchor_points((8, 16, 32), 640, 3)  # 25200
    boxes, scores = _yolo_candidates(rng, points, _objects(rng, 12, 640, 640, 80), 80)
    objectness = scores.max(axis=1, keepdims=True)
    probabilities = scores / np.maximum(objectness, 1e-6)
    # Background rows: a low objectness and a spread of class probabilities.
    background = objectness[:, 0] < 0.01
    probabilities[background] = rng.uniform(0.0, 1.0, (int(background.sum()), 80))
    tensor = np.concatenate([boxes.astype(np.float32), objectness, probabilities], axis=1)[np.newaxis]
    config = DetectionConfig(Yolov5Output("output0"), labels, None, NMS, DISCARD)
    return Scene("YOLOv5 25200 x 85", {"output0": tensor.astype(np.float32)}, config, (640, 640))


def faster_rcnn_scene(rng: np.random.Generator, background: float = 4.0, name: str = "Faster-RCNN 300 x 21") -> Scene:
    n_labels, n_proposals, height, width = 20, 300, 600, 800
    labels = tuple(Label(100 + i, f"class-{i}") for i in range(n_labels))
    objects = _objects(rng, 6, height, width, n_labels)
    owner = rng.integers(-1, len(objects), n_proposals)  # -1: a proposal on the background
    centres = np.stack([rng.uniform(0, width, n_proposals), rng.uniform(0, height, n_proposals)], axis=1)
    sizes = rng.uniform(20, 300, (n_proposals, 2))
    on_object = owner >= 0
    obj = objects[owner[on_object]]
    centres[on_object] = obj[:, :2] + rng.normal(0, 0.1, (int(on_object.sum()), 2)) * obj[:, 2:4]
    sizes[on_object] = obj[:, 2:4] * rng.uniform(0.7, 1.3, (int(on_object.sum()), 2))
    xywh = box_convert(np.concatenate([centres, sizes], axis=1), "cxcywh", "xywh")
    anchors = np.concatenate([rng.uniform(0.5, 1.0, (n_proposals, 1)), xywh], axis=1)
    logits = rng.normal(0.0, 1.5, (n_proposals, n_labels + 1))
    logits[:, 0] += background
    logits[np.flatnonzero(on_object), obj[:, 4].astype(np.int64) + 1] += rng.uniform(3.0, 9.0, int(on_object.sum()))
    scores = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    offsets = rng.normal(0.0, 0.1, (n_proposals, (n_labels + 1) * 4))
    outputs = {
        "rois": anchors.astype(np.float32)[np.newaxis],
        "cls_prob": scores.astype(np.float32)[np.newaxis],
        "bbox_pred": offsets.astype(np.float32)[np.newaxis],
        "im_info": np.array([[height, width, 1.0]], dtype=np.float32),
    }
    output = AnchoredOutput("rois", "cls_prob", "bbox_pred")
    config = DetectionConfig(output, labels, None, NMS, DISCARD, normalize_wrt_tensor="im_info")
    return Scene(name, outputs, config, None)


def _realistic_candidates(
    rng: np.random.Generator, points: NDArray[np.float64], objects: NDArray[np.float64], n_labels: int
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Boxes ``(N, 4)`` cxcywh and scores ``(N, L)``: tight clusters of same-label duplicates, the rest low.

    Each object lights up the anchor points near its centre with boxes jittered by 3 % of its size and
    a score falling off with the distance; one confusable label at a tenth of it; every other score
    is a sigmoid of N(-9, 1), nearly all below the discard threshold.
    """
    n = points.shape[0]
    boxes = np.concatenate([points, rng.uniform(8, 64, (n, 2))], axis=1)
    scores = 1.0 / (1.0 + np.exp(-rng.normal(-9.0, 1.0, (n, n_labels))))
    best = np.zeros(n)
    for cx, cy, w, h, label in objects:
        d2 = ((points[:, 0] - cx) / (0.5 * w)) ** 2 + ((points[:, 1] - cy) / (0.5 * h)) ** 2
        strength = 0.92 * np.exp(-6.0 * d2) * rng.uniform(0.8, 1.0, n)
        near = (strength > 0.02) & (strength > best)
        jitter = rng.normal(0.0, 0.03, (int(near.sum()), 4)) * np.array([w, h, w, h])
        boxes[near] = np.array([cx, cy, w, h]) + jitter
        scores[near, int(label)] = strength[near]
        confusable = (int(label) + 3) % n_labels
        scores[near, confusable] = np.maximum(scores[near, confusable], 0.1 * strength[near])
        best[near] = strength[near]
    return boxes, scores.astype(np.float32)


def _yolov8(name: str, boxes: NDArray[np.float64], scores: NDArray[np.float32]) -> Scene:
    labels = tuple(Label(i, f"class-{i}") for i in range(scores.shape[1]))
    tensor = np.concatenate([boxes.astype(np.float32), scores], axis=1).T[np.newaxis]  # (1, 4 + L, N)
    config = DetectionConfig(Yolov8Output("output0"), labels, None, NMS, DISCARD)
    return Scene(name, {"output0": np.ascontiguousarray(tensor)}, config, (640, 640))


def _yolov5(name: str, boxes: NDArray[np.float64], scores: NDArray[np.float32], rng: np.random.Generator) -> Scene:
    labels = tuple(Label(i, f"class-{i}") for i in range(scores.shape[1]))
    objectness = scores.max(axis=1, keepdims=True)
    probabilities = scores / np.maximum(objectness, 1e-6)
    # Background rows: a low objectness and a spread of class probabilities.
    background = objectness[:, 0] < 0.01
    probabilities[background] = rng.uniform(0.0, 1.0, (int(background.sum()), scores.shape[1]))
    tensor = np.concatenate([boxes.astype(np.float32), objectness, probabilities], axis=1)[np.newaxis]
    config = DetectionConfig(Yolov5Output("output0"), labels, None, NMS, DISCARD)
    return Scene(name, {"output0": tensor.astype(np.float32)}, config, (640, 640))


def realistic_yolov8_scene(rng: np.random.Generator) -> Scene:
    points = _anchor_points((8, 16, 32), 640, 1)  # 8400
    boxes, scores = _realistic_candidates(rng, points, _objects(rng, 10, 640, 640, 80), 80)
    return _yolov8("YOLOv8 8400 x 80", boxes, scores)


def realistic_yolov5_scene(rng: np.random.Generator) -> Scene:
    points = _anchor_points((8, 16, 32), 640, 3)  # 25200
    boxes, scores = _realistic_candidates(rng, points, _objects(rng, 10, 640, 640, 80), 80)
    return _yolov5("YOLOv5 25200 x 85", boxes, scores, rng)


def realistic_anchored_scene(rng: np.random.Generator) -> Scene:
    """Faster-RCNN: 300 proposals, most on the objects; a confident background keeps most scores low."""
    return faster_rcnn_scene(rng, background=8.0, name="anchored 300 x 21")


def realistic_direct_scene(rng: np.random.Generator) -> Scene:
    """TF detection API: 300 rows (boxes, scores, label ids), duplicates around each object, then low rows."""
    n_rows, n_labels = 300, 90
    labels = tuple(Label(i + 1, f"class-{i + 1}") for i in range(n_labels))
    objects = _objects(rng, 8, 1, 1, n_labels)
    owner = rng.integers(0, len(objects), n_rows)
    obj = objects[owner]
    centres = obj[:, :2] + rng.normal(0.0, 0.03, (n_rows, 2)) * obj[:, 2:4]
    sizes = obj[:, 2:4] * rng.uniform(0.9, 1.1, (n_rows, 2))
    boxes = box_convert(np.concatenate([centres, sizes], axis=1), "cxcywh", "xyxy")
    scores = np.sort(rng.uniform(0.0, 1.0, n_rows) ** 8)[::-1]  # a few high, most below 0.025
    outputs = {
        "detection_boxes": boxes.astype(np.float32)[np.newaxis, :, [1, 0, 3, 2]],  # yxyx, as the API emits
        "detection_scores": scores.astype(np.float32)[np.newaxis],
        "detection_classes": (obj[:, 4] + 1).astype(np.float32)[np.newaxis],
    }
    output = DirectOutput("detection_boxes", "detection_scores", "detection_classes", box_format="yxyx")
    config = DetectionConfig(output, labels, None, NMS, DISCARD)
    return Scene("direct 300 x 90", outputs, config, None)


def pile_scene(rng: np.random.Generator) -> Scene:
    """An untrained network: every anchor point predicts one box, 8 labels at 0.5 (67,200 candidates)."""
    scores = np.zeros((8400, 80), dtype=np.float32)
    scores[:, :8] = 0.5
    boxes = np.tile([320.0, 320.0, 100.0, 100.0], (8400, 1)) + rng.normal(0.0, 0.5, (8400, 4))
    return _yolov8("pile 8400 x 8 labels", boxes, scores)


def spread_scene(rng: np.random.Generator) -> Scene:
    """Small boxes on the 2000 coarser anchor points, 3 labels above the threshold: few overlaps, most kept."""
    points = _anchor_points((16, 32), 640, 1)  # 2000
    boxes = np.concatenate([points, rng.uniform(8.0, 24.0, (points.shape[0], 2))], axis=1)
    scores = np.zeros((points.shape[0], 80), dtype=np.float32)
    scores[:, :3] = rng.uniform(0.03, 0.9, (points.shape[0], 3))
    return _yolov8("spread 2000 x 3 labels", boxes, scores)


def loop_nms(boxes: list[list[float]], scores: list[float], labels: list[int], threshold: float) -> list[int]:
    """Plain greedy NMS, one box at a time, against the kept boxes of its label."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    kept_by_label: dict[int, list[int]] = {}
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        area = (x2 - x1) * (y2 - y1)
        same = kept_by_label.setdefault(labels[i], [])
        for j in same:
            a1, b1, a2, b2 = boxes[j]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = area + (a2 - a1) * (b2 - b1) - inter
            if union > 0 and inter / union > threshold:
                break
        else:
            same.append(i)
            kept.append(i)
    return kept


def _interleaved_medians(contenders: dict[str, tuple[Callable[[], object], int]], repeat: int) -> dict[str, float]:
    """Median time (ms) of each contender, timed in turns so that a change of load hits them all alike.

    Each contender comes with a stride: it runs on every stride-th turn (slow ones less often).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for function, _ in contenders.values():
        function()
    names = list(contenders)
    for turn in range(repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            function, stride = contenders[name]
            if turn % stride:
                continue
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def _numpy_only(boxes: NDArray[np.float64], scores: NDArray[np.float32], labels: NDArray[np.intp]) -> object:
    """``batched_nms`` on the numpy kernels alone (heads, then the sweep), as where the extension is not built."""
    compiled = postprocess.nms._COMPILED
    postprocess.nms._COMPILED = None
    try:
        return batched_nms(boxes, scores, labels, NMS)
    finally:
        postprocess.nms._COMPILED = compiled


def _sweep_only(boxes: NDArray[np.float64], scores: NDArray[np.float32], labels: NDArray[np.intp]) -> object:
    """``batched_nms`` on the sweep alone (the numpy implementation before the heads kernel)."""
    compiled = postprocess.nms._COMPILED
    postprocess.nms._COMPILED, postprocess.nms._HEADS = None, False
    try:
        return batched_nms(boxes, scores, labels, NMS)
    finally:
        postprocess.nms._COMPILED, postprocess.nms._HEADS = compiled, True


def run(scene: Scene, repeat: int, with_loop: bool) -> dict[str, float]:
    """Times (ms) and counts for one scene."""
    import cv2

    config = scene.config

    def decode() -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.intp]]:
        """Decoding as ``detect`` does it, up to the candidates that enter NMS."""
        (candidates,) = config.output.decode(scene.outputs, config.labels, config.discard_threshold)
        boxes = candidates.boxes
        if config.output.boxes_in_pixels(config.normalize_wrt_tensor):
            size = scene.input_size or tuple(scene.outputs[config.normalize_wrt_tensor][0, :2].tolist())
            boxes = normalize_boxes(boxes, size)
        return clip_boxes_to_image(boxes), candidates.scores.astype(np.float32), candidates.labels

    boxes, scores, labels = decode()
    xywh: Any = box_convert(boxes, "xyxy", "xywh")  # OpenCV's stubs ask for sequences; arrays are faster
    cv_scores: Any = scores
    cv_labels: Any = labels
    ours = batched_nms(boxes, scores, labels, NMS)
    theirs = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, cv_scores, cv_labels, 0.0, NMS), dtype=np.int64).reshape(-1)
    agree = set(ours.tolist()) == set(theirs.tolist())
    agree = agree and np.array_equal(ours, np.asarray(_numpy_only(boxes, scores, labels)))
    agree = agree and np.array_equal(ours, np.asarray(_sweep_only(boxes, scores, labels)))
    contenders: dict[str, tuple[Callable[[], object], int]] = {
        "decode": (decode, 1),
        "nms": (lambda: batched_nms(boxes, scores, labels, NMS), 1),
        "numpy": (lambda: _numpy_only(boxes, scores, labels), 1),
        "opencv": (lambda: cv2.dnn.NMSBoxesBatched(xywh, cv_scores, cv_labels, 0.0, NMS), 1),
        "detect": (lambda: detect(scene.outputs, config, input_size=scene.input_size), 1),
        "detect_predicted": (
            lambda: detect(scene.outputs, config, input_size=scene.input_size, with_discarded=False),
            1,
        ),
    }
    if with_loop:
        agree = agree and set(ours.tolist()) == set(loop_nms(boxes.tolist(), scores.tolist(), labels.tolist(), NMS))
        contenders["loop"] = (lambda: loop_nms(boxes.tolist(), scores.tolist(), labels.tolist(), NMS), 5)
    figures = _interleaved_medians(contenders, repeat)
    figures["candidates"] = float(boxes.shape[0])
    figures["kept"] = float(ours.size)
    figures["agree"] = float(agree)
    return figures


def floor(repeat: int) -> tuple[float, float, float]:
    """Medians (ms) of ``batched_nms``, the same on numpy alone and OpenCV's ``NMSBoxesBatched`` on 10 boxes of
    one label."""
    import cv2

    rng = np.random.default_rng(1)
    corners = rng.uniform(0.0, 0.8, (10, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.05, 0.2, (10, 2))], axis=1)
    scores = rng.uniform(0.0, 1.0, 10).astype(np.float32)
    labels = np.zeros(10, dtype=np.intp)
    xywh: Any = box_convert(boxes, "xyxy", "xywh")
    cv_scores: Any = scores
    cv_labels: Any = labels

    def ours() -> None:
        for _ in range(100):
            batched_nms(boxes, scores, labels, NMS)

    def numpy_only() -> None:
        for _ in range(100):
            _numpy_only(boxes, scores, labels)

    def theirs() -> None:
        for _ in range(100):
            cv2.dnn.NMSBoxesBatched(xywh, cv_scores, cv_labels, 0.0, NMS)

    figures = _interleaved_medians({"ours": (ours, 1), "numpy": (numpy_only, 1), "opencv": (theirs, 1)}, repeat)
    return figures["ours"] / 100, figures["numpy"] / 100, figures["opencv"] / 100


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark of postprocess detection against OpenCV's NMS.")
    parser.add_argument("--repeat", type=int, default=40, help="timed runs per figure (the median is shown)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    families = [
        ("realistic", [realistic_yolov8_scene(rng), realistic_yolov5_scene(rng)], True),
        ("realistic", [realistic_anchored_scene(rng), realistic_direct_scene(rng)], True),
        ("bench", [yolov8_scene(rng), yolov5_scene(rng), faster_rcnn_scene(rng)], True),
        ("adversarial", [pile_scene(rng), spread_scene(rng)], False),
    ]
    compiled = "built" if postprocess.nms._COMPILED is not None else "NOT BUILT: nms is the numpy kernels"
    print(f"numpy {np.__version__}, medians of {args.repeat} runs (adversarial: a fifth; loop: 1 in 5), ms")
    print(f"NMS: class-aware, IoU {NMS}, on every candidate above the discard threshold ({DISCARD})")
    print(f"nms: batched_nms, compiled kernel {compiled}; numpy: batched_nms on the numpy kernels alone")
    print("opencv/ours: (decode + OpenCV NMSBoxesBatched) / (decode + nms); nms-only: the NMS calls alone;")
    print("opencv/pred: (decode + OpenCV NMSBoxesBatched) / detect-pred; above 1 = postprocess faster")
    print(
        f"{'family':<12}{'scene':<24}{'cands':>7}{'kept':>6}{'decode':>8}{'nms':>7}{'numpy':>7}{'opencv':>8}"
        f"{'loop':>7}{'opencv/ours':>12}{'nms-only':>9}{'loop/ours':>10}{'detect':>8}{'detect-pred':>12}"
        f"{'opencv/pred':>12}"
    )
    for family, scenes, with_loop in families:
        for scene in scenes:
            f = run(scene, args.repeat if with_loop else max(5, args.repeat // 5), with_loop)
            ours = f["decode"] + f["nms"]
            loop = f"{f['loop']:>7.1f}" if with_loop else f"{'-':>7}"
            loop_ratio = f"{(f['decode'] + f['loop']) / ours:>10.1f}" if with_loop else f"{'-':>10}"
            print(
                f"{family:<12}{scene.name:<24}{f['candidates']:>7.0f}{f['kept']:>6.0f}{f['decode']:>8.3f}"
                f"{f['nms']:>7.3f}{f['numpy']:>7.3f}{f['opencv']:>8.3f}{loop}"
                f"{(f['decode'] + f['opencv']) / ours:>12.2f}{f['opencv'] / f['nms']:>9.2f}{loop_ratio}"
                f"{f['detect']:>8.3f}{f['detect_predicted']:>12.3f}"
                f"{(f['decode'] + f['opencv']) / f['detect_predicted']:>12.2f}"
                + ("" if f["agree"] else "  KEPT SETS DIFFER!")
            )
    small, numpy_small, theirs = floor(args.repeat)
    print(
        f"floor: 10 boxes of one label: batched_nms {small * 1e3:.1f} us (numpy kernels {numpy_small * 1e3:.1f} us), "
        f"OpenCV {theirs * 1e3:.1f} us"
    )
    print("detect: the whole post-processing (decode, thresholds, NMS of predicted and discarded, results);")
    print("detect-pred: the same with with_discarded=False (the predicted list only)")


if __name__ == "__main__":
    main()
