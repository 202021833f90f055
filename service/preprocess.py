"""Image source → decoded, cropped, resized and normalised input tensors, per a network's preprocessing.

Pure: numpy, Pillow and OpenCV only. Decoding (the boundary with untrusted bytes) lives in ``service.images`` and is
re-exported here. Images travel as (H, W, 3) uint8 RGB arrays; coordinates are normalised to [0, 1]
with the origin at the top-left corner. Each step reports how its output's coordinates map back to the source
image (``Region``), so that boxes found in the network's input are returned in the source image's frame.
"""

from __future__ import annotations

import base64
import binascii
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from service.domain import (
    ColorChannels,
    DataType,
    DimensionOrder,
    ImagePreprocessing,
    Preprocessing,
    ResizeType,
)
from service.errors import InvalidArgumentError
from service.images import DecodeBudget, EncodedImage, RGBImage, decode_image
from service.resampling import resample

__all__ = [
    "DecodeBudget",
    "EncodedImage",
    "PreparedInputs",
    "RGBImage",
    "RawFrame",
    "Region",
    "build_inputs",
    "crop",
    "decode_image",
    "from_raw_pixels",
    "image_tensor",
    "resize",
    "resolve_source",
    "with_own_batch_axis",
]

_AXES = {
    # (H, W, C) → the order of the three non-batch dimensions.
    DimensionOrder.NCHW: (2, 0, 1),
    DimensionOrder.NCWH: (2, 1, 0),
    DimensionOrder.NHWC: (0, 1, 2),
    DimensionOrder.NWHC: (1, 0, 2),
}
_FILL_VALUE = 255
"""White, the colour FILL pads with."""


@dataclass(frozen=True, slots=True)
class Region:
    """An axis-aligned affine map from a derived image's normalised frame to its source's: X = x0 + sx * x."""

    x0: float = 0.0
    y0: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def then(self, inner: Region) -> Region:
        """The map of ``inner`` (a frame derived from this one's image) straight to this map's source."""
        return Region(
            self.x0 + self.sx * inner.x0, self.y0 + self.sy * inner.y0, self.sx * inner.sx, self.sy * inner.sy
        )

    def apply(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map (N, 4) xmin, ymin, xmax, ymax boxes to the source frame, clipped to [0, 1]."""
        scale = np.array([self.sx, self.sy, self.sx, self.sy], dtype=np.float32)
        offset = np.array([self.x0, self.y0, self.x0, self.y0], dtype=np.float32)
        return np.clip(boxes * scale + offset, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True, slots=True)
class PreparedInputs:
    """Unbatched input tensors by name; the first image input's (height, width) in pixels; the map from that
    input's frame to the source image's."""

    tensors: dict[str, npt.NDArray[np.generic]]
    input_size: tuple[int, int]
    region: Region


def resolve_source(source: str) -> bytes:
    """The bytes of a ``data:`` URI source, base64 (``data:image/png;base64,...``) or binary (``;binary,``)."""
    if not source.startswith("data:"):
        if source.startswith(("http://", "https://")):
            raise InvalidArgumentError.field(
                "inputs[0].image.source",
                "URL sources are turned off on this server (SIGHTLINE_URL_ENABLED); send the image bytes",
            )
        raise InvalidArgumentError.field(
            "inputs[0].image.source", "must be a data: URI (data:image/*;base64,...) or the image bytes in content"
        )
    header, sep, payload = source.partition(",")
    if not sep:
        raise InvalidArgumentError.field("inputs[0].image.source", "data: URI has no ',' before its payload")
    params = header[len("data:") :].split(";")
    if "base64" in params:
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError.field("inputs[0].image.source", "base64 payload is not valid base64") from None
    if "binary" in params:
        # A proto string is Unicode: a binary payload carries one byte per character (code points 0-255).
        try:
            return payload.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidArgumentError.field(
                "inputs[0].image.source",
                "a ;binary data URI carries one byte per character (code points 0-255); send raw bytes in content",
            ) from None
    return urllib.parse.unquote_to_bytes(payload)


def from_raw_pixels(data: bytes, width: int, height: int, channels: int, *, bgr: bool = False) -> RGBImage:
    """Raw rows of ``channels`` bytes per pixel (3: RGB or BGR, 1: gray), no row padding, as (H, W, 3) RGB."""
    if channels not in (1, 3):
        raise InvalidArgumentError.field("frame.raw.format", "must be RGB24, BGR24 or GRAY8")
    if width < 1 or height < 1:
        raise InvalidArgumentError.field("frame.raw", f"{width}x{height} is not an image size")
    expected = width * height * channels
    if len(data) != expected:
        raise InvalidArgumentError.field(
            "frame.raw.data",
            f"holds {len(data)} bytes; {width}x{height} at {channels} byte(s) a pixel needs {expected}",
        )
    # A view of the message's bytes (read-only, no copy); BGR and gray take OpenCV's one-pass conversion.
    pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels)
    if channels == 1:
        return cast(RGBImage, cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB))
    if bgr:
        return cast(RGBImage, cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
    return pixels


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A stream's raw frame waiting to be read (a ``Callable[[], RGBImage]``, like ``EncodedImage``): calling it
    gives ``from_raw_pixels`` of its fields. The recognition use case resizes these with OpenCV
    (``build_inputs(opencv=True)``): a video's frames are where the time counts."""

    data: bytes
    width: int
    height: int
    channels: int
    bgr: bool = False

    def __call__(self) -> RGBImage:
        return from_raw_pixels(self.data, self.width, self.height, self.channels, bgr=self.bgr)


def crop(
    image: RGBImage,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    polygon: Sequence[tuple[float, float]] = (),
    uniform_background: bool = False,
) -> tuple[RGBImage, Region]:
    """Crop to a normalised box (xmin, ymin, xmax, ymax) or to a polygon's bounding box.

    With a polygon, pixels outside it are painted black, or with the mean colour of the pixels inside it when
    ``uniform_background`` is set. Returns the crop and the map from its frame to the image's.
    """
    if bbox is not None and polygon:
        raise InvalidArgumentError.field("inputs[0].image", "give a bbox or a polygon, not both")
    if bbox is None and not polygon:
        return image, Region()
    h, w = image.shape[:2]
    if polygon:
        if len(polygon) < 3:
            raise InvalidArgumentError.field("inputs[0].image.polygon", f"needs at least 3 points, got {len(polygon)}")
        for i, (x, y) in enumerate(polygon):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise InvalidArgumentError.field(
                    f"inputs[0].image.polygon[{i}]", f"({x}, {y}) is outside the image ([0, 1])"
                )
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        box = (min(xs), min(ys), max(xs), max(ys))
        where = "inputs[0].image.polygon"
    else:
        assert bbox is not None
        box = bbox
        where = "inputs[0].image.bbox"
        if not all(0.0 <= v <= 1.0 for v in box):
            raise InvalidArgumentError.field(where, f"{list(box)} has coordinates outside [0, 1]")
    xmin, ymin, xmax, ymax = box
    if not (xmax > xmin and ymax > ymin):
        raise InvalidArgumentError.field(where, f"{list(box)} is empty: xmax must exceed xmin and ymax exceed ymin")
    x0, y0 = min(_pixel_edge(xmin, w, up=False), w - 1), min(_pixel_edge(ymin, h, up=False), h - 1)
    x1, y1 = max(_pixel_edge(xmax, w, up=True), x0 + 1), max(_pixel_edge(ymax, h, up=True), y0 + 1)
    out = image[y0:y1, x0:x1]
    if polygon:
        mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask_image).polygon([(x * w - x0, y * h - y0) for x, y in polygon], fill=1)
        mask = np.asarray(mask_image, dtype=bool)
        fill = out[mask].mean(axis=0).round() if uniform_background and mask.any() else np.zeros(3)
        out = np.where(mask[..., None], out, fill.astype(np.uint8)).astype(np.uint8)
    return np.ascontiguousarray(out), Region(x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h)


