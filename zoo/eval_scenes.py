"""An independent generator of shape scenes, for evaluation only: pictures the models have never seen.

``zoo/scenes.py`` makes the training scenes (Pillow polygons over its own backgrounds and scikit-image's
:data:`zoo.scenes.TRAINING_PHOTOS`). This module shares none of its drawing code, so that the figures it gives say
something about other people's pictures:

- Drawing: OpenCV's primitives (``cv2.fillPoly``, ``cv2.ellipse``, ``cv2.circle``, ``cv2.boxPoints``) on a canvas
  four times larger, reduced with ``INTER_AREA`` into a coverage map that blends each shape's edges into the
  background. A heart is two discs and the pentagon tangent to both, a cross two bars, a rounded square two
  rectangles and a disc in each corner; stars have inner ratios from 0.30 (thin) to 0.60 (fat), cross bars 25 % to
  45 % of their length; shapes are stretched up to 1.25:1 and pictures have aspect ratios from 1:2 to 2:1.
- Colours: a palette of the ways people write each colour (HTML/X11 names such as crimson, forest green, royal
  blue, gold, dark violet, and the pure primaries), each jittered a little in HSV.
- Backgrounds: flat colours of every hue, linear, three-stop and radial gradients, OpenCV textures (random
  lines, blurred noise through OpenCV's colour maps, plaids) and the scikit-image photographs that the training
  never uses (:data:`PHOTOS`), cropped, resized and sometimes recoloured with a colour map.
- Degradations: sensor noise, Gaussian blur, JPEG compression through OpenCV's encoder.

Ground truth uses the convention of :mod:`zoo.scenes`: the tight box of a shape's visible pixels (those where its
visible coverage is at least one half), normalised ``(xmin, ymin, xmax, ymax)``, pixel-edge coordinates. Scenes
are :class:`zoo.scenes.Scene` values, so ``zoo.evaluate`` scores them like the held-out sets. Deterministic from a
seed; needs numpy and OpenCV (``opencv-python-headless``) and scikit-image's bundled photographs.
"""

from __future__ import annotations

import colorsys
import math
from functools import cache
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from zoo import scenes

__all__ = ["INDEPENDENT_SEED", "PALETTE", "PHOTOS", "independent_scene", "independent_set"]

INDEPENDENT_SEED = 9_300_000
"""Seed of the independent evaluation sets (nothing in training uses this generator at all)."""

PHOTOS: tuple[str, ...] = (
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "cell.png",
    "clock_motion.png",
    "color.png",
)
"""scikit-image's bundled photographs used here; none is in :data:`zoo.scenes.TRAINING_PHOTOS`."""

PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((255, 0, 0), (220, 20, 60), (178, 34, 34), (230, 50, 40), (200, 0, 0)),
    "green": ((0, 128, 0), (34, 139, 34), (50, 205, 50), (0, 200, 0), (46, 160, 87)),
    "blue": ((0, 0, 255), (65, 105, 225), (0, 60, 200), (30, 30, 180), (20, 90, 230)),
    "yellow": ((255, 255, 0), (255, 215, 0), (250, 225, 50), (240, 200, 10), (255, 240, 60)),
    "purple": ((128, 0, 128), (148, 0, 211), (160, 32, 240), (120, 40, 160), (153, 50, 204)),
}
"""RGB values people use for each colour name (HTML/X11 names and primaries); a shape takes one, jittered."""

_SUPER = 4  # supersampling of the drawing canvas
_SHIFT = 2  # OpenCV's fractional bits for sub-pixel vertex positions on that canvas
_MIN_VISIBLE = 0.65


# ------------------------------------------------------------------------------------------------------ colours
def _hsv_to_rgb(h: float, s: float, v: float) -> NDArray[Any]:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))) * 255.0


def _named_fill(rng: np.random.Generator, name: str) -> NDArray[Any]:
    r, g, b = (c / 255.0 for c in PALETTE[name][int(rng.integers(len(PALETTE[name])))])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    return _hsv_to_rgb(h + rng.uniform(-0.012, 0.012), s * rng.uniform(0.9, 1.0), v * rng.uniform(0.85, 1.05))


def _any_colour(rng: np.random.Generator) -> NDArray[Any]:
    return _hsv_to_rgb(rng.random(), rng.random(), rng.uniform(0.1, 1.0))


