"""Caffe network → ONNX model: walks the deploy net's layers in order and lets each layer's strategy emit nodes.

Blobs are Caffe's named, mutable buffers (in-place layers write the blob they read); ONNX tensors are written
once. Every write of a blob gets its own tensor; the last write keeps the blob's name, so the network's outputs
and inputs carry the names a preprocessing or post-processing uses.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from service.convert.caffe import caffe_pb2
from service.convert.caffe.graph import Graph, Shape, value_info
from service.convert.caffe.net import Layer
from service.convert.errors import ConversionError

__all__ = ["OPSET", "CaffeModel", "Context", "LayerConverter", "build_model"]

log = logging.getLogger(__name__)

OPSET = 13
LayerConverter = Callable[["Context", Layer], None]


@dataclass(frozen=True, slots=True)
class CaffeModel:
    """The converted network: ONNX model, inputs and outputs as (ONNX name, blob name, shape), and notes."""

    model: onnx.ModelProto
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    batched: bool
    notes: tuple[str, ...]


class Context:
    """What a layer strategy sees: its bottoms' tensors and shapes, the graph, and the tops it must write."""

    def __init__(self, graph: Graph, final_writes: Mapping[str, int], inputs: set[str]) -> None:
        self.graph = graph
        self.notes: list[str] = []
        self.nominal_batch = 1
        self.pinned_batch = False
        self._blobs: dict[str, tuple[str, Shape]] = {}
        self._writes: Counter[str] = Counter()
        self._final_writes = final_writes
        self._input_blobs = inputs
        self.available: dict[str, None] = {}
        self.graph_inputs: list[tuple[str, str, Shape]] = []

    @staticmethod
    def where(layer: Layer) -> str:
        return f"layer {layer.name!r} ({layer.type})"

    def bottom(self, layer: Layer, index: int = 0) -> tuple[str, Shape]:
        """The current tensor and shape of the layer's ``index``-th bottom blob."""
        bottoms = layer.param.bottom
        if index >= len(bottoms):
            raise ConversionError(f"{self.where(layer)}: expects at least {index + 1} bottom blob(s)")
        blob = bottoms[index]
        if blob not in self._blobs:
            raise ConversionError(f"{self.where(layer)}: bottom blob {blob!r} is not produced by any earlier layer")
        self.available.pop(blob, None)
        return self._blobs[blob]

    def bottoms(self, layer: Layer) -> list[tuple[str, Shape]]:
        return [self.bottom(layer, i) for i in range(len(layer.param.bottom))]

    def top(self, layer: Layer, index: int, shape: Shape) -> str:
        """The tensor name for the layer's ``index``-th top, now the blob's current value."""
        tops = layer.param.top
        if index >= len(tops):
            raise ConversionError(f"{self.where(layer)}: expects at least {index + 1} top blob(s)")
        return self._write(tops[index], shape, f"{tops[index]}/{layer.name}")

    def add_input(self, blob: str, dims: Sequence[int], where: str) -> None:
        """Declare a network input (first axis = batch)."""
        if not dims or any(d <= 0 for d in dims):
            raise ConversionError(f"{where}: input {blob!r} needs a shape of positive dimensions, got {list(dims)}")
        if blob in self._blobs:
            raise ConversionError(f"{where}: input {blob!r} is declared twice")
        if self.graph_inputs and dims[0] != self.nominal_batch:
            self.pin_batch(f"inputs declare different batch sizes ({self.nominal_batch} and {dims[0]})")
        if not self.graph_inputs:
            self.nominal_batch = int(dims[0])
        shape = Shape((1, *(int(d) for d in dims[1:])), 0)
        name = self.graph.claim(blob)
        self._blobs[blob] = (name, shape)
        self._writes[blob] += 1
        self.available[blob] = None
        self.graph_inputs.append((name, blob, shape))

    def _write(self, blob: str, shape: Shape, hint: str) -> str:
        self._writes[blob] += 1
        final = self._writes[blob] == self._final_writes.get(blob, 0) and blob not in self._input_blobs
        name = self.graph.claim(blob) if final else self.graph.fresh(hint)
        self._blobs[blob] = (name, shape)
        self.available.pop(blob, None)
        self.available[blob] = None
        return name

    def pin_batch(self, reason: str) -> None:
        """Give up the free batch dimension: the model runs with the deploy net's batch size only."""
        if not self.pinned_batch:
            self.pinned_batch = True
            self.notes.append(f"batch size fixed to the deploy net's: {reason}")

    def blob(self, name: str) -> tuple[str, Shape]:
        try:
            return self._blobs[name]
        except KeyError:
            raise ConversionError(f"no blob {name!r} in the network") from None


