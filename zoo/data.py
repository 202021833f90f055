"""Training sets: generated scenes, squashed to the networks' input sizes exactly as the service does.

Numpy + Pillow only. Scenes are made in worker processes; a set is a dict of arrays so it can be cached as
``.npz`` (``--cache``) while iterating on the training code.
"""

from __future__ import annotations

from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from zoo import scenes

__all__ = ["MAX_OBJECTS", "RANDOMISED", "classification_set", "detection_set", "load_or_make"]

MAX_OBJECTS = 5
RANDOMISED = 0.8
"""The fraction of training scenes drawn with domain randomisation (``scenes.detection_scene(randomise=True)``)."""


def squash(scene: scenes.Scene, size: int) -> NDArray[Any]:
    """The scene resized to ``size`` x ``size`` (the service's SQUASH: Pillow bilinear), ``(size, size, 3)`` uint8."""
    return np.asarray(scene.pil().resize((size, size), Image.Resampling.BILINEAR))


def _detection_item(args: tuple[int, int, tuple[int, ...]]) -> tuple[list[NDArray[Any]], NDArray[Any], NDArray[Any]]:
    seed, index, sizes = args
    rng = np.random.default_rng([seed, index, 1])
    mode = rng.random()
    # Most scenes are domain-randomised (any hue, photographs, shape variants, blur, JPEG); the rest keep the
    # original generator's look, so that its pictures stay in the training distribution.
    randomise = bool(rng.random() < RANDOMISED)
    if mode < 0.04:
        scene = scenes.detection_scene(scenes.scene_seed(seed, index), n_objects=(0, 0), randomise=randomise)
    else:
        free = 0.0 if mode < 0.7 else 0.6
        radius = (0.07, 0.3) if randomise else (0.08, 0.25)
        scene = scenes.detection_scene(
            scenes.scene_seed(seed, index), radius=radius, free_colours=free, randomise=randomise
        )
    boxes = np.zeros((MAX_OBJECTS, 6), dtype=np.float32)  # xmin, ymin, xmax, ymax, label, valid
    for k, obj in enumerate(scene.objects):
        boxes[k] = (*obj.box, obj.label, 1.0)
    # Colour tags are only known when every shape wears a named colour; -1 marks "unknown".
    tags = np.zeros(len(scenes.TAGS), dtype=np.float32)
    for tag in scenes.tags_of(scene):
        tags[scenes.TAGS.index(tag)] = 1.0
    if any(o.colour is None for o in scene.objects):
        tags[len(scenes.SHAPES) :] = -1.0
    return [squash(scene, s) for s in sizes], boxes, tags


def _classification_item(args: tuple[int, int, int]) -> tuple[NDArray[Any], int]:
    seed, index, size = args
    randomise = bool(np.random.default_rng([seed, index, 1]).random() < RANDOMISED)
    scene = scenes.classification_scene(scenes.scene_seed(seed, index), free_colours=0.3, randomise=randomise)
    return squash(scene, size), scene.objects[0].label


def detection_set(seed: int, n: int, sizes: tuple[int, ...], workers: int = 2) -> dict[str, NDArray[Any]]:
    """``n`` multi-shape scenes: ``images_<size>`` (n, s, s, 3) uint8, ``boxes`` (n, 5, 6), ``tags`` (n, T)."""
    with Pool(workers) as pool:
        items = pool.map(_detection_item, [(seed, i, sizes) for i in range(n)], chunksize=64)
    out = {f"images_{s}": np.stack([it[0][k] for it in items]) for k, s in enumerate(sizes)}
    out["boxes"] = np.stack([it[1] for it in items])
    out["tags"] = np.stack([it[2] for it in items])
    return out


def classification_set(seed: int, n: int, size: int, workers: int = 2) -> dict[str, NDArray[Any]]:
    """``n`` one-shape scenes: ``images`` (n, size, size, 3) uint8 and ``labels`` (n,) int64."""
    with Pool(workers) as pool:
        items = pool.map(_classification_item, [(seed, i, size) for i in range(n)], chunksize=64)
    return {"images": np.stack([it[0] for it in items]), "labels": np.array([it[1] for it in items], dtype=np.int64)}


def load_or_make(cache: Path | None, name: str, make: object) -> dict[str, NDArray[Any]]:
    """``make()`` or, when ``cache`` is a folder, its copy saved there as ``<name>.npz``."""
    assert callable(make)
    if cache is None:
        return make()  # type: ignore[no-any-return]
    path = cache / f"{name}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    result = make()
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result)
    return result  # type: ignore[no-any-return]


def box_stats(boxes: NDArray[Any]) -> str:
    """A one-line summary of box sizes (for the log)."""
    valid = boxes[..., 5] > 0
    w = (boxes[..., 2] - boxes[..., 0])[valid]
    h = (boxes[..., 3] - boxes[..., 1])[valid]
    return f"{int(valid.sum())} boxes, w {w.min():.3f}..{w.max():.3f}, h {h.min():.3f}..{h.max():.3f}"
