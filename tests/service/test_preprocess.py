"""Preprocessing against hand-computed tensors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from service.domain import (
    ColorChannels,
    ConstantInput,
    DataType,
    DimensionOrder,
    ImagePreprocessing,
    InputPreprocessing,
    Preprocessing,
    ResizeType,
)
from service.errors import InvalidArgumentError, ResourceExhaustedError
from service.preprocess import Region, build_inputs, crop, decode_image, image_tensor, resize, resolve_source
from tests.helpers import encode

# A 2 x 3 image (H = 2, W = 3) whose every value is distinct: pixel (y, x) channel c = 100 y + 10 x + c.
IMAGE = np.array([[[100 * y + 10 * x + c for c in range(3)] for x in range(3)] for y in range(2)], dtype=np.uint8)


def spec(**kwargs: object) -> ImagePreprocessing:
    base: dict[str, object] = {
        "dimension_order": DimensionOrder.NCHW,
        "resize_type": ResizeType.SQUASH,
        "target": (3, 2),
        "color_channels": ColorChannels.RGB,
        "pixel_scaling": 255.0,
        "data_type": DataType.FLOAT32,
    }
    base.update(kwargs)
    return ImagePreprocessing(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "index"),
    [
        (DimensionOrder.NCHW, lambda c, y, x: (c, y, x)),
        (DimensionOrder.NCWH, lambda c, y, x: (c, x, y)),
        (DimensionOrder.NHWC, lambda c, y, x: (y, x, c)),
        (DimensionOrder.NWHC, lambda c, y, x: (x, y, c)),
    ],
)
def test_layouts_place_each_value_by_hand(order: DimensionOrder, index: object) -> None:
    tensor = image_tensor(IMAGE, spec(dimension_order=order))
    for y in range(2):
        for x in range(3):
            for c in range(3):
                assert tensor[index(c, y, x)] == 100 * y + 10 * x + c  # type: ignore[operator]


def test_bgr_reverses_channels() -> None:
    tensor = image_tensor(IMAGE, spec(color_channels=ColorChannels.BGR))
    assert tensor[0, 1, 2] == 100 + 20 + 2  # B of pixel (1, 2)
    assert tensor[2, 1, 2] == 100 + 20 + 0  # R


def test_gray_uses_itu_601_luma() -> None:
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    tensor = image_tensor(image, spec(color_channels=ColorChannels.L, target=(3, 1)))
    # (R * 19595 + G * 38470 + B * 7471 + 32768) >> 16, Pillow's fixed-point 0.299 / 0.587 / 0.114.
    assert tensor.shape == (1, 1, 3)
    assert tensor[0, 0].tolist() == [76, 150, 29]


def test_scaling_and_unitary_mean_give_minus_one_to_one() -> None:
    image = np.array([[[0, 255, 51]]], dtype=np.uint8)
    mean = np.ones((1, 1, 3), dtype=np.float32)
    tensor = image_tensor(image, spec(pixel_scaling=2.0, target=(1, 1), dimension_order=DimensionOrder.NHWC), mean)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, 0], [-1.0, 1.0, 51 * 2 / 255 - 1], rtol=1e-6)


def test_full_size_mean_is_subtracted_per_pixel_and_other_sizes_per_channel() -> None:
    mean = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    tensor = image_tensor(IMAGE, spec(dimension_order=DimensionOrder.NHWC), mean)
    np.testing.assert_allclose(np.asarray(tensor, dtype=np.float32), IMAGE.astype(np.float32) - mean)
    odd = np.arange(48, dtype=np.float32).reshape(4, 4, 3)
    tensor = image_tensor(IMAGE, spec(dimension_order=DimensionOrder.NHWC), odd)
    np.testing.assert_allclose(
        np.asarray(tensor, dtype=np.float32), IMAGE.astype(np.float32) - odd.mean(axis=(0, 1)), rtol=1e-6
    )


def test_uint8_is_raw_pixels() -> None:
    tensor = image_tensor(IMAGE, spec(data_type=DataType.UINT8, dimension_order=DimensionOrder.NHWC, pixel_scaling=2.0))
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor, IMAGE)


def stripes(width: int, height: int) -> npt.NDArray[np.uint8]:
    """Each column its own red value (10 x), constant down the column."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = (np.arange(width) * 10)[None, :]
    return image


def test_crop_resize_keeps_the_centre_and_maps_back() -> None:
    out, region = resize(stripes(4, 2), ResizeType.CROP, (2, 2))
    assert out[0, :, 0].tolist() == [10, 20]
    assert region == Region(0.25, 0.0, 0.5, 1.0)


def test_fill_resize_pads_with_white_and_maps_back() -> None:
    image = np.full((2, 4, 3), 40, dtype=np.uint8)
    out, region = resize(image, ResizeType.FILL, (2, 2))
    # 4 x 2 shrinks to 2 x 1, pasted on the lower row of a white 2 x 2 (centring rounds down).
    assert out[0].tolist() == [[255, 255, 255]] * 2
    assert out[1].tolist() == [[40, 40, 40]] * 2
    assert region == Region(0.0, -1.0, 1.0, 2.0)
    # The lower half of the network input is the whole image.
    np.testing.assert_allclose(region.apply(np.array([[0.0, 0.5, 1.0, 1.0]], dtype=np.float32)), [[0, 0, 1, 1]])


