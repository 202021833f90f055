"""The image-decoding boundary against hostile files, hand-computed pixels and an independent decoder (OpenCV)."""

from __future__ import annotations

import io
import struct
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import PIL
import pytest
from PIL import Image, ImageFile, ImageOps

from service.catalog import Catalog
from service.domain import ImageRequest
from service.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError, SightlineError
from service.images import DecodeBudget, EncodedImage, decode_image, to_rgb
from service.recognition import Recognizer, needed_size
from tests.fuzz import images_corpus
from tests.fuzz.images_corpus import BAD_IMAGES, encode, jpeg_truncated_6000, mutations
from tests.helpers import cv2_jpeg

ROOT = Path(__file__).resolve().parents[2]
MAX = 40_000_000


def pixel(rgb: npt.NDArray[np.uint8]) -> tuple[int, ...]:
    return tuple(int(v) for v in rgb[0, 0])


# ------------------------------------------------------------------------------------------ hostile files


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_each_bad_image_is_a_domain_error(name: str) -> None:
    make, expected = BAD_IMAGES[name]
    with pytest.raises(SightlineError) as caught:
        decode_image(make(), max_pixels=MAX)
    assert type(caught.value) is expected
    message = caught.value.message
    if expected is ResourceExhaustedError:
        assert "SIGHTLINE_MAX_IMAGE_PIXELS" in message
    else:
        assert "could not be decoded" in message
    assert Path(PIL.__file__).parent.as_posix() not in message
    assert "site-packages" not in message
    assert "BytesIO" not in message


def test_bombs_are_refused_before_pillow_decodes_them() -> None:
    # The 1-bit PNG is 109 KB for 900 Mpx; decoding it would take a gigabyte and seconds.
    data = images_corpus.png_1bit_bomb()
    assert 100_000 < len(data) < 120_000
    started = time.perf_counter()
    with pytest.raises(ResourceExhaustedError, match="30000x30000"):
        decode_image(data, max_pixels=MAX)
    assert time.perf_counter() - started < 0.5


