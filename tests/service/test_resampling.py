"""service.resampling against Pillow and against a reference written from the filter's definition.

The reference (``triangle_resize``) is the antialiased bilinear resampling as a formula: output pixel j of an axis
of n source pixels resized to m covers the source around ``c = (j + 0.5) * n / m``; its value is the mean of the
source pixels i weighted by a triangle of half-width ``max(n / m, 1)`` at their centres ``i + 0.5``, over the
pixels inside the image. It is independent of both Pillow's fixed-point code and OpenCV.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service import recognition
from service.catalog import Catalog
from service.domain import ResizeType
from service.preprocess import RawFrame, from_raw_pixels, resize
from service.recognition import Recognizer
from service.resampling import MAX_TOLERANCE, MEAN_TOLERANCE, P99_TOLERANCE, resample, uses_opencv
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeTritonGateway
from zoo import scenes

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def triangle_weights(n: int, m: int) -> npt.NDArray[np.float64]:
    """The (m, n) matrix of one axis: row j holds the normalised triangle weights of the source pixels."""
    scale = n / m
    support = max(scale, 1.0)
    centres = (np.arange(m) + 0.5) * scale
    distance = (np.arange(n)[None, :] + 0.5 - centres[:, None]) / support
    weights = np.maximum(0.0, 1.0 - np.abs(distance))
    # A row with no weight (cannot happen for these sizes) would divide by zero: the test would fail loudly.
    normalised: npt.NDArray[np.float64] = weights / weights.sum(axis=1, keepdims=True)
    return normalised


def triangle_resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.float64]:
    h, w = image.shape[:2]
    rows, cols = triangle_weights(h, height), triangle_weights(w, width)
    columns = np.einsum("xj,ijc->ixc", cols, image.astype(np.float64))  # (h, width, 3)
    out: npt.NDArray[np.float64] = np.einsum("yi,ixc->yxc", rows, columns)  # (height, width, 3)
    return out


def pillow(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def bench_frame() -> npt.NDArray[np.uint8]:
    """A frame of bench/stream_bench.py: dark noise and a flat rectangle."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (240, 320, 3), dtype=np.uint8)
    image[60:140, 80:186] = (200, 30, 90)
    return image


def images() -> dict[str, npt.NDArray[np.uint8]]:
    return {
        "astronaut": np.asarray(Image.open(SAMPLES / "astronaut.jpg").convert("RGB")),
        "chelsea": np.asarray(Image.open(SAMPLES / "chelsea.jpg").convert("RGB")),
        "shapes scene": np.asarray(Image.open(SAMPLES / "shapes-scene.png").convert("RGB")),
        "detection scene": scenes.detection_scene(3, size=(320, 240)).image,
        "bench frame": bench_frame(),
    }


IMAGES = images()
SHRINK = (1.8, 2.0, 2.5, 3.0, 4.0, 4.9)


