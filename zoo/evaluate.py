"""Quality of the zoo's models on two fixed evaluation sets, through any predictor.

    python -m zoo.evaluate [--repository model_repository] [--n 300] [--sets independent,held-out] [--json FILE]

``independent``: scenes of ``zoo.eval_scenes``, a generator that shares no drawing code nor background source with
the training's; ``held-out``: ``zoo.scenes.eval_set``, the training's own generator on unseen seeds (it shares the
training's biases, so it overstates what users see).

Each ``evaluate_*`` function takes ``predict(png_bytes) -> result``, ``result`` the v0.7 result JSON of one image
(as ``json_format.MessageToDict(result, preserving_proto_field_name=True)`` gives it; missing keys read as their
protobuf defaults), so the same evaluation runs offline (``zoo.runtime.OfflineModel``) or through the gRPC
service. Metrics: top-1 accuracy; per-tag F1 (hand-written formula, checked in ``tests/zoo``) averaged over tags;
mAP at IoU 0.5 by pycocotools' COCOeval (imported only by :func:`evaluate_detector`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import scenes

__all__ = [
    "Predictor",
    "evaluate_all",
    "evaluate_classifier",
    "evaluate_detector",
    "evaluate_tagger",
    "f1_scores",
    "labels_of",
    "main",
]

Predictor = Callable[[bytes], dict[str, Any]]


def labels_of(result: dict[str, Any], discarded: bool = False) -> list[dict[str, Any]]:
    """The predictions of a result's first output (plus the discarded ones when asked)."""
    labels = result.get("outputs", [{}])[0].get("labels", {})
    items = list(labels.get("predicted", []))
    if discarded:
        items += list(labels.get("discarded", []))
    return items


def _box(item: dict[str, Any]) -> tuple[float, float, float, float]:
    bbox = item.get("roi", {}).get("bbox", {})
    return (bbox.get("xmin", 0.0), bbox.get("ymin", 0.0), bbox.get("xmax", 0.0), bbox.get("ymax", 0.0))


def evaluate_classifier(predict: Predictor, eval_scenes: Iterable[scenes.Scene]) -> dict[str, Any]:
    """Top-1 accuracy: the best-scored label (predicted or discarded) is the scene's shape."""
    total = correct = 0
    confusion: dict[str, dict[str, int]] = {}
    for scene in eval_scenes:
        items = labels_of(predict(scene.png()), discarded=True)
        best = max(items, key=lambda i: i.get("score", 0.0))["label_name"] if items else ""
        truth = scene.objects[0].shape
        total += 1
        correct += best == truth
        if best != truth:
            confusion.setdefault(truth, {}).setdefault(best, 0)
            confusion[truth][best] += 1
    return {"images": total, "top1": correct / max(total, 1), "errors": confusion}


def f1_scores(predicted: Sequence[set[str]], truth: Sequence[set[str]], tags: Sequence[str]) -> dict[str, float]:
    """Per-tag F1 = 2 TP / (2 TP + FP + FN) over the images (1.0 for a tag never predicted nor present)."""
    scores = {}
    for tag in tags:
        tp = sum(tag in p and tag in t for p, t in zip(predicted, truth, strict=True))
        fp = sum(tag in p and tag not in t for p, t in zip(predicted, truth, strict=True))
        fn = sum(tag not in p and tag in t for p, t in zip(predicted, truth, strict=True))
        scores[tag] = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return scores


def evaluate_tagger(predict: Predictor, eval_scenes: Iterable[scenes.Scene]) -> dict[str, Any]:
    """Mean over tags of the F1 of the predicted tags (score at or above the version's thresholds)."""
    predicted, truth = [], []
    for scene in eval_scenes:
        predicted.append({i["label_name"] for i in labels_of(predict(scene.png()))})
        truth.append(scenes.tags_of(scene))
    per_tag = f1_scores(predicted, truth, scenes.TAGS)
    exact = sum(p == t for p, t in zip(predicted, truth, strict=True)) / max(len(truth), 1)
    return {
        "images": len(truth),
        "mean_f1": float(np.mean(list(per_tag.values()))),
        "per_tag_f1": per_tag,
        "exact_match": exact,
    }


