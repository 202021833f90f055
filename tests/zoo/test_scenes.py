"""The scene generator: deterministic, exact ground truth, a stable held-out set."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from zoo import scenes


def _digest(items: list[scenes.Scene]) -> str:
    h = hashlib.sha256()
    for scene in items:
        h.update(scene.image.tobytes())
        h.update(repr([(o.shape, o.colour, o.pixel_box) for o in scene.objects]).encode())
    return h.hexdigest()


def test_same_seed_same_scene() -> None:
    a = scenes.detection_scene(scenes.scene_seed(5, 3))
    b = scenes.detection_scene(scenes.scene_seed(5, 3))
    assert np.array_equal(a.image, b.image)
    assert a.objects == b.objects


def test_other_seed_other_scene() -> None:
    a = scenes.detection_scene(scenes.scene_seed(5, 3))
    b = scenes.detection_scene(scenes.scene_seed(5, 4))
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)


@pytest.mark.parametrize("index", range(12))
def test_boxes_are_the_tight_boxes_of_visible_pixels(index: int) -> None:
    scene = scenes.detection_scene(scenes.scene_seed(11, index), masks=True, free_colours=0.3)
    assert 1 <= len(scene.objects) <= 5
    union = np.zeros(scene.image.shape[:2], dtype=int)
    for obj, mask in zip(scene.objects, scene.masks, strict=True):
        rows, cols = np.nonzero(mask)
        assert obj.pixel_box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        x0, y0, x1, y1 = obj.pixel_box
        assert obj.box == (x0 / scene.width, y0 / scene.height, x1 / scene.width, y1 / scene.height)
        assert obj.visible_fraction >= 0.6
        union += mask
    assert union.max() <= 1, "visible masks overlap"


def test_composed_shapes_are_drawn_exactly_inside_their_boxes() -> None:
    placements = [
        scenes.Placement("star", "red", 70, 60, 40, 12),
        scenes.Placement("square", "blue", 95, 75, 30, 30),
    ]
    scene = scenes.compose(200, 150, placements, (255, 255, 255), masks=True)
    painted = (scene.image != 255).any(axis=2)
    assert np.array_equal(painted, scene.masks[0] | scene.masks[1])
    for obj, mask, colour in zip(scene.objects, scene.masks, ("red", "blue"), strict=True):
        assert (scene.image[mask] == scenes.COLOURS[colour]).all()
        x0, y0, x1, y1 = obj.pixel_box
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
        assert mask[y0, x0:x1].any()
        assert mask[y1 - 1, x0:x1].any()
        assert mask[y0:y1, x0].any()
        assert mask[y0:y1, x1 - 1].any()
    assert scene.objects[0].visible_fraction < 1.0  # the square covers part of the star


def test_classification_scene_has_one_large_shape() -> None:
    for i in range(10):
        scene = scenes.classification_scene(scenes.scene_seed(3, i))
        (obj,) = scene.objects
        x0, y0, x1, y1 = obj.pixel_box
        assert max(x1 - x0, y1 - y0) >= 0.25 * min(scene.width, scene.height)


def test_png_round_trip_is_lossless() -> None:
    import io

    from PIL import Image

    scene = scenes.detection_scene(123)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(scene.png())).convert("RGB")), scene.image)


def test_tags() -> None:
    scene = scenes.compose(
        100, 100, [scenes.Placement("circle", "red", 30, 30, 15), scenes.Placement("cross", (10, 200, 200), 70, 70, 20)]
    )
    assert scenes.tags_of(scene) == {"circle", "red", "cross"}


# Golden digests of the held-out sets' first scenes: a change means the documented figures are stale.
EVAL_DIGESTS = {
    "classification": "628eb2f32931bbb791f50564a483ef4562fda85412479ef56c253be4eddee4b4",
    "detection": "844ba03dc65ca7d02466030df9224182845fd58796101691052ed1dc20a9ff6f",
}


@pytest.mark.parametrize("kind", ["classification", "detection"])
def test_eval_set_is_stable(kind: str) -> None:
    first = scenes.eval_set(kind, 20)
    assert _digest(first) == _digest(scenes.eval_set(kind, 20))
    assert _digest(first) == EVAL_DIGESTS[kind]
