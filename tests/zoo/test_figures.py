"""The documented figures (zoo/figures.json, docs/zoo.md) reproduce offline from the bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo import evaluate, scenes
from zoo.runtime import REPOSITORY, OfflineModel

FIGURES = json.loads((Path(evaluate.__file__).parent / "figures.json").read_text())
BARS = {
    "shapes-classifier": 0.95,
    "shapes-tagger": 0.95,
    "shapes-yolo": 0.85,
    "shapes-anchored": 0.85,
    "shapes-direct": 0.85,
}


@pytest.fixture(scope="module")
def eval_sets() -> dict[str, list[scenes.Scene]]:
    n = FIGURES["shapes-classifier"]["images"]
    return {kind: scenes.eval_set(kind, n) for kind in ("classification", "detection")}


@pytest.mark.parametrize("model_id", list(BARS))
def test_figures_reach_the_bar_and_reproduce(model_id: str, eval_sets: dict[str, list[scenes.Scene]]) -> None:
    metric = evaluate.HEADLINE.get(model_id, "map50")
    assert FIGURES[model_id][metric] >= BARS[model_id]
    kind, run = evaluate.EVALUATIONS[model_id]
    figures = run(OfflineModel(REPOSITORY / model_id).predict, eval_sets[kind])
    assert figures == FIGURES[model_id]