# -------------------------------------------------------------------------------------------------- backgrounds
@cache
def _photo(name: str) -> NDArray[Any]:
    path = scenes.skimage_data_folder() / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"cannot read {name} from scikit-image's sample data")
    rgb: NDArray[Any] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return rgb


_COLOUR_MAPS = (
    cv2.COLORMAP_JET,
    cv2.COLORMAP_HSV,
    cv2.COLORMAP_OCEAN,
    cv2.COLORMAP_SUMMER,
    cv2.COLORMAP_AUTUMN,
    cv2.COLORMAP_PINK,
    cv2.COLORMAP_VIRIDIS,
    cv2.COLORMAP_TWILIGHT,
)


def _colour_map(rng: np.random.Generator, grey: NDArray[Any]) -> NDArray[Any]:
    """A uint8 grey picture through one of OpenCV's colour maps, as RGB float."""
    mapped = cv2.applyColorMap(grey, _COLOUR_MAPS[int(rng.integers(len(_COLOUR_MAPS)))])
    return cv2.cvtColor(mapped, cv2.COLOR_BGR2RGB).astype(np.float32)


def _photo_background(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    photo = _photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    ph, pw = photo.shape[:2]
    aspect = width / height
    cw = int(min(pw, ph * aspect) * rng.uniform(0.35, 1.0))
    ch = max(16, min(ph, int(cw / aspect)))
    cw = max(16, cw)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        return _colour_map(rng, cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
    return crop.astype(np.float32)


def _gradient(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.35:
        t = np.hypot(xx - rng.uniform(0, width), yy - rng.uniform(0, height))
    else:
        a = rng.uniform(0.0, 2.0 * math.pi)
        t = math.cos(a) * xx + math.sin(a) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    stops = [_any_colour(rng) for _ in range(int(rng.integers(2, 4)))]
    positions = np.linspace(0.0, 1.0, len(stops))
    channels = [np.interp(t, positions, [c[k] for c in stops]) for k in range(3)]
    return np.stack(channels, axis=-1).astype(np.float32)


def _texture(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    kind = int(rng.integers(3))
    if kind == 0:  # a flat colour crossed by many thin lines of other colours
        canvas = np.ascontiguousarray(np.broadcast_to(_any_colour(rng), (height, width, 3)).astype(np.float32))
        for _ in range(int(rng.integers(15, 60))):
            p0 = (int(rng.integers(-20, width + 20)), int(rng.integers(-20, height + 20)))
            p1 = (int(rng.integers(-20, width + 20)), int(rng.integers(-20, height + 20)))
            colour = tuple(float(c) for c in _any_colour(rng))
            cv2.line(canvas, p0, p1, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        return canvas
    if kind == 1:  # blurred noise (clouds) through a colour map
        noise = rng.random((height, width)).astype(np.float32)
        clouds = cv2.GaussianBlur(noise, (0, 0), rng.uniform(3.0, 20.0))
        low, high = float(clouds.min()), float(clouds.max())
        return _colour_map(rng, ((clouds - low) / max(high - low, 1e-6) * 255.0).astype(np.uint8))
    # a plaid: sines along two directions mixing two colours
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(6.0, 40.0)
    t = (
        0.5
        + 0.25 * np.sin(2 * math.pi * xx / period)
        + 0.25 * np.sin(2 * math.pi * yy / (period * rng.uniform(0.5, 2)))
    )
    c0, c1 = _any_colour(rng), _any_colour(rng)
    plaid: NDArray[Any] = (c0 + (c1 - c0) * t[..., None]).astype(np.float32)
    return plaid


def _background(rng: np.random.Generator, width: int, height: int) -> NDArray[Any]:
    kind = rng.choice(["flat", "gradient", "texture", "photo"], p=[0.25, 0.2, 0.25, 0.3])
    if kind == "flat":
        return np.broadcast_to(_any_colour(rng), (height, width, 3)).astype(np.float32)
    if kind == "gradient":
        return _gradient(rng, width, height)
    if kind == "texture":
        return _texture(rng, width, height)
    return _photo_background(rng, width, height)


# -------------------------------------------------------------------------------------------------------- shapes
def _rotate(points: NDArray[Any], angle: float) -> NDArray[Any]:
    c, s = math.cos(angle), math.sin(angle)
    rotated: NDArray[Any] = points @ np.array([[c, s], [-s, c]])
    return rotated


def _poly(canvas: NDArray[Any], points: NDArray[Any]) -> None:
    pts = np.round(points * _SUPER * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], (255,), cv2.LINE_8, _SHIFT)


def _disc(canvas: NDArray[Any], centre: NDArray[Any], radius: float) -> None:
    scale = _SUPER * (1 << _SHIFT)
    cv2.circle(
        canvas,
        (round(centre[0] * scale), round(centre[1] * scale)),
        round(radius * scale),
        (255,),
        -1,
        cv2.LINE_8,
        _SHIFT,
    )


def _coverage(rng: np.random.Generator, shape: str, cx: float, cy: float, size: float, w: int, h: int) -> NDArray[Any]:
    """The shape's coverage in [0, 1] of each pixel, ``(h, w)`` float32; ``size`` is about its half-extent."""
    canvas = np.zeros((h * _SUPER, w * _SUPER), dtype=np.uint8)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    stretch = math.exp(rng.uniform(-math.log(1.25), math.log(1.25)))
    sx, sy = size * math.sqrt(stretch), size / math.sqrt(stretch)
    centre = np.array([cx, cy])

    def place(points: NDArray[Any]) -> NDArray[Any]:
        placed: NDArray[Any] = _rotate(points * np.array([sx, sy]), angle) + centre
        return placed

    if shape == "circle":
        scale = _SUPER * (1 << _SHIFT)
        axes = (round(sx * scale), round(sy * scale))
        cv2.ellipse(
            canvas,
            (round(cx * scale), round(cy * scale)),
            axes,
            math.degrees(angle),
            0,
            360,
            (255,),
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
    elif shape == "square":
        half = 0.72
        if rng.random() < 0.35:  # rounded corners: a cross of two rectangles and a disc in each corner
            r = half * rng.uniform(0.15, 0.4)
            _poly(canvas, place(np.array([[-half + r, -half], [half - r, -half], [half - r, half], [-half + r, half]])))
            _poly(canvas, place(np.array([[-half, -half + r], [half, -half + r], [half, half - r], [-half, half - r]])))
            for corner in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                c = place(np.array([[corner[0] * (half - r), corner[1] * (half - r)]]))[0]
                _disc(canvas, c, r * math.sqrt(sx * sy))
        else:
            box = cv2.boxPoints(((0.0, 0.0), (2 * half, 2 * half), 0.0))
            _poly(canvas, place(box.astype(np.float64)))
    elif shape == "triangle":
        apex = rng.uniform(0.9, 1.15) if rng.random() < 0.4 else 1.0
        t = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * np.array([1.0, 1.0])
        pts[0, 1] *= apex
        _poly(canvas, place(pts))
    elif shape == "star":
        inner = rng.uniform(0.30, 0.60)
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        _poly(canvas, place(np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)))
    elif shape == "cross":
        arm = rng.uniform(0.25, 0.45) / 2  # half the bar width over the bar length 2
        _poly(canvas, place(np.array([[-1.0, -arm], [1.0, -arm], [1.0, arm], [-1.0, arm]])))
        _poly(canvas, place(np.array([[-arm, -1.0], [arm, -1.0], [arm, 1.0], [-arm, 1.0]])))
    elif shape == "heart":
        # two overlapping discs side by side, and below them the pentagon whose sides are tangent to both
        lobe = rng.uniform(0.48, 0.58)
        d = rng.uniform(0.75, 0.95) * lobe
        top, tip = -0.35, rng.uniform(0.85, 1.0)
        for side in (-1.0, 1.0):
            _disc(canvas, place(np.array([[side * d, top]]))[0], lobe * math.sqrt(sx * sy))
        length = math.hypot(d, tip - top)
        towards = math.atan2(top - tip, -d)  # from the tip to the left disc's centre
        spread = math.asin(min(1.0, lobe / length))
        reach = math.sqrt(max(length**2 - lobe**2, 0.0))
        candidates = [np.array([math.cos(towards + e), math.sin(towards + e)]) * reach for e in (spread, -spread)]
        left = min(candidates, key=lambda q: float(q[0])) + np.array([0.0, tip])
        right = np.array([-left[0], left[1]])
        _poly(canvas, place(np.array([left, [-d, top], [d, top], right, [0.0, tip]])))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------------- scenes
def _size(rng: np.random.Generator) -> tuple[int, int]:
    side = rng.uniform(110.0, 360.0)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    return max(32, round(side * math.sqrt(aspect))), max(32, round(side / math.sqrt(aspect)))


def _degrade(rng: np.random.Generator, image: NDArray[Any]) -> NDArray[Any]:
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(1.0, 6.0), size=image.shape)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.4:
        ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 93))])
        assert ok
        pixels = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(pixels)


