"""A served model's tensors: the one tensor type and the one data-type table of the Triton adapter.

Triton spells a data type three ways, and the service meets all three: its protocol (``FP32``, ``BYTES``, what
inference requests and tritonclient use, and what a stored signature holds), its model configuration
(``TYPE_FP32``, ``TYPE_STRING``: ``config.pbtxt``, and the JSON ``get_model_config`` returns) and, for the ONNX
graphs it serves, ONNX Runtime's type strings (``tensor(float)``). ``DATA_TYPES`` holds one row a type with its
three spellings and the numpy dtype tritonclient decodes it into; every translation goes through it.

``Signature`` is what a model takes and gives, read from an ONNX graph (an upload) or from Triton's
configuration (a loaded model, through the gateway): one ``TensorSignature`` per tensor, whose ``dims`` include
the batch dimension when the model has one (``max_batch_size`` > 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

__all__ = [
    "DATA_TYPES",
    "DataType",
    "Signature",
    "TensorSignature",
    "data_type",
    "signature_from_config",
    "signature_from_json",
]


@dataclass(frozen=True, slots=True)
class DataType:
    """One tensor data type as Triton's protocol, its model configuration and ONNX Runtime spell it."""

    name: str
    """Triton's protocol name: ``FP32``, ``BYTES``."""
    config: str
    """``config.pbtxt``'s: ``TYPE_FP32``; strings are ``TYPE_STRING`` (Triton's ModelConfig has no TYPE_BYTES)."""
    onnx: str
    """ONNX Runtime's: ``tensor(float)``."""
    numpy: np.dtype[Any]
    """What tritonclient decodes it into (strings: object arrays of bytes; BF16: ml_dtypes' bfloat16)."""


def _row(name: str, onnx: str) -> DataType:
    config = "TYPE_STRING" if name == "BYTES" else f"TYPE_{name}"
    return DataType(name, config, onnx, np.dtype(triton_to_np_dtype(name)))


DATA_TYPES: tuple[DataType, ...] = tuple(
    _row(name, onnx)
    for name, onnx in (
        ("BOOL", "tensor(bool)"),
        ("UINT8", "tensor(uint8)"),
        ("UINT16", "tensor(uint16)"),
        ("UINT32", "tensor(uint32)"),
        ("UINT64", "tensor(uint64)"),
        ("INT8", "tensor(int8)"),
        ("INT16", "tensor(int16)"),
        ("INT32", "tensor(int32)"),
        ("INT64", "tensor(int64)"),
        ("FP16", "tensor(float16)"),
        ("BF16", "tensor(bfloat16)"),
        ("FP32", "tensor(float)"),
        ("FP64", "tensor(double)"),
        ("BYTES", "tensor(string)"),
    )
)
_BY_NAME = {t.name: t for t in DATA_TYPES}
_BY_CONFIG = {t.config: t for t in DATA_TYPES}
_BY_ONNX = {t.onnx: t for t in DATA_TYPES}


def data_type(name: str) -> DataType:
    """The data type of a protocol name (``FP32``), a configuration name (``TYPE_FP32``) or an ONNX Runtime type
    string (``tensor(float)``); KeyError for anything else."""
    found = _BY_NAME.get(name) or _BY_CONFIG.get(name) or _BY_ONNX.get(name)
    if found is None:
        raise KeyError(name)
    return found


@dataclass(frozen=True, slots=True)
class TensorSignature:
    """A model's input or output: Triton's protocol data type (``FP32``) and its dims, the batch dimension included
    when the model has one (-1 = any size)."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of its arrays, as tritonclient sends and decodes them."""
        return data_type(self.dtype).numpy

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes and gives."""

    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    max_batch_size: int
    """0: the tensors have no batch dimension Triton may use; otherwise each tensor's first dimension is one."""
    names: Mapping[str, str] = field(default_factory=dict)
    """Other names of the served tensors → their served names: a converted network's names as uploaded
    (``image_tensor:0`` → ``image_tensor``, a SavedModel's signature keys). Empty for ONNX uploads and for what
    Triton's configuration says."""

    @property
    def batched(self) -> bool:
        """Whether requests carry a batch dimension in front of each tensor's sample dims."""
        return self.max_batch_size > 0

    def sample_dims(self, tensor: TensorSignature) -> tuple[int, ...]:
        """One sample's dims of a tensor: its dims without the batch dimension."""
        return tensor.dims[1:] if self.batched else tensor.dims

    def input(self, name: str) -> TensorSignature | None:
        return next((t for t in self.inputs if t.name == name), None)

    def served(self, name: str) -> str:
        """The served name of a tensor given by any of its names (unknown names come back unchanged)."""
        return self.names.get(name, name)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
        }
        if self.names:
            raw["names"] = dict(sorted(self.names.items()))
        return raw


def signature_from_json(raw: Mapping[str, Any]) -> Signature:
    """The signature ``Signature.to_json`` stored."""

    def tensors(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSignature, ...]:
        return tuple(TensorSignature(t["name"], t["dtype"], tuple(int(d) for d in t["dims"])) for t in items)

    names = {str(k): str(v) for k, v in (raw.get("names") or {}).items()}
    return Signature(tensors(raw["inputs"]), tensors(raw["outputs"]), int(raw["max_batch_size"]), names)


def signature_from_config(config: Mapping[str, Any]) -> Signature:
    """The signature of a loaded model from its configuration as JSON (``get_model_config(as_json=True)``).

    The dims are the configuration's (a reshape is not applied), with the batch dimension put in front when the
    model batches; a tensor without ``data_type`` is FP32, Triton's default."""
    batch = int(config.get("max_batch_size", 0))
    front = (-1,) if batch > 0 else ()

    def tensors(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSignature, ...]:
        return tuple(
            TensorSignature(
                str(t["name"]),
                data_type(str(t.get("data_type", "TYPE_FP32"))).name,
                (*front, *(int(d) for d in t.get("dims", []))),
            )
            for t in items
        )

    return Signature(tensors(config.get("input", [])), tensors(config.get("output", [])), batch)
