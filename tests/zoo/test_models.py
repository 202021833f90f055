"""Each bundled zoo model, run offline (onnxruntime + postprocess), answers the hand-placed cases right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo import fixtures, scenes
from zoo.runtime import REPOSITORY, ZOO_MODELS, OfflineModel

SINGLE = [c for c in fixtures.CASES if len(c.placements) == 1]


@pytest.fixture(scope="module", params=ZOO_MODELS)
def folder_id(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def models() -> dict[str, OfflineModel]:
    return {name: OfflineModel(REPOSITORY / name) for name in ZOO_MODELS}


def test_folder_layout(folder_id: str) -> None:
    folder = REPOSITORY / folder_id
    meta = json.loads((folder / "sightline.json").read_text())
    config = (folder / "config.pbtxt").read_text()
    assert meta["network"]["id"] == folder_id
    assert f'name: "{folder_id}"' in config
    assert 'backend: "onnxruntime"' in config
    assert "dynamic_batching" in config
    assert "instance_group" not in config
    assert meta["version"]["id"] == meta["spec"]["id"] + ".1"
    assert (folder / "1" / "model.onnx").stat().st_size <= 5 * 1024 * 1024
    for item in meta["network"]["preprocessing"]["inputs"]:
        if item.get("image", {}).get("mean_file"):
            assert (folder / item["image"]["mean_file"]).exists()


def test_dynamic_batch(models: dict[str, OfflineModel], folder_id: str) -> None:
    model = models[folder_id]
    images = [fixtures.CASES[0].png(), fixtures.CASES[1].png(), fixtures.CASES[2].png()]
    single = [model.raw(image)[1] for image in images]
    feeds = [model.raw(image)[0] for image in images]
    batch = {k: np.concatenate([f[k] for f in feeds]) for k in model.input_names}
    names = [o.name for o in model.session.get_outputs()]
    outputs = model.session.run(names, batch)
    for k, name in enumerate(names):
        assert outputs[k].shape[0] == 3
        for i in range(3):
            np.testing.assert_allclose(outputs[k][i], single[i][name][0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", SINGLE, ids=lambda c: c.name)
def test_classifier(models: dict[str, OfflineModel], case: fixtures.Case) -> None:
    assert fixtures.check_classification(models["shapes-classifier"].predict(case.png()), case) == []


@pytest.mark.parametrize("case", fixtures.CASES, ids=lambda c: c.name)
def test_tagger(models: dict[str, OfflineModel], case: fixtures.Case) -> None:
    assert fixtures.check_tags(models["shapes-tagger"].predict(case.png()), case) == []


@pytest.mark.parametrize("detector", fixtures.DETECTORS)
@pytest.mark.parametrize("case", fixtures.CASES, ids=lambda c: c.name)
def test_detector(models: dict[str, OfflineModel], detector: str, case: fixtures.Case) -> None:
    assert fixtures.check_detection(models[detector].predict(case.png()), case) == []


@pytest.mark.parametrize("detector", fixtures.DETECTORS)
def test_detector_on_generated_scenes(models: dict[str, OfflineModel], detector: str) -> None:
    """Scenes from a seed outside the training and held-out sets: most shapes found at IoU ≥ 0.5."""
    found = total = 0
    for i in range(8):
        scene = scenes.detection_scene(scenes.scene_seed(99_000, i))
        predicted = [p for p in models[detector].predict(scene.png())["outputs"][0]["labels"]["predicted"]]
        for obj in scene.objects:
            total += 1
            found += any(
                p["label_name"] == obj.shape
                and fixtures.box_iou(tuple(p["roi"]["bbox"][k] for k in ("xmin", "ymin", "xmax", "ymax")), obj.box)
                >= 0.5
                for p in predicted
            )
    assert found >= 0.85 * total


def _config_tensors(config: str) -> dict[str, list[int]]:
    """name -> dims of every input and output of a config.pbtxt written by zoo/train.py."""
    import re

    return {
        m.group(1): [int(d) for d in m.group(2).split(",")]
        for m in re.finditer(r'name: "([^"]+)"\s+data_type: \w+\s+dims: \[([^\]]+)\]', config)
    }


def test_config_matches_the_onnx_graph(models: dict[str, OfflineModel], folder_id: str) -> None:
    model = models[folder_id]
    declared = _config_tensors((REPOSITORY / folder_id / "config.pbtxt").read_text())
    graph = {t.name: t.shape for t in [*model.session.get_inputs(), *model.session.get_outputs()]}
    assert set(declared) == set(graph)
    for name, shape in graph.items():
        assert isinstance(shape[0], str), f"{name}: batch dimension is not dynamic"
        assert list(shape[1:]) == declared[name], name
