"""Synthetic shape scenes with exact ground truth.

Everything here is deterministic from a seed (a ``numpy.random.Generator`` is built from it) and depends only on
numpy and Pillow, so that the service's tests can import it without PyTorch.

A scene is a few flat-coloured shapes (:data:`SHAPES`) in the colours of :data:`COLOURS`, with random size,
position and rotation, drawn one over the other (partial overlaps allowed, every shape keeps most of its
surface visible) on a noisy or textured background. With ``randomise=True`` (the training sets' domain
randomisation) backgrounds are also flat colours of every hue, colourful gradients and textures and photographs
(scikit-image's bundled files, read with Pillow), shapes come in variants (star inner ratios, cross arm widths,
rounded squares, heart outlines) stretched up to 1.5:1, named colours vary over their hue range, and the picture
may be blurred or JPEG-compressed. Ground truth boxes are normalised ``(xmin, ymin, xmax, ymax)``,
origin top-left, the tight box of the shape's visible pixels in pixel-edge coordinates: a shape whose visible
pixels span columns ``c0..c1`` has ``xmin = c0 / width`` and ``xmax = (c1 + 1) / width``.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "COLOURS",
    "EVAL_SEED",
    "SHAPES",
    "TAGS",
    "TRAINING_PHOTOS",
    "Placement",
    "Scene",
    "SceneObject",
    "classification_scene",
    "compose",
    "detection_scene",
    "eval_set",
    "make_background",
    "make_random_background",
    "scene_seed",
    "shape_polygon",
    "tags_of",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
"""The shape classes; a shape's index here is its label id in the classifier, tagger and detector specs."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (140, 50, 185),
}
"""The named colours (RGB) a shape is painted in; each is jittered a little per shape."""

TAGS: tuple[str, ...] = SHAPES + tuple(COLOURS)
"""The tagger's labels: the shapes, then the colours."""

EVAL_SEED = 7_700_000
"""Seed of the fixed held-out evaluation sets (training uses other seeds, see ``zoo/train.py``)."""

_COLOUR_NAMES = tuple(COLOURS)
_MIN_VISIBLE = 0.6  # a shape keeps at least this fraction of its pixels when others overlap it


@dataclass(frozen=True, slots=True)
class SceneObject:
    """One shape of a scene and its ground truth.

    ``box`` is normalised ``(xmin, ymin, xmax, ymax)``; ``pixel_box`` the same in pixels (exclusive max).
    ``colour`` is one of :data:`COLOURS`, or ``None`` when the shape was painted in a free colour.
    """

    shape: str
    colour: str | None
    box: tuple[float, float, float, float]
    pixel_box: tuple[int, int, int, int]
    visible_fraction: float

    @property
    def label(self) -> int:
        """The shape's label id (its index in :data:`SHAPES`)."""
        return SHAPES.index(self.shape)


@dataclass(frozen=True, slots=True)
class Scene:
    """An RGB image (``(H, W, 3)`` uint8) and its objects; ``masks`` holds their visible pixels when asked for."""

    image: NDArray[Any]
    objects: tuple[SceneObject, ...]
    masks: tuple[NDArray[Any], ...] = field(default=(), repr=False)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image, "RGB")

    def png(self) -> bytes:
        """The image encoded as PNG (lossless: decoding it gives back ``image`` exactly)."""
        buffer = io.BytesIO()
        self.pil().save(buffer, format="PNG")
        return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Placement:
    """An explicit shape to draw with :func:`compose`: centre and circumradius in pixels, rotation in degrees."""

    shape: str
    colour: str | tuple[int, int, int]
    cx: float
    cy: float
    radius: float
    angle: float = 0.0


# --------------------------------------------------------------------------------------------------- geometry
def _unit_outline(shape: str) -> NDArray[Any]:
    """The shape's outline as an ``(N, 2)`` polygon, centred on 0, inside the unit circle, y pointing down."""
    if shape == "circle":
        t = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape in ("square", "triangle"):
        n = 4 if shape == "square" else 3
        t = -math.pi / 2 + np.arange(n) * 2.0 * math.pi / n
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if shape == "cross":
        a, b = 0.3, 0.95  # arm half-width, arm length
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    if shape == "heart":
        t = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
        x = 16.0 * np.sin(t) ** 3
        y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], axis=1)
        pts -= (pts.max(axis=0) + pts.min(axis=0)) / 2.0
        unit: NDArray[Any] = pts / np.sqrt((pts**2).sum(axis=1)).max()
        return unit
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


