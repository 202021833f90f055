"""The registry's entry point: frameworks, files, what a converted network's config says, and TensorFlow without
its environment (no TensorFlow needed here)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2

from service.api.errors import STATUS_TABLE, to_status
from service.convert import (
    FRAMEWORKS,
    ConversionError,
    ConverterOptions,
    ConverterUnavailableError,
    canonical_framework,
    convert_to_onnx,
)
from service.convert.onnx_model import rename_tensors
from service.convert.tensorflow import ENABLE_HINT, detect_format
from service.errors import FailedPreconditionError, InvalidArgumentError
from service.settings import BUNDLED_REPOSITORY
from service.triton.repository import config_pbtxt
from tests.service.convert.helpers import FIXTURES, run_onnx, served_signature

CAFFE_COLORS = FIXTURES / "caffe" / "colors"
TF = FIXTURES / "tensorflow"


def caffe_files(name: str = "colors") -> dict[str, Path]:
    folder = FIXTURES / "caffe" / name
    return {p.name: p for p in folder.iterdir() if p.suffix in {".prototxt", ".caffemodel", ".binaryproto"}}


@pytest.mark.parametrize("framework", ["nv-caffe-0.x-mod", "caffe"])
def test_caffe_uploads_convert(framework: str, tmp_path: Path) -> None:
    result = convert_to_onnx(framework, caffe_files(), tmp_path)
    assert result.framework == framework
    assert result.sources == {"data": "data", "share": "share"}
    assert result.served_name("share") == "share"
    signature = served_signature(result.onnx_model)
    assert signature.max_batch_size == 16
    assert [(t.name, t.dtype, t.dims) for t in signature.inputs] == [("data", "FP32", (-1, 3, 64, 64))]
    assert [(t.name, t.dims) for t in signature.outputs] == [("share", (-1, 6))]
    x = np.zeros((1, 3, 64, 64), np.float32)
    assert run_onnx(result.onnx_model, {"data": x}, ["share"])[0].shape == (1, 6)


def test_an_onnx_network_is_not_converted(tmp_path: Path) -> None:
    path = BUNDLED_REPOSITORY / "colors" / "1" / "model.onnx"
    with pytest.raises(ValueError, match="served as uploaded"):
        convert_to_onnx("onnx", {"model.onnx": path}, tmp_path)


def test_frameworks_of_the_contract_and_their_aliases() -> None:
    assert {canonical_framework(f) for f in FRAMEWORKS} == {"caffe", "tensorflow", "onnx"}
    with pytest.raises(InvalidArgumentError, match="'torch' is not one of"):
        canonical_framework("torch")


def test_missing_files_are_named(tmp_path: Path) -> None:
    files = caffe_files()
    del files["snapshot.caffemodel"]
    with pytest.raises(InvalidArgumentError, match=r"needs snapshot\.caffemodel"):
        convert_to_onnx("nv-caffe-0.x-mod", files, tmp_path)
    with pytest.raises(ConversionError, match=r"needs saved_model\.pb"):
        convert_to_onnx("tensorflow-1.x", {}, tmp_path, ConverterOptions(tf_python=Path(sys.executable)))


def test_tensorflow_without_its_environment_is_a_failed_precondition(tmp_path: Path) -> None:
    files = {"saved_model.pb": TF / "colors" / "frozen.pb"}
    with pytest.raises(ConverterUnavailableError, match="make tf-env") as caught:
        convert_to_onnx("tensorflow-1.x", files, tmp_path)
    assert isinstance(caught.value, FailedPreconditionError)
    assert STATUS_TABLE[FailedPreconditionError] is grpc.StatusCode.FAILED_PRECONDITION
    assert to_status(caught.value).code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "SIGHTLINE_TF_PYTHON" in ENABLE_HINT


def test_tensorflow_with_an_interpreter_lacking_tensorflow_says_so(tmp_path: Path) -> None:
    files = {"saved_model.pb": TF / "colors" / "frozen.pb"}
    with pytest.raises(ConverterUnavailableError, match="has no TensorFlow or tf2onnx"):
        convert_to_onnx("tensorflow-1.x", files, tmp_path, ConverterOptions(tf_python=Path(sys.executable)))
    with pytest.raises(ConverterUnavailableError, match="does not exist"):
        convert_to_onnx("tensorflow-2.x", files, tmp_path, ConverterOptions(tf_python=tmp_path / "python"))


def test_saved_models_and_frozen_graphs_are_told_apart() -> None:
    assert detect_format((TF / "detector" / "saved_model" / "saved_model.pb").read_bytes()) == "savedmodel"
    assert detect_format((TF / "detector" / "frozen.pb").read_bytes()) == "graphdef"
    with pytest.raises(ConversionError, match="neither"):
        detect_format(b"\x2a\x00")


def test_tensor_renaming_rewrites_every_use() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x:0"], ["y:0"]), helper.make_node("Neg", ["y:0"], ["z:0"])],
        "g",
        [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor_value_info("y:0", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("z:0", TensorProto.FLOAT, [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    rename_tensors(model, {"x:0": "x", "y:0": "y"})
    onnx.checker.check_model(model)
    assert [n for node in model.graph.node for n in [*node.input, *node.output]] == ["x", "y", "y", "z:0"]
    with pytest.raises(ConversionError, match="taken"):
        rename_tensors(model, {"z:0": "y"})


def test_the_config_of_a_caffe_upload_is_the_one_writers(tmp_path: Path) -> None:
    result = convert_to_onnx("caffe", caffe_files(), tmp_path)
    text = config_pbtxt(served_signature(result.onnx_model, max_batch_size=8))
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("", "onnxruntime", 8)
    tensors = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input]
    assert tensors == [("data", "TYPE_FP32", [3, 64, 64])]
    tensors = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.output]
    assert tensors == [("share", "TYPE_FP32", [6])]


def test_unknown_tensor_names_are_invalid(tmp_path: Path) -> None:
    result = convert_to_onnx("caffe", caffe_files(), tmp_path)
    with pytest.raises(InvalidArgumentError, match="no tensor 'prob'"):
        result.served_name("prob")
