"""Bad images, made in code: every hostile or broken file the image-decoding boundary must refuse cleanly.

Each generator returns the bytes of one file, built from a small valid image Pillow writes and then patched, or
from the format's specification where Pillow cannot write it. Nothing is downloaded and nothing binary is
committed. ``BAD_IMAGES`` maps a name to (generator, the domain error expected of ``decode_image``);
``python -m tests.fuzz.images_corpus OUT_DIR`` writes them all to a folder (to try them on another decoder), and
``mutations(seed, n)`` yields randomly damaged copies of valid images in many formats for a fuzzing loop.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from service.errors import InvalidArgumentError, ResourceExhaustedError, SightlineError

__all__ = [
    "BAD_IMAGES",
    "BOMBS",
    "blp2_bad_compression",
    "bmp_bomb",
    "dds_unknown_pixel_format",
    "encode",
    "gif_bomb",
    "jpeg_bomb",
    "jpeg_truncated_6000",
    "mutations",
    "png_1bit_bomb",
    "ppm_bomb",
    "tiff_strip_offsets_of_type",
]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# ------------------------------------------------------------------------------- decoders that raise oddly


def dds_unknown_pixel_format() -> bytes:
    """A DDS header whose pixel-format flags are 0x410000 (no RGB, luminance, palette or FourCC bit): Pillow
    raises NotImplementedError from Image.open."""
    header = bytearray(124)
    struct.pack_into("<I", header, 0, 124)
    struct.pack_into("<3I", header, 4, 0x1007, 4, 4)  # flags, height, width
    struct.pack_into("<2I", header, 72, 32, 0x410000)  # pixel format: size, flags
    return b"DDS " + bytes(header) + bytes(64)


def blp2_bad_compression() -> bytes:
    """A BLP2 file (written by Pillow) whose compression byte is 161: BLPFormatError, a NotImplementedError."""
    data = bytearray(encode(Image.new("P", (8, 8), 1), "BLP"))
    data[4] = 161
    return bytes(data)


def tiff_strip_offsets_of_type(field_type: int) -> bytes:
    """An uncompressed TIFF whose StripOffsets (tag 273) entry claims type 5 (RATIONAL) or 7 (UNDEFINED): Pillow
    raises TypeError while loading."""
    data = bytearray(encode(_noise((8, 8)), "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 273:
            struct.pack_into("<H", data, entry + 2, field_type)
            return bytes(data)
    raise AssertionError("Pillow wrote a TIFF without StripOffsets")


# ------------------------------------------------------------------------------------------------ truncation


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    patched = bytearray(data)
    sof = patched.find(b"\xff\xc0")
    struct.pack_into(">HH", patched, sof + 5, height, width)
    return bytes(patched)


def jpeg_truncated_6000() -> bytes:
    """A 633-byte-class baseline JPEG (an 8x8 colour image's headers and scan) whose frame header claims
    6000x6000, ending with its EOI marker: libjpeg decodes it to 36 Mpx of grey and reports no error."""
    small = encode(Image.new("RGB", (16, 16), (200, 40, 40)), "JPEG", quality=90)
    return _patch_jpeg_size(small, 6000, 6000)


# --------------------------------------------------------------------------- images too large to decode


@functools.cache
def png_1bit_bomb(side: int = 30000) -> bytes:
    """A 1-bit PNG of side x side zeros: about 109 KB for 30000 x 30000 (900 Mpx, over Pillow's own limit)."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "none", then the packed bits
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(compressor.compress(row * (side % 1000)))
    chunks.append(compressor.flush())
    idat = b"".join(chunks)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bomb(side: int = 65500) -> bytes:
    """A small baseline JPEG whose frame header claims side x side."""
    return _patch_jpeg_size(encode(Image.new("RGB", (16, 16), (10, 20, 30)), "JPEG"), side, side)


def gif_bomb(side: int = 65535) -> bytes:
    """A GIF whose logical screen and first image descriptor both claim side x side."""
    data = bytearray(encode(Image.new("P", (4, 4), 0), "GIF"))
    struct.pack_into("<HH", data, 6, side, side)
    descriptor = data.find(b"\x2c")
    struct.pack_into("<HH", data, descriptor + 5, side, side)
    return bytes(data)


def bmp_bomb(side: int = 50000) -> bytes:
    """A BMP whose info header claims side x side (24-bit)."""
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "BMP"))
    struct.pack_into("<ii", data, 18, side, side)
    return bytes(data)


