"""What a conversion produces: an ONNX model, the names of its tensors, and how the upload's names map to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import InvalidArgumentError

__all__ = ["ConversionResult", "NativeModel", "TensorInfo"]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output of a served model.

    ``name`` is the name in the served model (ONNX graph or Triton config); ``source_name`` the name in the
    uploaded network (a Caffe blob, a TensorFlow tensor such as ``image_tensor:0``). ``dims`` leave the batch
    dimension out when ``ConversionResult.batched``; -1 is a dimension that varies. ``data_type`` is Triton's
    (``TYPE_FP32``, ``TYPE_UINT8``...).
    """

    name: str
    source_name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NativeModel:
    """A TensorFlow network as a GPU Triton serves it natively, next to (not instead of) its ONNX conversion.

    ``files`` maps paths inside the Triton version folder (``model.savedmodel/saved_model.pb``...) to files on
    disk; ``config`` is a complete ``config.pbtxt`` less the model name, which ``render_config`` adds.
    """

    platform: str
    files: Mapping[str, Path]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    batched: bool
    tensor_names: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """An uploaded network as an ONNX model that Triton's ONNX Runtime (or TensorRT) backend serves.

    ``tensor_names`` maps every name a preprocessing or post-processing may use for a tensor of the uploaded
    network (``image_tensor:0``, ``image_tensor``, a SavedModel signature key, a Caffe blob) to the ONNX name.
    ``batched``: the first dimension of every input and output is a free batch dimension.
    """

    framework: str
    onnx_model: bytes
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    batched: bool
    tensor_names: Mapping[str, str]
    notes: tuple[str, ...] = ()
    native: NativeModel | None = field(default=None)

    def served_name(self, name: str) -> str:
        """The ONNX name of an uploaded network's tensor, given by any of its accepted names."""
        try:
            return self.tensor_names[name]
        except KeyError:
            known = ", ".join(sorted(self.tensor_names))
            raise InvalidArgumentError.field(
                "tensor_name", f"no tensor {name!r} in the network (known: {known})"
            ) from None
