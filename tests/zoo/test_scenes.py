"""The scene generator: deterministic, exact ground truth, a stable held-out set."""

from __future__ import annotations

import colorsys
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


@pytest.mark.parametrize("index", range(12))
def test_randomised_scenes_keep_exact_boxes(index: int) -> None:
    """Domain randomisation (photos, any hue, variants, blur, JPEG) changes the pixels, never the ground truth."""
    scene = scenes.detection_scene(scenes.scene_seed(12, index), masks=True, free_colours=0.3, randomise=True)
    again = scenes.detection_scene(scenes.scene_seed(12, index), masks=True, free_colours=0.3, randomise=True)
    assert np.array_equal(scene.image, again.image)
    assert 1 <= len(scene.objects) <= 5
    for obj, mask in zip(scene.objects, scene.masks, strict=True):
        rows, cols = np.nonzero(mask)
        assert obj.pixel_box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert obj.visible_fraction >= 0.6


def test_randomised_backgrounds_span_every_hue() -> None:
    hues = []
    for i in range(200):
        rng = np.random.default_rng([77, i])
        mean = scenes.make_random_background(rng, 48, 32).reshape(-1, 3).mean(axis=0) / 255.0
        if mean.max() - mean.min() > 0.15:  # coloured enough for its hue to mean something
            hues.append(colorsys.rgb_to_hsv(*mean)[0])
    counts = np.histogram(hues, bins=6, range=(0.0, 1.0))[0]
    assert counts.min() >= 5, counts  # every sixth of the colour wheel, not grey plus a tint


def test_training_photos_are_bundled() -> None:
    folder = scenes.skimage_data_folder()
    for name in scenes.TRAINING_PHOTOS:
        assert (folder / name).is_file(), name


def test_shape_variants_stay_in_the_unit_circle() -> None:
    rng = np.random.default_rng(5)
    for shape in scenes.SHAPES:
        for _ in range(20):
            outline = scenes._variant_outline(shape, rng)
            radius = np.sqrt((outline**2).sum(axis=1))
            assert radius.max() == pytest.approx(1.0)
    stars = [scenes._variant_outline("star", np.random.default_rng(s)) for s in range(30)]
    inner = [
        float(np.sqrt((o[1::2] ** 2).sum(axis=1)).max() / np.sqrt((o[0::2] ** 2).sum(axis=1)).max()) for o in stars
    ]
    assert min(inner) < 0.4 < max(inner)  # thin and fat stars, not only the standard 0.42


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
