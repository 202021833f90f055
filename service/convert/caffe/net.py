"""Reading a Caffe network: the deploy prototxt (text), the snapshot (binary) and their layers, as Caffe sees them.

Layers are upgraded from the legacy V1 format, filtered for the TEST phase with Caffe's NetStateRule logic, and
matched to their trained blobs by layer name, as ``Net::CopyTrainedLayersFrom`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from google.protobuf import message as pb_message
from google.protobuf import text_format

from service.convert.caffe import caffe_pb2
from service.convert.errors import ConversionError

__all__ = ["Layer", "blob_array", "deploy_layers", "load_layers", "parse_caffemodel", "parse_prototxt"]

Array = npt.NDArray[np.float32]

V1_TYPES: Mapping[int, str] = {
    caffe_pb2.V1LayerParameter.ABSVAL: "AbsVal",
    caffe_pb2.V1LayerParameter.ACCURACY: "Accuracy",
    caffe_pb2.V1LayerParameter.ARGMAX: "ArgMax",
    caffe_pb2.V1LayerParameter.BNLL: "BNLL",
    caffe_pb2.V1LayerParameter.CONCAT: "Concat",
    caffe_pb2.V1LayerParameter.CONTRASTIVE_LOSS: "ContrastiveLoss",
    caffe_pb2.V1LayerParameter.CONVOLUTION: "Convolution",
    caffe_pb2.V1LayerParameter.DATA: "Data",
    caffe_pb2.V1LayerParameter.DECONVOLUTION: "Deconvolution",
    caffe_pb2.V1LayerParameter.DROPOUT: "Dropout",
    caffe_pb2.V1LayerParameter.DUMMY_DATA: "DummyData",
    caffe_pb2.V1LayerParameter.EUCLIDEAN_LOSS: "EuclideanLoss",
    caffe_pb2.V1LayerParameter.ELTWISE: "Eltwise",
    caffe_pb2.V1LayerParameter.EXP: "Exp",
    caffe_pb2.V1LayerParameter.FLATTEN: "Flatten",
    caffe_pb2.V1LayerParameter.HDF5_DATA: "HDF5Data",
    caffe_pb2.V1LayerParameter.HDF5_OUTPUT: "HDF5Output",
    caffe_pb2.V1LayerParameter.HINGE_LOSS: "HingeLoss",
    caffe_pb2.V1LayerParameter.IM2COL: "Im2col",
    caffe_pb2.V1LayerParameter.IMAGE_DATA: "ImageData",
    caffe_pb2.V1LayerParameter.INFOGAIN_LOSS: "InfogainLoss",
    caffe_pb2.V1LayerParameter.INNER_PRODUCT: "InnerProduct",
    caffe_pb2.V1LayerParameter.LRN: "LRN",
    caffe_pb2.V1LayerParameter.MEMORY_DATA: "MemoryData",
    caffe_pb2.V1LayerParameter.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    caffe_pb2.V1LayerParameter.MVN: "MVN",
    caffe_pb2.V1LayerParameter.POOLING: "Pooling",
    caffe_pb2.V1LayerParameter.POWER: "Power",
    caffe_pb2.V1LayerParameter.RELU: "ReLU",
    caffe_pb2.V1LayerParameter.SIGMOID: "Sigmoid",
    caffe_pb2.V1LayerParameter.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    caffe_pb2.V1LayerParameter.SILENCE: "Silence",
    caffe_pb2.V1LayerParameter.SOFTMAX: "Softmax",
    caffe_pb2.V1LayerParameter.SOFTMAX_LOSS: "SoftmaxWithLoss",
    caffe_pb2.V1LayerParameter.SPLIT: "Split",
    caffe_pb2.V1LayerParameter.SLICE: "Slice",
    caffe_pb2.V1LayerParameter.TANH: "TanH",
    caffe_pb2.V1LayerParameter.WINDOW_DATA: "WindowData",
    caffe_pb2.V1LayerParameter.THRESHOLD: "Threshold",
}

# The parameter messages a V1 layer shares with LayerParameter, under the same field names.
_V1_PARAMS = (
    "concat_param",
    "convolution_param",
    "dropout_param",
    "eltwise_param",
    "inner_product_param",
    "lrn_param",
    "memory_data_param",
    "pooling_param",
    "power_param",
    "relu_param",
    "sigmoid_param",
    "softmax_param",
    "slice_param",
    "tanh_param",
)


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of the deploy net with its trained blobs (none for layers without parameters)."""

    param: caffe_pb2.LayerParameter
    blobs: tuple[Array, ...]

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type


