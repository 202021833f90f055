"""What a conversion produces: an ONNX model, the names of its tensors, and how the upload's names map to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.errors import InvalidArgumentError

__all__ = ["ConversionResult"]


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """An uploaded network as an ONNX model that Triton's ONNX Runtime (or TensorRT) backend serves.

    What the model takes and gives (data types, dims, batching) is read from the ONNX graph by the one reader of
    the Triton repository, ``service.triton.repository.inspect_onnx``, as for an ONNX upload; a conversion only
    adds the names. ``tensor_names`` maps every name a preprocessing or post-processing may use for a tensor of the
    uploaded network (``image_tensor:0``, ``image_tensor``, a SavedModel signature key, a Caffe blob) to the ONNX
    name; ``sources`` maps each input and output of the ONNX model to its name in the uploaded network (a Caffe
    blob, a TensorFlow graph tensor such as ``image_tensor:0``).
    """

    framework: str
    onnx_model: bytes
    tensor_names: Mapping[str, str]
    sources: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def served_name(self, name: str) -> str:
        """The ONNX name of an uploaded network's tensor, given by any of its accepted names."""
        try:
            return self.tensor_names[name]
        except KeyError:
            known = ", ".join(sorted(self.tensor_names))
            raise InvalidArgumentError.field(
                "tensor_name", f"no tensor {name!r} in the network (known: {known})"
            ) from None
