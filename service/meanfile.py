"""Mean files: ``.npy`` arrays and Caffe ``.binaryproto`` BlobProto messages (told apart by their content, whatever
their names), read into HWC float32 arrays.

A BlobProto is decoded straight from the protobuf wire format (fields num=1, channels=2, height=3, width=4,
data=5 packed floats, shape=7 {dim=1}, double_data=8), so no Caffe schema is needed to read a mean.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.errors import InvalidArgumentError

__all__ = ["load_mean", "parse_binaryproto", "to_hwc"]

_NPY_MAGIC = b"\x93NUMPY"


def load_mean(path: Path, channels: int) -> npt.NDArray[np.float32]:
    """Read a mean file into an (H, W, C) float32 array (H = W = 1 for a per-channel mean).

    The format comes from the content, not the name (v0.7 took any name: its demo's was ``mean.proto.bin``): a
    ``.npy`` array starts with NumPy's magic string, anything else is read as a Caffe BlobProto. The array's
    channel order is taken as the network's (BGR for a Caffe mean with BGR input).
    """
    data = path.read_bytes()
    if data.startswith(_NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise InvalidArgumentError.field(path.name, f"is not a readable .npy file ({exc})") from None
    else:
        try:
            array = parse_binaryproto(data, path.name)
        except InvalidArgumentError:
            raise InvalidArgumentError.field(
                path.name,
                "is neither a .npy array (it does not start with NumPy's magic string) nor a Caffe BlobProto "
                "(.binaryproto); upload the mean as one of them",
            ) from None
    return to_hwc(np.asarray(array, dtype=np.float32), channels, path.name)


def to_hwc(array: npt.NDArray[np.float32], channels: int, name: str) -> npt.NDArray[np.float32]:
    """Bring a mean of shape (C,), (H, W, C), (C, H, W) or (1, C, H, W) / (1, H, W, C) to (H, W, C).

    The channel axis is the one of size ``channels``; the last axis wins when both ends match.
    """
    a = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
    if a.ndim == 1 and a.shape[0] == channels:
        return a.reshape(1, 1, channels)
    if a.ndim == 3 and a.shape[-1] == channels:
        return np.ascontiguousarray(a)
    if a.ndim == 3 and a.shape[0] == channels:
        return np.ascontiguousarray(a.transpose(1, 2, 0))
    raise InvalidArgumentError.field(
        name, f"mean of shape {list(array.shape)} does not fit an image of {channels} channel(s)"
    )


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode one message level into (field number, wire type, value)."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        out.append((number, wire, value))
    return out


def parse_binaryproto(data: bytes, name: str = "mean.binaryproto") -> npt.NDArray[np.float32]:
    """Decode a Caffe BlobProto into a float32 array of its shape (num, channels, height, width or ``shape``)."""
    try:
        legacy = {1: 1, 2: 1, 3: 1, 4: 1}
        shape: list[int] = []
        values: list[float] = []
        for number, wire, value in _fields(data):
            if number in legacy and wire == 0:
                assert isinstance(value, int)
                legacy[number] = value
            elif number == 7 and wire == 2:
                assert isinstance(value, bytes)
                for dim_number, dim_wire, dim in _fields(value):
                    if dim_number == 1 and dim_wire == 0:
                        assert isinstance(dim, int)
                        shape.append(dim)
                    elif dim_number == 1 and dim_wire == 2:
                        assert isinstance(dim, bytes)
                        pos = 0
                        while pos < len(dim):
                            d, pos = _varint(dim, pos)
                            shape.append(d)
            elif number == 5 and wire == 2:
                assert isinstance(value, bytes)
                values.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif number == 5 and wire == 5:
                assert isinstance(value, bytes)
                values.append(struct.unpack("<f", value)[0])
            elif number == 8 and wire == 2:
                assert isinstance(value, bytes)
                values.extend(struct.unpack(f"<{len(value) // 8}d", value))
    except (ValueError, struct.error, AssertionError) as exc:
        raise InvalidArgumentError.field(name, f"is not a Caffe BlobProto ({exc})") from None
    dims = shape or [legacy[1], legacy[2], legacy[3], legacy[4]]
    if int(np.prod(dims)) != len(values) or not values:
        raise InvalidArgumentError.field(name, f"BlobProto holds {len(values)} values for shape {dims}")
    return np.asarray(values, dtype=np.float32).reshape(dims)