def _pixel_edge(coordinate: float, size: int, *, up: bool) -> int:
    """The pixel edge of a normalised crop coordinate: rounded out (down for a minimum, ``up`` for a maximum),
    except that a coordinate within float32's precision of an edge is that edge. Coordinates come as float32
    (the protos' ``float``): 0.85 arrives as 0.8500000238..., whose 272.0000076 of 320 pixels is column 272's edge,
    not a reason to take column 273."""
    edge = coordinate * size
    nearest = round(edge)
    # float32 keeps 24 bits: a relative 2**-20 is 16 times its rounding error, far below a pixel for any image.
    if abs(edge - nearest) <= size * 2.0**-20:
        return int(nearest)
    return int(math.ceil(edge) if up else math.floor(edge))


def resize(
    image: RGBImage, resize_type: ResizeType, target: tuple[int, int], *, opencv: bool = False
) -> tuple[RGBImage, Region]:
    """Bring an image to the network's size (``target`` = (width, height), or (N, N) for NETWORK).

    Bilinear, antialiased when shrinking: Pillow's filter, or with ``opencv`` OpenCV's equivalent within the
    documented tolerance where it is faster (``service.resampling``; raw stream frames). Returns the resized image
    and the map from its frame to the input image's: CROP cuts the centre, FILL pads centred with white, SQUASH
    and NETWORK keep the whole frame.
    """
    h, w = image.shape[:2]
    tw, th = target
    if resize_type is ResizeType.SQUASH:
        return resample(image, tw, th, opencv=opencv), Region()
    if resize_type is ResizeType.NETWORK:
        scale = tw / max(w, h)
        return resample(image, max(1, round(w * scale)), max(1, round(h * scale)), opencv=opencv), Region()
    scale = max(tw / w, th / h) if resize_type is ResizeType.CROP else min(tw / w, th / h)
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = resample(image, rw, rh, opencv=opencv)
    ox, oy = (rw - tw) // 2, (rh - th) // 2
    if resize_type is ResizeType.CROP:
        # CROP scales the image to cover the target: 0 <= ox and ox + tw <= rw (likewise for y).
        out = np.ascontiguousarray(scaled[oy : oy + th, ox : ox + tw])
    else:
        # FILL scales it to fit inside: ox, oy <= 0, the scaled image pasted at (-ox, -oy) on white.
        out = np.full((th, tw, 3), _FILL_VALUE, dtype=np.uint8)
        out[-oy : -oy + rh, -ox : -ox + rw] = scaled
    # The network's x in [0, 1] covers resized pixels ox .. ox + tw, i.e. (ox + x * tw) / rw of the image.
    return out, Region(ox / rw, oy / rh, tw / rw, th / rh)