_OUTLINES = {name: _unit_outline(name) for name in SHAPES}


def _rounded_square(corner: float) -> NDArray[Any]:
    """A square (vertices on the unit circle) whose corners are arcs of radius ``corner`` x half its side."""
    half = math.sqrt(0.5)
    r = corner * half
    pts = []
    for k in range(4):
        centre_angle = -math.pi / 2 + k * math.pi / 2  # the vertex directions of the plain square
        centre = np.array([math.cos(centre_angle), math.sin(centre_angle)]) * (math.sqrt(2.0) * (half - r))
        t = centre_angle + np.linspace(-math.pi / 4, math.pi / 4, 8)
        pts.append(centre + r * np.stack([np.cos(t), np.sin(t)], axis=1))
    return np.concatenate(pts)


def _variant_outline(shape: str, rng: np.random.Generator) -> NDArray[Any]:
    """A random variant of a shape's unit outline (domain randomisation), stretched up to 1.5:1, inside the unit
    circle and touching it."""
    if shape == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.28, 0.62))
        pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    elif shape == "cross":
        a, b = rng.uniform(0.1, 0.42), 0.95
        pts = np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    elif shape == "square" and rng.random() < 0.4:
        pts = _rounded_square(rng.uniform(0.08, 0.4))
    elif shape == "heart" and rng.random() < 0.6:
        t = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
        x = 16.0 * np.sin(t) ** 3 * rng.uniform(0.85, 1.15)
        y = -(13.0 * np.cos(t) - rng.uniform(3.5, 6.5) * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], axis=1)
        pts -= (pts.max(axis=0) + pts.min(axis=0)) / 2.0
    else:
        pts = _OUTLINES[shape].copy()
    if rng.random() < 0.5:
        pts = pts * np.array([math.exp(rng.uniform(-math.log(1.5), math.log(1.5))), 1.0])
    unit: NDArray[Any] = pts / np.sqrt((pts**2).sum(axis=1)).max()
    return unit


def shape_polygon(
    shape: str, cx: float, cy: float, radius: float, angle: float = 0.0, outline: NDArray[Any] | None = None
) -> list[tuple[float, float]]:
    """The polygon (pixel coordinates) of ``shape`` centred at ``(cx, cy)``, circumradius ``radius``, rotated.

    ``outline`` replaces the shape's standard unit outline (a variant from the domain randomisation).
    """
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    unit = _OUTLINES[shape] if outline is None else outline
    pts = unit @ rot.T * radius + np.array([cx, cy])
    return [(float(x), float(y)) for x, y in pts]


def _shape_mask(
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    angle: float,
    width: int,
    height: int,
    outline: NDArray[Any] | None = None,
) -> NDArray[Any]:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(shape_polygon(shape, cx, cy, radius, angle, outline), fill=255)
    return np.asarray(canvas) > 0


