"""The evaluation's metrics, checked on answers whose figures are known by hand."""

from __future__ import annotations

from typing import Any

import pytest

from zoo import evaluate, scenes


def _result(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"outputs": [{"labels": {"predicted": items, "discarded": []}}]}


def test_f1_by_hand() -> None:
    predicted = [{"circle", "red"}, {"circle"}, {"star"}, set()]
    truth = [{"circle", "red"}, {"star"}, {"star", "red"}, set()]
    f1 = evaluate.f1_scores(predicted, truth, ["circle", "red", "star", "cross"])
    # circle: TP 1, FP 1, FN 0 -> 2/3; red: TP 1, FN 1 -> 2/3; star: TP 1, FN 1 -> 2/3; cross: never -> 1
    assert f1 == pytest.approx({"circle": 2 / 3, "red": 2 / 3, "star": 2 / 3, "cross": 1.0})


def test_classifier_accuracy_counts_the_best_label() -> None:
    items = [scenes.classification_scene(scenes.scene_seed(1, i)) for i in range(4)]
    answers = iter(
        [
            _result([{"label_name": s.objects[0].shape, "score": 0.9}, {"label_name": "x", "score": 0.1}])
            for s in items[:3]
        ]
        + [_result([{"label_name": "nothing-right", "score": 0.9}])]
    )
    figures = evaluate.evaluate_classifier(lambda _png: next(answers), items)
    assert figures["top1"] == 0.75


def _truth_as_result(scene: scenes.Scene, jitter: float = 0.0) -> dict[str, Any]:
    return _result(
        [
            {
                "label_name": o.shape,
                "score": 0.9,
                "roi": {
                    "bbox": {"xmin": o.box[0] + jitter, "ymin": o.box[1], "xmax": o.box[2] + jitter, "ymax": o.box[3]}
                },
            }
            for o in scene.objects
        ]
    )


def test_detector_map_of_perfect_and_wrong_answers() -> None:
    items = [scenes.detection_scene(scenes.scene_seed(2, i)) for i in range(6)]
    perfect = iter([_truth_as_result(s) for s in items])
    assert evaluate.evaluate_detector(lambda _png: next(perfect), items)["map50"] == pytest.approx(1.0)
    shifted = iter([_truth_as_result(s, jitter=0.5) for s in items])  # every box far off
    assert evaluate.evaluate_detector(lambda _png: next(shifted), items)["map50"] < 0.05


def test_tagger_f1_of_perfect_answers() -> None:
    items = [scenes.detection_scene(scenes.scene_seed(3, i)) for i in range(5)]
    answers = iter([_result([{"label_name": t, "score": 1.0} for t in scenes.tags_of(s)]) for s in items])
    assert evaluate.evaluate_tagger(lambda _png: next(answers), items)["mean_f1"] == 1.0