def test_network_resize_keeps_the_aspect_ratio() -> None:
    out, region = resize(np.zeros((50, 100, 3), dtype=np.uint8), ResizeType.NETWORK, (40, 40))
    assert out.shape == (20, 40, 3)
    assert region == Region()


def test_squash_stretches() -> None:
    out, _ = resize(np.zeros((50, 100, 3), dtype=np.uint8), ResizeType.SQUASH, (30, 10))
    assert out.shape == (10, 30, 3)


def test_constant_inputs_resolve_dimension_references() -> None:
    prep = Preprocessing(
        (
            InputPreprocessing("data", image=spec(resize_type=ResizeType.NETWORK, target=(40, 40))),
            InputPreprocessing("im_info", constant=ConstantInput((3,), ("data.1", "data.2", 1.0))),
        )
    )
    prepared = build_inputs(np.zeros((50, 100, 3), dtype=np.uint8), prep, {})
    assert prepared.tensors["data"].shape == (3, 20, 40)
    assert prepared.tensors["im_info"].tolist() == [20.0, 40.0, 1.0]
    assert prepared.input_size == (20, 40)


def test_bbox_crop_and_its_region() -> None:
    out, region = crop(stripes(10, 4), bbox=(0.2, 0.25, 0.5, 1.0))
    assert out.shape == (3, 3, 3)
    assert out[0, :, 0].tolist() == [20, 30, 40]
    assert region == Region(0.2, 0.25, pytest.approx(0.3), 0.75)  # type: ignore[arg-type]


def test_bbox_edges_given_as_float32_take_the_pixels_asked_for() -> None:
    """The protos carry float32: 0.85 of 320 pixels is 272.0000076, which is column 272's edge (#17 point 8a)."""
    image = stripes(320, 10)
    edges = [float(np.float32(v)) for v in (0.15, 0.1, 0.85, 0.7)]
    out, region = crop(image, bbox=(edges[0], edges[1], edges[2], edges[3]))
    assert out.shape == (6, 224, 3), "columns 48 to 271, rows 1 to 6"
    assert out[0, [0, -1], 0].tolist() == [image[0, 48, 0], image[0, 271, 0]]
    assert region.x0 == 48 / 320
    # A coordinate between two edges still takes the pixel it touches.
    out, _ = crop(image, bbox=(0.1501, 0.0, 0.8501, 1.0))
    assert out.shape[1] == 273 - 48


def test_polygon_crop_paints_the_outside() -> None:
    image = np.full((10, 10, 3), 200, dtype=np.uint8)
    image[:, 5:] = 100
    triangle = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    out, region = crop(image, polygon=triangle)
    assert region == Region()
    assert out[9, 9].tolist() == [0, 0, 0]
    assert out[0, 0].tolist() == [200, 200, 200]
    uniform, _ = crop(image, polygon=triangle, uniform_background=True)
    inside = np.asarray(out[out.sum(axis=2) > 0], dtype=np.float64).mean(axis=0).round()
    assert uniform[9, 9].tolist() == inside.tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bbox": (0.5, 0.0, 0.5, 1.0)},
        {"bbox": (0.0, 0.0, 1.1, 1.0)},
        {"polygon": ((0.0, 0.0), (1.0, 1.0))},
        {"polygon": ((0.0, 0.0), (1.0, 1.0), (2.0, 0.0))},
    ],
)
def test_bad_crops_are_invalid(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        crop(IMAGE, **kwargs)  # type: ignore[arg-type]


def test_region_composition() -> None:
    outer = Region(0.5, 0.5, 0.5, 0.5)
    inner = Region(0.25, 0.0, 0.5, 1.0)
    composed = outer.then(inner)
    point = np.array([[0.5, 0.5, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(composed.apply(point), outer.apply(inner.apply(point)))


def test_decode_rejects_junk_truncation_and_huge_images() -> None:
    with pytest.raises(InvalidArgumentError, match="could not be decoded"):
        decode_image(b"hello", max_pixels=10**6)
    png = encode(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    with pytest.raises(InvalidArgumentError, match="truncated"):
        decode_image(png[:-200], max_pixels=10**6)
    with pytest.raises(ResourceExhaustedError, match="32x32"):
        decode_image(png, max_pixels=1000)
    gray = encode(np.full((4, 5), 7, dtype=np.uint8))
    assert decode_image(gray, max_pixels=10**6).shape == (4, 5, 3)


def test_data_uris() -> None:
    assert resolve_source("data:image/png;base64,aGVsbG8=") == b"hello"
    assert resolve_source("data:image/png;binary,\x89PNG") == b"\x89PNG"
    with pytest.raises(InvalidArgumentError, match="base64"):
        resolve_source("data:image/png;base64,***")
    with pytest.raises(InvalidArgumentError, match="URL"):
        resolve_source("https://example.com/cat.jpg")
