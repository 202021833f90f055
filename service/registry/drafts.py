"""What an upload declares, and its checks: the network to create (``NetworkDraft``), the files it announces
(``UploadFile``), the limits an upload keeps (``UploadLimits``), the checks of the announced files before any
byte arrives (``check_files``), and the check of the preprocessing against the graph once it is read
(``check_preprocessing``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from service.domain import DataType, ImagePreprocessing, Preprocessing, ResizeType
from service.errors import InvalidArgumentError, ResourceExhaustedError
from service.preprocess import build_inputs, with_own_batch_axis
from service.triton.repository import MODEL_FILE, ORIGINALS, Signature

__all__ = [
    "NetworkDraft",
    "UploadFile",
    "UploadLimits",
    "UploadPlan",
    "check_files",
    "check_preprocessing",
    "staged_path",
]

_RESERVED = frozenset({"config.pbtxt", "1", ORIGINALS})
"""Names a mean file cannot take: it is written beside the model folder's own files."""
_FILE_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CAFFE_FILES = ("deploy.prototxt", "snapshot.caffemodel")
_TF_GRAPHS = ("saved_model.pb", "saved_model.pbtxt")
_TF_SHARD = re.compile(r"^variables\.data-[0-9]{5}-of-[0-9]{5}$")
_TF_ASSET = re.compile(r"^assets(?:\.extra)?/[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")
"""A SavedModel's ``assets/`` (files its graph reads: vocabularies...) and ``assets.extra/``, one folder deep."""
_TF_WRITTEN = ("fingerprint.pb",)
"""Files TensorFlow 2.x writes beside ``saved_model.pb`` that the conversion does not need (kept with the rest)."""
_FLOAT_TYPES = {"FP32", "FP16", "FP64", "BF16"}


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file announced in an upload's first message: its name, its size in bytes and its SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class NetworkDraft:
    """A network to create, in its v0.7 JSON form (``name``, ``framework``, ``preprocessing``...), and its files."""

    body: Mapping[str, Any]
    files: tuple[UploadFile, ...]


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """At most ``max_bytes`` announced in all, ``max_files`` files, and the batch size given to an uploaded
    network whose graph takes any (``max_batch_size``)."""

    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_files: int = 16
    max_batch_size: int = 32


@dataclass
class UploadPlan:
    """An upload's checked files (by name, SHA-256 in lower case), its mean files, where each file is written in
    the staging folder (``targets``, set once the folder exists) and what has arrived so far."""

    files: dict[str, UploadFile]
    targets: dict[str, Path]
    means: frozenset[str] = frozenset()
    received: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, Any] = field(default_factory=dict)
    handles: dict[str, IO[bytes]] = field(default_factory=dict)