# ------------------------------------------------------------------------------------------------ backgrounds
def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> NDArray[Any]:
    """Value noise in [0, 1]: a coarse random grid bilinearly upsampled to ``(height, width)``."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(up, dtype=np.float32) / 255.0


def _dull_colour(rng: np.random.Generator) -> NDArray[Any]:
    """A low-saturation colour: grey with a faint tint, any brightness."""
    grey = rng.uniform(15.0, 245.0)
    tint = rng.normal(0.0, 12.0, size=3)
    return np.clip(grey + tint, 0.0, 255.0)


def make_background(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    """A ``(H, W, 3)`` float background: plain, gradient, blotchy, striped or checkered, with noise."""
    kind = rng.choice(
        ["plain", "gradient", "blotches", "stripes", "checker", "noise"], p=[0.2, 0.2, 0.25, 0.1, 0.1, 0.15]
    )
    c0, c1 = _dull_colour(rng), _dull_colour(rng)
    if kind == "plain":
        if rng.random() < 0.5:  # the plain white, black or grey canvas of a hand-made test image
            c0 = np.full(3, rng.choice([255.0, 0.0, 128.0, 230.0]))
        image = np.broadcast_to(c0, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = math.cos(a) * xx / width + math.sin(a) * yy / height
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = c0 + (c1 - c0) * t[..., None]
    elif kind == "blotches":
        t = 0.6 * _smooth_noise(rng, width, height, int(rng.integers(3, 8)))
        t += 0.4 * _smooth_noise(rng, width, height, int(rng.integers(10, 24)))
        image = c0 + (c1 - c0) * t[..., None]
    elif kind == "stripes":
        a = rng.uniform(0, math.pi)
        period = rng.uniform(4.0, 24.0)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (math.cos(a) * xx + math.sin(a) * yy) / period)
        c1 = c0 + np.clip(c1 - c0, -60.0, 60.0)
        image = c0 + (c1 - c0) * t[..., None]
    elif kind == "checker":
        cell = int(rng.integers(4, 20))
        yy, xx = np.mgrid[0:height, 0:width]
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
        c1 = c0 + np.clip(c1 - c0, -50.0, 50.0)
        image = c0 + (c1 - c0) * t[..., None]
    else:
        image = np.broadcast_to(c0, (height, width, 3)).astype(np.float32)
        image = image + rng.normal(0.0, rng.uniform(10.0, 35.0), size=(height, width, 1))
    if kind != "plain" or rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(0.0, 12.0), size=(height, width, 3))
    return image.astype(np.float32)


TRAINING_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "coins.png",
    "page.png",
    "text.png",
)
"""scikit-image's bundled photographs the training backgrounds crop (``zoo/eval_scenes.py`` uses the others)."""


def skimage_data_folder() -> Path:
    """The folder of scikit-image's bundled sample files (the package is not imported: only its files are read)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("photo backgrounds need scikit-image installed (its bundled sample pictures)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def _photo(name: str) -> NDArray[Any]:
    with Image.open(skimage_data_folder() / name) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _hsv(h: float, s: float, v: float) -> NDArray[Any]:
    """RGB in [0, 255] (float) of a hue in degrees (any real), saturation and value in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb((h / 360.0) % 1.0, s, v), dtype=np.float32) * 255.0


def _any_colour(rng: np.random.Generator) -> NDArray[Any]:
    """A colour of any hue, saturation and brightness."""
    return _hsv(rng.uniform(0.0, 360.0), rng.uniform(0.0, 1.0) ** 0.7, rng.uniform(0.08, 1.0))


