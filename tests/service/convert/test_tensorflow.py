"""TensorFlow uploads converted to ONNX (tf2onnx in .venv-tf), checked against TensorFlow itself.

Marked ``tf``: they need the TensorFlow environment (``make tf-env``; its interpreter from SIGHTLINE_TF_PYTHON or
``.venv-tf/bin/python``) and fail, rather than skip, without it. ``make test-tf`` builds it and runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from service.convert import (
    ConversionError,
    ConversionResult,
    ConverterOptions,
    UnsupportedLayerError,
    convert_to_onnx,
)
from service.convert.tensorflow import default_python
from service.domain import parse_preprocessing
from service.meanfile import load_mean
from service.preprocess import build_inputs
from service.settings import BUNDLED_REPOSITORY
from tests.helpers import ROOT
from tests.service.convert.helpers import FIXTURES, assert_close, colors_inputs, real_images, run_onnx, served_signature

pytestmark = pytest.mark.tf

TF = FIXTURES / "tensorflow"
REFERENCE = ROOT / "tools" / "fixtures" / "tf_reference.py"


def tf_python() -> Path:
    python = Path(os.environ.get("SIGHTLINE_TF_PYTHON") or default_python())
    assert python.exists(), f"{python} is missing: run `make tf-env` (these tests need TensorFlow)"
    return python


def upload(model: Path) -> dict[str, Path]:
    """The files as a v0.7 client uploads them: by file name, flat."""
    if model.is_file():
        return {"saved_model.pb": model}
    return {p.name: p for p in model.rglob("*") if p.is_file()}


Convert = Callable[..., ConversionResult]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Convert:
    """Convert a fixture once per module (each conversion starts TensorFlow: seconds)."""
    done: dict[tuple[str, tuple[str, ...]], ConversionResult] = {}

    def convert(relative: str, outputs: tuple[str, ...] = ()) -> ConversionResult:
        key = (relative, outputs)
        if key not in done:
            workdir = tmp_path_factory.mktemp(relative.replace("/", "-"))
            options = ConverterOptions(tf_python=tf_python())
            done[key] = convert_to_onnx("tensorflow-1.x", upload(TF / relative), workdir, options, output_names=outputs)
        return done[key]

    return convert


def tensorflow_run(
    model: Path, feeds: Mapping[str, npt.NDArray[np.generic]], names: list[str], tmp: Path
) -> list[npt.NDArray[np.generic]]:
    np.savez(tmp / "in.npz", **feeds)
    done = subprocess.run(
        [str(tf_python()), str(REFERENCE), str(model), str(tmp / "in.npz"), str(tmp / "out.npz"), *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp / "out.npz") as data:
        return [data[n] for n in names]


def random_feeds(result: ConversionResult, batch: int, seed: int) -> dict[str, npt.NDArray[np.generic]]:
    rng = np.random.default_rng(seed)
    feeds: dict[str, npt.NDArray[np.generic]] = {}
    signature = served_signature(result.onnx_model)
    for t in signature.inputs:
        dims = tuple(d if d > 0 else 37 + 4 * i for i, d in enumerate(signature.sample_dims(t)))
        if t.dtype == "UINT8":
            feeds[result.sources[t.name]] = rng.integers(0, 256, (batch, *dims)).astype(np.uint8)
        else:
            feeds[result.sources[t.name]] = rng.standard_normal((batch, *dims)).astype(np.float32)
    return feeds


GRAPH_MODELS = [
    "colors/saved_model",
    "colors/frozen.pb",
    "classifier/saved_model",
    "classifier/frozen.pb",
    "detector/saved_model",
    "detector/frozen.pb",
]


@pytest.mark.parametrize("relative", GRAPH_MODELS)
def test_tensorflow_1_graphs_match_tensorflow_on_random_inputs(
    converted: Convert, relative: str, tmp_path: Path
) -> None:
    result = converted(relative)
    signature = served_signature(result.onnx_model)
    assert signature.batched
    feeds = random_feeds(result, 3, seed=len(relative))
    onnx_feeds = {result.served_name(name): value for name, value in feeds.items()}
    names = [result.sources[name] for name in signature.output_names]
    assert all(name.endswith(":0") for name in [*feeds, *names])
    got = run_onnx(result.onnx_model, onnx_feeds, list(signature.output_names))
    ref = tensorflow_run(TF / relative, feeds, names, tmp_path)
    for name, g, r in zip(names, got, ref, strict=True):
        assert_close(g, r, name)


def test_tensorflow_2_saved_model_matches_tensorflow(converted: Convert, tmp_path: Path) -> None:
    result = converted("tf2-tagger/saved_model")
    signature = served_signature(result.onnx_model)
    assert [(t.name, signature.sample_dims(t)) for t in signature.inputs] == [("pixels", (24, 24, 3))]
    assert [(t.name, signature.sample_dims(t)) for t in signature.outputs] == [("scores", (4,))]
    x = np.random.default_rng(2).standard_normal((2, 24, 24, 3)).astype(np.float32)
    got = run_onnx(result.onnx_model, {result.served_name("pixels:0"): x}, [result.served_name("scores")])[0]
    ref = tensorflow_run(TF / "tf2-tagger" / "saved_model", {"pixels": x}, ["scores"], tmp_path)[0]
    assert_close(got, ref, "scores")


def test_v07_names_with_and_without_the_suffix_and_signature_keys_resolve(converted: Convert) -> None:
    result = converted("detector/saved_model")
    for name in ("image_tensor:0", "image_tensor", "inputs"):
        assert result.served_name(name) == "image_tensor"
    for name in ("detection_boxes:0", "detection_boxes"):
        assert result.served_name(name) == "detection_boxes"
    signature = served_signature(result.onnx_model)
    assert [result.sources[t.name] for t in signature.inputs] == ["image_tensor:0"]
    assert signature.inputs[0].dtype == "UINT8"
    assert signature.sample_dims(signature.inputs[0]) == (-1, -1, 3)


def test_tensorflow_colors_answers_like_the_bundled_onnx_original_on_real_images(
    converted: Convert, tmp_path: Path
) -> None:
    manifest = json.loads((TF / "colors" / "network.json").read_text())
    preprocessing = parse_preprocessing(manifest["network"]["preprocessing"])
    means = {"unitary_mean.npy": load_mean(TF / "colors" / "unitary_mean.npy", 3)}
    x_tf = np.stack([next(iter(build_inputs(image, preprocessing, means).tensors.values())) for image in real_images()])
    _, x_onnx = colors_inputs(
        "caffe/colors", {"mean.binaryproto": load_mean(FIXTURES / "caffe/colors/mean.binaryproto", 3)}
    )
    result = converted("colors/saved_model")
    output = result.served_name(manifest["version"]["post_processings"][0]["classification"]["output_tensor"])
    got = run_onnx(result.onnx_model, {result.served_name("input:0"): x_tf}, [output])[0]
    original = (BUNDLED_REPOSITORY / "colors" / "1" / "model.onnx").read_bytes()
    expected = run_onnx(original, {"data": x_onnx}, ["share"])[0]
    assert_close(got, expected, "share")
    assert got.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()
    assert_close(got, tensorflow_run(TF / "colors" / "saved_model", {"input:0": x_tf}, ["share:0"], tmp_path)[0], "TF")


def scenes() -> npt.NDArray[np.uint8]:
    images = np.full((2, 90, 120, 3), 255, np.uint8)
    images[0, 10:30, 5:50] = (230, 20, 10)
    images[0, 50:85, 60:110] = (10, 20, 240)
    images[1, :, :] = (0, 0, 0)
    images[1, 40:60, 20:100] = (20, 230, 30)
    return images


def test_tensorflow_detector_finds_the_boxes_of_its_onnx_original(converted: Convert, tmp_path: Path) -> None:
    manifest = json.loads((TF / "detector" / "network.json").read_text())
    direct = manifest["version"]["post_processings"][0]["detection"]["direct_output"]
    result = converted("detector/saved_model")
    images = scenes()
    names = [result.served_name(direct[k]) for k in ("boxes_tensor", "scores_tensor", "classes_tensor")]
    got = run_onnx(result.onnx_model, {result.served_name("image_tensor:0"): images}, names)
    original = run_onnx((TF / "detector" / "original.onnx").read_bytes(), {"image_tensor": images}, names)
    for name, g, o in zip(names, got, original, strict=True):
        assert_close(g, o, name)
    boxes, scores = got[0], got[1]
    # ymin, xmin, ymax, xmax: the Object Detection API's layout, which the fixture keeps.
    np.testing.assert_allclose(boxes[0, 0], [10 / 90, 5 / 120, 30 / 90, 50 / 120], atol=1e-6)
    np.testing.assert_allclose(boxes[0, 2], [50 / 90, 60 / 120, 85 / 90, 110 / 120], atol=1e-6)
    np.testing.assert_allclose(boxes[1, 1], [40 / 90, 20 / 120, 60 / 90, 100 / 120], atol=1e-6)
    assert scores[1, 1] > 0.1
    assert scores[1, 0] < 1e-3
    ref = tensorflow_run(TF / "detector" / "frozen.pb", {"image_tensor:0": images}, [f"{n}:0" for n in names], tmp_path)
    for name, g, r in zip(names, got, ref, strict=True):
        assert_close(g, r, name)


def test_chosen_outputs_of_a_frozen_graph(converted: Convert) -> None:
    result = converted("detector/frozen.pb", ("detection_boxes:0",))
    assert served_signature(result.onnx_model).output_names == ("detection_boxes",)


def test_a_missing_tensor_is_the_uploaders_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no such tensor"):
        convert_to_onnx(
            "tensorflow-1.x",
            upload(TF / "colors" / "frozen.pb"),
            tmp_path,
            ConverterOptions(tf_python=tf_python()),
            output_names=["nothing:0"],
        )


def test_a_corrupt_saved_model_is_reported(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01\x12\x05broken")
    with pytest.raises(ConversionError, match="TensorFlow could not convert the network"):
        convert_to_onnx(
            "tensorflow-1.x",
            {"saved_model.pb": tmp_path / "saved_model.pb", "variables.index": tmp_path / "saved_model.pb"},
            tmp_path / "work",
            ConverterOptions(tf_python=tf_python()),
        )


def test_ops_without_an_onnx_translation_are_refused_by_name(tmp_path: Path) -> None:
    script = (
        "import tensorflow as tf, sys\n"
        "g = tf.Graph()\n"
        "with g.as_default():\n"
        "    x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4], name='x')\n"
        "    q, _ = tf.linalg.qr(x, name='decompose')\n"
        "    tf.identity(q + 1.0, name='y')\n"
        "open(sys.argv[1], 'wb').write(g.as_graph_def().SerializeToString())\n"
    )
    subprocess.run([str(tf_python()), "-c", script, str(tmp_path / "qr.pb")], check=True, capture_output=True)
    files, options = {"saved_model.pb": tmp_path / "qr.pb"}, ConverterOptions(tf_python=tf_python())
    message = r"of type 'Qr' is not supported: tf2onnx has no ONNX translation"
    with pytest.raises(UnsupportedLayerError, match=message) as caught:
        convert_to_onnx("tensorflow-1.x", files, tmp_path / "work", options)
    assert caught.value.layer_type == "Qr"