def check_files(
    files: Sequence[UploadFile], preprocessing: Preprocessing, framework: str, kind: str, limits: UploadLimits
) -> UploadPlan:
    """The announced files, checked: within ``limits`` (``ResourceExhaustedError``), plain names announced once,
    positive sizes, SHA-256 in hex, the network files of framework ``kind`` (``canonical_framework``) and the mean
    files the preprocessing names, nothing else (``InvalidArgumentError`` naming the field)."""
    if len(files) > limits.max_files:
        raise ResourceExhaustedError(f"the upload announces {len(files)} files; at most {limits.max_files}")
    total = sum(max(0, f.size) for f in files)
    if total > limits.max_bytes:
        raise ResourceExhaustedError(
            f"the upload announces {total} bytes; at most {limits.max_bytes} (SIGHTLINE_MAX_UPLOAD_BYTES)"
        )
    seen: dict[str, UploadFile] = {}
    for i, f in enumerate(files):
        where = f"files[{i}]"
        asset = kind == "tensorflow" and bool(_TF_ASSET.match(f.name))
        if not asset and (not _FILE_NAME.match(f.name) or f.name in {".", ".."}):
            raise InvalidArgumentError.field(
                f"{where}.name",
                f"{f.name!r} is not a plain file name: use letters, digits, '.', '_', '-', '+' (no folders but a "
                "SavedModel's assets/, no leading '.', at most 255 characters)",
            )
        if f.name in seen:
            raise InvalidArgumentError.field(f"{where}.name", f"{f.name!r} is announced twice")
        if f.size <= 0:
            raise InvalidArgumentError.field(f"{where}.size", f"must be positive, got {f.size}")
        if not _SHA256.match(f.sha256.lower()):
            raise InvalidArgumentError.field(f"{where}.sha256", "must be the file's SHA-256 in 64 hex digits")
        seen[f.name] = replace(f, sha256=f.sha256.lower())
    means = set(preprocessing.mean_files)
    models = [n for n in seen if n not in means and _model_kind(n) == kind]
    others = sorted({k for n in seen if n not in means and (k := _model_kind(n)) not in (None, kind)})
    if not models and others:
        raise InvalidArgumentError.field(
            "framework",
            f"the upload announces the files of a {others[0]} network, not those of a {framework} network "
            f"({_expected_files(kind)})",
        )
    _check_model_files(models, kind, framework)
    for i, name in enumerate(seen):
        if name not in models and name not in means:
            what = "the .onnx model" if kind == "onnx" else f"a file of a {framework} network"
            raise InvalidArgumentError.field(
                f"files[{i}].name",
                f"{name!r} is neither {what} ({_expected_files(kind)}) nor a mean file named by the preprocessing",
            )
    for mean in sorted(means):
        if mean not in seen:
            raise InvalidArgumentError.field(
                "preprocessing", f"mean file {mean!r} is named by the preprocessing but not uploaded"
            )
        if mean in _RESERVED:
            raise InvalidArgumentError.field(
                "preprocessing", f"mean file {mean!r} has the name of a file of the model folder: rename it"
            )
    return UploadPlan(files=seen, targets={}, means=frozenset(means))


def staged_path(staged: Path, name: str, kind: str, means: frozenset[str]) -> Path:
    """Where an uploaded file is written: mean files beside config.pbtxt, an ONNX model as 1/model.onnx, the files
    of a network to convert in original/."""
    if name in means:
        return staged / name
    if kind == "onnx":
        return staged / "1" / MODEL_FILE
    return staged / ORIGINALS / name  # a SavedModel's assets/<name> included: its folder is made with the others


def check_preprocessing(
    preprocessing: Preprocessing, signature: Signature, means: Mapping[str, npt.NDArray[np.float32]]
) -> None:
    """The preprocessing feeds every graph input, with tensors of the shapes the graph takes."""
    names = [t.name for t in signature.inputs]
    for i, item in enumerate(preprocessing.inputs):
        if signature.input(item.tensor_name) is None:
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}].tensor_name",
                f"{item.tensor_name!r} is not an input of the network (its inputs: {', '.join(names)})",
            )
    fed = {item.tensor_name for item in preprocessing.inputs}
    missing = [n for n in names if n not in fed]
    if missing:
        raise InvalidArgumentError.field(
            "preprocessing.inputs", f"the network's input(s) {', '.join(missing)} are not fed by the preprocessing"
        )
    first = preprocessing.image_inputs[0].image
    assert first is not None
    width, height = first.target
    sample = np.full((height, width, 3), 127, dtype=np.uint8)
    tensors = build_inputs(sample, preprocessing, means).tensors
    skip = 1 if signature.max_batch_size else 0
    for i, item in enumerate(preprocessing.inputs):
        sig = signature.input(item.tensor_name)
        assert sig is not None
        dims = sig.dims[skip:]
        tensor = tensors[item.tensor_name]
        shape = (tensor if skip else with_own_batch_axis(tensor, dims)).shape
        if len(dims) != len(shape) or any(d not in (-1, s) for d, s in zip(dims, shape, strict=True)):
            hint = "check target_size and dimension_order" if item.image is not None else "check its shape"
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}]",
                f"gives {item.tensor_name!r} the shape {list(shape)} but the network takes {list(dims)} "
                f"(batch dimension excluded); {hint}",
            )
        if item.image is not None and item.image.resize_type is ResizeType.NETWORK:
            _check_network_resize(item.image, dims, item.tensor_name, f"preprocessing.inputs[{i}].image")
        if item.image is not None and item.image.data_type is DataType.FLOAT32 and sig.dtype not in _FLOAT_TYPES:
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}].image.data_type",
                f"is FLOAT32 but the network's input {item.tensor_name!r} is {sig.dtype}",
            )


