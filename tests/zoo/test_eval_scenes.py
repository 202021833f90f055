"""The independent evaluation generator: deterministic, exact ground truth, and independent of the training's."""

from __future__ import annotations

import ast
import hashlib
import inspect
import math
from collections import Counter

import numpy as np
import pytest

from zoo import eval_scenes, scenes


def _digest(items: list[scenes.Scene]) -> str:
    h = hashlib.sha256()
    for scene in items:
        h.update(scene.image.tobytes())
        h.update(repr([(o.shape, o.colour, o.pixel_box) for o in scene.objects]).encode())
    return h.hexdigest()


def test_same_seed_same_scene() -> None:
    a = eval_scenes.independent_scene(np.random.SeedSequence([4, 2]), "detection")
    b = eval_scenes.independent_scene(np.random.SeedSequence([4, 2]), "detection")
    assert np.array_equal(a.image, b.image)
    assert a.objects == b.objects


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown evaluation set"):
        eval_scenes.independent_set("segmentation", 1)


@pytest.mark.parametrize("shape", scenes.SHAPES)
def test_coverage_box_and_area(shape: str) -> None:
    """A shape of half-extent 30 at (60, 50) covers about what its geometry says, inside its extent."""
    areas = []
    for seed in range(8):
        cover = eval_scenes._coverage(np.random.default_rng(seed), shape, 60.0, 50.0, 30.0, 120, 100)
        assert cover.min() >= 0.0
        assert cover.max() == pytest.approx(1.0)
        rows, cols = np.nonzero(cover >= 0.5)
        # stretched up to 1.25:1, so the farthest point is within 30 * sqrt(1.25) (and a little for rounding)
        reach = 30.0 * math.sqrt(1.25) + 1.5
        assert np.hypot(cols + 0.5 - 60.0, rows + 0.5 - 50.0).max() <= reach
        areas.append(float(cover.sum()))
    if shape == "circle":  # an ellipse of semi-axes sx, sy with sx * sy = 30 ** 2
        assert np.allclose(areas, math.pi * 900.0, rtol=0.02)
    if shape == "star":  # inner ratios 0.30 to 0.60 of a unit-radius 5-point star: area 5 sin(36°) r
        assert all(
            5 * math.sin(math.radians(36)) * 0.28 * 900 < a < 5 * math.sin(math.radians(36)) * 0.62 * 900 for a in areas
        )


def test_scenes_have_exact_boxes_and_named_colours() -> None:
    items = eval_scenes.independent_set("detection", 40)
    counts = Counter(len(s.objects) for s in items)
    assert set(counts) <= {1, 2, 3, 4, 5}
    assert len(counts) >= 4
    for scene in items:
        assert scene.image.dtype == np.uint8
        assert scene.image.shape[2] == 3
        assert 0.5 <= scene.width / scene.height <= 2.0 + 1e-9
        for obj in scene.objects:
            assert obj.colour in scenes.COLOURS
            x0, y0, x1, y1 = obj.pixel_box
            assert 0 <= x0 < x1 <= scene.width
            assert 0 <= y0 < y1 <= scene.height
            assert obj.box == (x0 / scene.width, y0 / scene.height, x1 / scene.width, y1 / scene.height)
            assert obj.visible_fraction >= 0.65


def test_classification_set_covers_every_shape_and_colour() -> None:
    items = eval_scenes.independent_set("classification", 120)
    assert all(len(s.objects) == 1 for s in items)
    shapes = Counter(s.objects[0].shape for s in items)
    colours = Counter(s.objects[0].colour for s in items)
    assert set(shapes) == set(scenes.SHAPES)
    assert min(shapes.values()) >= 8
    assert set(colours) == set(scenes.COLOURS)
    assert min(colours.values()) >= 8


def test_independent_of_the_training_generator() -> None:
    """No drawing code nor photograph is shared with zoo/scenes.py: only its data types and names are used."""
    assert set(eval_scenes.PHOTOS).isdisjoint(scenes.TRAINING_PHOTOS)
    tree = ast.parse(inspect.getsource(eval_scenes))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "scenes"
    }
    assert used <= {"Scene", "SceneObject", "SHAPES", "COLOURS", "skimage_data_folder"}, used


# Golden digest of the independent sets' first scenes: a change means the documented figures are stale.
INDEPENDENT_DIGESTS = {
    "classification": "0ae869bb9f493bce96aa7f361596f5aad85166b60c17a0250d5517517c4cbc83",
    "detection": "89610a2e63543713e80348d21bace47c95043b7bcb95b7a2698b0a4516cec624",
}


@pytest.mark.parametrize("kind", ["classification", "detection"])
def test_independent_set_is_stable(kind: str) -> None:
    first = eval_scenes.independent_set(kind, 20)
    assert _digest(first) == _digest(eval_scenes.independent_set(kind, 20))
    assert _digest(first) == INDEPENDENT_DIGESTS[kind]