def _photo_background(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    """A random crop of a training photograph, resized, sometimes recoloured (grey tinted, hue-rotated, inverted)."""
    photo = _photo(TRAINING_PHOTOS[int(rng.integers(len(TRAINING_PHOTOS)))])
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.3, 1.0)
    cw = max(32, min(pw, round(pw * scale * math.sqrt(width / height) / max(math.sqrt(width / height), 1.0))))
    ch = max(32, min(ph, round(cw * height / width)))
    cw = min(cw, pw)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw]).resize((width, height), Image.Resampling.BILINEAR)
    image = np.asarray(crop, dtype=np.float32)
    mode = rng.random()
    if mode < 0.25:  # a grey picture tinted with a colour of any hue
        grey = image.mean(axis=2, keepdims=True) / 255.0
        image = grey * _any_colour(rng) + (1.0 - grey) * _any_colour(rng) * rng.uniform(0.0, 0.6)
    elif mode < 0.45:  # channels permuted or inverted: other colours, the same structure
        image = image[..., rng.permutation(3)]
        if rng.random() < 0.3:
            image = 255.0 - image
    if rng.random() < 0.5:
        image = (image - 128.0) * rng.uniform(0.6, 1.3) + 128.0 + rng.uniform(-40.0, 40.0)
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def make_random_background(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    """A domain-randomised ``(H, W, 3)`` float background: a flat colour of any hue, a gradient between two such
    colours, a colourful texture (:func:`make_background`'s kinds in vivid colours), a photograph, or
    :func:`make_background`'s own dull kinds."""
    kind = rng.choice(
        ["flat", "gradient", "texture", "rainbow", "photo", "dull"], p=[0.15, 0.13, 0.12, 0.12, 0.35, 0.13]
    )
    if kind == "dull":
        return make_background(rng, width, height)
    if kind == "photo":
        image = _photo_background(rng, width, height)
    elif kind == "rainbow":  # value noise or a ramp through many hues: vivid multi-coloured textures
        if rng.random() < 0.7:
            t = 0.7 * _smooth_noise(rng, width, height, int(rng.integers(3, 12)))
            t += 0.3 * _smooth_noise(rng, width, height, int(rng.integers(8, 30)))
        else:
            yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
            t = np.hypot(xx / width - rng.uniform(0, 1), yy / height - rng.uniform(0, 1))
        hue0, span = rng.uniform(0.0, 360.0), rng.uniform(120.0, 720.0)
        sat, val = rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0)
        hues = Image.fromarray(
            np.stack(
                [
                    ((hue0 + span * t) % 360.0 / 360.0 * 255.0).astype(np.uint8),
                    np.full(t.shape, round(sat * 255), dtype=np.uint8),
                    np.clip((val - 0.35 * t * rng.random()) * 255.0, 0, 255).astype(np.uint8),
                ],
                axis=-1,
            ),
            "HSV",
        )
        image = np.asarray(hues.convert("RGB"), dtype=np.float32)
    elif kind == "flat":
        image = np.broadcast_to(_any_colour(rng), (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        c0, c1 = _any_colour(rng), _any_colour(rng)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        if rng.random() < 0.7:
            a = rng.uniform(0, 2 * math.pi)
            t = math.cos(a) * xx / width + math.sin(a) * yy / height
        else:  # radial, from a random centre
            t = np.hypot(xx / width - rng.uniform(0, 1), yy / height - rng.uniform(0, 1))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = c0 + (c1 - c0) * t[..., None]
    else:
        # make_background's texture in two vivid colours: its own dull colours remapped to the new ones
        base = make_background(rng, width, height)
        grey = base.mean(axis=2, keepdims=True)
        t = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-6)
        c0, c1 = _any_colour(rng), _any_colour(rng)
        image = c0 + (c1 - c0) * t
    if rng.random() < 0.2:  # clutter: thin lines of any colour across the picture
        canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(5, 50))):
            ends = rng.uniform(-0.1, 1.1, size=4) * np.array([width, height, width, height])
            colour = tuple(int(c) for c in _any_colour(rng))
            draw.line([float(v) for v in ends], fill=colour, width=int(rng.integers(1, 4)))
        image = np.asarray(canvas, dtype=np.float32)
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(0.0, 10.0), size=(height, width, 3))
    return image.astype(np.float32)


NAMED_HUES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-14.0, 12.0), (0.6, 1.0), (0.5, 1.0)),
    "yellow": ((45.0, 63.0), (0.55, 1.0), (0.75, 1.0)),
    "green": ((92.0, 155.0), (0.45, 1.0), (0.32, 1.0)),
    "blue": ((200.0, 245.0), (0.55, 1.0), (0.4, 1.0)),
    "purple": ((262.0, 310.0), (0.4, 1.0), (0.32, 1.0)),
}
"""The range (hue in degrees, saturation, value) a named colour is drawn from in randomised scenes."""


