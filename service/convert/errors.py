"""Errors of network conversion, in the service's vocabulary (see ``service.errors``).

A network that cannot be read or converted is the uploader's problem (INVALID_ARGUMENT); a converter that this
installation lacks (TensorFlow's, which lives in an environment of its own) is a precondition (FAILED_PRECONDITION).
"""

from __future__ import annotations

from service.errors import FailedPreconditionError, InvalidArgumentError

__all__ = ["ConversionError", "ConverterUnavailableError", "UnsupportedLayerError"]


class ConversionError(InvalidArgumentError):
    """The uploaded network cannot be read or converted; the message says which file, layer or tensor."""

    reason = "CONVERSION_FAILED"


class UnsupportedLayerError(ConversionError):
    """A layer (Caffe) or an op (TensorFlow) has no ONNX translation; the message names it and its type."""

    reason = "UNSUPPORTED_LAYER"

    def __init__(self, layer: str, layer_type: str, detail: str = "") -> None:
        text = f"layer {layer!r} of type {layer_type!r} is not supported"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.layer = layer
        self.layer_type = layer_type


class ConverterUnavailableError(FailedPreconditionError):
    """The converter this framework needs is not installed here; the message says how to enable it."""

    reason = "CONVERTER_UNAVAILABLE"
