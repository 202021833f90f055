"""Bilinear resampling of (H, W, 3) uint8 images: Pillow's antialiased bilinear filter, through OpenCV where
OpenCV gives the same pixels within a small tolerance and is faster.

Pillow's ``BILINEAR`` shrinks with a triangle filter whose half-width is the scale factor ``s`` (antialiased),
and enlarges with the plain bilinear interpolation of pixel centres. OpenCV's ``INTER_LINEAR`` is that plain
interpolation at every scale (no antialiasing: it aliases when shrinking). So, per axis:

- **enlarging or the same size** (``s <= 1``): ``cv2.resize(INTER_LINEAR)`` alone, within 1 of Pillow's value;
- **shrinking by** ``SHRINK_RANGE`` (1.75 to 5): a triangle pre-filter of half-width ``sqrt(s**2 - 1)`` in
  OpenCV's separable filter, then ``INTER_LINEAR``: the pre-filter and the interpolation's own triangle of
  half-width 1 together have the variance of Pillow's triangle of half-width ``s``;
- **otherwise** (shrinking by less than 1.75, where the interpolation's phase differs too much from Pillow's
  kernel, or by more than 5, where filtering every source pixel costs more than Pillow's sampled one): Pillow.

The service takes the OpenCV path for raw stream frames (a video's frames, where the time counts); decoded
images keep Pillow's pixels exactly, so that a result and the zoo's figures do not depend on this module.

Measured against Pillow on photographs, the shapes scenes and the stream benchmark's frames (the tests check it):
mean absolute difference at most ``MEAN_TOLERANCE`` of a pixel value, 99 % of the values within
``P99_TOLERANCE``, none beyond ``MAX_TOLERANCE`` (those few on the sharpest edges). OpenCV releases the GIL; the
callers run this in worker threads. Both paths keep the whole field of view (pixel centres at ``(i + 0.5) * s``),
so normalised coordinates do not depend on which path ran.
"""

from __future__ import annotations

import math
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["MAX_TOLERANCE", "MEAN_TOLERANCE", "P99_TOLERANCE", "SHRINK_RANGE", "resample", "uses_opencv"]

RGBImage = npt.NDArray[np.uint8]

SHRINK_RANGE = (1.75, 5.0)
"""The shrink factors (source / target pixels, per axis) the OpenCV path takes; enlarging always takes it."""
MEAN_TOLERANCE = 0.75
P99_TOLERANCE = 5
MAX_TOLERANCE = 16
"""The documented difference from Pillow's pixels (uint8 values): mean, 99th percentile and maximum."""


def uses_opencv(source: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether ``resample`` of a ``source`` (width, height) image to ``target`` (width, height) runs on OpenCV."""
    return all(_fits(s / t) for s, t in zip(source, target, strict=True))


def resample(image: RGBImage, width: int, height: int, *, opencv: bool = True) -> RGBImage:
    """``image`` resized to ``width`` x ``height`` with Pillow's antialiased bilinear filter, or, with ``opencv``,
    OpenCV's equivalent within the module's tolerance where that is faster (see the module's docstring). ``image``
    itself when it already has that size; never modified in place."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if not (opencv and uses_opencv((w, h), (width, height))):
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    kx, ky = _prefilter(w / width), _prefilter(h / height)
    source: npt.NDArray[Any] = image
    if kx.size > 1 or ky.size > 1:
        source = cv2.sepFilter2D(image, -1, kx, ky, borderType=cv2.BORDER_REPLICATE)
    return cast(RGBImage, cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR))


def _fits(scale: float) -> bool:
    return scale <= 1.0 or SHRINK_RANGE[0] <= scale <= SHRINK_RANGE[1]


def _prefilter(scale: float) -> npt.NDArray[np.float32]:
    """The normalised triangle kernel that, followed by bilinear interpolation, approximates Pillow's triangle of
    half-width ``scale``: variances add, a triangle of half-width r has r**2 / 6, the interpolation adds 1 / 6."""
    radius = math.sqrt(max(scale * scale - 1.0, 0.0))
    if radius <= 1.0:
        return np.ones(1, dtype=np.float32)
    reach = math.ceil(radius)
    taps = np.maximum(0.0, 1.0 - np.abs(np.arange(-reach, reach + 1)) / radius).astype(np.float32)
    kernel: npt.NDArray[np.float32] = taps / taps.sum(dtype=np.float32)
    return kernel