def _random_paint(rng: np.random.Generator, colour: str | None) -> NDArray[Any]:
    """A randomised scene's fill: a named colour anywhere in its :data:`NAMED_HUES` range (or jittered around its
    :data:`COLOURS` value), or (None) a free colour of any hue."""
    if colour is None:
        return _any_colour(rng)
    if rng.random() < 0.35:
        return _paint(rng, colour)
    (h0, h1), (s0, s1), (v0, v1) = NAMED_HUES[colour]
    return _hsv(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


# -------------------------------------------------------------------------------------------------- rendering
def _paint(rng: np.random.Generator | None, colour: str | tuple[int, int, int] | None) -> NDArray[Any]:
    """The RGB fill of one shape: a named colour jittered, an explicit RGB triple, or (None) a random free colour."""
    if isinstance(colour, str):
        base = np.array(COLOURS[colour], dtype=np.float32)
        if rng is None:
            return base
        return np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0.0, 10.0, size=3), 0.0, 255.0)
    if colour is not None:
        return np.array(colour, dtype=np.float32)
    assert rng is not None
    hsv = np.array([[[rng.integers(0, 256), rng.integers(90, 256), rng.integers(70, 256)]]], dtype=np.uint8)
    rgb: NDArray[Any] = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"), dtype=np.float32)[0, 0]
    return rgb


def _degrade(rng: np.random.Generator, pixels: NDArray[Any]) -> NDArray[Any]:
    """Blur (out of focus, rescaled) and JPEG artefacts of pictures as users send them."""
    image = Image.fromarray(pixels)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    if rng.random() < 0.35:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            image = decoded.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _finish(
    rng: np.random.Generator | None,
    background: NDArray[Any],
    shapes: Sequence[tuple[str, str | None, NDArray[Any], NDArray[Any]]],
    keep_masks: bool,
    degrade: bool = False,
) -> Scene:
    """Paints ``shapes`` (name, colour name, fill, full mask), in order, over ``background``; computes ground truth."""
    height, width = background.shape[:2]
    image = background.copy()
    owner = np.full((height, width), -1, dtype=np.int32)
    for index, (_, _, fill, mask) in enumerate(shapes):
        image[mask] = fill
        owner[mask] = index
    if rng is not None:
        image += rng.normal(0.0, rng.uniform(0.0, 6.0), size=image.shape)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if rng is not None and rng.random() < 0.15:  # the soft edges of anti-aliased or rescaled pictures
        pixels = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9))))
    if rng is not None and degrade:
        pixels = _degrade(rng, pixels)
    objects, masks = [], []
    for index, (name, colour_name, _, mask) in enumerate(shapes):
        visible = owner == index
        rows, cols = np.nonzero(visible.any(axis=1))[0], np.nonzero(visible.any(axis=0))[0]
        if rows.size == 0:
            continue
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        objects.append(
            SceneObject(
                shape=name,
                colour=colour_name,
                box=(x0 / width, y0 / height, x1 / width, y1 / height),
                pixel_box=(x0, y0, x1, y1),
                visible_fraction=float(visible.sum()) / max(int(mask.sum()), 1),
            )
        )
        if keep_masks:
            masks.append(visible)
    return Scene(image=pixels, objects=tuple(objects), masks=tuple(masks))


def compose(
    width: int,
    height: int,
    placements: Sequence[Placement],
    background: tuple[int, int, int] | NDArray[Any] = (255, 255, 255),
    *,
    masks: bool = False,
) -> Scene:
    """Draws explicit shapes, in order, on a plain colour (or a given ``(H, W, 3)`` array): a known scene for tests.

    No noise is added; colours are used exactly (a named colour without jitter).
    """
    if isinstance(background, np.ndarray):
        canvas = background.astype(np.float32).reshape(height, width, 3)
    else:
        canvas = np.broadcast_to(np.array(background, dtype=np.float32), (height, width, 3)).copy()
    shapes = [
        (
            p.shape,
            p.colour if isinstance(p.colour, str) else None,
            _paint(None, p.colour),
            _shape_mask(p.shape, p.cx, p.cy, p.radius, p.angle, width, height),
        )
        for p in placements
    ]
    return _finish(None, canvas, shapes, masks)


def _random_size(rng: np.random.Generator, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    area = rng.uniform(96.0, 288.0) ** 2
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    return round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))


