"""The image-decoding boundary: a client's encoded bytes → (H, W, 3) uint8 RGB, or a domain error.

Everything an untrusted image can do to the process is decided here, in this order:

1. **Header probe** (``Image.open`` reads the header only): width, height and mode.
2. **Size refusal**: more than ``max_pixels`` (``SIGHTLINE_MAX_IMAGE_PIXELS``) → ``ResourceExhaustedError``, before
   any pixel is decoded. Pillow's own decompression-bomb check is turned off (``Image.MAX_IMAGE_PIXELS = None``) so
   that this one, configurable and lower by default, is the one a client meets.
3. **Truncation**: a baseline or progressive JPEG too short to hold one bit per 8x8 block for its size (a 633-byte
   file that claims 6000x6000 and ends with an EOI marker, which libjpeg decodes to grey without an error) is
   refused; Pillow itself raises for the other truncated files (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False).
4. **Reduced-scale decoding**: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, through
   ``Image.draft``) when that still leaves at least ``min_size`` pixels.
5. **Memory budget**: the decoded size (after the reduction) is reserved from a ``DecodeBudget`` shared by every
   call in flight before decoding starts.
6. **Decoding** of the first frame only (GIF, APNG, WebP, TIFF and MPO frames after the first are ignored), EXIF
   orientation applied, then the conversion of Pillow's mode to RGB (``to_rgb``).

Any other failure of a decoder (``NotImplementedError``, ``struct.error``, ``TypeError``, ``MemoryError`` ...
whatever a malformed file provokes) becomes ``InvalidArgumentError`` "could not be decoded": a bad image is the
client's error, never an INTERNAL one. Messages say what to send instead and quote neither file paths nor the
decoders' own text.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps

from service.errors import InvalidArgumentError, ResourceExhaustedError, SightlineError

__all__ = [
    "DecodeBudget",
    "EncodedImage",
    "RGBImage",
    "decode_image",
    "to_rgb",
]

log = logging.getLogger(__name__)

RGBImage = npt.NDArray[np.uint8]

# Our own check from the header (below) replaces Pillow's: Pillow's runs inside Image.open, before ours could, and
# answers an image above ~179 Mpx with DecompressionBombError (seen by a client as a corrupt image, not as one too
# large) and one above ~89 Mpx with a warning, whose filters cannot be changed per call from worker threads.
Image.MAX_IMAGE_PIXELS = None

_FIELD = "inputs[0].image"
"""The request field an image's errors name unless the caller names another (a stream's ``frame.encoded``)."""
_FORMATS_HINT = "JPEG, PNG, GIF, BMP, TIFF, WebP ..."
_WHITE = 255
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
"""EXIF orientations that transpose the stored image: its width is the displayed height."""
_EXIF_ORIENTATION = 0x0112
_HUFFMAN_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
"""Start-of-frame markers of Huffman-coded JPEGs (arithmetic-coded ones, SOF9 and up, have no per-block floor)."""


class DecodeBudget:
    """A pixel budget shared by every decode in flight, across threads (decoding runs in ``asyncio.to_thread``).

    ``acquire(pixels)`` reserves ``min(pixels, capacity)`` (so that one image larger than the whole budget, but
    under the per-image limit, is still decoded, alone) and returns what it reserved; ``release`` gives it back.
    When the budget is full, ``acquire`` waits up to ``wait_s`` for other decodes to finish, then raises
    ``ResourceExhaustedError`` with ``retry_after_s`` so that the client backs off and retries.
    """

    def __init__(self, max_pixels_in_flight: int, *, wait_s: float = 2.0, retry_after_s: float = 1.0) -> None:
        if max_pixels_in_flight < 1:
            raise ValueError(f"max_pixels_in_flight must be at least 1, got {max_pixels_in_flight}")
        self.capacity = max_pixels_in_flight
        self._wait_s = wait_s
        self._retry_after_s = retry_after_s
        self._in_flight = 0
        self._changed = threading.Condition()

    @property
    def in_flight(self) -> int:
        """Pixels reserved now."""
        with self._changed:
            return self._in_flight

    def acquire(self, pixels: int) -> int:
        """Reserve ``min(pixels, capacity)`` pixels, waiting up to ``wait_s``; returns the pixels reserved."""
        need = max(0, min(pixels, self.capacity))
        deadline = time.monotonic() + self._wait_s
        with self._changed:
            while self._in_flight + need > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    if self._in_flight + need <= self.capacity:
                        break
                    raise ResourceExhaustedError(
                        f"the server is decoding {self._in_flight} pixels of other images and cannot take "
                        f"{need} more (SIGHTLINE_DECODE_BUDGET_PIXELS = {self.capacity}); retry shortly or send a "
                        "smaller image",
                        retry_after_s=self._retry_after_s,
                    )
            self._in_flight += need
        return need

    def release(self, pixels: int) -> None:
        """Give back pixels an ``acquire`` returned."""
        with self._changed:
            self._in_flight -= pixels
            self._changed.notify_all()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[int]:
        """``acquire`` for the duration of a ``with`` block."""
        granted = self.acquire(pixels)
        try:
            yield granted
        finally:
            self.release(granted)


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """Encoded bytes waiting to be decoded, with the limits that apply to them.

    Calling it decodes at full size (it is a ``Callable[[], RGBImage]``); ``decode(min_size=...)`` lets a caller that
    knows how many pixels it needs (the recognition use case) have a JPEG decoded at a reduced scale.
    """

    data: bytes
    max_pixels: int
    budget: DecodeBudget | None = None
    field: str = _FIELD
    """The request field the bytes came in, named by the errors of their decoding."""

    def __call__(self) -> RGBImage:
        return self.decode()

    def decode(self, min_size: tuple[int, int] | None = None) -> RGBImage:
        return decode_image(
            self.data, max_pixels=self.max_pixels, min_size=min_size, budget=self.budget, field=self.field
        )


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    min_size: tuple[int, int] | None = None,
    budget: DecodeBudget | None = None,
    field: str = _FIELD,
) -> RGBImage:
    """Decode an encoded image (any format Pillow reads; its first frame) into (H, W, 3) uint8 RGB.

    EXIF orientation is applied; modes are converted as ``to_rgb`` says. ``min_size`` = (width, height): the
    fewest pixels of the whole (oriented) image the caller needs; a JPEG is then decoded at the largest of the
    scales 1/2, 1/4, 1/8 that keeps both sides at least that large (never below it), other formats at full size.
    None: full size. The result covers the same field of view whatever the scale, so normalised coordinates are
    unchanged. ``budget``: reserves the decoded pixels while decoding (see ``DecodeBudget``). ``field``: the
    request field the errors name (``inputs[0].image``, or a stream's ``frame.encoded``).

    Raises ``ResourceExhaustedError`` for an image of more than ``max_pixels`` pixels (judged from its header, before
    decoding) or a full budget, ``InvalidArgumentError`` for anything that cannot be decoded: empty, truncated,
    corrupt, an unknown format or a decoder failure of any kind.
    """
    if not data:
        raise InvalidArgumentError.field(field, "the image is empty")
    try:
        return _decode(data, max_pixels, min_size, budget, field)
    except SightlineError:
        raise
    except Exception as exc:
        # Every decoder failure, whatever its class, is the client's bad image and not a server fault.
        log.debug("image refused: %s: %s", type(exc).__name__, exc)
        if isinstance(exc, OSError) and "truncated" in str(exc):
            raise InvalidArgumentError.field(
                field,
                "is truncated (the data ends before the image does) and could not be decoded; send the whole file",
            ) from None
        raise InvalidArgumentError.field(
            field,
            f"could not be decoded: it is corrupt or not an image in a format this server reads ({_FORMATS_HINT}); "
            "send a complete, valid image file",
        ) from None


def _decode(
    data: bytes, max_pixels: int, min_size: tuple[int, int] | None, budget: DecodeBudget | None, field: str
) -> RGBImage:
    with Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        if width < 1 or height < 1:
            raise InvalidArgumentError.field(field, f"could not be decoded: its header gives a {width}x{height} size")
        if width * height > max_pixels:
            raise ResourceExhaustedError(
                f"the image has {width}x{height} = {width * height} pixels, above this server's limit of "
                f"{max_pixels} (SIGHTLINE_MAX_IMAGE_PIXELS); send a smaller image"
            )
        if opened.format in ("JPEG", "MPO"):
            _check_jpeg_length(data, width, height, field)
            if min_size is not None:
                _draft(opened, min_size)
        decoded_pixels = opened.size[0] * opened.size[1]
        reservation = budget.reserve(decoded_pixels) if budget is not None else nullcontext(decoded_pixels)
        with reservation:
            opened.load()
            if opened.size[0] * opened.size[1] > max(decoded_pixels, 1):
                # A container whose pixels come from an embedded image (ICO, ICNS) may be larger than its header said.
                raise ResourceExhaustedError(
                    f"the image decodes to {opened.size[0]}x{opened.size[1]} pixels although its header said "
                    f"{width}x{height}; send a plain image file"
                )
            max_value = _integer_range(opened)
            # In place: no copy of the decoded pixels when the orientation is already upright.
            ImageOps.exif_transpose(opened, in_place=True)
            return to_rgb(opened, max_value=max_value)


def _draft(opened: ImageFile.ImageFile, min_size: tuple[int, int]) -> None:
    """Ask libjpeg for a DCT-scaled decode that keeps at least ``min_size`` of the oriented image."""
    need_w, need_h = max(1, min_size[0]), max(1, min_size[1])
    if opened.getexif().get(_EXIF_ORIENTATION) in _SWAPPING_ORIENTATIONS:
        need_w, need_h = need_h, need_w
    if need_w < opened.size[0] and need_h < opened.size[1]:
        # Pillow picks the largest scale s in (8, 4, 2, 1) with s <= min(W // w, H // h): never below the request.
        opened.draft("RGB", (need_w, need_h))


def _check_jpeg_length(data: bytes, width: int, height: int, field: str) -> None:
    """Refuse a Huffman-coded JPEG shorter than one bit per 8x8 block of each component (each block's DC
    coefficient takes a Huffman code of at least one bit), the floor of any complete file of that size."""
    frame = _jpeg_frame(data)
    if frame is None:
        return
    marker, sampling = frame
    if marker not in _HUFFMAN_SOF or not sampling:
        return
    h_max = max(h for h, _ in sampling) or 1
    v_max = max(v for _, v in sampling) or 1
    blocks = sum(
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8) for h, v in sampling
    )
    if len(data) * 8 < blocks:
        raise InvalidArgumentError.field(
            field,
            f"is truncated: {len(data)} bytes cannot hold a complete {width}x{height} JPEG ({blocks} blocks need at "
            "least one bit each) and could not be decoded; send the whole file",
        )


def _jpeg_frame(data: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """The start-of-frame marker and each component's (horizontal, vertical) sampling factors, or None when the
    segments before the first scan cannot be walked."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            segment = data[i + 4 : i + 2 + length]
            if len(segment) < 6:
                return None
            count = segment[5]
            factors = [
                (segment[6 + 3 * k + 1] >> 4, segment[6 + 3 * k + 1] & 0x0F)
                for k in range(count)
                if 6 + 3 * k + 1 < len(segment)
            ]
            return marker, factors
        i += 2 + length
    return None


def _integer_range(image: Image.Image) -> int | None:
    """The largest sample value of an integer (``I``, ``I;16*``) image as its file declares it, or None when the
    file does not say (the values are then clipped to 0..255)."""
    if not (image.mode == "I" or image.mode.startswith("I;16")):
        return None
    if image.format == "TIFF":
        tags = getattr(image, "tag_v2", None)
        bits = tags.get(258) if tags is not None else None
        first = bits[0] if isinstance(bits, tuple) and bits else bits
        if isinstance(first, int) and 8 < first <= 16:
            return int(2**first - 1)
        return 65535 if image.mode.startswith("I;16") else None
    if image.format in ("PNG", "PPM") or image.mode.startswith("I;16"):
        # PNG's only depth above 8 is 16; Pillow scales a PGM of any maxval above 255 to 0..65535.
        return 65535
    return None


def to_rgb(image: Image.Image, *, max_value: int | None = None) -> RGBImage:
    """Any Pillow mode → (H, W, 3) uint8 RGB.

    - ``1``, ``L``: black 0, white 255, grey replicated to the three channels.
    - ``I;16``, ``I;16B``, ``I;16L``, ``I`` with ``max_value`` M (the file's range, e.g. 65535 for a 16-bit PNG):
      ``v * 256 // (M + 1)``, i.e. the top 8 bits for a power-of-two range (4096 of 65535 → 16, 65535 → 255), as
      libpng's ``strip_16`` does. ``I`` without a range (32-bit integer TIFFs) and ``F``: the values are taken as
      0..255 intensities, rounded and clipped (NaN → 0), as Pillow's own conversion does.
    - With alpha (``RGBA``, ``LA``, ``PA``, ``P`` or ``L``/``RGB`` with a transparency key, premultiplied ``RGBa``,
      ``La``): composited over white, ``(c * a + 255 * (255 - a)) / 255`` rounded, the way a transparent image is
      seen on a page (and the colour ``resize`` pads with). A fully transparent pixel is white.
    - ``CMYK`` (Adobe-inverted JPEGs are un-inverted by Pillow's reader): ``(255 - c) * (255 - k) / 255``;
      ``YCbCr`` (JFIF, full range), ``LAB``, ``HSV``, ``P``, ``RGBX``: Pillow's conversions. Embedded ICC profiles
      are not applied.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        rgb: RGBImage = np.asarray(image, dtype=np.uint8)
        return rgb
    if mode in ("1", "L") and "transparency" not in image.info:
        return _gray(np.asarray(image.convert("L"), dtype=np.uint8))
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int64)
        if max_value is not None:
            scaled = np.clip(values, 0, max_value) * 256 // (max_value + 1)
        else:
            scaled = np.clip(values, 0, 255)
        return _gray(scaled.astype(np.uint8))
    if mode == "F":
        floats = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray(np.clip(np.rint(floats), 0, 255).astype(np.uint8))
    if mode in ("RGBa", "La"):
        premultiplied = np.asarray(image, dtype=np.int32)
        colour = premultiplied[..., :3] if mode == "RGBa" else np.repeat(premultiplied[..., :1], 3, axis=2)
        # c' = c * a / 255, so c' + 255 - a is c over white.
        over = colour + (_WHITE - premultiplied[..., -1:])
        return np.clip(over, 0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.int32)
        alpha = rgba[..., 3:]
        composited: npt.NDArray[np.int32] = (rgba[..., :3] * alpha + _WHITE * (255 - alpha) + 127) // 255
        return composited.astype(np.uint8)
    converted: RGBImage = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return converted


def _gray(gray: npt.NDArray[np.uint8]) -> RGBImage:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