_SPATIAL = {"NCHW": (-2, -1), "NCWH": (-1, -2), "NHWC": (-3, -2), "NWHC": (-2, -3)}
"""Where height and width are among a sample's last three dims, by dimension order."""


def _check_network_resize(image: ImagePreprocessing, dims: tuple[int, ...], name: str, where: str) -> None:
    """NETWORK resizing gives the network each image's own aspect ratio: its input must take any height and width
    (a graph of a fixed size fails on every image that is not square, with Triton's raw message)."""
    h_at, w_at = _SPATIAL[image.dimension_order.value]
    height, width = dims[h_at], dims[w_at]
    if height == -1 and width == -1:
        return
    fixed = f"{height if height > 0 else 'any'} x {width if width > 0 else 'any'} (height x width)"
    suggestion = f' with target_size "{width}x{height}"' if height > 0 and width > 0 else ""
    raise InvalidArgumentError.field(
        f"{where}.resize_type",
        f"NETWORK resizes the network input to each image's aspect ratio, but input {name!r} takes "
        f"{list(dims)}: {fixed} is fixed; use SQUASH, CROP or FILL{suggestion}",
    )


def _model_kind(name: str) -> str | None:
    """The framework whose network file a name looks like (None: not a network file, e.g. a mean file)."""
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".prototxt", ".caffemodel")):
        return "caffe"
    if name.endswith((".pb", ".pbtxt")) or name.startswith("variables.") or _TF_ASSET.match(name):
        return "tensorflow"
    return None


def _expected_files(kind: str) -> str:
    if kind == "caffe":
        return "deploy.prototxt and snapshot.caffemodel"
    if kind == "tensorflow":
        return (
            "saved_model.pb (or saved_model.pbtxt), with variables.index and variables.data-00000-of-00001 (or more "
            "shards) for a SavedModel, and any fingerprint.pb or assets/<name> TensorFlow wrote; a frozen graph is "
            "uploaded as saved_model.pb"
        )
    return "one .onnx file"


def _check_model_files(models: Sequence[str], kind: str, framework: str) -> None:
    """The network files of an upload are those its framework needs, each once."""
    if kind == "onnx":
        if len(models) != 1:
            raise InvalidArgumentError.field(
                "files", f"an onnx network needs exactly one .onnx file; the upload announces {len(models)}"
            )
        return
    expected = _expected_files(kind)
    if kind == "caffe":
        required = list(_CAFFE_FILES)
        allowed = set(_CAFFE_FILES)
    else:
        graphs = [n for n in models if n in _TF_GRAPHS]
        if len(graphs) > 1:
            raise InvalidArgumentError.field("files", f"a {framework} network has one graph; the upload announces both")
        shards = [n for n in models if _TF_SHARD.match(n)]
        required = [graphs[0] if graphs else _TF_GRAPHS[0]]
        if shards or "variables.index" in models:
            required += ["variables.index"] + ([] if shards else ["variables.data-00000-of-00001"])
        allowed = {*_TF_GRAPHS, "variables.index", *shards, *_TF_WRITTEN, *(n for n in models if _TF_ASSET.match(n))}
    for name in models:
        if name not in allowed:
            raise InvalidArgumentError.field(
                "files", f"{name!r} is not a file of a {framework} network: it is uploaded as {expected}"
            )
    missing = [n for n in required if n not in models]
    if missing:
        raise InvalidArgumentError.field(
            "files", f"a {framework} network is uploaded as {expected}; {', '.join(missing)} is missing"
        )
