"""Small operations on ONNX models: reading their inputs and outputs, renaming graph inputs and outputs."""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import TensorProto

from service.convert.errors import ConversionError
from service.convert.result import TensorInfo

__all__ = ["TRITON_TYPES", "load_model", "rename_tensors", "tensor_infos", "triton_type"]

TRITON_TYPES: Mapping[str, str] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "string": "TYPE_STRING",
}


def triton_type(numpy_name: str) -> str:
    """Triton's data type for a numpy/TensorFlow dtype name (``float32`` → ``TYPE_FP32``)."""
    try:
        return TRITON_TYPES[numpy_name]
    except KeyError:
        raise ConversionError(f"tensors of type {numpy_name} cannot be served") from None


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


def _dims(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)


def tensor_infos(
    values: list[onnx.ValueInfoProto], sources: Mapping[str, str], batched: bool
) -> tuple[TensorInfo, ...]:
    """TensorInfo for graph inputs or outputs (``batched``: the first dimension is left out)."""
    infos = []
    for value in values:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        kind = "string" if value.type.tensor_type.elem_type == TensorProto.STRING else dtype.name
        dims = _dims(value)
        infos.append(
            TensorInfo(
                value.name, sources.get(value.name, value.name), triton_type(kind), dims[1:] if batched else dims
            )
        )
    return tuple(infos)


def first_dim_free(values: list[onnx.ValueInfoProto]) -> bool:
    """Whether every tensor's first dimension is symbolic or unknown (a batch dimension)."""
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            return False
    return True


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
