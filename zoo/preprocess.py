"""The v0.7 image preprocessing, as the service implements it, for the zoo's offline runs (numpy + Pillow only).

Decode to RGB uint8 with Pillow; SQUASH with ``Image.resize((W, H), Image.Resampling.BILINEAR)``; reorder the channels
(RGB, BGR, L); FLOAT32: ``x = pixel * (pixel_scaling / 255) - mean``; UINT8: raw pixels; then the dimension order.
Only what the bundled models use is supported (SQUASH); the service's own implementation is the reference for
the rest. Constant inputs resolve ``"data.1"`` to dimension 1 (batch dimension left out) of input ``data``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["decode", "encode_binaryproto", "load_mean", "prepare", "read_binaryproto"]


def decode(image: bytes | NDArray[Any] | Image.Image) -> Image.Image:
    """An RGB Pillow image from encoded bytes, an ``(H, W, 3)`` uint8 array or a Pillow image."""
    pil: Image.Image
    if isinstance(image, bytes | bytearray):
        opened = Image.open(io.BytesIO(image))
        opened.load()
        pil = opened
    elif isinstance(image, np.ndarray):
        pil = Image.fromarray(image)
    else:
        pil = image
    return pil.convert("RGB")


def encode_binaryproto(array: NDArray[Any]) -> bytes:
    """A Caffe BlobProto (num=1, channels, height, width, packed float data) for a ``(C, H, W)`` array."""
    c, h, w = array.shape

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    head = b"".join(varint(key) + varint(v) for key, v in ((1 << 3, 1), (2 << 3, c), (3 << 3, h), (4 << 3, w)))
    return head + varint((5 << 3) | 2) + varint(len(data)) + data


def read_binaryproto(data: bytes) -> NDArray[Any]:
    """The ``(C, H, W)`` float32 array of a BlobProto written by :func:`encode_binaryproto` (legacy dims, packed)."""
    pos, dims, values = 0, {1: 1, 2: 1, 3: 1, 4: 1}, b""

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            dims[number] = varint()
        elif wire == 2:
            length = varint()
            if number == 5:
                values = data[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire} in a BlobProto")
    array = np.array(struct.unpack(f"<{len(values) // 4}f", values), dtype=np.float32)
    blob: NDArray[Any] = array.reshape(dims[1], dims[2], dims[3], dims[4])[0]
    return blob


def load_mean(path: Path, channels: int) -> NDArray[Any]:
    """A mean file as an ``(H, W, C)`` float32 array (``.npy`` of shape (1,1,C)/(H,W,C), or a BlobProto)."""
    if path.suffix == ".binaryproto":
        return read_binaryproto(path.read_bytes()).transpose(1, 2, 0).astype(np.float32)
    mean: NDArray[Any] = np.load(path, allow_pickle=False).astype(np.float32)
    return mean.reshape(1, 1, channels) if mean.ndim == 1 else mean


_LAYOUTS = {"NCHW": (2, 0, 1), "NCWH": (2, 1, 0), "NHWC": (0, 1, 2), "NWHC": (1, 0, 2)}


def image_tensor(pil: Image.Image, spec: Mapping[str, Any], folder: Path | None = None) -> NDArray[Any]:
    """One image's input tensor (no batch dimension) for an ``ImagePreprocessing`` given as its JSON dict."""
    if spec.get("resize_type", "SQUASH") != "SQUASH":
        raise NotImplementedError("the zoo's offline runs only implement SQUASH")
    width, height = (int(v) for v in spec["target_size"].split("x"))
    resized = pil.resize((width, height), Image.Resampling.BILINEAR)
    channels = spec.get("color_channels", "RGB")
    if channels in ("L", "GRAY"):
        pixels = np.asarray(resized.convert("L"))[..., None]
    else:
        pixels = np.asarray(resized)
        if channels == "BGR":
            pixels = pixels[..., ::-1]
    tensor: NDArray[Any]
    if spec.get("data_type", "FLOAT32") == "UINT8":
        tensor = np.ascontiguousarray(pixels, dtype=np.uint8)
    else:
        tensor = pixels.astype(np.float32) * np.float32(float(spec.get("pixel_scaling", 255.0)) / 255.0)
        if spec.get("mean_file"):
            if folder is None:
                raise ValueError("a mean file needs the model folder")
            tensor = tensor - load_mean(folder / spec["mean_file"], tensor.shape[-1])
        tensor = tensor.astype(np.float32)
    return np.ascontiguousarray(tensor.transpose(_LAYOUTS[spec.get("dimension_order", "NCHW")]))


def prepare(
    image: bytes | NDArray[Any] | Image.Image, preprocessing: Mapping[str, Any], folder: Path | None = None
) -> dict[str, NDArray[Any]]:
    """The named input tensors (no batch dimension) for one image, in the order of ``preprocessing["inputs"]``."""
    pil = decode(image)
    feeds: dict[str, NDArray[Any]] = {}
    for spec in preprocessing["inputs"]:
        name = spec["tensor_name"]
        if "image" in spec:
            feeds[name] = image_tensor(pil, spec["image"], folder)
        else:
            values = []
            for item in spec["constant"]["data"]:
                if isinstance(item, str):
                    tensor, dim = item.rsplit(".", 1)
                    values.append(float(feeds[tensor].shape[int(dim)]))
                else:
                    values.append(float(item))
            feeds[name] = np.asarray(values, dtype=np.float32).reshape(spec["constant"]["shape"])
    return feeds
