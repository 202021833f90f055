"""Run a converted model and its independent reference, and compare them."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.convert.caffe import CaffeModel, convert_caffe
from tools.fixtures.caffe_nets import CaffeNet

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RTOL = 1e-4

Array = npt.NDArray[np.float32]


def assert_close(got: npt.NDArray[np.generic], ref: npt.NDArray[np.generic], name: str = "") -> None:
    """Within 1e-4 relative: the largest difference is at most 1e-4 of the reference's largest magnitude."""
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    scale = max(float(np.abs(ref).max()), 1e-6) if ref.size else 1.0
    error = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()) / scale if ref.size else 0.0
    assert error <= RTOL, f"{name}: relative error {error:.2e} > {RTOL:.0e}"


def run_onnx(model: bytes, feeds: Mapping[str, npt.NDArray[np.generic]], outputs: Sequence[str]) -> list[Array]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(list(outputs), dict(feeds))]


def opencv_forward(net: CaffeNet | tuple[Path, Path], feeds: Mapping[str, Array], blobs: Sequence[str]) -> list[Array]:
    """The blobs' values computed by OpenCV's own Caffe importer (cv2.dnn.readNetFromCaffe)."""
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(net, CaffeNet):
            prototxt, caffemodel = Path(tmp) / "deploy.prototxt", Path(tmp) / "snapshot.caffemodel"
            prototxt.write_text(net.prototxt())
            caffemodel.write_bytes(net.caffemodel())
            layers = list(net.deploy.layer)
        else:
            prototxt, caffemodel = net
            from service.convert.caffe.net import parse_prototxt

            layers = list(parse_prototxt(prototxt.read_bytes()).layer)
        cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.enableWinograd(False)
    for name, value in feeds.items():
        cv_net.setInput(value, name)
    known = set(cv_net.getLayerNames())
    names = []
    for blob in blobs:
        # OpenCV names outputs by layer: the last layer writing the blob (in-place layers included); it renames
        # a convolution after its top.
        writer = next(layer for layer in reversed(layers) if blob in layer.top)
        index = list(writer.top).index(blob)
        name = writer.name if writer.name in known else blob
        names.append(name if index == 0 else f"{name}.{index}")
    return [np.asarray(v) for v in cv_net.forward(names)]


def convert_net(net: CaffeNet) -> CaffeModel:
    return convert_caffe(net.prototxt(), net.caffemodel())


def compare_with_opencv(
    net: CaffeNet,
    feeds: Mapping[str, Array],
    *,
    reference: CaffeNet | None = None,
    crop: Mapping[str, tuple[slice, ...]] | None = None,
) -> CaffeModel:
    """Convert ``net``, run it with ONNX Runtime and ``reference`` (default: ``net``) with OpenCV; compare outputs.

    ``reference`` is an equivalent network for layers where OpenCV 4.10 departs from Caffe; ``crop`` takes a
    part of OpenCV's output (round_mode FLOOR is CEIL's output, cut).
    """
    converted = convert_net(net)
    names = [blob for _, blob, _ in converted.outputs]
    onnx_feeds = {onnx_name: feeds[blob] for onnx_name, blob, _ in converted.inputs}
    got = run_onnx(converted.model.SerializeToString(), onnx_feeds, [n for n, _, _ in converted.outputs])
    ref = opencv_forward(reference or net, feeds, names)
    for name, g, r in zip(names, got, ref, strict=True):
        assert_close(g, r[crop[name]] if crop and name in crop else r, name)
    return converted
