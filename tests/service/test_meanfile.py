"""Mean files: Caffe BlobProto bytes made by the protobuf library itself (an independent encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from service.errors import InvalidArgumentError
from service.meanfile import load_mean, parse_binaryproto, to_hwc


def blob_class() -> type:
    """A BlobProto message class with Caffe's field numbers, built at run time from a descriptor."""
    f = descriptor_pb2.FileDescriptorProto(name="caffe_blob_test.proto", package="caffetest", syntax="proto2")
    shape = f.message_type.add(name="BlobShape")
    shape.field.add(name="dim", number=1, type=3, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    blob = f.message_type.add(name="BlobProto")
    for name, number in (("num", 1), ("channels", 2), ("height", 3), ("width", 4)):
        blob.field.add(name=name, number=number, type=5, label=1)
    blob.field.add(name="data", number=5, type=2, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    blob.field.add(name="shape", number=7, type=11, label=1, type_name=".caffetest.BlobShape")
    blob.field.add(name="double_data", number=8, type=1, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffetest.BlobProto"))


BLOB = blob_class()


def test_legacy_dimensions() -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32) * 1.5
    data = BLOB(num=1, channels=3, height=2, width=4, data=values.tolist()).SerializeToString()
    array = parse_binaryproto(data)
    assert array.shape == (1, 3, 2, 4)
    np.testing.assert_array_equal(array.reshape(-1), values)


def test_shape_field_and_double_data() -> None:
    message = BLOB(double_data=[104.0, 117.0, 123.0])
    message.shape.dim.extend([3, 1, 1])
    array = parse_binaryproto(message.SerializeToString())
    assert array.shape == (3, 1, 1)
    assert to_hwc(array, 3, "m").reshape(-1).tolist() == [104.0, 117.0, 123.0]


def test_chw_mean_becomes_hwc(tmp_path: Path) -> None:
    chw = np.arange(3 * 2 * 5, dtype=np.float32).reshape(3, 2, 5)
    data = BLOB(num=1, channels=3, height=2, width=5, data=chw.reshape(-1).tolist()).SerializeToString()
    (tmp_path / "mean.binaryproto").write_bytes(data)
    hwc = load_mean(tmp_path / "mean.binaryproto", 3)
    np.testing.assert_array_equal(hwc, chw.transpose(1, 2, 0))
    np.save(tmp_path / "unitary_mean.npy", np.ones((1, 1, 3)))
    assert load_mean(tmp_path / "unitary_mean.npy", 3).shape == (1, 1, 3)


def test_bad_mean_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="BlobProto"):
        parse_binaryproto(b"\x0a\xff\xff")
    with pytest.raises(InvalidArgumentError, match="holds 2 values"):
        parse_binaryproto(BLOB(num=1, channels=3, height=1, width=1, data=[1.0, 2.0]).SerializeToString())
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        to_hwc(np.zeros((2, 2), dtype=np.float32), 3, "m.npy")
    (tmp_path / "m.txt").write_text("1 2 3")
    with pytest.raises(InvalidArgumentError, match=r"neither a \.npy array .* nor a Caffe BlobProto"):
        load_mean(tmp_path / "m.txt", 3)


def test_the_format_comes_from_the_content_whatever_the_name(tmp_path: Path) -> None:
    """v0.7 took any mean file name; its demo's was mean.proto.bin (#17 point 7)."""
    blob = BLOB(num=1, channels=3, height=1, width=1, data=[104.0, 117.0, 123.0]).SerializeToString()
    (tmp_path / "mean.proto.bin").write_bytes(blob)
    assert load_mean(tmp_path / "mean.proto.bin", 3).ravel().tolist() == [104.0, 117.0, 123.0]
    np.save(tmp_path / "unitary.npy", np.full((1, 1, 3), 0.5, np.float32))
    (tmp_path / "unitary.npy").rename(tmp_path / "unitary_mean")
    assert load_mean(tmp_path / "unitary_mean", 3).ravel().tolist() == [0.5, 0.5, 0.5]
    (tmp_path / "swapped.npy").write_bytes(blob)  # a BlobProto under a .npy name is still a BlobProto
    assert load_mean(tmp_path / "swapped.npy", 3).ravel().tolist() == [104.0, 117.0, 123.0]