def differences(ours: npt.NDArray[np.uint8], theirs: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    diff: npt.NDArray[np.float64] = np.abs(ours.astype(np.float64) - np.asarray(theirs, dtype=np.float64))
    return diff


def assert_within_tolerance(diff: npt.NDArray[np.float64]) -> None:
    assert diff.mean() <= MEAN_TOLERANCE, diff.mean()
    assert np.percentile(diff, 99) <= P99_TOLERANCE, np.percentile(diff, 99)
    assert diff.max() <= MAX_TOLERANCE, diff.max()


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("factor", SHRINK)
def test_shrinking_on_opencv_is_within_the_tolerance_of_pillow_and_of_the_definition(name: str, factor: float) -> None:
    image = IMAGES[name]
    h, w = image.shape[:2]
    size = (round(w / factor), round(h / factor))
    assert uses_opencv((w, h), size)
    ours = resample(image, *size)
    assert ours.shape == (size[1], size[0], 3)
    assert ours.dtype == np.uint8
    assert_within_tolerance(differences(ours, pillow(image, *size)))
    assert_within_tolerance(differences(ours, triangle_resize(image, *size)))


@pytest.mark.parametrize("name", list(IMAGES))
def test_a_stream_frame_to_the_detectors_input_takes_opencv(name: str) -> None:
    # 320x240 (or any 4:3 frame) to 128x128: shrink factors 2.5 and 1.875, both in the OpenCV range.
    image = IMAGES[name]
    assert uses_opencv((image.shape[1], image.shape[0]), (128, 128)) == (image.shape[0] / 128 >= 1.75)
    assert_within_tolerance(differences(resample(image, 128, 128), pillow(image, 128, 128)))


@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("factor", [1.0 / 3, 0.5, 0.8])
def test_enlarging_is_pillows_bilinear_within_one(name: str, factor: float) -> None:
    image = IMAGES[name][:120, :160]
    size = (round(160 / factor), round(120 / factor))
    assert uses_opencv((160, 120), size)
    ours = resample(image, *size)
    assert differences(ours, pillow(image, *size)).max() <= 1
    assert differences(ours, triangle_resize(image, *size)).max() <= 1


@pytest.mark.parametrize("factor", [1.2, 1.5, 6.0, 9.0])
def test_other_factors_are_pillows_pixels_exactly(factor: float) -> None:
    image = IMAGES["astronaut"]
    size = (round(512 / factor), round(512 / factor))
    assert not uses_opencv((512, 512), size)
    np.testing.assert_array_equal(resample(image, *size), pillow(image, *size))
    # Pillow itself is what the definition says, within its fixed-point rounding.
    assert differences(resample(image, *size), triangle_resize(image, *size)).max() <= 1


def test_the_same_size_is_the_image_itself_and_the_input_is_never_written() -> None:
    image = IMAGES["bench frame"].copy()
    image.flags.writeable = False
    assert resample(image, 320, 240) is image
    out = resample(image, 128, 128)
    np.testing.assert_array_equal(image, IMAGES["bench frame"])
    assert out.flags.writeable


def test_the_field_of_view_is_kept() -> None:
    # A bright 8x8 block at a known place lands where the normalised coordinates say, on both paths.
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    image[96:104, 200:208] = 255
    for size in ((128, 128), (640, 480)):
        out = resample(image, *size).astype(np.float64)[..., 0]
        ys, xs = np.nonzero(out)
        weights = out[ys, xs]
        cx, cy = np.average(xs + 0.5, weights=weights) / size[0], np.average(ys + 0.5, weights=weights) / size[1]
        assert cx == pytest.approx(204 / 320, abs=0.5 / size[0])
        assert cy == pytest.approx(100 / 240, abs=0.5 / size[1])


@pytest.mark.parametrize("resize_type", [ResizeType.CROP, ResizeType.FILL])
def test_crop_and_fill_cut_and_pad_what_pillow_would(resize_type: ResizeType) -> None:
    image = IMAGES["chelsea"]  # 451x300
    out, region = resize(image, resize_type, (128, 128), opencv=True)
    assert out.shape == (128, 128, 3)
    h, w = image.shape[:2]
    scale = max(128 / w, 128 / h) if resize_type is ResizeType.CROP else min(128 / w, 128 / h)
    rw, rh = round(w * scale), round(h * scale)
    scaled = resample(image, rw, rh)
    ox, oy = (rw - 128) // 2, (rh - 128) // 2
    if resize_type is ResizeType.CROP:
        expected = np.asarray(Image.fromarray(scaled).crop((ox, oy, ox + 128, oy + 128)))
    else:
        canvas = Image.new("RGB", (128, 128), (255, 255, 255))
        canvas.paste(Image.fromarray(scaled), (-ox, -oy))
        expected = np.asarray(canvas)
    np.testing.assert_array_equal(out, expected)
    assert region.sx == pytest.approx(128 / rw)
    assert region.sy == pytest.approx(128 / rh)


def test_raw_rgb_frames_are_a_view_of_the_message_bytes() -> None:
    frame = IMAGES["bench frame"]
    data = frame.tobytes()
    image = from_raw_pixels(data, 320, 240, 3)
    np.testing.assert_array_equal(image, frame)
    assert not image.flags.owndata
    assert np.shares_memory(image, np.frombuffer(data, dtype=np.uint8))


def test_raw_bgr_and_gray_frames_convert_exactly() -> None:
    frame = IMAGES["bench frame"]
    bgr = from_raw_pixels(np.ascontiguousarray(frame[..., ::-1]).tobytes(), 320, 240, 3, bgr=True)
    np.testing.assert_array_equal(bgr, frame)
    gray = frame[..., 1].copy()
    rgb = from_raw_pixels(gray.tobytes(), 320, 240, 1)
    assert rgb.shape == (240, 320, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_raw_stream_frames_take_opencv_and_decoded_images_keep_pillows_pixels() -> None:
    catalog = Catalog.load(SAMPLES.parent / "model_repository")
    deployment = catalog.for_spec("shapes-yolo-v1")  # SQUASH 128 x 128, float32 NCHW
    recognizer = Recognizer(catalog, gateway=None)  # type: ignore[arg-type]  # _prepare never calls Triton
    frame = IMAGES["detection scene"]
    raw = recognizer._prepare(RawFrame(frame.tobytes(), 320, 240, 3), None, deployment)
    decoded = recognizer._prepare(lambda: frame, None, deployment)
    (name,) = raw.tensors
    raw_tensor = np.asarray(raw.tensors[name], np.float32)
    decoded_tensor = np.asarray(decoded.tensors[name], np.float32)
    expected_raw = resample(frame, 128, 128).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    expected_decoded = pillow(frame, 128, 128).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_allclose(raw_tensor, expected_raw, rtol=0, atol=1e-6)
    np.testing.assert_allclose(decoded_tensor, expected_decoded, rtol=0, atol=1e-6)
    assert not np.array_equal(raw_tensor, decoded_tensor)  # the two paths did run
    assert raw.region == decoded.region


def test_resize_keeps_pillows_pixels_unless_asked() -> None:
    image = IMAGES["bench frame"]
    out, _ = resize(image, ResizeType.SQUASH, (128, 128))
    np.testing.assert_array_equal(out, pillow(image, 128, 128))
    fast, _ = resize(image, ResizeType.SQUASH, (128, 128), opencv=True)
    np.testing.assert_array_equal(fast, resample(image, 128, 128))


COLORS_INFO = Signature(
    (TensorSignature("data", "FP32", (-1, 3, 64, 64)),),
    (TensorSignature("share", "FP32", (-1, 6)),),
    32,
)


async def test_small_raw_frames_are_prepared_on_the_loop_and_the_rest_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = Catalog.load(SAMPLES.parent / "model_repository")
    gateway = FakeTritonGateway(
        {"colors": COLORS_INFO}, {"colors": lambda call: {"share": np.full((1, 6), 0.1, dtype=np.float32)}}
    )
    recognizer = Recognizer(catalog, gateway)
    deployment = catalog.for_spec("colors-v1")
    threaded: list[object] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(function: Any, /, *args: Any) -> Any:
        threaded.append(args[0])
        return await real_to_thread(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    frame = IMAGES["bench frame"]
    small = RawFrame(frame.tobytes(), 320, 240, 3)
    await recognizer.run(deployment, small)
    assert threaded == []
    large_pixels = np.zeros((481, 640, 3), dtype=np.uint8)
    assert recognition.INLINE_RAW_PIXELS < 640 * 481
    large = RawFrame(large_pixels.tobytes(), 640, 481, 3)
    await recognizer.run(deployment, large)
    assert threaded == [large]
    await recognizer.run(deployment, lambda: frame)
    assert len(threaded) == 2
    # The same tensors whichever way they were prepared.
    inline_tensor = gateway.calls[0].inputs["data"]
    prepared = await real_to_thread(recognizer._prepare, small, None, deployment)
    np.testing.assert_array_equal(inline_tensor[0], prepared.tensors["data"])