def ppm_bomb(side: int = 99999) -> bytes:
    """A binary PPM header claiming side x side, followed by a few bytes."""
    return f"P6\n{side} {side}\n255\n".encode() + bytes(64)


BOMBS: dict[str, Callable[[], bytes]] = {
    "png-1bit-30000": png_1bit_bomb,
    "jpeg-65500": jpeg_bomb,
    "gif-65535": gif_bomb,
    "bmp-50000": bmp_bomb,
    "ppm-99999": ppm_bomb,
}
"""Images above Pillow's decompression-bomb limit (about 179 Mpx), refused from their header."""

BAD_IMAGES: dict[str, tuple[Callable[[], bytes], type[SightlineError]]] = {
    "dds-pfflags-0x410000": (dds_unknown_pixel_format, InvalidArgumentError),
    "blp2-compression-161": (blp2_bad_compression, InvalidArgumentError),
    "tiff-stripoffsets-type-5": (lambda: tiff_strip_offsets_of_type(5), InvalidArgumentError),
    "tiff-stripoffsets-type-7": (lambda: tiff_strip_offsets_of_type(7), InvalidArgumentError),
    "jpeg-truncated-6000": (jpeg_truncated_6000, InvalidArgumentError),
    "not-an-image": (lambda: b"hello, this is not an image", InvalidArgumentError),
    **{name: (make, ResourceExhaustedError) for name, make in BOMBS.items()},
}


# ----------------------------------------------------------------------------------------------- fuzzing


@functools.cache
def seeds() -> tuple[tuple[str, bytes], ...]:
    """Small valid images in every format Pillow writes and reads back, in several modes."""
    rgb = _noise((24, 16), seed=3)
    out: list[tuple[str, bytes]] = []
    cases: list[tuple[str, Image.Image, dict[str, object]]] = [
        ("PNG", rgb, {}),
        ("PNG", rgb.convert("P"), {"transparency": 0}),
        ("PNG", Image.new("I;16", (16, 16), 4096), {}),
        ("JPEG", rgb, {}),
        ("JPEG", rgb, {"progressive": True}),
        ("JPEG", rgb.convert("CMYK"), {}),
        ("GIF", rgb.convert("P"), {}),
        ("BMP", rgb, {}),
        ("TIFF", rgb, {}),
        ("TIFF", rgb, {"compression": "tiff_lzw"}),
        ("TIFF", rgb, {"compression": "tiff_deflate"}),
        ("TIFF", rgb.convert("I;16"), {}),
        ("WEBP", rgb, {}),
        ("PPM", rgb, {}),
        ("TGA", rgb, {}),
        ("PCX", rgb, {}),
        ("SGI", rgb, {}),
        ("DDS", rgb.convert("RGBA"), {}),
        ("BLP", rgb.convert("P"), {}),
        ("ICO", rgb, {}),
        ("JPEG2000", rgb, {}),
        ("QOI", rgb, {}),
    ]
    for fmt, image, options in cases:
        try:
            out.append((fmt, encode(image, fmt, **options)))
        except (OSError, KeyError, ValueError):
            continue  # a format this Pillow build cannot write
    return tuple(out)


def mutations(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` damaged copies of ``seeds()``: random bytes overwritten (more often in the header), slices cut
    out or duplicated, or the file cut short; the same ``seed`` gives the same files."""
    rng = random.Random(seed)
    pool = seeds()
    for n in range(count):
        fmt, original = pool[n % len(pool)]
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            kind = rng.random()
            if kind < 0.6 and data:
                where = rng.randrange(min(len(data), 64 if rng.random() < 0.7 else len(data)))
                data[where] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
            elif kind < 0.75 and len(data) > 8:
                start = rng.randrange(len(data) - 4)
                del data[start : start + rng.randint(1, 16)]
            elif kind < 0.9 and len(data) > 8:
                start = rng.randrange(len(data) - 4)
                data[start:start] = data[start : start + rng.randint(1, 16)]
            elif len(data) > 1:
                data = data[: rng.randrange(1, len(data))]
        yield fmt, bytes(data)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.fuzz.images_corpus OUT_DIR", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, (make, _) in BAD_IMAGES.items():
        (folder / f"{name}.bin").write_bytes(make())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