def evaluate_detector(predict: Predictor, eval_scenes: Iterable[scenes.Scene]) -> dict[str, Any]:
    """COCO mAP at IoU 0.5 (and 0.5:0.95) over every returned box, predicted and discarded, in image pixels."""
    from pycocotools.coco import COCO  # type: ignore[import-untyped]
    from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]

    categories = [{"id": i + 1, "name": name} for i, name in enumerate(scenes.SHAPES)]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image_id, scene in enumerate(eval_scenes, start=1):
        w, h = scene.width, scene.height
        images.append({"id": image_id, "width": w, "height": h})
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.pixel_box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "iscrowd": 0,
                }
            )
        for item in labels_of(predict(scene.png()), discarded=True):
            xmin, ymin, xmax, ymax = _box(item)
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": scenes.SHAPES.index(item["label_name"]) + 1,
                    "bbox": [xmin * w, ymin * h, (xmax - xmin) * w, (ymax - ymin) * h],
                    "score": item.get("score", 0.0),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt.createIndex()
        dt = gt.loadRes(detections) if detections else COCO()
        coco = COCOeval(gt, dt, "bbox")
        coco.evaluate()
        coco.accumulate()
        coco.summarize()
    # precision: (iou thresholds, recall points, categories, area ranges, max dets); IoU 0.5 is index 0
    precision = coco.eval["precision"][0, :, :, 0, -1]
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(scenes.SHAPES):
        known = precision[:, k][precision[:, k] > -1]  # -1: no ground truth of that class
        per_class[name] = float(known.mean()) if known.size else None
    return {
        "images": len(images),
        "objects": len(annotations),
        "map50": float(coco.stats[1]),
        "map50_95": float(coco.stats[0]),
        "per_class_ap50": per_class,
    }


EVALUATIONS: dict[str, tuple[str, Callable[[Predictor, Iterable[scenes.Scene]], dict[str, Any]]]] = {
    "shapes-classifier": ("classification", evaluate_classifier),
    "shapes-tagger": ("detection", evaluate_tagger),
    "shapes-yolo": ("detection", evaluate_detector),
    "shapes-anchored": ("detection", evaluate_detector),
    "shapes-direct": ("detection", evaluate_detector),
}
"""Which held-out set and which evaluation each zoo model gets."""

HEADLINE = {"shapes-classifier": "top1", "shapes-tagger": "mean_f1"}
"""The figure each model is judged by (``map50`` for the detectors)."""


def _held_out(kind: str, n: int) -> list[scenes.Scene]:
    return scenes.eval_set(kind, n)


def _independent(kind: str, n: int) -> list[scenes.Scene]:
    from zoo import eval_scenes  # OpenCV: only when this set is asked for

    return eval_scenes.independent_set(kind, n)


SETS: dict[str, Callable[[str, int], list[scenes.Scene]]] = {"independent": _independent, "held-out": _held_out}
"""The evaluation sets: ``independent`` (``zoo.eval_scenes``, another generator, backgrounds the training never
sees) and ``held-out`` (``zoo.scenes.eval_set``: the training's generator, unseen seeds, the same biases)."""


def evaluate_all(
    predictor_for: Callable[[str], Predictor],
    models: Sequence[str] = tuple(EVALUATIONS),
    n: int = 300,
    eval_sets: Sequence[str] = tuple(SETS),
) -> dict[str, Any]:
    """Figures of each model on each set, ``{set: {model_id: figures}}``; ``predictor_for(model_id)`` gives the
    model's ``predict`` (offline or through the service)."""
    figures: dict[str, Any] = {}
    for set_name in eval_sets:
        sets = {kind: SETS[set_name](kind, n) for kind in sorted({EVALUATIONS[m][0] for m in models})}
        figures[set_name] = {}
        for model_id in models:
            kind, evaluate = EVALUATIONS[model_id]
            start = time.time()
            figures[set_name][model_id] = evaluate(predictor_for(model_id), sets[kind])
            metric = HEADLINE.get(model_id, "map50")
            value, seconds = figures[set_name][model_id][metric], time.time() - start
            print(f"{set_name:12s} {model_id:18s} {metric:8s} {value:.4f}  ({seconds:.1f} s)", flush=True)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from zoo.runtime import REPOSITORY, OfflineModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=REPOSITORY)
    parser.add_argument("--n", type=int, default=300, help="images per held-out set")
    parser.add_argument("--models", default=",".join(EVALUATIONS))
    parser.add_argument("--sets", default=",".join(SETS), help="independent and/or held-out")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    figures = evaluate_all(
        lambda model_id: OfflineModel(args.repository / model_id).predict,
        args.models.split(","),
        args.n,
        args.sets.split(","),
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
