"""The zoo's offline preprocessing follows the service's semantics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service import catalog, meanfile
from service import preprocess as service_preprocess
from zoo import preprocess, scenes


def _image() -> npt.NDArray[np.uint8]:
    return scenes.detection_scene(7, size=(150, 90)).image


def test_float_bgr_nchw_with_mean(tmp_path: Path) -> None:
    mean = np.array([[[10.0, 20.0, 30.0]]], dtype=np.float32)
    np.save(tmp_path / "mean.npy", mean)
    spec = {
        "dimension_order": "NCHW",
        "resize_type": "SQUASH",
        "target_size": "64x32",
        "color_channels": "BGR",
        "pixel_scaling": 255.0,
        "mean_file": "mean.npy",
        "data_type": "FLOAT32",
    }
    tensor = preprocess.image_tensor(Image.fromarray(_image()), spec, tmp_path)
    resized = np.asarray(Image.fromarray(_image()).resize((64, 32), Image.Resampling.BILINEAR)).astype(np.float32)
    expected = (resized[..., ::-1] - mean).transpose(2, 0, 1)
    assert tensor.shape == (3, 32, 64)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, expected)


def test_uint8_nhwc() -> None:
    spec = {
        "dimension_order": "NHWC",
        "resize_type": "SQUASH",
        "target_size": "50x40",
        "color_channels": "RGB",
        "pixel_scaling": 255.0,
        "mean_file": "",
        "data_type": "UINT8",
    }
    tensor = preprocess.image_tensor(Image.fromarray(_image()), spec)
    assert tensor.shape == (40, 50, 3)
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(
        tensor, np.asarray(Image.fromarray(_image()).resize((50, 40), Image.Resampling.BILINEAR))
    )


def test_scaling_and_unitary_mean(tmp_path: Path) -> None:
    np.save(tmp_path / "unitary_mean.npy", np.ones((1, 1, 3), dtype=np.float32))
    spec = {
        "dimension_order": "NHWC",
        "target_size": "20x20",
        "color_channels": "RGB",
        "pixel_scaling": 2.0,
        "mean_file": "unitary_mean.npy",
        "data_type": "FLOAT32",
    }
    tensor = preprocess.image_tensor(Image.fromarray(_image()), spec, tmp_path)
    assert tensor.min() >= -1.0
    assert tensor.max() <= 1.0


def test_constant_input_refers_to_image_dimensions() -> None:
    pre = {
        "inputs": [
            {
                "tensor_name": "data",
                "image": {
                    "dimension_order": "NCHW",
                    "target_size": "40x30",
                    "color_channels": "BGR",
                    "pixel_scaling": 255.0,
                    "mean_file": "",
                    "data_type": "FLOAT32",
                },
            },
            {"tensor_name": "im_info", "constant": {"shape": [3], "data": ["data.1", "data.2", 1.0]}},
        ]
    }
    feeds = preprocess.prepare(_image(), pre)
    np.testing.assert_array_equal(feeds["im_info"], [30.0, 40.0, 1.0])


def test_binaryproto_round_trip(tmp_path: Path) -> None:
    mean = np.random.default_rng(0).uniform(0, 255, size=(3, 4, 5)).astype(np.float32)
    (tmp_path / "mean.binaryproto").write_bytes(preprocess.encode_binaryproto(mean))
    np.testing.assert_array_equal(preprocess.load_mean(tmp_path / "mean.binaryproto", 3), mean.transpose(1, 2, 0))


def test_bundled_binaryproto_reads_the_same_in_the_service() -> None:
    path = Path(__file__).resolve().parents[2] / "model_repository" / "shapes-classifier" / "mean.binaryproto"
    np.testing.assert_array_equal(meanfile.load_mean(path, 3), preprocess.load_mean(path, 3))


@pytest.mark.parametrize(
    "model_id", ["shapes-classifier", "shapes-tagger", "shapes-yolo", "shapes-anchored", "shapes-direct"]
)
def test_same_tensors_as_the_service(model_id: str) -> None:
    """The offline evaluation feeds the networks exactly what the service feeds them."""
    repository = Path(__file__).resolve().parents[2] / "model_repository"
    deployment = catalog.Catalog.load(repository).for_version(
        {"shapes-classifier": "shapes-v1.1", "shapes-tagger": "shape-tags-v1.1"}.get(model_id, f"{model_id}-v1.1")
    )
    for seed in range(3):
        png = scenes.detection_scene(seed).png()
        image = service_preprocess.decode_image(png, max_pixels=10**8)
        theirs = service_preprocess.build_inputs(image, deployment.network.preprocessing, deployment.means).tensors
        meta = json.loads((repository / model_id / "sightline.json").read_text())
        ours = preprocess.prepare(png, meta["network"]["preprocessing"], repository / model_id)
        assert set(theirs) == set(ours)
        for name, tensor in ours.items():
            assert tensor.dtype == theirs[name].dtype
            np.testing.assert_array_equal(tensor, theirs[name])