def _input_layers(net: caffe_pb2.NetParameter, ctx: Context) -> None:
    """The legacy net-level inputs (``input`` with ``input_shape`` or ``input_dim``)."""
    if not net.input:
        return
    if net.input_shape:
        if len(net.input_shape) != len(net.input):
            raise ConversionError("deploy.prototxt: give one input_shape per input")
        for blob, shape in zip(net.input, net.input_shape, strict=True):
            ctx.add_input(blob, [int(d) for d in shape.dim], "deploy.prototxt")
    elif net.input_dim:
        if len(net.input_dim) != 4 * len(net.input):
            raise ConversionError("deploy.prototxt: give four input_dim values per input")
        for i, blob in enumerate(net.input):
            ctx.add_input(blob, [int(d) for d in net.input_dim[4 * i : 4 * i + 4]], "deploy.prototxt")
    else:
        raise ConversionError("deploy.prototxt: inputs need an input_shape or input_dim")


def build_model(
    net: caffe_pb2.NetParameter,
    layers: Sequence[Layer],
    converters: Mapping[str, LayerConverter],
    refuse: Callable[[Layer], Exception],
    outputs: Sequence[str] | None = None,
) -> CaffeModel:
    """Convert ``layers`` (TEST phase, with blobs) into an ONNX model with ``converters`` (type → strategy)."""
    writes: Counter[str] = Counter()
    for layer in layers:
        writes.update(layer.param.top)
    inputs = set(net.input) | {t for layer in layers if layer.type in ("Input", "MemoryData") for t in layer.param.top}
    graph = Graph(reserved=[*writes, *net.input])
    ctx = Context(graph, writes, inputs)
    _input_layers(net, ctx)
    for layer in layers:
        convert = converters.get(layer.type)
        if convert is None:
            raise refuse(layer)
        convert(ctx, layer)
    if not ctx.graph_inputs:
        raise ConversionError("deploy.prototxt declares no input (an Input layer or input/input_shape fields)")
    wanted = list(outputs) if outputs else list(ctx.available)
    if not wanted:
        raise ConversionError("the network has no output blob")
    batch = ctx.nominal_batch if ctx.pinned_batch else None
    out_infos = []
    out_names: list[tuple[str, str, Shape]] = []
    for blob in wanted:
        name, shape = ctx.blob(blob)
        if (shape.batch_axis != 0 or shape.dims[0] != 1) and not ctx.pinned_batch:
            ctx.pin_batch(f"output {blob!r} does not have one sample per row of its first axis")
            batch = ctx.nominal_batch
        out_names.append((name, blob, shape))
    if len({n for n, _, _ in out_names}) != len(out_names):
        raise ConversionError(f"outputs {wanted} name one tensor twice")
    in_infos = [value_info(name, shape, batch) for name, _, shape in ctx.graph_inputs]
    out_infos = [value_info(name, shape, batch) for name, _, shape in out_names]
    # A graph output that is also an input (a net that passes a blob through) needs a node of its own.
    input_names = {name for name, _, _ in ctx.graph_inputs}
    for i, (name, blob, shape) in enumerate(out_names):
        if name in input_names:
            copy = graph.fresh(f"{blob}/output")
            graph.node("Identity", [name], [copy], f"{blob}/output")
            out_names[i] = (copy, blob, shape)
            out_infos[i] = value_info(copy, shape, batch)
    model = helper.make_model(
        helper.make_graph(graph.nodes, net.name or "caffe", in_infos, out_infos, initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sightline-caffe",
    )
    model.ir_version = 8
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted model is not valid ONNX ({exc})") from exc

    def dims(shape: Shape) -> tuple[int, ...]:
        return shape.concrete(ctx.nominal_batch) if ctx.pinned_batch else shape.dims[1:]

    log.debug("converted Caffe net %r: %d nodes", net.name, len(graph.nodes))
    return CaffeModel(
        model=model,
        inputs=tuple((n, b, dims(s)) for n, b, s in ctx.graph_inputs),
        outputs=tuple((n, b, dims(s)) for n, b, s in out_names),
        batched=not ctx.pinned_batch,
        notes=tuple(ctx.notes),
    )


def ensure(condition: bool | np.bool_, where: str, message: str) -> None:
    """Raise a ConversionError about ``where`` unless ``condition``."""
    if not condition:
        raise ConversionError(f"{where}: {message}")
