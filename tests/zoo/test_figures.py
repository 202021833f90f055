"""The documented figures (zoo/figures.json, docs/zoo.md) reproduce offline from the bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo import evaluate

pytest.importorskip("onnxruntime")
from zoo.runtime import REPOSITORY, OfflineModel

FIGURES = json.loads((Path(evaluate.__file__).parent / "figures.json").read_text())
BARS = {
    "shapes-classifier": 0.95,
    "shapes-tagger": 0.95,
    "shapes-yolo": 0.85,
    "shapes-anchored": 0.85,
    "shapes-direct": 0.85,
}


@pytest.mark.parametrize("model_id", list(BARS))
def test_figures_reach_the_bar_and_reproduce(model_id: str) -> None:
    metric = evaluate.HEADLINE.get(model_id, "map50")
    assert FIGURES[model_id][metric] >= BARS[model_id]
    if metric == "map50":
        pytest.importorskip("pycocotools")
    n = FIGURES[model_id]["images"]
    figures = evaluate.evaluate_all(lambda m: OfflineModel(REPOSITORY / m).predict, [model_id], n)
    assert figures[model_id][metric] == pytest.approx(FIGURES[model_id][metric], abs=1e-9)