def _generate(
    rng: np.random.Generator,
    size: tuple[int, int] | None,
    n_objects: tuple[int, int],
    radius: tuple[float, float],
    free_colours: float,
    keep_masks: bool,
    randomise: bool = False,
) -> Scene:
    width, height = _random_size(rng, size)
    background = (make_random_background if randomise else make_background)(rng, width, height)
    mean = background.reshape(-1, 3).mean(axis=0)
    target = int(rng.integers(n_objects[0], n_objects[1] + 1))
    shapes: list[tuple[str, str | None, NDArray[Any], NDArray[Any]]] = []
    for _ in range(target * 12):  # placement attempts
        if len(shapes) == target:
            break
        name = SHAPES[int(rng.integers(len(SHAPES)))]
        colour_name = None if rng.random() < free_colours else _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
        fill = (_random_paint if randomise else _paint)(rng, colour_name)
        if not randomise and np.abs(fill - mean).sum() < 110.0:  # too close to the background to be seen
            continue
        r = rng.uniform(*radius) * min(width, height)
        cx = rng.uniform(r + 1, width - r - 1) if width > 2 * r + 2 else width / 2
        cy = rng.uniform(r + 1, height - r - 1) if height > 2 * r + 2 else height / 2
        outline = _variant_outline(name, rng) if randomise else None
        mask = _shape_mask(name, cx, cy, r, rng.uniform(0.0, 360.0), width, height, outline)
        if mask.sum() < 30:
            continue
        # On varied backgrounds what matters is the contrast with what lies under the shape, not the mean.
        if randomise and np.abs(fill - background[mask].mean(axis=0)).sum() < 100.0:
            continue
        # Every shape below must keep most of its pixels visible once this one is drawn over it.
        covered = np.zeros_like(mask)
        ok = True
        for _, _, _, earlier in reversed(shapes):
            visible = earlier & ~covered & ~mask
            if visible.sum() < _MIN_VISIBLE * earlier.sum():
                ok = False
                break
            covered |= earlier
        if ok:
            shapes.append((name, colour_name, fill, mask))
    return _finish(rng, background, shapes, keep_masks, degrade=randomise)


def scene_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of the ``index``-th scene of a set made from ``seed`` (scenes of a set are independent)."""
    return np.random.SeedSequence([seed, index])


def detection_scene(
    seed: int | np.random.SeedSequence,
    *,
    size: tuple[int, int] | None = None,
    n_objects: tuple[int, int] = (1, 5),
    radius: tuple[float, float] = (0.08, 0.25),
    free_colours: float = 0.0,
    masks: bool = False,
    randomise: bool = False,
) -> Scene:
    """A scene of ``n_objects`` shapes (inclusive range), circumradius a fraction ``radius`` of the smaller side.

    ``size`` is ``(width, height)``; by default random: sqrt(width * height) from 96 to 288, aspect ratio 0.5 to 2.
    ``free_colours`` is the probability that a shape is painted in a random colour instead of a named one.
    ``randomise`` draws the scene with the training's domain randomisation (see the module's docstring).
    """
    return _generate(np.random.default_rng(seed), size, n_objects, radius, free_colours, masks, randomise)


def classification_scene(
    seed: int | np.random.SeedSequence,
    *,
    size: tuple[int, int] | None = None,
    free_colours: float = 0.0,
    masks: bool = False,
    randomise: bool = False,
) -> Scene:
    """A scene with exactly one large shape (circumradius 18 % to 45 % of the smaller side)."""
    return _generate(np.random.default_rng(seed), size, (1, 1), (0.18, 0.45), free_colours, masks, randomise)


def tags_of(scene: Scene) -> set[str]:
    """The tags present in a scene: its shapes and the named colours they are painted in."""
    return {o.shape for o in scene.objects} | {o.colour for o in scene.objects if o.colour is not None}


def eval_set(kind: str, n: int = 300) -> list[Scene]:
    """The fixed held-out set: ``kind`` is ``"classification"`` (one shape) or ``"detection"`` (1 to 5 shapes).

    Made from :data:`EVAL_SEED`, never used in training; the tagger is evaluated on the detection set.
    """
    if kind == "classification":
        return [classification_scene(scene_seed(EVAL_SEED, i)) for i in range(n)]
    if kind == "detection":
        return [detection_scene(scene_seed(EVAL_SEED + 1, i)) for i in range(n)]
    raise ValueError(f"unknown evaluation set {kind!r}")
