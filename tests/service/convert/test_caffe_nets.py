"""Whole Caffe networks: the committed fixtures against OpenCV, the Caffe colors against the bundled ONNX original
on real images, the legacy V1 format, TEST-phase filtering, batching, and the errors an uploader sees."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.catalog import Catalog
from service.convert.caffe import caffe_pb2, convert_caffe
from service.convert.errors import ConversionError
from service.meanfile import load_mean
from service.preprocess import build_inputs, decode_image
from service.settings import BUNDLED_REPOSITORY
from tests.service.convert.helpers import (
    FIXTURES,
    assert_close,
    colors_inputs,
    convert_net,
    opencv_forward,
    real_images,
    run_onnx,
)
from tools.fixtures import caffe_fixtures
from tools.fixtures.caffe_nets import CaffeNet, blob_proto
from tools.fixtures.shapes_caffe import shapes_classifier
from zoo.scenes import classification_scene

CAFFE = FIXTURES / "caffe"


def load(name: str) -> tuple[bytes, bytes]:
    return (CAFFE / name / "deploy.prototxt").read_bytes(), (CAFFE / name / "snapshot.caffemodel").read_bytes()


@pytest.mark.parametrize("name", ["colors", "classifier", "detector"])
def test_fixture_nets_match_opencv_on_random_inputs(name: str) -> None:
    prototxt, caffemodel = load(name)
    converted = convert_caffe(prototxt, caffemodel)
    assert converted.batched
    _, blob, dims = converted.inputs[0]
    x = np.random.default_rng(4).standard_normal((3, *dims)).astype(np.float32)
    names = [b for _, b, _ in converted.outputs]
    got = run_onnx(
        converted.model.SerializeToString(), {converted.inputs[0][0]: x}, [n for n, _, _ in converted.outputs]
    )
    ref = opencv_forward((CAFFE / name / "deploy.prototxt", CAFFE / name / "snapshot.caffemodel"), {blob: x}, names)
    for n, g, r in zip(names, got, ref, strict=True):
        assert_close(g, r, n)


def test_classifier_fixture_exercises_many_layers() -> None:
    types = {layer.type for layer in caffe_pb2.NetParameter.FromString(load("classifier")[1]).layer}
    assert {"Convolution", "Deconvolution", "BatchNorm", "Scale", "LRN", "PReLU", "Eltwise", "Concat"} <= types


def test_caffe_colors_answers_like_the_bundled_onnx_original_on_real_images() -> None:
    folder = CAFFE / "colors"
    means = {"mean.binaryproto": load_mean(folder / "mean.binaryproto", 3)}
    x_caffe, x_onnx = colors_inputs("caffe/colors", means)
    converted = convert_caffe(*load("colors"))
    got = run_onnx(converted.model.SerializeToString(), {"data": x_caffe}, ["share"])[0]
    original = (BUNDLED_REPOSITORY / "colors" / "1" / "model.onnx").read_bytes()
    expected = run_onnx(original, {"data": x_onnx}, ["share"])[0]
    assert_close(got, expected, "share")
    assert got.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()
    ref = opencv_forward(
        (folder / "deploy.prototxt", folder / "snapshot.caffemodel"), {"data": x_caffe.astype(np.float32)}, ["share"]
    )[0]
    assert_close(got, ref, "share vs OpenCV")


def test_colors_mean_is_a_blobproto_the_service_reads() -> None:
    mean = load_mean(CAFFE / "colors" / "mean.binaryproto", 3)
    assert mean.shape == (64, 64, 3)
    assert float(mean.min()) == float(mean.max()) == 127.5


def test_fixtures_regenerate_byte_for_byte(tmp_path: Path) -> None:
    caffe_fixtures.main(tmp_path)
    for path in sorted((tmp_path / "caffe").rglob("*")):
        if path.is_file():
            committed = CAFFE / path.relative_to(tmp_path / "caffe")
            assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run make fixtures"
    for name in ("tensorflow/colors", "tensorflow/detector"):
        assert (FIXTURES / name / "network.json").read_text() == (tmp_path / name / "network.json").read_text()


def test_a_batched_model_runs_any_batch_size() -> None:
    converted = convert_caffe(*load("classifier"))
    model = converted.model.SerializeToString()
    x = np.random.default_rng(9).standard_normal((5, 3, 32, 32)).astype(np.float32)
    together = run_onnx(model, {"data": x}, ["prob"])[0]
    alone = np.concatenate([run_onnx(model, {"data": x[i : i + 1]}, ["prob"])[0] for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-7)
    assert converted.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_legacy_v1_layers_are_upgraded() -> None:
    """A V1 net (``layers`` with enum types, Caffe before 2015), as both the prototxt and the snapshot."""
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    fc = rng.standard_normal((5, 4 * 3 * 3)).astype(np.float32)
    deploy = caffe_pb2.NetParameter(name="v1", input=["data"], input_dim=[1, 3, 8, 8])
    V1 = caffe_pb2.V1LayerParameter
    conv = deploy.layers.add(name="conv", type=V1.CONVOLUTION, bottom=["data"], top=["conv"])
    conv.convolution_param.num_output, conv.convolution_param.kernel_size[:] = 4, [3]
    deploy.layers.add(name="relu", type=V1.RELU, bottom=["conv"], top=["conv"])
    pool = deploy.layers.add(name="pool", type=V1.POOLING, bottom=["conv"], top=["pool"])
    pool.pooling_param.pool, pool.pooling_param.kernel_size, pool.pooling_param.stride = (
        caffe_pb2.PoolingParameter.AVE,
        2,
        2,
    )
    ip = deploy.layers.add(name="fc", type=V1.INNER_PRODUCT, bottom=["pool"], top=["fc"])
    ip.inner_product_param.num_output = 5
    deploy.layers.add(name="prob", type=V1.SOFTMAX, bottom=["fc"], top=["prob"])
    snapshot = caffe_pb2.NetParameter()
    snapshot.CopyFrom(deploy)
    snapshot.layers[0].blobs.extend([blob_proto(weight, legacy=True), blob_proto(bias, legacy=True)])
    snapshot.layers[3].blobs.extend([blob_proto(fc, legacy=True), blob_proto(rng.standard_normal(5), legacy=True)])
    from google.protobuf import text_format

    converted = convert_caffe(text_format.MessageToString(deploy), snapshot.SerializeToString())
    assert [(b, d) for _, b, d in converted.outputs] == [("prob", (5,))]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "d.prototxt").write_text(text_format.MessageToString(deploy))
        (Path(tmp) / "s.caffemodel").write_bytes(snapshot.SerializeToString())
        ref = opencv_forward((Path(tmp) / "d.prototxt", Path(tmp) / "s.caffemodel"), {"data": x}, ["prob"])[0]
    assert_close(run_onnx(converted.model.SerializeToString(), {"data": x}, ["prob"])[0], ref, "prob")


def test_training_layers_are_filtered_out_by_phase() -> None:
    text = """
    name: "train_val"
    layer { name: "train" type: "Data" top: "data" include { phase: TRAIN } }
    layer { name: "test" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } include { phase: TEST } }
    layer { name: "act" type: "Sigmoid" bottom: "data" top: "act" }
    layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "act" top: "loss" exclude { phase: TEST } }
    """
    converted = convert_caffe(text, None)
    assert [(b, d) for _, b, d in converted.outputs] == [("act", (2,))]


def test_unknown_fields_are_skipped_and_legacy_inputs_read() -> None:
    text = """
    name: "legacy"
    input: "data"
    input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
    layer { name: "act" type: "TanH" bottom: "data" top: "act"
            param { lr_mult: 1 } some_fork_param { value: 3 } }
    """
    converted = convert_caffe(text, None)
    x = np.linspace(-2, 2, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    np.testing.assert_allclose(
        run_onnx(converted.model.SerializeToString(), {"data": x}, ["act"])[0], np.tanh(x), rtol=1e-6
    )


def test_chosen_outputs_expose_inner_blobs() -> None:
    prototxt, caffemodel = load("classifier")
    converted = convert_caffe(prototxt, caffemodel, outputs=["pool1", "prob"])
    assert [(b, d) for _, b, d in converted.outputs] == [("pool1", (8, 16, 16)), ("prob", (10,))]


def test_reshape_to_explicit_dims_fixes_the_batch() -> None:
    net = CaffeNet("fixed").input("data", [2, 3, 4])
    net.layer("reshape", "Reshape", "data", "out", reshape_param={"shape": {"dim": [6, 4]}})
    converted = convert_net(net)
    assert not converted.batched
    assert converted.notes
    assert "batch size fixed" in converted.notes[0]
    assert [(b, d) for _, b, d in converted.outputs] == [("out", (6, 4))]
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(
        run_onnx(converted.model.SerializeToString(), {"data": x}, ["out"])[0], x.reshape(6, 4)
    )


@pytest.mark.parametrize(
    ("prototxt", "weights", "message"),
    [
        ("layer { name: 'x' type: ", None, "deploy.prototxt: not a Caffe text NetParameter"),
        ("layer { name: 'a' type: 'ReLU' bottom: 'data' top: 'a' }", None, "bottom blob 'data' is not produced"),
        ("name: 'empty'", None, "declares no input"),
        (
            "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 3 } } }"
            "layer { name: 'fc' type: 'InnerProduct' bottom: 'data' top: 'fc' inner_product_param { num_output: 2 } }",
            None,
            "the snapshot has no weights for this layer",
        ),
    ],
)
def test_broken_networks_are_reported(prototxt: str, weights: bytes | None, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert_caffe(prototxt, weights)


def test_weights_of_the_wrong_size_are_reported() -> None:
    net = CaffeNet("t").input("data", [1, 3])
    net.layer("fc", "InnerProduct", "data", "fc", [np.ones((2, 4)), np.ones(2)], inner_product_param={"num_output": 2})
    with pytest.raises(
        ConversionError, match=r"layer 'fc' \(InnerProduct\): weights holds 8 values where \[2, 3\] needs 6"
    ):
        convert_net(net)


def test_a_snapshot_that_is_not_protobuf_is_reported() -> None:
    with pytest.raises(ConversionError, match=r"snapshot\.caffemodel"):
        convert_caffe(load("colors")[0], b"\xff\xff\xff not protobuf")


def test_an_image_decodes_for_the_real_inputs() -> None:
    buffer = io.BytesIO()
    Image.fromarray(real_images()[-1]).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), max_pixels=10**6).shape == (64, 64, 3)


def test_caffe_shapes_classifier_answers_like_the_trained_onnx_original() -> None:
    """The bundled trained network, rewritten in Caffe by tools/fixtures/shapes_caffe.py, on generated scenes."""
    net = shapes_classifier()
    converted = convert_net(net)
    deployment = Catalog.load(BUNDLED_REPOSITORY).for_version("shapes-v1.1")
    scenes = [classification_scene(seed) for seed in range(8)]
    x = np.stack(
        [build_inputs(s.image, deployment.network.preprocessing, deployment.means).tensors["data"] for s in scenes]
    )
    got = run_onnx(converted.model.SerializeToString(), {"data": x.astype(np.float32)}, ["prob"])[0]
    original = (BUNDLED_REPOSITORY / "shapes-classifier" / "1" / "model.onnx").read_bytes()
    expected = run_onnx(original, {"data": x}, ["prob"])[0]
    assert_close(got, expected, "prob")
    assert_close(got, opencv_forward(net, {"data": x.astype(np.float32)}, ["prob"])[0], "prob vs OpenCV")
    labels = [label.name for label in deployment.spec.outputs[0].labels]
    predicted = [labels[i] for i in got.argmax(axis=1)]
    assert predicted == [labels[i] for i in expected.argmax(axis=1)]
    assert sum(p == s.objects[0].shape for p, s in zip(predicted, scenes, strict=True)) >= 6
