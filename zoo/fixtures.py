"""Known scenes and answer checks for end-to-end tests (numpy + Pillow only, no PyTorch, no onnxruntime).

Each :class:`Case` is an image with shapes at known coordinates and what each zoo model must answer for it. The
check functions take a v0.7 result JSON (as the service returns it, or ``zoo.runtime.OfflineModel.predict``), so
the same assertions serve the offline tests (``tests/zoo``) and the service's end-to-end tests::

    from zoo import fixtures
    for case in fixtures.CASES:
        result = MessageToDict(stub.Recognize(...png=case.png()...), preserving_proto_field_name=True)
        assert not fixtures.check_detection(result, case), case.name
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from zoo import scenes
from zoo.evaluate import labels_of

__all__ = [
    "CASES",
    "DETECTORS",
    "MIN_IOU",
    "Case",
    "box_iou",
    "check_classification",
    "check_detection",
    "check_tags",
]

DETECTORS = ("shapes-yolo", "shapes-anchored", "shapes-direct")
MIN_IOU = 0.7


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two ``(xmin, ymin, xmax, ymax)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Case:
    """An image made with :func:`zoo.scenes.compose` (plain or textured background) and its ground truth."""

    name: str
    width: int
    height: int
    placements: tuple[scenes.Placement, ...]
    background: tuple[int, int, int] | str = (255, 255, 255)

    @cached_property
    def scene(self) -> scenes.Scene:
        if isinstance(self.background, str):  # "noise:<seed>": a grey noisy canvas, made here, not by the generator
            rng = np.random.default_rng(int(self.background.split(":")[1]))
            canvas = np.clip(rng.normal(150.0, 25.0, size=(self.height, self.width, 3)), 0, 255)
            return scenes.compose(self.width, self.height, self.placements, canvas)
        return scenes.compose(self.width, self.height, self.placements, self.background)

    def png(self) -> bytes:
        return self.scene.png()

    @property
    def shapes(self) -> set[str]:
        return {o.shape for o in self.scene.objects}

    @property
    def tags(self) -> set[str]:
        return scenes.tags_of(self.scene)


P = scenes.Placement
CASES: tuple[Case, ...] = (
    Case("red-circle-top-left", 320, 240, (P("circle", "red", 90, 80, 45),)),
    Case("blue-square-right", 256, 256, (P("square", "blue", 180, 140, 40, 20),)),
    Case("green-triangle-wide", 400, 200, (P("triangle", "green", 200, 110, 60, 10),), (230, 230, 230)),
    Case("yellow-star-dark", 200, 300, (P("star", "yellow", 100, 180, 55, 5),), (40, 40, 40)),
    Case("purple-cross-noisy", 300, 300, (P("cross", "purple", 120, 150, 60, 30),), "noise:1"),
    Case("red-heart", 240, 240, (P("heart", "red", 130, 110, 55, -15),)),
    Case(
        "two-shapes",
        320,
        240,
        (P("circle", "green", 90, 90, 50), P("triangle", "yellow", 230, 150, 55, 180)),
    ),
    Case(
        "three-overlapping",
        360,
        270,
        (P("square", "blue", 110, 130, 60, 10), P("star", "red", 190, 120, 55), P("cross", "yellow", 280, 190, 50, 45)),
        (245, 245, 240),
    ),
)
"""Hand-placed scenes, outside the generator's random sets: single shapes and a few multi-shape scenes."""


def check_classification(result: dict[str, Any], case: Case) -> list[str]:
    """Problems with a classifier's answer for a one-shape case (empty when right)."""
    (truth,) = case.shapes
    items = labels_of(result, discarded=True)
    if not items:
        return ["no label at all"]
    best = max(items, key=lambda i: i.get("score", 0.0))
    problems = []
    if best["label_name"] != truth:
        problems.append(f"best label {best['label_name']} ({best.get('score', 0.0):.3f}), expected {truth}")
    if best not in labels_of(result):
        problems.append(f"{truth} is not in the predicted list")
    return problems


def check_tags(result: dict[str, Any], case: Case) -> list[str]:
    """Problems with a tagger's answer: the predicted tags must be exactly the case's shapes and colours."""
    predicted = {i["label_name"] for i in labels_of(result)}
    problems = []
    if missing := case.tags - predicted:
        problems.append(f"missing tags {sorted(missing)}")
    if extra := predicted - case.tags:
        problems.append(f"unexpected tags {sorted(extra)}")
    return problems


def check_detection(result: dict[str, Any], case: Case, min_iou: float = MIN_IOU) -> list[str]:
    """Problems with a detector's answer: each shape predicted with its label at IoU ≥ ``min_iou``, nothing else."""
    predicted = labels_of(result)
    used: set[int] = set()
    problems = []
    for obj in case.scene.objects:
        best, best_iou = None, 0.0
        for k, item in enumerate(predicted):
            if k in used or item["label_name"] != obj.shape:
                continue
            bbox = item.get("roi", {}).get("bbox", {})
            box = (bbox.get("xmin", 0.0), bbox.get("ymin", 0.0), bbox.get("xmax", 0.0), bbox.get("ymax", 0.0))
            iou = box_iou(box, obj.box)
            if iou > best_iou:
                best, best_iou = k, iou
        if best is None or best_iou < min_iou:
            problems.append(f"{obj.shape} at {np.round(obj.box, 3).tolist()}: best IoU {best_iou:.2f}")
        else:
            used.add(best)
    for k, item in enumerate(predicted):
        if k not in used:
            problems.append(f"unexpected {item['label_name']} ({item.get('score', 0.0):.2f})")
    return problems
