"""Hypothesis strategies over Sightline's protobuf request messages, built from their descriptors.

Two families. ``requests(descriptor)`` builds a message field by field: every scalar type at its extremes, NaN and
infinities, huge and non-ASCII strings, unknown enum numbers, nested and repeated messages, oneofs and the
well-known types (Struct, Value, Timestamp, FieldMask are ordinary messages to the builder). Half of what it
builds is a known-good request with a few fields overwritten, and fields named like ids, images or tensors get
the values the service knows (bundled spec ids, sample images, data: URIs) half the time: a message of random
fields is refused at the first check, and only near-valid ones reach recognition, the registry and the streams.
``mangled(valid)`` turns serialisations of valid messages into bytes that are barely a message or none at all,
and ``wire_messages()`` writes the wire format by hand (wrong wire types, invalid UTF-8, unknown fields).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.fuzz.images_corpus import mutations

__all__ = [
    "LEARNED",
    "MAX_MESSAGE_BYTES",
    "LearnedIds",
    "garbage",
    "mangled",
    "random_message",
    "requests",
    "valid_requests",
    "wire_messages",
]

ROOT = Path(__file__).resolve().parents[2]
MAX_MESSAGE_BYTES = 1_000_000
"""No fuzzed message is larger: the point is odd content, not load (the server's own limit is far above)."""

# ------------------------------------------------------------------------------------------- known values

RED = (ROOT / "samples" / "red.png").read_bytes()
SKY = (ROOT / "samples" / "blue-sky.jpg").read_bytes()
SCENE = (ROOT / "samples" / "shapes-scene.png").read_bytes()
COLORS_ONNX = (ROOT / "model_repository" / "colors" / "1" / "model.onnx").read_bytes()
COLORS_MEAN = (ROOT / "model_repository" / "colors" / "mean.npy").read_bytes()

NETWORK_IDS = ["colors", "shapes-yolo", "shapes-anchored", "shapes-direct", "shapes-tagger", "shapes-classifier"]
SPEC_IDS = ["colors-v1", "shapes-yolo-v1", "shapes-anchored-v1", "shapes-direct-v1", "shape-tags-v1", "shapes-v1"]
VERSION_IDS = [f"{spec}.1" for spec in SPEC_IDS]
# The registry numbers what a user creates from 1: the fuzzer's own specifications, versions and networks.
USER_IDS = ["1", "2", "3", "0", "-1", "01", "1.0", "9223372036854775808"]
TENSORS = ["data", "share", "images", "output0", "image_tensor", "im_info", "detection_boxes", "scores", "image"]
FILE_NAMES = ["colors.onnx", "mean.npy", "model.onnx", "../mean.npy", "/etc/passwd", "a/b.onnx", ".", ""]
MASK_PATHS = ["name", "description", "metadata", "current_version_id", "outputs", "id", "update_date", "framework"]
FRAMEWORKS = ["onnx", "caffe", "nv-caffe-0.x-mod", "tensorflow-1.x", "tensorflow-2.x", "ONNX", "pytorch"]
TARGET_SIZES = ["64x64", "224x224", "32", "0x0", "64x0", "-1x64", "99999x99999", "64X64", "x", "1e3x2"]


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


DATA_URIS = [
    _data_uri("image/png", RED),
    _data_uri("image/jpeg", SKY),
    _data_uri("image/png", SCENE),
    _data_uri("image/jpeg", RED),  # a PNG announced as JPEG
    _data_uri("text/plain", RED),
    "data:image/png;base64," + base64.b64encode(RED).decode()[:-7],  # cut inside the base64
    "data:image/png;base64,!!!not base64!!!",
    "data:image/png;binary," + RED.decode("latin-1"),
    "data:image/png,",
    "data:,",
    "data:",
    "ftp://127.0.0.1/red.png",
    "file:///etc/passwd",
]

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "\x00colors-v1",
    "colors-v1\x00",
    "COLORS-V1",
    " colors-v1",
    "../../../etc/passwd",
    "%s%s%n",
    "{0}",
    "'; DROP TABLE specs; --",
    "\u202ecolors-v1",
    "\ufeff",
    "🦊" * 50,
    "é" * 3000,
]
HUGE_STRINGS = ["x" * 300_000, "ü" * 150_000, "1" * 100_000]
"""Long enough to be a burden to quote or store, short enough for the 1 MB cap (two bytes per ü)."""

# --------------------------------------------------------------------------------------- generic scalars

