"""Run a converted model and its independent reference, and compare them."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.catalog import Catalog
from service.convert.caffe import CaffeModel, convert_caffe
from service.domain import parse_preprocessing
from service.preprocess import build_inputs, decode_image
from service.settings import BUNDLED_REPOSITORY
from service.triton.repository import inspect_onnx
from service.triton.tensors import Signature
from tests.helpers import ROOT
from tools.fixtures.caffe_nets import CaffeNet

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLES = ROOT / "samples"
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


def served_signature(model: bytes, max_batch_size: int = 16) -> Signature:
    """What Triton is told a converted model takes and gives: its graph read by the repository's one reader, as
    the registry reads it before writing ``config.pbtxt``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model)
        return inspect_onnx(path, max_batch_size=max_batch_size)


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


def real_images() -> list[npt.NDArray[np.uint8]]:
    """Sample photos of the repository and drawn scenes: flat colours, a gradient, a two-colour split."""
    images = [decode_image((SAMPLES / n).read_bytes(), max_pixels=10**8) for n in ("red.png", "blue-sky.jpg")]
    for color in [(250, 250, 40), (20, 200, 30), (10, 10, 10)]:
        images.append(np.full((48, 80, 3), color, np.uint8))
    ramp = np.linspace(0, 255, 90, dtype=np.float32)
    images.append(
        np.stack([np.tile(ramp, (60, 1)), np.tile(ramp[::-1], (60, 1)), np.full((60, 90), 128.0)], -1).astype(np.uint8)
    )
    split = np.zeros((64, 64, 3), np.uint8)
    split[:, :40] = (255, 255, 255)
    split[:, 40:] = (0, 0, 230)
    images.append(split)
    return images


def colors_inputs(
    manifest: str, means: dict[str, npt.NDArray[np.float32]]
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]:
    """The Caffe colors' and the ONNX original's inputs for the real images, preprocessed by the service."""
    mine = parse_preprocessing(
        json.loads((FIXTURES / manifest / "network.json").read_text())["network"]["preprocessing"]
    )
    deployment = Catalog.load(BUNDLED_REPOSITORY).for_version("colors-v1.1")
    ours, theirs = [], []
    for image in real_images():
        ours.append(next(iter(build_inputs(image, mine, means).tensors.values())))
        theirs.append(
            next(iter(build_inputs(image, deployment.network.preprocessing, deployment.means).tensors.values()))
        )
    return np.stack(ours), np.stack(theirs)