def test_pillow_settings_the_boundary_relies_on() -> None:
    assert Image.MAX_IMAGE_PIXELS is None  # our header check replaces Pillow's
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "error",
    [
        NotImplementedError("x"),
        struct.error("x"),
        IndexError("x"),
        ZeroDivisionError("x"),
        KeyError("x"),
        TypeError("x"),
        MemoryError(),
        ValueError("x"),
        SyntaxError("x"),
        RecursionError("x"),
        UserWarning("x"),
        OSError("/var/secret/path: broken"),
    ],
)
def test_any_decoder_failure_is_invalid_argument(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(ImageOps, "exif_transpose", fail)
    with pytest.raises(InvalidArgumentError, match="could not be decoded") as caught:
        decode_image(encode(Image.new("RGB", (4, 4)), "PNG"), max_pixels=MAX)
    assert "/var/secret" not in caught.value.message


def test_our_own_errors_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise NotFoundError("thing", "x")

    monkeypatch.setattr(ImageOps, "exif_transpose", fail)
    with pytest.raises(NotFoundError):
        decode_image(encode(Image.new("RGB", (4, 4)), "PNG"), max_pixels=MAX)


def test_fuzzed_files_give_only_domain_errors() -> None:
    outcomes: dict[str, int] = {}
    for _, data in mutations(seed=7, count=600):
        try:
            decode_image(data, max_pixels=MAX)
            kind = "decoded"
        except (InvalidArgumentError, ResourceExhaustedError) as exc:
            kind = type(exc).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("InvalidArgumentError", 0) > 100
    assert outcomes.get("decoded", 0) > 10


# ------------------------------------------------------------------------------------------------ truncation


def test_jpeg_too_short_for_its_size_is_refused_although_pillow_decodes_it() -> None:
    data = jpeg_truncated_6000()
    assert data.endswith(b"\xff\xd9")
    assert len(data) < 700
    # What the check is for: Pillow (libjpeg) decodes it to 36 Mpx without an error.
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("L", (100, 100))  # keep this demonstration small: 1/8 scale
        opened.load()
    with pytest.raises(InvalidArgumentError, match="truncated"):
        decode_image(data, max_pixels=MAX)


@pytest.mark.parametrize("progressive", [False, True])
def test_the_length_floor_admits_the_most_compressible_real_jpeg(progressive: bool) -> None:
    # A uniform 4000 x 3000 image is the smallest honest JPEG of that size.
    data = encode(Image.new("RGB", (4000, 3000), (90, 90, 90)), "JPEG", quality=10, progressive=progressive)
    decoded = decode_image(data, max_pixels=MAX, min_size=(500, 375))
    assert decoded.shape == (375, 500, 3)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP", "PPM"])
def test_truncated_files_are_refused(fmt: str) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    with pytest.raises(InvalidArgumentError, match="could not be decoded"):
        decode_image(data[: len(data) // 2], max_pixels=MAX)


# ---------------------------------------------------------------------------------------------- limits


def test_size_limit_from_the_header() -> None:
    data = encode(Image.new("L", (300, 200)), "PNG")
    assert decode_image(data, max_pixels=60_000).shape == (200, 300, 3)
    with pytest.raises(ResourceExhaustedError, match=r"300x200 = 60000 pixels.*SIGHTLINE_MAX_IMAGE_PIXELS"):
        decode_image(data, max_pixels=59_999)


def test_multi_frame_images_decode_their_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    for fmt in ("GIF", "PNG", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        options: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], **options)
        decoded = decode_image(buffer.getvalue(), max_pixels=MAX)
        assert decoded.shape == (6, 8, 3), fmt
        assert pixel(decoded) == (255, 0, 0), fmt


# ------------------------------------------------------------------------------------- reduced-scale decoding


def photo_like(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A natural-looking BGR picture: 1/f (pink) noise landscape, OpenCV-drawn objects, blur and sensor noise.

    No photograph ships with the installed packages, so this stands in for one, made by a method independent of the
    code under test (numpy FFT synthesis + OpenCV drawing), with a photo's statistics: a 1/f spectrum, edges, texture.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
        field = np.fft.irfft2(spectrum, s=(height, width))
        channels.append((field - field.min()) / (np.ptp(field) + 1e-9))
    picture = (np.stack(channels, axis=2) * 200 + 25).astype(np.uint8)
    sky = np.linspace(230, 120, height // 3, dtype=np.float32)[:, None, None]
    picture[: height // 3] = np.clip(sky * np.array([1.0, 0.85, 0.6]), 0, 255).astype(np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, width)), int(rng.integers(height // 3, height)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(picture, centre, int(rng.integers(width // 40, width // 8)), colour, -1, cv2.LINE_AA)
    picture = cv2.GaussianBlur(picture, (0, 0), 1.2)
    noisy = picture.astype(np.int16) + rng.normal(0, 4, picture.shape).astype(np.int16)
    out: npt.NDArray[np.uint8] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def test_photo_decodes_like_opencv_at_full_and_reduced_scale() -> None:
    data = cv2_jpeg(photo_like(1920, 1080))
    full = decode_image(data, max_pixels=MAX)
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert full.shape == reference.shape == (1080, 1920, 3)
    assert np.abs(full.astype(int) - reference).mean() < 1.0
    quarter = decode_image(data, max_pixels=MAX, min_size=(400, 250))
    reduced = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    assert quarter.shape == reduced.shape == (270, 480, 3)
    assert np.abs(quarter.astype(int) - cv2.cvtColor(reduced, cv2.COLOR_BGR2RGB)).mean() < 1.5


@pytest.mark.parametrize("need", [(1, 1), (128, 128), (240, 135), (241, 135), (300, 300), (960, 540), (961, 10)])
def test_draft_never_goes_below_the_needed_size(need: tuple[int, int]) -> None:
    data = cv2_jpeg(photo_like(1920, 1080, seed=1))
    decoded = decode_image(data, max_pixels=MAX, min_size=need)
    height, width = decoded.shape[:2]
    assert width >= need[0]
    assert height >= need[1]
    scale = 1920 // width
    assert scale in (1, 2, 4, 8)
    if scale < 8:  # the next scale down would have been too small
        assert -(-1920 // (2 * scale)) < need[0] or -(-1080 // (2 * scale)) < need[1]


def test_draft_keeps_the_oriented_size() -> None:
    # Stored 1920 wide x 1080 high, EXIF orientation 6: displayed 1080 wide x 1920 high.
    image = Image.fromarray(photo_like(1920, 1080, seed=2)[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif.tobytes())
    full = decode_image(data, max_pixels=MAX)
    assert full.shape == (1920, 1080, 3)
    reduced = decode_image(data, max_pixels=MAX, min_size=(135, 480))
    assert reduced.shape == (480, 270, 3)  # 1/4: 1/8 would leave 240 < 480 rows
    again = np.asarray(Image.fromarray(full).resize((270, 480), Image.Resampling.BOX), dtype=np.int16)
    assert np.abs(reduced.astype(np.int16) - again).mean() < 4


def test_needed_size_over_inputs_and_crops() -> None:
    catalog = Catalog.load(ROOT / "model_repository")
    yolo = catalog.for_spec("shapes-yolo-v1").network.preprocessing  # SQUASH 128 x 128
    assert needed_size(yolo, ImageRequest()) == (128, 128)
    assert needed_size(yolo, ImageRequest(bbox=(0.25, 0.0, 0.75, 0.25))) == (256, 512)
    assert needed_size(yolo, ImageRequest(polygon=((0.1, 0.1), (0.6, 0.1), (0.1, 0.9)))) == (256, 160)
    assert needed_size(yolo, ImageRequest(bbox=(0.5, 0.5, 0.5, 0.9))) is None  # crop() reports it


def test_reduced_decode_keeps_the_frame_of_regions_and_tensors() -> None:
    catalog = Catalog.load(ROOT / "model_repository")
    deployment = catalog.for_spec("shapes-yolo-v1")
    recognizer = Recognizer(catalog, gateway=None)  # type: ignore[arg-type]  # _prepare never calls Triton
    data = cv2_jpeg(photo_like(1600, 1200, seed=3), quality=95)
    for request in [ImageRequest(), ImageRequest(bbox=(0.2, 0.1, 0.7, 0.6))]:
        reduced = recognizer._prepare(recognizer.encoded(data), request, deployment)
        full = recognizer._prepare(lambda: decode_image(data, max_pixels=MAX), request, deployment)
        # Regions: exactly equal without a crop; within a decoded pixel (1/8 scale: 8/1600) with one.
        for a, b in [(reduced.region.x0, full.region.x0), (reduced.region.sx, full.region.sx)]:
            assert a == pytest.approx(b, abs=8 / 1600)
        for a, b in [(reduced.region.y0, full.region.y0), (reduced.region.sy, full.region.sy)]:
            assert a == pytest.approx(b, abs=8 / 1200)
        assert reduced.input_size == full.input_size == (128, 128)
        (name,) = full.tensors
        difference = np.abs(reduced.tensors[name].astype(np.float32) - full.tensors[name].astype(np.float32))
        assert float(difference.mean()) < 0.03  # pixels in [0, 1]: under 8 grey levels on average


# --------------------------------------------------------------------------------------------- the budget


def test_budget_reserves_and_releases() -> None:
    budget = DecodeBudget(100, wait_s=0.05)
    assert budget.acquire(60) == 60
    assert budget.acquire(40) == 40
    with pytest.raises(ResourceExhaustedError, match="SIGHTLINE_DECODE_BUDGET_PIXELS") as caught:
        budget.acquire(1)
    assert caught.value.retry_after_s == pytest.approx(1.0)
    budget.release(60)
    # More than the whole budget: it needs all of it, so it waits for the last 40 and is refused meanwhile ...
    with pytest.raises(ResourceExhaustedError):
        budget.acquire(500)
    budget.release(40)
    assert budget.in_flight == 0
    with budget.reserve(500) as granted:  # ... and runs alone once they are back.
        assert granted == 100
        assert budget.in_flight == 100
    assert budget.in_flight == 0


def test_budget_waits_for_a_release_in_another_thread() -> None:
    budget = DecodeBudget(100, wait_s=2.0)
    budget.acquire(100)
    timer = threading.Timer(0.1, budget.release, args=(100,))
    timer.start()
    started = time.perf_counter()
    with budget.reserve(50):
        waited = time.perf_counter() - started
    timer.join()
    assert 0.05 < waited < 1.5
    assert budget.in_flight == 0


def test_decode_reserves_the_reduced_size_and_always_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = DecodeBudget(10**9)
    seen: list[int] = []
    original = budget.acquire

    def spy(pixels: int) -> int:
        seen.append(pixels)
        return original(pixels)

    monkeypatch.setattr(budget, "acquire", spy)
    data = cv2_jpeg(photo_like(1920, 1080, seed=4))
    decode_image(data, max_pixels=MAX, min_size=(128, 128), budget=budget)
    assert seen == [240 * 135]
    with pytest.raises(InvalidArgumentError):
        decode_image(images_corpus.tiff_strip_offsets_of_type(5), max_pixels=MAX, budget=budget)
    assert budget.in_flight == 0


def test_concurrent_decodes_over_the_budget_are_refused_with_retry() -> None:
    budget = DecodeBudget(1_000_000, wait_s=0.01)
    data = encode(Image.fromarray(photo_like(1000, 1000, seed=5)), "PNG")
    outcomes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            decode_image(data, max_pixels=MAX, budget=budget)
            result = "ok"
        except ResourceExhaustedError as exc:
            result = "refused" if exc.retry_after_s is not None else "refused without a retry delay"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 8
    assert set(outcomes) <= {"ok", "refused"}
    assert "ok" in outcomes
    assert budget.in_flight == 0


def test_encoded_image_is_a_full_size_loader() -> None:
    data = encode(Image.new("RGB", (10, 8), (1, 2, 3)), "JPEG")
    assert EncodedImage(data, MAX)().shape == (8, 10, 3)


# ---------------------------------------------------------------------------------------- modes → RGB


def _open(data: bytes) -> npt.NDArray[np.uint8]:
    return decode_image(data, max_pixels=MAX)


def test_16_bit_gray_keeps_its_top_8_bits() -> None:
    values = np.array([[0, 255, 256, 4096, 32768, 65535]], dtype=np.uint16)
    expected = (0, 0, 1, 16, 128, 255)
    files = {
        "png (OpenCV)": bytes(cv2.imencode(".png", values)[1]),
        "tiff (OpenCV)": bytes(cv2.imencode(".tiff", values)[1]),
        "png I;16 (Pillow)": encode(Image.fromarray(values), "PNG"),
        "tiff I;16B (Pillow)": encode(Image.fromarray(values.astype(">u2")), "TIFF"),
        "pgm (OpenCV)": bytes(cv2.imencode(".pgm", values)[1]),
    }
    for name, data in files.items():
        decoded = _open(data)
        assert tuple(int(v) for v in decoded[0, :, 0]) == expected, name
        assert (decoded[..., 0] == decoded[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B"])
def test_16_bit_modes(mode: str) -> None:
    image = Image.new(mode, (2, 1), 4096)
    assert pixel(to_rgb(image, max_value=65535)) == (16, 16, 16)


def test_32_bit_integer_and_float_clip() -> None:
    ints = Image.fromarray(np.array([[-5, 0, 17, 255, 70000]], dtype=np.int32), "I")
    assert tuple(int(v) for v in to_rgb(ints)[0, :, 0]) == (0, 0, 17, 255, 255)
    floats = Image.fromarray(np.array([[-5.0, 12.4, 12.6, 300.0, np.nan]], dtype=np.float32), "F")
    assert tuple(int(v) for v in to_rgb(floats)[0, :, 0]) == (0, 12, 13, 255, 0)
    assert tuple(int(v) for v in _open(encode(floats, "TIFF"))[0, :, 1]) == (0, 12, 13, 255, 0)


def test_16_bit_rgb_png_is_8_bit_rgb() -> None:
    bgr = np.zeros((2, 2, 3), dtype=np.uint16)
    bgr[..., 2] = 4096  # red
    bgr[..., 0] = 65535  # blue
    assert pixel(_open(bytes(cv2.imencode(".png", bgr)[1]))) == (16, 0, 255)


def test_alpha_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (1, 1), (0, 0, 200, 128))
    # (c * a + 255 * (255 - a)) / 255: red 0 → 127, blue 200 → 227
    assert pixel(_open(encode(rgba, "PNG"))) == (127, 127, 227)
    assert pixel(_open(encode(Image.new("RGBA", (1, 1), (9, 9, 9, 0)), "PNG"))) == (255, 255, 255)
    assert pixel(_open(encode(Image.new("RGBA", (1, 1), (9, 8, 7, 255)), "PNG"))) == (9, 8, 7)
    assert pixel(_open(encode(Image.new("LA", (1, 1), (100, 51)), "PNG"))) == (224,) * 3  # 100*51/255 + 204
    assert pixel(to_rgb(Image.new("RGBa", (1, 1), (50, 0, 100, 128)))) == (177, 127, 227)  # c' + 255 - a
    assert pixel(to_rgb(Image.new("La", (1, 1), (20, 200)))) == (75, 75, 75)
    pa = Image.new("PA", (1, 1), (0, 128))
    pa.putpalette([10, 20, 250] + [0] * 765)
    assert pixel(to_rgb(pa)) == (132, 137, 252)


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    for fmt in ("PNG", "GIF"):
        decoded = _open(encode(palette, fmt, transparency=1))
        assert pixel(decoded) == (255, 0, 0), fmt
        assert tuple(int(v) for v in decoded[0, 1]) == (255, 255, 255), fmt  # transparent blue shows white
    plain = _open(encode(palette, "PNG"))
    assert tuple(int(v) for v in plain[0, 1]) == (0, 0, 255)


def test_transparency_key_of_rgb_and_gray_pngs() -> None:
    rgb = Image.new("RGB", (2, 1), (10, 20, 30))
    rgb.putpixel((1, 0), (1, 2, 3))
    decoded = _open(encode(rgb, "PNG", transparency=(1, 2, 3)))
    assert pixel(decoded) == (10, 20, 30)
    assert tuple(int(v) for v in decoded[0, 1]) == (255, 255, 255)
    gray = Image.new("L", (1, 1), 7)
    assert pixel(_open(encode(gray, "PNG", transparency=7))) == (255, 255, 255)


def test_bilevel_and_gray() -> None:
    bits = Image.new("1", (2, 1), 0)
    bits.putpixel((1, 0), 1)
    decoded = _open(encode(bits, "PNG"))
    assert tuple(int(v) for v in decoded[0, :, 0]) == (0, 255)
    assert pixel(_open(encode(Image.new("L", (1, 1), 77), "PNG"))) == (77, 77, 77)


def test_cmyk_jpeg_with_adobe_inversion() -> None:
    # Pillow writes CMYK JPEGs inverted with an Adobe APP14 marker, as Photoshop does.
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100)
    assert b"Adobe" in data
    assert np.abs(np.array(pixel(_open(data))) - (255, 0, 0)).max() <= 2
    # (255 - c) * (255 - k) / 255: c = 51, k = 102 → 122; m = y = 0 → 153
    tiff = encode(Image.new("CMYK", (1, 1), (51, 0, 0, 102)), "TIFF")
    assert pixel(_open(tiff)) == (122, 153, 153)


def test_ycbcr_lab_hsv() -> None:
    # JFIF YCbCr: R = Y + 1.402 (Cr - 128), G = Y - 0.344 (Cb - 128) - 0.714 (Cr - 128), B = Y + 1.772 (Cb - 128)
    ycc = to_rgb(Image.new("YCbCr", (1, 1), (100, 140, 90)))
    expected = (100 + 1.402 * -38, 100 - 0.344136 * 12 - 0.714136 * -38, 100 + 1.772 * 12)
    assert np.abs(np.array(pixel(ycc)) - np.array(expected)).max() <= 1
    # CIELAB red (L* 53.2, a* 80.1, b* 67.2) as Pillow stores it (L * 255 / 100, a + 128, b + 128) → sRGB red.
    lab = to_rgb(Image.new("LAB", (1, 1), (136, 208, 195)))
    assert np.abs(np.array(pixel(lab)) - (255, 0, 0)).max() <= 12
    assert np.abs(np.array(pixel(to_rgb(Image.new("LAB", (1, 1), (255, 128, 128))))) - 255).max() <= 1
    assert pixel(to_rgb(Image.new("HSV", (1, 1), (0, 255, 255)))) == (255, 0, 0)
    assert pixel(to_rgb(Image.new("HSV", (1, 1), (170, 255, 255)))) == (0, 0, 255)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    for fmt in ("JPEG", "PNG"):
        decoded = decode_image(encode(image, fmt, exif=exif.tobytes(), quality=100), max_pixels=MAX)
        assert decoded.shape == (4, 2, 3), fmt
        assert decoded[0, 1].min() > 200, fmt  # the top-left pixel went to the top right
