"""Benchmark of detection post-processing: decode + thresholds + NMS, against OpenCV and a Python loop.

Run from the repository root (``make bench`` does the first)::

    python bench/postprocess_bench.py            # or: python -m bench.postprocess_bench; --repeat N, --seed S

Three synthetic scenes, built to look like real outputs (a dozen objects, each lighting up a cluster of
candidates with a few confusable labels, over a background of low scores):

- YOLOv8: ``(1, 84, 8400)`` at 640 x 640, 80 labels;
- YOLOv5: ``(1, 25200, 85)`` at 640 x 640, 80 labels;
- Faster-RCNN: 300 proposals x 21 scores (20 labels + background) at 600 x 800.

For each, the outputs are decoded (``discard_threshold`` 0.025, boxes normalised and clipped) and the
candidates go through class-aware NMS at IoU 0.3 three ways: ``postprocess.nms.batched_nms``, OpenCV's
C++ ``cv2.dnn.NMSBoxesBatched`` and a plain per-box Python loop, on the same arrays. The ratios
compare decode + NMS; above 1, ``postprocess`` is faster. ``detect`` end to end (v0.7 settings,
thresholds 0.8, predicted and discarded lists of at most 100 each) is timed too. Times are medians.
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

from postprocess import AnchoredOutput, DetectionConfig, Label, Yolov5Output, Yolov8Output, detect
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


def faster_rcnn_scene(rng: np.random.Generator) -> Scene:
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
    logits[:, 0] += 4.0  # background
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
    return Scene("Faster-RCNN 300 x 21", outputs, config, None)


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


def run(scene: Scene, repeat: int) -> dict[str, float]:
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
    loop = loop_nms(boxes.tolist(), scores.tolist(), labels.tolist(), NMS)
    figures = _interleaved_medians(
        {
            "decode": (decode, 1),
            "nms": (lambda: batched_nms(boxes, scores, labels, NMS), 1),
            "opencv": (lambda: cv2.dnn.NMSBoxesBatched(xywh, cv_scores, cv_labels, 0.0, NMS), 1),
            "loop": (lambda: loop_nms(boxes.tolist(), scores.tolist(), labels.tolist(), NMS), 5),
            "detect": (lambda: detect(scene.outputs, config, input_size=scene.input_size), 1),
            "detect_predicted": (
                lambda: detect(scene.outputs, config, input_size=scene.input_size, with_discarded=False),
                1,
            ),
        },
        repeat,
    )
    figures["candidates"] = float(boxes.shape[0])
    figures["kept"] = float(ours.size)
    figures["agree"] = float(set(ours.tolist()) == set(theirs.tolist()) == set(loop))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark of postprocess detection against OpenCV's NMS.")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per figure (the median is shown)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    scenes = [yolov8_scene(rng), yolov5_scene(rng), faster_rcnn_scene(rng)]
    print(f"numpy {np.__version__}, medians of {args.repeat} interleaved runs (the loop: 1 in 5), ms")
    print("NMS: class-aware, IoU 0.3, on every candidate above the discard threshold (0.025)")
    print("ratios: time of (decode + the other NMS) / time of (decode + postprocess NMS); above 1 = postprocess faster")
    print(
        f"{'scene':<22}{'cands':>6}{'kept':>5}{'decode':>8}{'nms':>7}{'opencv':>8}{'loop':>8}"
        f"{'opencv/ours':>12}{'loop/ours':>10}{'nms-only opencv/ours':>21}{'detect':>8}{'detect-pred':>12}"
    )
    for scene in scenes:
        f = run(scene, args.repeat)
        ours = f["decode"] + f["nms"]
        print(
            f"{scene.name:<22}{f['candidates']:>6.0f}{f['kept']:>5.0f}{f['decode']:>8.2f}{f['nms']:>7.2f}"
            f"{f['opencv']:>8.2f}{f['loop']:>8.1f}{(f['decode'] + f['opencv']) / ours:>12.2f}"
            f"{(f['decode'] + f['loop']) / ours:>10.1f}{f['opencv'] / f['nms']:>21.2f}"
            f"{f['detect']:>8.2f}{f['detect_predicted']:>12.2f}" + ("" if f["agree"] else "  KEPT SETS DIFFER!")
        )
    print("detect: the whole post-processing (decode, thresholds, NMS of predicted and discarded, results);")
    print("detect-pred: the same with with_discarded=False (the predicted list only)")


if __name__ == "__main__":
    main()
