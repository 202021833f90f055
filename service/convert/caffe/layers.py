"""One strategy per Caffe layer type: read the layer's parameters and blobs, emit ONNX nodes with Caffe's semantics.

Each strategy reproduces the forward pass of Caffe's layer (BVLC ``src/caffe/layers/*.cpp``) in the TEST phase;
``docs/convert.md`` lists the rules kept (pooling's ceil rounding, BatchNorm's scale factor...).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from service.convert.caffe import caffe_pb2
from service.convert.caffe.converter import Context, LayerConverter, ensure
from service.convert.caffe.graph import Shape
from service.convert.caffe.net import Layer
from service.convert.errors import ConversionError, UnsupportedLayerError

__all__ = ["CONVERTERS", "refuse"]

Array = npt.NDArray[np.float32]

_DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "WindowData", "DummyData", "AnnotatedData", "VideoData"}


def refuse(layer: Layer) -> Exception:
    """The error for a layer type without a strategy, with a hint where one helps."""
    kind = layer.type
    if kind in _DATA_LAYERS:
        detail = "it reads training data; a deploy.prototxt declares its inputs with an Input layer or input_shape"
    elif kind.endswith("Loss") or kind == "Accuracy":
        detail = "training-only layers have no place in a deploy.prototxt; remove it"
    elif kind == "Python":
        p = layer.param.python_param
        detail = f"Python layers ({p.module}.{p.layer}) run user code that cannot be converted"
    else:
        detail = f"supported types: {', '.join(sorted(CONVERTERS))}"
    return UnsupportedLayerError(layer.name, kind, detail)


def _blob(layer: Layer, index: int, count: int, shape: Sequence[int], what: str) -> Array:
    """The layer's ``index``-th blob reshaped to ``shape`` (Caffe checks counts, old snapshots use 4-D shapes)."""
    where = Context.where(layer)
    if index >= len(layer.blobs):
        raise ConversionError(
            f"{where}: the snapshot has no {what} for this layer (blob {index}); is it the right snapshot.caffemodel?"
        )
    array = layer.blobs[index]
    if array.size != count:
        raise ConversionError(f"{where}: {what} holds {array.size} values where {list(shape)} needs {count}")
    return np.ascontiguousarray(array.reshape(shape), dtype=np.float32)


def _pair(values: Sequence[int], h: int | None, w: int | None, default: int, name: str, where: str) -> tuple[int, int]:
    """A 2-D spatial parameter from ``name: v`` (repeated 0, 1 or 2 times) or ``name_h`` / ``name_w``."""
    if h is not None or w is not None:
        ensure(not values, where, f"give either {name} or {name}_h/{name}_w")
        ensure(h is not None and w is not None, where, f"give both {name}_h and {name}_w")
        assert h is not None
        assert w is not None
        return h, w
    if not values:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    ensure(len(values) == 2, where, f"{name} has {len(values)} values for a 2-D operation")
    return values[0], values[1]


def _opt(message: Message, field: str) -> int | None:
    """An optional scalar field's value, None when unset (proto2 presence)."""
    return int(getattr(message, field)) if message.HasField(field) else None


def _image(ctx: Context, layer: Layer, shape: Shape) -> tuple[int, int, int]:
    """C, H, W of an NCHW blob with the batch first (what convolutions and pooling need)."""
    where = ctx.where(layer)
    if shape.rank == 5 and layer.type in ("Convolution", "Deconvolution", "Pooling"):
        raise UnsupportedLayerError(
            layer.name, layer.type, "only 2-D operations on (N, C, H, W) blobs convert; this blob has 5 axes (3-D)"
        )
    ensure(shape.rank == 4, where, f"expects a 4-D (N, C, H, W) blob, got {shape.rank} axes")
    ensure(shape.batch_axis == 0 and shape.dims[0] == 1, where, "expects the batch on the first axis")
    return shape.dims[1], shape.dims[2], shape.dims[3]


# --- inputs ---------------------------------------------------------------------------------------------------


def _input(ctx: Context, layer: Layer) -> None:
    shapes = layer.param.input_param.shape
    tops = layer.param.top
    ensure(len(shapes) in (1, len(tops)), ctx.where(layer), "give one shape, or one per top, in input_param")
    for i, top in enumerate(tops):
        ctx.add_input(top, [int(d) for d in shapes[min(i, len(shapes) - 1)].dim], ctx.where(layer))


