"""Small operations on ONNX models: parsing and checking one, renaming graph inputs and outputs."""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from service.convert.errors import ConversionError

__all__ = ["load_model", "rename_tensors"]


def load_model(data: bytes, file_name: str) -> onnx.ModelProto:
    """Parse and check an ONNX model."""
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.shape_inference.InferenceError) as exc:
        raise ConversionError(f"{file_name}: not a valid ONNX model ({exc})") from None
    except Exception as exc:  # the protobuf parser raises its own DecodeError
        raise ConversionError(f"{file_name}: not an ONNX model ({type(exc).__name__})") from None
    return model


def rename_tensors(model: onnx.ModelProto, renames: Mapping[str, str]) -> None:
    """Rename tensors (graph inputs, outputs and every use) in place; the new names must be free."""
    graph = model.graph
    taken = {n for node in graph.node for n in [*node.input, *node.output]}
    taken |= {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for old, new in renames.items():
        if old != new and new in taken:
            raise ConversionError(f"cannot name tensor {old!r} {new!r}: the name is taken")
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