_INT_BITS = {
    FieldDescriptor.TYPE_INT32: (32, True),
    FieldDescriptor.TYPE_SINT32: (32, True),
    FieldDescriptor.TYPE_SFIXED32: (32, True),
    FieldDescriptor.TYPE_INT64: (64, True),
    FieldDescriptor.TYPE_SINT64: (64, True),
    FieldDescriptor.TYPE_SFIXED64: (64, True),
    FieldDescriptor.TYPE_UINT32: (32, False),
    FieldDescriptor.TYPE_FIXED32: (32, False),
    FieldDescriptor.TYPE_UINT64: (64, False),
    FieldDescriptor.TYPE_FIXED64: (64, False),
}


def _integers(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = sorted({low, high, 0, 1, max(low, -1), 2**31 - 1 if bits == 64 else high, 255, 256, 65535})
    return st.one_of(
        st.sampled_from([e for e in edges if low <= e <= high]), st.integers(0, 100), st.integers(low, high)
    )


def _enum(enum: EnumDescriptor) -> st.SearchStrategy[int]:
    # Proto3 enums are open: a number the .proto does not name travels and parses, and the server must refuse it.
    known = sorted({v.number for v in enum.values})
    return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))


# The huge values are one in a few dozen of the odd ones: any more and most messages carry hundreds of kilobytes.
_STRINGS = st.one_of(st.text(max_size=40), st.sampled_from(ODD_STRINGS * 4 + HUGE_STRINGS))
_BYTES = st.one_of(st.binary(max_size=256), st.sampled_from([b""] * 20 + [b"\x00" * 500_000, b"\xff" * 100_000]))
_FLOATS32 = st.one_of(st.floats(width=32), st.sampled_from([0.0, 0.5, 1.0, -0.0, 1e-45, 3.4e38]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_BITS:
        return _integers(*_INT_BITS[kind])
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _FLOATS32
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return _enum(field.enum_type)
    if kind == FieldDescriptor.TYPE_STRING:
        return _STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return _BYTES
    raise AssertionError(f"no strategy for field type {kind} of {field.full_name}")


# ------------------------------------------------------------------------------ realistic values by name


class LearnedIds:
    """Ids the server handed out during the run (tasks, specifications, networks): fuzzed requests name them, so
    that GetTask, DeleteNetwork and the like find something, not only NOT_FOUND."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, value: str) -> None:
        if value and value not in self.ids and len(self.ids) < 64:
            self.ids.append(value)

    def strategy(self) -> st.SearchStrategy[str]:
        # The pool grows while hypothesis runs, so the choice is an index resolved at draw time.
        return st.integers(0, 63).map(lambda i: self.ids[i % len(self.ids)] if self.ids else "")


LEARNED = LearnedIds()


@st.composite
def _damaged_image(draw: st.DrawFn) -> bytes:
    _, data = next(mutations(draw(st.integers(0, 2**32 - 1)), 1))
    return data


def _raw_pixels() -> st.SearchStrategy[bytes]:
    return st.sampled_from([bytes(64 * 64 * 3), b"\xff\x00\x00" * (64 * 64), bytes(64 * 64), b"\x80" * 10])


_IMAGES = st.one_of(st.sampled_from([RED, SKY, SCENE]), _damaged_image())
_ID_FIELDS: dict[str, st.SearchStrategy[str]] = {
    "spec_id": st.sampled_from(SPEC_IDS + USER_IDS),
    "version_id": st.sampled_from(VERSION_IDS + USER_IDS),
    "current_version_id": st.sampled_from(VERSION_IDS + USER_IDS),
    "network_id": st.sampled_from(NETWORK_IDS + USER_IDS),
    "id": st.one_of(st.sampled_from(USER_IDS + SPEC_IDS + NETWORK_IDS), LEARNED.strategy()),
    "task_id": LEARNED.strategy(),
    "task_ids": LEARNED.strategy(),
}
_STRING_FIELDS: dict[str, st.SearchStrategy[str]] = {
    **_ID_FIELDS,
    "source": st.sampled_from(DATA_URIS),
    "framework": st.sampled_from(FRAMEWORKS),
    "target_size": st.sampled_from(TARGET_SIZES),
    "mean_file": st.sampled_from(["mean.npy", "mean.binaryproto", "missing.npy", "../mean.npy", ""]),
    "file_name": st.sampled_from(FILE_NAMES),
    "name": st.sampled_from([*FILE_NAMES, "red", "My colours", "fuzz"]),
    "sha256": st.sampled_from([hashlib.sha256(COLORS_ONNX).hexdigest(), hashlib.sha256(COLORS_MEAN).hexdigest()]),
    "paths": st.sampled_from(MASK_PATHS),
    "tensor_name": st.sampled_from(TENSORS),
    "output_tensors": st.sampled_from(TENSORS),
    "output_tensor": st.sampled_from(TENSORS),
    "anchors_tensor": st.sampled_from(TENSORS),
    "scores_tensor": st.sampled_from(TENSORS),
    "offsets_tensor": st.sampled_from(TENSORS),
    "boxes_tensor": st.sampled_from(TENSORS),
    "classes_tensor": st.sampled_from(TENSORS),
    "normalize_wrt_tensor": st.sampled_from(TENSORS),
}
_BYTES_FIELDS: dict[str, st.SearchStrategy[bytes]] = {
    "content": _IMAGES,
    "encoded": _IMAGES,
    "data": st.one_of(_IMAGES, _raw_pixels(), st.sampled_from([COLORS_ONNX, COLORS_MEAN])),
}
_NUMBER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "width": st.sampled_from([64, 1, 0, 32, 65536]),
    "height": st.sampled_from([64, 1, 0, 32, 65536]),
    "size": st.sampled_from([len(COLORS_ONNX), len(COLORS_MEAN), 0, 2**40]),
    "shape": st.integers(-1, 64),
    "limit": st.integers(-1, 200),
    "offset": st.integers(-1, 10),
    "max_predictions": st.integers(-1, 10),
    "max_in_flight": st.integers(0, 65),
    "max_latency_ms": st.sampled_from([0, 1, 1000]),
    "thresholds": st.floats(0, 1, width=32),
    "anchors": st.floats(0, 10, width=32),
    "nms_threshold": st.floats(0, 1, width=32),
    "discard_threshold": st.floats(0, 1, width=32),
    "class_agnostic_nms_threshold": st.floats(0, 1, width=32),
    "pixel_scaling": st.sampled_from([1.0, 255.0, 0.0]),
    "xmin": st.floats(0, 1, width=32),
    "ymin": st.floats(0, 1, width=32),
    "xmax": st.floats(0, 1, width=32),
    "ymax": st.floats(0, 1, width=32),
    "x": st.floats(0, 1, width=32),
    "y": st.floats(0, 1, width=32),
}


def _value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """A value of one (singular) element of ``field``: the realistic one by name, or any of its type."""
    generic = _scalar(field)
    by_type: Mapping[str, st.SearchStrategy[Any]]
    if field.type == FieldDescriptor.TYPE_STRING:
        by_type = _STRING_FIELDS
    elif field.type == FieldDescriptor.TYPE_BYTES:
        by_type = _BYTES_FIELDS
    elif field.type == FieldDescriptor.TYPE_ENUM:
        by_type = {}
    else:
        by_type = _NUMBER_FIELDS
    realistic = by_type.get(field.name)
    return generic if realistic is None else st.one_of(realistic, generic)


# ------------------------------------------------------------------------------------------- messages


def _synthetic(field: FieldDescriptor) -> bool:
    """Whether ``field`` sits in the hidden oneof that proto3 ``optional`` makes, rather than a real one."""
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _repeated(field: FieldDescriptor, element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # A handful of elements is what the checks read; a long list only once in a while.
    return st.one_of(st.lists(element, max_size=3), st.lists(element, min_size=40, max_size=60))


@st.composite
def random_message(draw: st.DrawFn, descriptor: Descriptor, depth: int = 4, sparse: bool = False) -> Message:
    """A message of ``descriptor``'s type with fields drawn one by one; ``sparse``: each field is rarely set (for
    overwriting a few fields of a valid message). Messages nest at most ``depth`` levels."""
    message: Message = message_factory.GetMessageClass(descriptor)()
    chance = 4 if sparse else 2

    def present() -> bool:
        return draw(st.integers(0, chance - 1)) == 0

    def element(field: FieldDescriptor) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            return random_message(field.message_type, depth - 1, sparse)
        return _value(field)

    for oneof in descriptor.oneofs:
        if len(oneof.fields) == 1 and _synthetic(oneof.fields[0]):
            continue
        chosen = draw(st.sampled_from([None, *oneof.fields]))
        if chosen is not None and (chosen.type != FieldDescriptor.TYPE_MESSAGE or depth > 0):
            _set(message, chosen, draw(element(chosen)))
    for field in descriptor.fields:
        if field.containing_oneof is not None and not _synthetic(field):
            continue
        # Presence is drawn first, for every field: a message whose fields are all messages, at the last level,
        # still draws (hypothesis wants every composite to), and the choices keep their places in the sequence.
        if not present() or (field.type == FieldDescriptor.TYPE_MESSAGE and depth <= 0):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            entries = draw(st.dictionaries(_value(key_field), element(value_field), max_size=3))
            target = getattr(message, field.name)
            for key, value in entries.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif field.is_repeated:
            values = draw(_repeated(field, element(field)))
            target = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for value in values:
                    target.add().CopyFrom(value)
            else:
                target.extend(values)
        else:
            _set(message, field, draw(element(field)))
    return message


# --------------------------------------------------------------------------------------- valid requests

_COLORS_PREPROCESSING = {
    "inputs": [
        {
            "tensor_name": "data",
            "image": {
                "dimension_order": "NCHW",
                "resize_type": "SQUASH",
                "target_size": "64x64",
                "color_channels": "RGB",
                "pixel_scaling": 1.0,
                "mean_file": "mean.npy",
                "data_type": "FLOAT32",
            },
        }
    ]
}
_SPEC = {
    "name": "fuzzed colours",
    "metadata": {"team": "fuzz", "nested": {"n": 1, "list": [1, "a", None, True]}},
    "outputs": [{"labels": {"labels": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}], "exclusive": True}}],
}
_RED_INPUT = {"image": {"content": base64.b64encode(RED).decode()}}
_UPLOAD_FILES = [
    {"name": "colors.onnx", "size": len(COLORS_ONNX), "sha256": hashlib.sha256(COLORS_ONNX).hexdigest()},
    {"name": "mean.npy", "size": len(COLORS_MEAN), "sha256": hashlib.sha256(COLORS_MEAN).hexdigest()},
]
_NETWORK = {"name": "fuzzed network", "framework": "onnx", "preprocessing": _COLORS_PREPROCESSING}

VALID: dict[str, list[dict[str, Any]]] = {
    "sightline.v1.ListRequest": [{"limit": 10}, {"offset": 1, "limit": 2}],
    "sightline.v1.GetSpecificationRequest": [{"spec_id": "colors-v1"}, {"spec_id": "1"}],
    "sightline.v1.CreateSpecificationRequest": [{"specification": _SPEC}],
    "sightline.v1.UpdateSpecificationRequest": [
        {"specification": {"id": "1", "name": "renamed", "description": "d"}, "update_mask": "name,description"},
        {"specification": {"id": "1", "current_version_id": "1"}, "update_mask": "currentVersionId"},
    ],
    "sightline.v1.DeleteSpecificationRequest": [{"spec_id": "2"}],
    "sightline.v1.ListVersionsRequest": [{"spec_id": "colors-v1"}, {"limit": 5}],
    "sightline.v1.GetVersionRequest": [{"version_id": "colors-v1.1"}],
    "sightline.v1.CreateVersionRequest": [
        {
            "version": {
                "spec_id": "1",
                "network_id": "colors",
                "post_processings": [{"classification": {"output_tensor": "share"}}],
            }
        },
        {
            "version": {
                "spec_id": "1",
                "network_id": "shapes-yolo",
                "post_processings": [{"detection": {"yolov5_output": {"output_tensor": "output0"}}}],
            }
        },
    ],
    "sightline.v1.DeleteVersionRequest": [{"version_id": "1"}],
    "sightline.v1.RecognizeRequest": [
        {"spec_id": "colors-v1", "inputs": [_RED_INPUT]},
        {"spec_id": "colors-v1", "inputs": [{"image": {"source": DATA_URIS[0]}}], "show_discarded": True},
        {
            "spec_id": "shapes-yolo-v1",
            "inputs": [{"image": {"content": base64.b64encode(SCENE).decode(), "bbox": {"xmax": 0.5, "ymax": 0.5}}}],
        },
        {
            "version_id": "shapes-anchored-v1.1",
            "inputs": [
                {
                    "image": {
                        "content": base64.b64encode(SKY).decode(),
                        "polygon": [{"x": 0.1, "y": 0.1}, {"x": 0.9, "y": 0.2}, {"x": 0.5, "y": 0.9}],
                        "crop_uniform_background": True,
                    }
                }
            ],
            "max_predictions": 3,
        },
    ],
    "sightline.v1.StreamRecognizeRequest": [
        {"config": {"spec_id": "colors-v1", "max_in_flight": 2}},
        {"config": {"spec_id": "shapes-yolo-v1", "tracking": True, "ordering": "AS_COMPLETED"}},
        {"frame": {"frame_id": 1, "encoded": base64.b64encode(RED).decode()}},
        {
            "frame": {
                "frame_id": 2,
                "timestamp": "2024-01-01T00:00:00Z",
                "raw": {
                    "width": 64,
                    "height": 64,
                    "format": "RGB24",
                    "data": base64.b64encode(bytes(64 * 64 * 3)).decode(),
                },
            }
        },
    ],
    "sightline.v1.GetNetworkRequest": [{"network_id": "colors"}, {"network_id": "1"}],
    "sightline.v1.UpdateNetworkRequest": [
        {"network": {"id": "1", "name": "renamed", "metadata": {"k": "v"}}, "update_mask": "name,metadata"}
    ],
    "sightline.v1.DeleteNetworkRequest": [{"network_id": "1"}],
    "sightline.v1.InferNetworkRequest": [{"network_id": "colors", "inputs": [_RED_INPUT], "output_tensors": ["share"]}],
    "sightline.v1.CreateNetworkRequest": [
        {"upload": {"network": _NETWORK, "files": _UPLOAD_FILES}},
        {"chunk": {"file_name": "colors.onnx", "data": base64.b64encode(COLORS_ONNX).decode()}},
        {"chunk": {"file_name": "mean.npy", "data": base64.b64encode(COLORS_MEAN).decode()}},
    ],
    "sightline.v1.GetTaskRequest": [{"task_id": "00000000-0000-0000-0000-000000000000"}],
    "sightline.v1.BatchGetTasksRequest": [{"task_ids": ["00000000-0000-0000-0000-000000000000"]}],
}
"""Requests the service answers OK (or NOT_FOUND for ids the run has not made yet), by message type, in JSON."""


def valid_requests(descriptor: Descriptor) -> list[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    return [json_format.ParseDict(body, cls()) for body in VALID.get(descriptor.full_name, [{}])]


def requests(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Requests of ``descriptor``'s type: a valid one with a few fields overwritten, or one built from nothing."""

    @st.composite
    def near_valid(draw: st.DrawFn) -> Message:
        message = draw(st.sampled_from(valid_requests(descriptor)))
        copy = type(message)()
        copy.CopyFrom(message)
        # MergeFrom overwrites the scalars the sparse message sets, appends to lists and merges nested messages: a
        # valid request with a few fields changed.
        copy.MergeFrom(draw(random_message(descriptor, sparse=True)))
        return copy

    return st.one_of(near_valid(), random_message(descriptor)).filter(lambda m: m.ByteSize() < MAX_MESSAGE_BYTES)


# ------------------------------------------------------------------------------------------------ bytes


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def _wire_field(draw: st.DrawFn) -> bytes:
    number = draw(st.one_of(st.integers(1, 12), st.sampled_from([0, 19000, 2**29 - 1, 2**29, 2**32])))
    wire = draw(st.integers(0, 7))  # 3 and 4 are the deprecated groups, 6 and 7 exist in no version
    tag = _varint((number << 3) | wire)
    if wire == 0:
        return tag + draw(st.one_of(st.integers(0, 2**64 - 1).map(_varint), st.just(b"\xff" * 11)))
    if wire == 1:
        return tag + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return tag + draw(st.binary(min_size=4, max_size=4))
    if wire == 2:
        # Invalid UTF-8 in what the schema says is a string, or a length that runs past the end.
        payload = draw(st.one_of(st.binary(max_size=64), st.sampled_from([b"\xc3\x28", b"\xed\xa0\x80", b"\xff"])))
        length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**32)))
        return tag + _varint(length) + payload
    return tag


def wire_messages() -> st.SearchStrategy[bytes]:
    """Protobuf wire format written by hand: right and wrong wire types for the fields, unknown field numbers,
    groups, lengths past the end, invalid UTF-8."""
    return st.lists(_wire_field(), min_size=1, max_size=6).map(b"".join)


@st.composite
def mangled(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """The serialisation of a valid message, damaged: bits flipped, cut short, spliced with another, bytes
    inserted or removed, a slice repeated."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "delete", "repeat"]))
        where = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            index = min(where, len(data) - 1)
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[where:]
        elif op == "splice":
            other = draw(valid)
            data[where:] = other[draw(st.integers(0, len(other))) :]
        elif op == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[where : where + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[where:where] = data[where : where + draw(st.integers(1, 64))]
    return bytes(data[:MAX_MESSAGE_BYTES])


def garbage(valid: Callable[[], st.SearchStrategy[bytes]]) -> st.SearchStrategy[bytes]:
    """Bytes that are meant not to be the message: random, hand-written wire format, or a mangled valid one."""
    return st.one_of(st.binary(max_size=512), wire_messages(), mangled(valid()))