def _memory_data(ctx: Context, layer: Layer) -> None:
    p = layer.param.memory_data_param
    ctx.add_input(layer.param.top[0], [p.batch_size, p.channels, p.height, p.width], ctx.where(layer))


# --- convolutions ---------------------------------------------------------------------------------------------


def _conv_geometry(layer: Layer, p: caffe_pb2.ConvolutionParameter) -> dict[str, tuple[int, int]]:
    where = Context.where(layer)
    # Not a fault of the file: layers ONNX could express but this converter does not (docs/convert.md, "What is
    # refused"), so UNSUPPORTED_LAYER, like any other layer without a translation.
    if p.axis not in (1, -3):
        raise UnsupportedLayerError(
            layer.name, layer.type, f"only convolutions over axis 1 (NCHW blobs) convert, not axis {p.axis}"
        )
    spatial = max(len(p.kernel_size), len(p.pad), len(p.stride), len(p.dilation))
    if spatial > 2:
        raise UnsupportedLayerError(
            layer.name, layer.type, f"only 2-D convolutions convert; this one has {spatial} spatial axes"
        )
    kernel = _pair(list(p.kernel_size), _opt(p, "kernel_h"), _opt(p, "kernel_w"), 0, "kernel", where)
    ensure(min(kernel) > 0, where, "needs a kernel size")
    pad = _pair(list(p.pad), _opt(p, "pad_h"), _opt(p, "pad_w"), 0, "pad", where)
    stride = _pair(list(p.stride), _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride", where)
    dilation = _pair(list(p.dilation), None, None, 1, "dilation", where)
    ensure(min(stride) > 0 and min(dilation) > 0, where, "stride and dilation must be positive")
    return {"kernel": kernel, "pad": pad, "stride": stride, "dilation": dilation}


def _convolution(ctx: Context, layer: Layer) -> None:
    p = layer.param.convolution_param
    where = ctx.where(layer)
    g = _conv_geometry(layer, p)
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = g["kernel"], g["pad"], g["stride"], g["dilation"]
    weight = bias = ""
    for i, (x, shape) in enumerate(ctx.bottoms(layer)):
        c, h, w = _image(ctx, layer, shape)
        groups, n = int(p.group), int(p.num_output)
        ensure(
            n > 0 and groups > 0 and c % groups == 0 and n % groups == 0,
            where,
            "num_output and channels must divide by group",
        )
        if not weight:
            w_shape = (n, c // groups, kh, kw)
            weight = ctx.graph.const(f"{layer.name}/weight", _blob(layer, 0, math.prod(w_shape), w_shape, "weights"))
            if p.bias_term:
                bias = ctx.graph.const(f"{layer.name}/bias", _blob(layer, 1, n, (n,), "bias"))
        oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
        ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
        ensure(oh > 0 and ow > 0, where, f"the kernel does not fit the {h}x{w} input")
        out = ctx.top(layer, i, Shape((1, n, oh, ow)))
        ctx.graph.node(
            "Conv",
            [x, weight, *([bias] if bias else [])],
            [out],
            layer.name,
            kernel_shape=[kh, kw],
            pads=[ph, pw, ph, pw],
            strides=[sh, sw],
            dilations=[dh, dw],
            group=groups,
        )


def _deconvolution(ctx: Context, layer: Layer) -> None:
    p = layer.param.convolution_param
    where = ctx.where(layer)
    g = _conv_geometry(layer, p)
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = g["kernel"], g["pad"], g["stride"], g["dilation"]
    weight = bias = ""
    for i, (x, shape) in enumerate(ctx.bottoms(layer)):
        c, h, w = _image(ctx, layer, shape)
        groups, n = int(p.group), int(p.num_output)
        ensure(
            n > 0 and groups > 0 and c % groups == 0 and n % groups == 0,
            where,
            "num_output and channels must divide by group",
        )
        if not weight:
            # Caffe stores a deconvolution's weights as (input channels, outputs / group, kh, kw), as ONNX does.
            w_shape = (c, n // groups, kh, kw)
            weight = ctx.graph.const(f"{layer.name}/weight", _blob(layer, 0, math.prod(w_shape), w_shape, "weights"))
            if p.bias_term:
                bias = ctx.graph.const(f"{layer.name}/bias", _blob(layer, 1, n, (n,), "bias"))
        oh = sh * (h - 1) + dh * (kh - 1) + 1 - 2 * ph
        ow = sw * (w - 1) + dw * (kw - 1) + 1 - 2 * pw
        ensure(oh > 0 and ow > 0, where, "the padding exceeds the output")
        out = ctx.top(layer, i, Shape((1, n, oh, ow)))
        ctx.graph.node(
            "ConvTranspose",
            [x, weight, *([bias] if bias else [])],
            [out],
            layer.name,
            kernel_shape=[kh, kw],
            pads=[ph, pw, ph, pw],
            strides=[sh, sw],
            dilations=[dh, dw],
            group=groups,
        )


# --- pooling --------------------------------------------------------------------------------------------------


def _pooled(size: int, kernel: int, pad: int, stride: int, ceil: bool) -> int:
    """Caffe's ``PoolingLayer::Reshape``: the last window must start inside the (left-padded) input."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pooling(ctx: Context, layer: Layer) -> None:
    p = layer.param.pooling_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    c, h, w = _image(ctx, layer, shape)
    if p.pool == caffe_pb2.PoolingParameter.STOCHASTIC:
        raise UnsupportedLayerError(layer.name, layer.type, "STOCHASTIC pooling has no deterministic ONNX equivalent")
    ave = p.pool == caffe_pb2.PoolingParameter.AVE
    if p.global_pooling:
        ensure(not (p.HasField("kernel_size") or p.HasField("kernel_h")), where, "global pooling takes no kernel size")
        out = ctx.top(layer, 0, Shape((1, c, 1, 1)))
        ctx.graph.node("GlobalAveragePool" if ave else "GlobalMaxPool", [x], [out], layer.name)
        return
    kernel_values = [p.kernel_size] if p.HasField("kernel_size") else []
    pad_values = [p.pad] if p.HasField("pad") else []
    stride_values = [p.stride] if p.HasField("stride") else []
    kh, kw = _pair(kernel_values, _opt(p, "kernel_h"), _opt(p, "kernel_w"), 0, "kernel", where)
    ph, pw = _pair(pad_values, _opt(p, "pad_h"), _opt(p, "pad_w"), 0, "pad", where)
    sh, sw = _pair(stride_values, _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride", where)
    ensure(min(kh, kw) > 0 and min(sh, sw) > 0, where, "needs a positive kernel size and stride")
    ensure(ph < kh and pw < kw, where, "the padding must be smaller than the kernel")
    ceil = p.round_mode == caffe_pb2.PoolingParameter.CEIL
    oh, ow = _pooled(h, kh, ph, sh, ceil), _pooled(w, kw, pw, sw, ceil)
    ensure(oh > 0 and ow > 0, where, f"the kernel does not fit the {h}x{w} input")
    # ONNX pools with explicit end padding, chosen so that ONNX's floor rounding gives Caffe's output size.
    eh, ew = max(0, (oh - 1) * sh + kh - h - ph), max(0, (ow - 1) * sw + kw - w - pw)
    ensure(
        (oh - 1) * sh < h + ph and (ow - 1) * sw < w + pw,
        where,
        "the last pooling window starts past the input (Caffe would pool an empty window)",
    )
    out = ctx.top(layer, 0, Shape((1, c, oh, ow)))
    attrs: dict[str, object] = {"kernel_shape": [kh, kw], "strides": [sh, sw]}
    if not ave:
        ctx.graph.node("MaxPool", [x], [out], layer.name, pads=[ph, pw, eh, ew], **attrs)
        return
    # Caffe divides a window's sum by its size clipped to the padded input [-pad, size + pad): padding cells
    # count, cells past the padding (ceil rounding's overhang) do not.
    if eh <= ph and ew <= pw:
        ctx.graph.node("AveragePool", [x], [out], layer.name, pads=[ph, pw, eh, ew], count_include_pad=1, **attrs)
        return
    source = x
    if ph or pw:
        source = ctx.graph.fresh(f"{layer.name}/padded")
        pads = ctx.graph.const(f"{layer.name}/pads", [0, 0, ph, pw, 0, 0, ph, pw], np.int64)
        ctx.graph.node("Pad", [x, pads], [source], f"{layer.name}/pad", mode="constant")
    ctx.graph.node(
        "AveragePool",
        [source],
        [out],
        layer.name,
        pads=[0, 0, max(0, eh - ph), max(0, ew - pw)],
        count_include_pad=0,
        **attrs,
    )


# --- fully connected ------------------------------------------------------------------------------------------


def _inner_product(ctx: Context, layer: Layer) -> None:
    p = layer.param.inner_product_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    axis = shape.axis(p.axis, where)
    ensure(not shape.has_batch_in(axis, shape.rank), where, "cannot fold the batch axis into the inner product")
    k, n = shape.count(axis), int(p.num_output)
    ensure(n > 0, where, "needs num_output")
    stored = (k, n) if p.transpose else (n, k)
    weight = _blob(layer, 0, n * k, stored, "weights")
    bias = _blob(layer, 1, n, (n,), "bias") if p.bias_term else None
    out_shape = shape.with_dims((*shape.dims[:axis], n), shape.batch_axis)
    out = ctx.top(layer, 0, out_shape)
    if axis == 1 and shape.batch_axis == 0 and shape.dims[0] == 1:
        flat = x
        if shape.rank > 2:
            flat = ctx.graph.fresh(f"{layer.name}/flatten")
            ctx.graph.node("Flatten", [x], [flat], f"{layer.name}/flatten", axis=1)
        inputs = [flat, ctx.graph.const(f"{layer.name}/weight", weight)]
        if bias is not None:
            inputs.append(ctx.graph.const(f"{layer.name}/bias", bias))
        ctx.graph.node("Gemm", inputs, [out], layer.name, transB=0 if p.transpose else 1)
        return
    folded = ctx.graph.reshape(x, shape.with_dims((*shape.dims[:axis], k), shape.batch_axis), f"{layer.name}/fold")
    matrix = weight if p.transpose else weight.T
    product = out if bias is None else ctx.graph.fresh(f"{layer.name}/matmul")
    ctx.graph.node(
        "MatMul", [folded, ctx.graph.const(f"{layer.name}/weight", matrix)], [product], f"{layer.name}/matmul"
    )
    if bias is not None:
        ctx.graph.node("Add", [product, ctx.graph.const(f"{layer.name}/bias", bias)], [out], f"{layer.name}/bias")


# --- element-wise activations ---------------------------------------------------------------------------------


def _unary(op: str, **attrs: object) -> LayerConverter:
    def convert(ctx: Context, layer: Layer) -> None:
        x, shape = ctx.bottom(layer)
        ctx.graph.node(op, [x], [ctx.top(layer, 0, shape)], layer.name, **attrs)

    return convert


def _relu(ctx: Context, layer: Layer) -> None:
    slope = layer.param.relu_param.negative_slope
    x, shape = ctx.bottom(layer)
    out = ctx.top(layer, 0, shape)
    if slope:
        ctx.graph.node("LeakyRelu", [x], [out], layer.name, alpha=float(slope))
    else:
        ctx.graph.node("Relu", [x], [out], layer.name)


def _prelu(ctx: Context, layer: Layer) -> None:
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    if layer.param.prelu_param.channel_shared:
        slope = _blob(layer, 0, 1, (1,), "slope")
    else:
        ensure(shape.rank >= 2 and shape.batch_axis == 0, where, "expects (N, C, ...) blobs")
        c = shape.dims[1]
        slope = _blob(layer, 0, c, (c, *([1] * (shape.rank - 2))), "slopes")
    ctx.graph.node("PRelu", [x, ctx.graph.const(f"{layer.name}/slope", slope)], [ctx.top(layer, 0, shape)], layer.name)


def _elu(ctx: Context, layer: Layer) -> None:
    x, shape = ctx.bottom(layer)
    ctx.graph.node("Elu", [x], [ctx.top(layer, 0, shape)], layer.name, alpha=float(layer.param.elu_param.alpha))


def _power(ctx: Context, layer: Layer) -> None:
    """y = (shift + scale * x) ^ power."""
    p = layer.param.power_param
    x, shape = ctx.bottom(layer)
    steps: list[tuple[str, float]] = []
    if p.scale != 1:
        steps.append(("Mul", p.scale))
    if p.shift != 0:
        steps.append(("Add", p.shift))
    if p.power != 1:
        steps.append(("Pow", p.power))
    out = ctx.top(layer, 0, shape)
    if not steps:
        ctx.graph.node("Identity", [x], [out], layer.name)
        return
    current = x
    for i, (op, value) in enumerate(steps):
        target = out if i == len(steps) - 1 else ctx.graph.fresh(f"{layer.name}/{op.lower()}")
        ctx.graph.node(
            op,
            [current, ctx.graph.const(f"{layer.name}/{op.lower()}_value", value)],
            [target],
            f"{layer.name}/{op.lower()}",
        )
        current = target


def _softmax(ctx: Context, layer: Layer) -> None:
    x, shape = ctx.bottom(layer)
    axis = shape.axis(layer.param.softmax_param.axis, ctx.where(layer))
    if axis == shape.batch_axis:
        ctx.pin_batch(f"{ctx.where(layer)} normalises over the batch axis")
    ctx.graph.node("Softmax", [x], [ctx.top(layer, 0, shape)], layer.name, axis=axis)


def _dropout(ctx: Context, layer: Layer) -> None:
    # Caffe scales during training (inverted dropout), so the TEST-phase forward pass is the identity.
    x, shape = ctx.bottom(layer)
    ctx.graph.node("Identity", [x], [ctx.top(layer, 0, shape)], layer.name)


def _lrn(ctx: Context, layer: Layer) -> None:
    p = layer.param.lrn_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    _image(ctx, layer, shape)
    size = int(p.local_size)
    ensure(size % 2 == 1, where, "local_size must be odd")
    out = ctx.top(layer, 0, shape)
    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        # Both divide by (k + alpha / size * sum of squares over the window) ^ beta.
        ctx.graph.node(
            "LRN", [x], [out], layer.name, size=size, alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k)
        )
        return
    # WITHIN_CHANNEL, as Caffe composes it: x * (1 + alpha * avgpool(x^2, size, pad (size-1)/2)) ^ -beta (k unused).
    g = ctx.graph
    pad = (size - 1) // 2
    square, mean, scaled, shifted, scale = (
        g.fresh(f"{layer.name}/{s}") for s in ("square", "mean", "scaled", "shifted", "scale")
    )
    g.node("Mul", [x, x], [square], f"{layer.name}/square")
    g.node(
        "AveragePool",
        [square],
        [mean],
        f"{layer.name}/pool",
        kernel_shape=[size, size],
        pads=[pad] * 4,
        count_include_pad=1,
    )
    g.node("Mul", [mean, g.const(f"{layer.name}/alpha", p.alpha)], [scaled], f"{layer.name}/alpha")
    g.node("Add", [scaled, g.const(f"{layer.name}/one", 1.0)], [shifted], f"{layer.name}/shift")
    g.node("Pow", [shifted, g.const(f"{layer.name}/beta", -p.beta)], [scale], f"{layer.name}/pow")
    g.node("Mul", [x, scale], [out], layer.name)


# --- normalisation and affine ---------------------------------------------------------------------------------


def _batch_norm(ctx: Context, layer: Layer) -> None:
    p = layer.param.batch_norm_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    ensure(shape.rank >= 2 and shape.batch_axis == 0 and shape.dims[0] == 1, where, "expects (N, C, ...) blobs")
    c = shape.dims[1]
    mean = _blob(layer, 0, c, (c,), "mean")
    variance = _blob(layer, 1, c, (c,), "variance")
    factor = float(_blob(layer, 2, 1, (1,), "moving-average scale factor")[0])
    # The snapshot holds running sums; blob 2 is their weight (0 means no statistics yet, used as 0).
    correction = 0.0 if factor == 0 else 1.0 / factor
    if p.HasField("use_global_stats") and not p.use_global_stats:
        ctx.notes.append(f"{where}: use_global_stats is false; the stored statistics are used, as at inference")
    if len(layer.blobs) >= 5:
        scale, bias = _blob(layer, 3, c, (c,), "scale"), _blob(layer, 4, c, (c,), "bias")
    else:
        scale, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
    g = ctx.graph
    ctx.graph.node(
        "BatchNormalization",
        [
            x,
            g.const(f"{layer.name}/scale", scale),
            g.const(f"{layer.name}/bias", bias),
            g.const(f"{layer.name}/mean", mean * np.float32(correction)),
            g.const(f"{layer.name}/variance", variance * np.float32(correction)),
        ],
        [ctx.top(layer, 0, shape)],
        layer.name,
        epsilon=float(p.eps),
    )


def _param_shape(ctx: Context, layer: Layer, shape: Shape, axis: int, num_axes: int) -> tuple[int, tuple[int, ...]]:
    """Scale/Bias: the first axis and the dims of a learned parameter covering ``num_axes`` axes from ``axis``."""
    where = ctx.where(layer)
    start = shape.axis(axis, where)
    ensure(num_axes >= -1, where, "num_axes must be -1 or more")
    end = shape.rank if num_axes == -1 else start + num_axes
    ensure(end <= shape.rank, where, f"num_axes {num_axes} from axis {axis} overruns a {shape.rank}-axis blob")
    ensure(not shape.has_batch_in(start, end), where, "a learned parameter cannot span the batch axis")
    return start, shape.dims[start:end]


def _broadcastable(ctx: Context, layer: Layer, x_shape: Shape, start: int, values: Array, hint: str) -> str:
    """A learned parameter as an initializer that broadcasts over ``x`` from axis ``start``."""
    trailing = x_shape.rank - start - values.ndim
    return ctx.graph.const(f"{layer.name}/{hint}", values.reshape((*values.shape, *([1] * trailing))))


def _second_bottom(ctx: Context, layer: Layer, x_shape: Shape, axis: int) -> tuple[str, int]:
    """Scale/Bias with two bottoms: bottom 1, reshaped to broadcast over bottom 0 from ``axis``."""
    where = ctx.where(layer)
    y, y_shape = ctx.bottom(layer, 1)
    start = x_shape.axis(axis, where) if y_shape.rank else 0
    end = start + y_shape.rank
    ensure(
        x_shape.dims[start:end] == y_shape.dims,
        where,
        f"bottom 1 {list(y_shape.dims)} does not match bottom 0 from axis {start}",
    )
    aligned = y_shape.batch_axis is None or x_shape.batch_axis == start + y_shape.batch_axis
    ensure(
        aligned and not (y_shape.batch_axis is None and x_shape.has_batch_in(start, end)),
        where,
        "bottoms disagree on the batch axis",
    )
    trailing = x_shape.rank - end
    if trailing and y_shape.rank:
        target = y_shape.with_dims((*y_shape.dims, *([1] * trailing)), y_shape.batch_axis)
        y = ctx.graph.reshape(y, target, f"{layer.name}/broadcast")
    return y, start


def _scale(ctx: Context, layer: Layer) -> None:
    p = layer.param.scale_param
    x, shape = ctx.bottom(layer)
    bias_index = 1
    if len(layer.param.bottom) > 1:
        factor, start = _second_bottom(ctx, layer, shape, p.axis)
        bias_index = 0
        _, y_shape = ctx.blob(layer.param.bottom[1])
        bias_dims = y_shape.dims
    else:
        start, bias_dims = _param_shape(ctx, layer, shape, p.axis, p.num_axes)
        values = _blob(layer, 0, math.prod(bias_dims), bias_dims, "scale")
        factor = _broadcastable(ctx, layer, shape, start, values, "scale")
    out = ctx.top(layer, 0, shape)
    if not p.bias_term:
        ctx.graph.node("Mul", [x, factor], [out], layer.name)
        return
    scaled = ctx.graph.fresh(f"{layer.name}/scaled")
    ctx.graph.node("Mul", [x, factor], [scaled], layer.name)
    bias = _blob(layer, bias_index, math.prod(bias_dims), bias_dims, "bias")
    ctx.graph.node("Add", [scaled, _broadcastable(ctx, layer, shape, start, bias, "bias")], [out], f"{layer.name}/bias")


def _bias(ctx: Context, layer: Layer) -> None:
    p = layer.param.bias_param
    x, shape = ctx.bottom(layer)
    if len(layer.param.bottom) > 1:
        term, _ = _second_bottom(ctx, layer, shape, p.axis)
    else:
        start, dims = _param_shape(ctx, layer, shape, p.axis, p.num_axes)
        term = _broadcastable(ctx, layer, shape, start, _blob(layer, 0, math.prod(dims), dims, "bias"), "bias")
    ctx.graph.node("Add", [x, term], [ctx.top(layer, 0, shape)], layer.name)


# --- combining and reshaping ----------------------------------------------------------------------------------


def _eltwise(ctx: Context, layer: Layer) -> None:
    p = layer.param.eltwise_param
    where = ctx.where(layer)
    inputs = ctx.bottoms(layer)
    ensure(len(inputs) >= 2, where, "needs at least two bottoms")
    shape = inputs[0][1]
    ensure(all(s == shape for _, s in inputs), where, "bottoms must have the same shape")
    out = ctx.top(layer, 0, shape)
    names = [x for x, _ in inputs]
    if p.operation == caffe_pb2.EltwiseParameter.SUM:
        coeffs = list(p.coeff) or [1.0] * len(names)
        ensure(len(coeffs) == len(names), where, "give one coeff per bottom")
        terms = []
        for i, (x, c) in enumerate(zip(names, coeffs, strict=True)):
            if c == 1:
                terms.append(x)
                continue
            term = ctx.graph.fresh(f"{layer.name}/term{i}")
            ctx.graph.node("Mul", [x, ctx.graph.const(f"{layer.name}/coeff{i}", c)], [term], f"{layer.name}/coeff{i}")
            terms.append(term)
        ctx.graph.node("Sum", terms, [out], layer.name)
    elif p.operation == caffe_pb2.EltwiseParameter.PROD:
        ensure(not p.coeff, where, "coeff applies to SUM only")
        current = names[0]
        for i, x in enumerate(names[1:], start=1):
            target = out if i == len(names) - 1 else ctx.graph.fresh(f"{layer.name}/prod{i}")
            ctx.graph.node("Mul", [current, x], [target], f"{layer.name}/prod{i}")
            current = target
    else:
        ensure(not p.coeff, where, "coeff applies to SUM only")
        ctx.graph.node("Max", names, [out], layer.name)


def _concat(ctx: Context, layer: Layer) -> None:
    p = layer.param.concat_param
    where = ctx.where(layer)
    inputs = ctx.bottoms(layer)
    first = inputs[0][1]
    axis = first.axis(p.axis if p.HasField("axis") or not p.HasField("concat_dim") else int(p.concat_dim), where)
    for _, s in inputs:
        same = s.rank == first.rank and s.batch_axis == first.batch_axis
        ensure(
            same and all(a == b for i, (a, b) in enumerate(zip(s.dims, first.dims, strict=True)) if i != axis),
            where,
            "bottoms must match except along the axis",
        )
    total = sum(s.dims[axis] for _, s in inputs)
    out = ctx.top(layer, 0, first.with_dims((*first.dims[:axis], total, *first.dims[axis + 1 :]), first.batch_axis))
    ctx.graph.node(
        "Concat" if len(inputs) > 1 else "Identity",
        [x for x, _ in inputs],
        [out],
        layer.name,
        **({"axis": axis} if len(inputs) > 1 else {}),
    )


def _slice(ctx: Context, layer: Layer) -> None:
    p = layer.param.slice_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    axis = shape.axis(p.axis if p.HasField("axis") or not p.HasField("slice_dim") else int(p.slice_dim), where)
    ensure(axis != shape.batch_axis, where, "cannot slice along the batch axis")
    tops, size = len(layer.param.top), shape.dims[axis]
    points = [int(v) for v in p.slice_point]
    if points:
        ensure(len(points) == tops - 1, where, "give one slice_point fewer than tops")
        edges = [0, *points, size]
        ensure(
            all(a < b for a, b in itertools.pairwise(edges)),
            where,
            "slice points must increase inside the axis",
        )
        parts = [b - a for a, b in itertools.pairwise(edges)]
    else:
        ensure(size % tops == 0, where, f"axis of size {size} does not split into {tops} equal parts")
        parts = [size // tops] * tops
    outs = [
        ctx.top(layer, i, shape.with_dims((*shape.dims[:axis], part, *shape.dims[axis + 1 :]), shape.batch_axis))
        for i, part in enumerate(parts)
    ]
    ctx.graph.node("Split", [x, ctx.graph.const(f"{layer.name}/parts", parts, np.int64)], outs, layer.name, axis=axis)


def _split(ctx: Context, layer: Layer) -> None:
    x, shape = ctx.bottom(layer)
    for i in range(len(layer.param.top)):
        ctx.graph.node("Identity", [x], [ctx.top(layer, i, shape)], f"{layer.name}/{i}")


def _silence(ctx: Context, layer: Layer) -> None:
    ctx.bottoms(layer)


def _flatten(ctx: Context, layer: Layer) -> None:
    p = layer.param.flatten_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    start, end = shape.axis(p.axis, where), shape.axis(p.end_axis, where)
    ensure(start <= end, where, "end_axis comes before axis")
    dims = (*shape.dims[:start], shape.count(start, end + 1), *shape.dims[end + 1 :])
    batch = shape.batch_axis
    if batch is not None and batch > end:
        batch -= end - start
    elif batch is not None and batch >= start:
        batch = start
    target = shape.with_dims(dims, batch)
    ctx.graph.reshape(x, target, layer.name, out=ctx.top(layer, 0, target))


def _reshape(ctx: Context, layer: Layer) -> None:
    """Caffe's ReshapeLayer: 0 copies the bottom's dim at that position, -1 is inferred from the count."""
    p = layer.param.reshape_param
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    start = p.axis if p.axis >= 0 else shape.rank + p.axis + 1
    ensure(0 <= start <= shape.rank, where, f"axis {p.axis} is out of range")
    end = shape.rank if p.num_axes == -1 else start + p.num_axes
    ensure(p.num_axes >= -1 and end <= shape.rank, where, f"num_axes {p.num_axes} is out of range")
    spec = [int(d) for d in p.shape.dim]
    ensure(spec.count(-1) <= 1 and all(d >= -1 for d in spec), where, "at most one dim may be -1, none below")
    middle: list[int] = []
    batch: int | None = None
    inferred: int | None = None
    for i, d in enumerate(spec):
        if d == 0:
            source = start + i
            ensure(source < shape.rank, where, f"dim {i} copies a missing axis")
            middle.append(shape.dims[source])
            if source == shape.batch_axis:
                batch = start + i
        elif d == -1:
            inferred = i
            middle.append(1)
        else:
            middle.append(d)
    before, after = shape.dims[:start], shape.dims[end:]
    if shape.batch_axis is not None and shape.batch_axis < start:
        batch = shape.batch_axis
    elif shape.batch_axis is not None and shape.batch_axis >= end:
        batch = shape.batch_axis - (end - start) + len(spec)
    elif shape.batch_axis is not None and batch is None and inferred is not None:
        batch = start + inferred
    total = shape.count()
    if shape.batch_axis is not None and batch is None:
        ctx.pin_batch(f"{where} reshapes the batch axis to explicit dimensions")
        total *= ctx.nominal_batch
    known = math.prod(before) * math.prod(middle) * math.prod(after)
    if inferred is not None:
        ensure(total % known == 0, where, f"cannot infer dim {inferred}: {total} values do not divide by {known}")
        middle[inferred] = total // known
    dims = (*before, *middle, *after)
    ensure(math.prod(dims) == total, where, f"reshapes {shape.count()} values per sample to {list(dims)}")
    target = shape.with_dims(dims, batch)
    ctx.graph.reshape(x, target, layer.name, out=ctx.top(layer, 0, target))


def _permute(ctx: Context, layer: Layer) -> None:
    where = ctx.where(layer)
    x, shape = ctx.bottom(layer)
    order = [int(o) for o in layer.param.permute_param.order]
    ensure(len(set(order)) == len(order) and all(0 <= o < shape.rank for o in order), where, f"bad order {order}")
    perm = order + [a for a in range(shape.rank) if a not in order]
    batch = perm.index(shape.batch_axis) if shape.batch_axis is not None else None
    out = ctx.top(layer, 0, shape.with_dims([shape.dims[a] for a in perm], batch))
    ctx.graph.node("Transpose", [x], [out], layer.name, perm=perm)


CONVERTERS: Mapping[str, LayerConverter] = {
    "AbsVal": _unary("Abs"),
    "BatchNorm": _batch_norm,
    "Bias": _bias,
    "BNLL": _unary("Softplus"),
    "Concat": _concat,
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "Dropout": _dropout,
    "ELU": _elu,
    "Eltwise": _eltwise,
    "Flatten": _flatten,
    "InnerProduct": _inner_product,
    "Input": _input,
    "LRN": _lrn,
    "MemoryData": _memory_data,
    "Permute": _permute,
    "Pooling": _pooling,
    "Power": _power,
    "PReLU": _prelu,
    "ReLU": _relu,
    "Reshape": _reshape,
    "Scale": _scale,
    "Sigmoid": _unary("Sigmoid"),
    "Silence": _silence,
    "Slice": _slice,
    "Softmax": _softmax,
    "Split": _split,
    "TanH": _unary("Tanh"),
}
