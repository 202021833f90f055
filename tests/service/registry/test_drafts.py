"""The registry's upload checks, before any byte arrives (``check_files``) and once the graph is read
(``check_preprocessing``): #17 points 2, 3, 4 and 7."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from service.domain import parse_preprocessing
from service.errors import InvalidArgumentError
from service.registry.drafts import UploadFile, UploadLimits, check_files, check_preprocessing
from service.triton.tensors import Signature, TensorSignature


def image(**overrides: Any) -> dict[str, Any]:
    return {
        "dimension_order": "NCHW",
        "resize_type": "SQUASH",
        "target_size": "32x32",
        "color_channels": "BGR",
        "pixel_scaling": 255.0,
        "mean_file": "",
        "data_type": "FLOAT32",
        **overrides,
    }


def prep(*inputs: dict[str, Any], batched_output: bool = True) -> Any:
    return parse_preprocessing({"inputs": list(inputs), "batched_output": batched_output})


def announced(*names: str) -> list[UploadFile]:
    return [UploadFile(n, 10, hashlib.sha256(n.encode()).hexdigest()) for n in names]


def tf_files(*names: str) -> list[UploadFile]:
    return announced("saved_model.pb", "variables.index", "variables.data-00000-of-00001", *names)


PIXELS = prep({"tensor_name": "pixels", "image": image(dimension_order="NHWC", target_size="24x24")})


def test_a_tensorflow_2_savedmodel_with_its_fingerprint_and_assets_is_accepted() -> None:
    """tf.saved_model.save and Keras' export() write fingerprint.pb; assets/ holds the files a graph reads."""
    plan = check_files(
        tf_files("fingerprint.pb", "assets/vocab.txt", "assets.extra/notes.txt"),
        PIXELS,
        "tensorflow-2.x",
        "tensorflow",
        UploadLimits(),
    )
    assert {"fingerprint.pb", "assets/vocab.txt", "assets.extra/notes.txt"} <= set(plan.files)


@pytest.mark.parametrize(
    ("names", "kind", "words"),
    [
        (("assets/../x",), "tensorflow", "is not a plain file name"),
        (("assets/a/b",), "tensorflow", "is not a plain file name"),
        (("other/vocab.txt",), "tensorflow", "is not a plain file name"),
        (("model.onnx", "assets/vocab.txt"), "onnx", "is not a plain file name"),  # folders are TensorFlow's only
        (("extra.pb",), "tensorflow", "is not a file of a tensorflow-2.x network"),
    ],
)
def test_other_folders_and_files_are_still_refused(names: tuple[str, ...], kind: str, words: str) -> None:
    files = announced(*names) if kind == "onnx" else tf_files(*names)
    with pytest.raises(InvalidArgumentError, match=words):
        check_files(files, PIXELS, "tensorflow-2.x" if kind == "tensorflow" else "onnx", kind, UploadLimits())


@pytest.mark.parametrize("name", ["mean.proto.bin", "imagenet_mean", "mean.npy", "mean.binaryproto"])
def test_a_mean_file_may_have_any_name(name: str) -> None:
    """v0.7's demo named its mean mean.proto.bin; the content tells the format (service.meanfile)."""
    body = prep({"tensor_name": "data", "image": image(mean_file=name)})
    plan = check_files(
        announced("deploy.prototxt", "snapshot.caffemodel", name), body, "nv-caffe-0.x-mod", "caffe", UploadLimits()
    )
    assert plan.means == frozenset({name})


def test_a_mean_file_cannot_take_a_model_folders_name() -> None:
    body = prep({"tensor_name": "data", "image": image(mean_file="config.pbtxt")})
    with pytest.raises(InvalidArgumentError, match="name of a file of the model folder"):
        check_files(announced("m.onnx", "config.pbtxt"), body, "onnx", "onnx", UploadLimits())


def signature(batch: int, *inputs: tuple[str, tuple[int, ...]]) -> Signature:
    return Signature(tuple(TensorSignature(n, "FP32", d) for n, d in inputs), (), batch)


FASTER_RCNN = prep(
    {"tensor_name": "data", "image": image()},
    {"tensor_name": "im_info", "constant": {"shape": [3], "data": ["data.1", "data.2", 1.0]}},
    batched_output=False,
)


def test_an_unbatched_network_with_a_batch_axis_of_its_own_is_fed() -> None:
    """max_batch_size 0 with inputs [1, 3, 32, 32] and [1, 3] (v0.7's batched_output false, #17 point 2)."""
    check_preprocessing(FASTER_RCNN, signature(0, ("data", (1, 3, 32, 32)), ("im_info", (1, 3))), {})
    check_preprocessing(FASTER_RCNN, signature(0, ("data", (3, 32, 32)), ("im_info", (3,))), {})  # or without it
    with pytest.raises(InvalidArgumentError, match=r"the shape \[3, 32, 32\] but the network takes \[2, 3, 32, 32\]"):
        check_preprocessing(FASTER_RCNN, signature(0, ("data", (2, 3, 32, 32)), ("im_info", (1, 3))), {})


@pytest.mark.parametrize(
    ("order", "dims", "fixed"),
    [
        ("NCHW", (3, 16, 16), "16 x 16"),
        ("NCHW", (3, 16, -1), "16 x any"),
        ("NHWC", (-1, 16, 3), "any x 16"),
        ("NWHC", (16, -1, 3), "any x 16"),
    ],
)
def test_network_resize_is_refused_for_a_fixed_input_size(order: str, dims: tuple[int, ...], fixed: str) -> None:
    """NETWORK gives each image its own aspect ratio; a fixed-size graph would fail on every non-square image with
    Triton's raw text (#17 point 3)."""
    body = prep({"tensor_name": "data", "image": image(resize_type="NETWORK", target_size="16", dimension_order=order)})
    with pytest.raises(InvalidArgumentError, match=f"{fixed} .* is fixed; use SQUASH, CROP or FILL") as error:
        check_preprocessing(body, signature(8, ("data", (-1, *dims))), {})
    assert [v.field for v in error.value.violations] == ["preprocessing.inputs[0].image.resize_type"]


def test_network_resize_is_accepted_for_any_input_size() -> None:
    body = prep({"tensor_name": "data", "image": image(resize_type="NETWORK", target_size="16")})
    check_preprocessing(body, signature(8, ("data", (-1, 3, -1, -1))), {})
    check_preprocessing(body, signature(0, ("data", (1, 3, -1, -1))), {})