def independent_scene(seed: np.random.SeedSequence | int, kind: str) -> scenes.Scene:
    """One scene: ``kind`` ``"classification"`` (one shape, half-extent 20 % to 42 % of the smaller side) or
    ``"detection"`` (1 to 5 shapes, 7 % to 24 %), all in named colours."""
    rng = np.random.default_rng(seed)
    if kind == "classification":
        n, extent = 1, (0.20, 0.42)
    elif kind == "detection":
        n, extent = int(rng.integers(1, 6)), (0.07, 0.24)
    else:
        raise ValueError(f"unknown evaluation set {kind!r}")
    width, height = _size(rng)
    background = _background(rng, width, height)
    placed: list[tuple[str, str, NDArray[Any], NDArray[Any]]] = []  # shape, colour, fill, coverage
    for _ in range(40):
        if len(placed) == n:
            break
        shape = scenes.SHAPES[int(rng.integers(len(scenes.SHAPES)))]
        colour = tuple(PALETTE)[int(rng.integers(len(PALETTE)))]
        fill = _named_fill(rng, colour)
        size = rng.uniform(*extent) * min(width, height)
        margin = size * 1.05
        if width <= 2 * margin or height <= 2 * margin:
            continue
        cx, cy = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        cover = _coverage(rng, shape, cx, cy, size, width, height)
        inside = cover >= 0.5
        if inside.sum() < 40:
            continue
        # The shape must be told from what lies under it: far from its mean colour, and from most of its pixels.
        under = background[inside]
        distance = np.linalg.norm(under - fill, axis=1)
        if np.linalg.norm(under.mean(axis=0) - fill) < 80.0 or (distance < 45.0).mean() > 0.15:
            continue
        # Each earlier shape keeps most of its area visible.
        on_top = cover.copy()
        ok = True
        for _, _, _, earlier in reversed(placed):
            seen = earlier * (1.0 - on_top)
            if (seen >= 0.5).sum() < _MIN_VISIBLE * (earlier >= 0.5).sum():
                ok = False
                break
            on_top = 1.0 - (1.0 - on_top) * (1.0 - earlier)
        if ok:
            placed.append((shape, colour, fill, cover))
    image = background.copy()
    for _, _, fill, cover in placed:
        image = image * (1.0 - cover[..., None]) + fill * cover[..., None]
    objects = []
    for index, (shape, colour, _, cover) in enumerate(placed):
        visible = cover.copy()
        for _, _, _, later in placed[index + 1 :]:
            visible *= 1.0 - later
        pixels = visible >= 0.5
        rows, cols = np.nonzero(pixels.any(axis=1))[0], np.nonzero(pixels.any(axis=0))[0]
        if rows.size == 0:
            continue
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        objects.append(
            scenes.SceneObject(
                shape=shape,
                colour=colour,
                box=(x0 / width, y0 / height, x1 / width, y1 / height),
                pixel_box=(x0, y0, x1, y1),
                visible_fraction=float(pixels.sum()) / max(int((cover >= 0.5).sum()), 1),
            )
        )
    return scenes.Scene(image=_degrade(rng, image), objects=tuple(objects))


def independent_set(kind: str, n: int = 300) -> list[scenes.Scene]:
    """The fixed independent evaluation set of ``kind`` (``"classification"`` or ``"detection"``)."""
    offset = {"classification": 0, "detection": 1}
    if kind not in offset:
        raise ValueError(f"unknown evaluation set {kind!r}")
    return [independent_scene(np.random.SeedSequence([INDEPENDENT_SEED + offset[kind], i]), kind) for i in range(n)]
