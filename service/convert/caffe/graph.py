"""An ONNX graph under construction, with Caffe's view of every blob: its current tensor and its shape.

Shapes are static, as Caffe's are, except for the batch: a ``Shape`` knows which axis carries the batch and holds
that axis's size per sample (1 for an input; more once Flatten or Reshape fold other axes into it). The graph is
built with a free batch dimension; a layer that ties the computation to one batch size (a Reshape to explicit
dimensions, a Softmax over the batch axis) pins it to the deploy net's batch instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.convert.errors import ConversionError

__all__ = ["BATCH", "Graph", "Shape"]

BATCH = "batch"


@dataclass(frozen=True, slots=True)
class Shape:
    """A blob's shape; ``dims[batch_axis]`` is that axis's size for one sample (``None``: no batch axis)."""

    dims: tuple[int, ...]
    batch_axis: int | None = 0

    @property
    def rank(self) -> int:
        return len(self.dims)

    def axis(self, axis: int, where: str, *, allow_end: bool = False) -> int:
        """Caffe's ``CanonicalAxisIndex``: a negative axis counts from the end."""
        limit = self.rank + (1 if allow_end else 0)
        canonical = axis + self.rank if axis < 0 else axis
        if not 0 <= canonical < limit:
            raise ConversionError(f"{where}: axis {axis} is out of range for a blob of {self.rank} axes")
        return canonical

    def count(self, start: int = 0, end: int | None = None) -> int:
        """The product of dims[start:end] (per sample, where the batch axis is among them)."""
        return math.prod(self.dims[start:end])

    def has_batch_in(self, start: int, end: int) -> bool:
        return self.batch_axis is not None and start <= self.batch_axis < end

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The dims for a given batch size."""
        return tuple(d * batch if i == self.batch_axis else d for i, d in enumerate(self.dims))

    def with_dims(self, dims: Sequence[int], batch_axis: int | None) -> Shape:
        return replace(self, dims=tuple(int(d) for d in dims), batch_axis=batch_axis)


class Graph:
    """Nodes, initializers and unique names of the ONNX graph being built."""

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._used: set[str] = set()
        self._reserved: set[str] = set(reserved)

    def fresh(self, hint: str) -> str:
        """A tensor name neither used nor reserved yet, ``hint`` itself when free."""
        name, k = hint, 1
        while name in self._used or name in self._reserved:
            name = f"{hint}_{k}"
            k += 1
        self._used.add(name)
        return name

    def claim(self, name: str) -> str:
        """Take ``name`` exactly (a blob's public name, reserved at construction)."""
        if name in self._used:
            raise ConversionError(f"tensor name {name!r} is produced twice")
        self._used.add(name)
        return name

    def const(self, hint: str, value: npt.ArrayLike, dtype: type[np.generic] = np.float32) -> str:
        """Add an initializer and return its name."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: Any) -> None:
        """Add a node; ``outputs`` are names already made unique (``fresh`` or ``claim``)."""
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=self.fresh(name), **attrs))

    def reshape(self, source: str, target: Shape, hint: str, out: str | None = None) -> str:
        """Reshape ``source`` to ``target``: the batch axis becomes -1 (inferred), the others are static."""
        spec = [-1 if i == target.batch_axis else d for i, d in enumerate(target.dims)]
        output = out or self.fresh(hint)
        self.node("Reshape", [source, self.const(f"{hint}/shape", spec, np.int64)], [output], hint)
        return output


def value_info(name: str, shape: Shape, batch: int | None) -> onnx.ValueInfoProto:
    """A float tensor's type: the batch axis is symbolic (``batch``, or ``batch*k``) unless ``batch`` pins it."""
    dims: list[int | str] = []
    for i, d in enumerate(shape.dims):
        if i == shape.batch_axis:
            dims.append(d * batch if batch is not None else (BATCH if d == 1 else f"{BATCH}*{d}"))
        else:
            dims.append(d)
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