def image_tensor(
    image: RGBImage, spec: ImagePreprocessing, mean: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.generic]:
    """A resized (H, W, 3) RGB image → the network's unbatched tensor.

    Channels per ``color_channels`` (L: Pillow's ITU-R 601-2 luma, one channel). FLOAT32: ``pixel *
    pixel_scaling / 255 - mean``, the mean (H, W, C) or (1, 1, C) in the same scaled units; a mean of another
    spatial size is reduced to its per-channel average. UINT8: raw pixels (no scaling, no mean). Then the layout
    per ``dimension_order`` (batch dimension excluded).
    """
    if spec.color_channels is ColorChannels.L:
        pixels: npt.NDArray[np.uint8] = np.asarray(Image.fromarray(image).convert("L"), dtype=np.uint8)[..., None]
    elif spec.color_channels is ColorChannels.BGR:
        pixels = image[..., ::-1]
    else:
        pixels = image
    if spec.data_type is DataType.UINT8:
        hwc: npt.NDArray[np.generic] = pixels
    else:
        values = pixels.astype(np.float32)
        values *= np.float32(spec.pixel_scaling / 255.0)  # in place: one float array before the layout's copy
        if mean is not None:
            if mean.shape[-1] != values.shape[-1]:
                raise InvalidArgumentError.field(
                    "preprocessing.mean_file", f"has {mean.shape[-1]} channels for a {values.shape[-1]}-channel input"
                )
            if mean.shape[:2] not in {(1, 1), values.shape[:2]}:
                mean = mean.mean(axis=(0, 1), keepdims=True, dtype=np.float32)
            values -= mean
        hwc = values
    return np.ascontiguousarray(hwc.transpose(_AXES[spec.dimension_order]))


def build_inputs(
    image: RGBImage,
    preprocessing: Preprocessing,
    means: Mapping[str, npt.NDArray[np.float32]],
    *,
    opencv: bool = False,
) -> PreparedInputs:
    """All the network's unbatched inputs, in preprocessing order, for one (already cropped) image; ``opencv``:
    resized as ``resize`` says (raw stream frames).

    ``means`` maps mean file names to (H, W, C) arrays. Constant inputs resolve ``"data.1"`` references against
    the image tensors built before them. The returned region maps the first image input's frame to ``image``'s.
    """
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    region: Region | None = None
    size: tuple[int, int] | None = None
    for item in preprocessing.inputs:
        if item.image is not None:
            spec = item.image
            resized, reg = resize(image, spec.resize_type, spec.target, opencv=opencv)
            region = region or reg
            size = size or (int(resized.shape[0]), int(resized.shape[1]))
            tensors[item.tensor_name] = image_tensor(
                resized, spec, means.get(spec.mean_file) if spec.mean_file else None
            )
        elif item.constant is not None:
            values = [_constant_value(v, tensors) for v in item.constant.data]
            tensors[item.tensor_name] = np.asarray(values, dtype=np.float32).reshape(item.constant.shape)
    if size is None:
        raise InvalidArgumentError.field("preprocessing.inputs", "must hold at least one image input")
    return PreparedInputs(tensors, size, region or Region())


def _constant_value(value: float | str, tensors: Mapping[str, npt.NDArray[np.generic]]) -> float:
    if isinstance(value, float):
        return value
    name, _, dim = value.rpartition(".")
    if name not in tensors:
        raise InvalidArgumentError.field(
            "preprocessing", f"constant {value!r} refers to image input {name!r}, which must come before it"
        )
    return float(tensors[name].shape[int(dim)])


def with_own_batch_axis(array: npt.NDArray[Any], dims: Sequence[int]) -> npt.NDArray[Any]:
    """One image's tensor for a network input that Triton does not batch (``max_batch_size`` 0) but whose graph
    has a batch axis of its own: ``array`` with a leading axis of 1 when ``dims`` (the input's dims, -1 for any
    size) has one more axis, of size 1 or any, in front of the array's shape; ``array`` itself otherwise.

    These are v0.7's ``batched_output: false`` networks (Caffe's Faster-RCNN, ONNX exports with a fixed batch of
    1 whose outputs have no batch axis): the preprocessing gives one image's tensors, the graph takes them as a
    batch of one.
    """
    if len(dims) == array.ndim + 1 and dims[0] in (-1, 1):
        return array[np.newaxis]
    return array
