"""Caffe (BVLC or NVIDIA Caffe) networks → ONNX: ``deploy.prototxt`` + ``snapshot.caffemodel`` in, a ModelProto out.

Pure Python: the project's own subset of Caffe's schema (``caffe.proto``, generated ``caffe_pb2``), numpy and
``onnx``'s helper API. Supported layers and their semantics: ``docs/convert.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.convert.caffe.converter import OPSET, CaffeModel, build_model
from service.convert.caffe.layers import CONVERTERS, refuse
from service.convert.caffe.net import load_layers, parse_caffemodel, parse_prototxt

__all__ = ["OPSET", "SUPPORTED_LAYERS", "CaffeModel", "convert_caffe"]

SUPPORTED_LAYERS = tuple(sorted(CONVERTERS))


def convert_caffe(
    prototxt: str | bytes,
    caffemodel: bytes | None,
    *,
    outputs: Sequence[str] | None = None,
    prototxt_name: str = "deploy.prototxt",
    caffemodel_name: str = "snapshot.caffemodel",
) -> CaffeModel:
    """Convert a Caffe deploy net and its trained weights to ONNX (opset 13, free batch dimension where possible).

    ``outputs``: the blobs to expose, by name; by default Caffe's own outputs (blobs no later layer consumes).
    ``caffemodel`` may be None for a net without learned parameters (a missing blob is then reported by layer).
    Raises ``ConversionError`` (``UnsupportedLayerError`` for a layer type without a translation).
    """
    deploy = parse_prototxt(prototxt, prototxt_name)
    weights = parse_caffemodel(caffemodel, caffemodel_name) if caffemodel is not None else None
    layers = load_layers(deploy, weights, weights_file=caffemodel_name)
    return build_model(deploy, layers, CONVERTERS, refuse, outputs)