def parse_prototxt(text: str | bytes, file_name: str = "deploy.prototxt") -> caffe_pb2.NetParameter:
    """Parse a text NetParameter; fields outside Sightline's schema (data sources, solvers...) are skipped."""
    net = caffe_pb2.NetParameter()
    try:
        source = text.decode("utf-8") if isinstance(text, bytes) else text
        text_format.Parse(source, net, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{file_name}: not a Caffe text NetParameter ({exc})") from None
    return _upgrade(net, file_name)


def parse_caffemodel(data: bytes, file_name: str = "snapshot.caffemodel") -> caffe_pb2.NetParameter:
    """Parse a binary NetParameter (trained weights)."""
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise ConversionError(f"{file_name}: not a Caffe binary NetParameter ({exc})") from None
    if not net.layer and not net.layers:
        raise ConversionError(f"{file_name}: holds no layer")
    return _upgrade(net, file_name)


def _upgrade(net: caffe_pb2.NetParameter, file_name: str) -> caffe_pb2.NetParameter:
    """Bring legacy V1 layers into ``net.layer`` (Caffe's ``UpgradeV1Net``)."""
    if not net.layers:
        return net
    if net.layer:
        raise ConversionError(f"{file_name}: mixes 'layer' and legacy 'layers' fields")
    for old in net.layers:
        if old.type == caffe_pb2.V1LayerParameter.NONE:
            raise ConversionError(
                f"{file_name}: layer {old.name!r} has no type; Caffe's V0 format (before 2014) is not supported"
            )
        new = net.layer.add()
        new.name = old.name
        new.type = V1_TYPES.get(old.type, caffe_pb2.V1LayerParameter.LayerType.Name(old.type))
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        new.blobs.extend(old.blobs)
        new.loss_weight.extend(old.loss_weight)
        for field in _V1_PARAMS:
            if old.HasField(field):
                getattr(new, field).CopyFrom(getattr(old, field))
    del net.layers[:]
    return net


def _meets(rule: caffe_pb2.NetStateRule, state: caffe_pb2.NetState) -> bool:
    """Caffe's ``StateMeetsRule``."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def deploy_layers(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    """The layers Caffe instantiates in the TEST phase (``Net::FilterNet``), with the net's level and stages."""
    state = caffe_pb2.NetState()
    state.CopyFrom(net.state)
    state.phase = caffe_pb2.TEST
    kept = []
    for layer in net.layer:
        if layer.include and layer.exclude:
            raise ConversionError(f"layer {layer.name!r} specifies both include and exclude rules")
        if layer.include:
            keep = any(_meets(rule, state) for rule in layer.include)
        else:
            keep = not any(_meets(rule, state) for rule in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


def blob_array(blob: caffe_pb2.BlobProto, where: str) -> Array:
    """A BlobProto's values as float32, in its shape (``shape`` or the legacy num, channels, height, width)."""
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    if blob.HasField("shape"):
        dims = [int(d) for d in blob.shape.dim]
    else:
        dims = [blob.num, blob.channels, blob.height, blob.width]
        if values.size and int(np.prod(dims)) != values.size:
            # Some writers leave the legacy dims unset for 1-D blobs.
            dims = [values.size]
    if int(np.prod(dims)) != values.size:
        raise ConversionError(f"{where}: blob holds {values.size} values for shape {dims}")
    return values.reshape(dims)


def load_layers(
    deploy: caffe_pb2.NetParameter, weights: caffe_pb2.NetParameter | None, *, weights_file: str
) -> list[Layer]:
    """The deploy net's TEST-phase layers, each with the blobs of the same-named layer of the snapshot."""
    trained: dict[str, Iterable[caffe_pb2.BlobProto]] = {}
    if weights is not None:
        for layer in weights.layer:
            if layer.blobs:
                trained[layer.name] = layer.blobs
    out = []
    for param in deploy_layers(deploy):
        source = trained.get(param.name, param.blobs)
        blobs = tuple(blob_array(b, f"{weights_file}: layer {param.name!r} blob {i}") for i, b in enumerate(source))
        out.append(Layer(param, blobs))
    return out
