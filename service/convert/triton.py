"""Triton ``config.pbtxt`` for a converted network: the ONNX model, or the TensorFlow original on a GPU Triton."""

from __future__ import annotations

from collections.abc import Sequence

from service.convert.result import ConversionResult, NativeModel, TensorInfo

__all__ = ["native_config", "onnx_config"]


def _tensors(kind: str, tensors: Sequence[TensorInfo]) -> str:
    blocks = []
    for t in tensors:
        # Triton wants at least one dimension: a scalar per sample travels as [1], reshaped to [].
        dims = ", ".join(str(d) for d in t.dims) if t.dims else "1"
        reshape = "" if t.dims else "\n    reshape: { shape: [ ] }"
        blocks.append(f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: [ {dims} ]{reshape}\n  }}')
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def _config(name: str, head: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], batch: int) -> str:
    text = f'name: "{name}"\n{head}max_batch_size: {batch}\n'
    text += _tensors("input", inputs) + _tensors("output", outputs)
    if batch:
        text += "dynamic_batching {\n  max_queue_delay_microseconds: 500\n}\n"
    return text


def onnx_config(name: str, result: ConversionResult, *, max_batch_size: int = 16) -> str:
    """The config of ``<name>/1/model.onnx`` for Triton's ``onnxruntime`` backend (the embedded one's too)."""
    batch = max_batch_size if result.batched else 0
    return _config(name, 'backend: "onnxruntime"\n', result.inputs, result.outputs, batch)


def native_config(name: str, native: NativeModel, *, max_batch_size: int = 16) -> str:
    """The config of a TensorFlow model served natively (``platform: "tensorflow_savedmodel"`` or graphdef)."""
    batch = max_batch_size if native.batched else 0
    return _config(name, f'platform: "{native.platform}"\n', native.inputs, native.outputs, batch)
