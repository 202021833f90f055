"""The recognition use case without Triton: a real ``Recognizer`` (decoding, crop, the colors model's
preprocessing, classification) over a ``FakeTritonGateway``: what it sends the network, what it makes of the
answer, and the errors it gives when the network and its version disagree."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service.catalog import Catalog
from service.domain import ImageRequest, Target
from service.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from service.recognition import Recognizer
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway
from tests.helpers import COLOR_SAMPLES, ROOT

CATALOG = Catalog.load(ROOT / "model_repository")
NAMES = list(COLOR_SAMPLES)  # the colors model's labels, in order
COLORS = Target(spec_id="colors-v1")


def signature(dtype: str = "FP32", batch: int = 32, size: int = 64) -> Signature:
    front = (-1,) if batch else ()
    return Signature(
        (TensorSignature("data", dtype, (*front, 3, size, size)),),
        (TensorSignature("share", "FP32", (*front, 6)),),
        batch,
    )


def colour(pixels: npt.NDArray[Any]) -> str:
    """The colour of a (3, H, W) tensor of the colors model: pixel / 255 - 0.5."""
    rgb = (pixels.astype(np.float64).mean(axis=(1, 2)) + 0.5) * 255
    return min(NAMES, key=lambda n: float(np.sum((rgb - np.array(COLOR_SAMPLES[n])) ** 2)))


def shares(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    data = call.inputs["data"]
    batched = data.ndim == 4
    share = np.full(len(NAMES), 0.02, dtype=np.float32)
    share[NAMES.index(colour(data[0] if batched else data))] = 0.9
    return {"share": share[None] if batched else share}


def recognizer(gateway: FakeTritonGateway) -> Recognizer:
    checked: TritonGateway = gateway
    return Recognizer(CATALOG, checked, max_image_pixels=4_000_000)


def png(*colours: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    """Vertical bands of the colours, left to right."""
    width = size[0] // len(colours)
    image = Image.new("RGB", size)
    for i, c in enumerate(colours):
        image.paste(c, (i * width, 0, (i + 1) * width, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def top(result: Any) -> tuple[str, float]:
    best = result.outputs[0].predicted[0]
    return best.label_name, best.score


async def test_one_batched_tensor_of_the_networks_dtype_goes_to_the_network() -> None:
    gateway = FakeTritonGateway({"colors": signature()}, {"colors": shares})
    result = await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["green"])))
    name, score = top(result)
    assert name == "green"
    assert score == pytest.approx(0.9)
    [call] = gateway.calls
    assert (call.model, call.outputs) == ("colors", ("share",))
    assert call.inputs["data"].shape == (1, 3, 64, 64)
    assert call.inputs["data"].dtype == np.float32


async def test_the_input_is_cast_to_the_dtype_the_network_declares() -> None:
    gateway = FakeTritonGateway({"colors": signature("FP16")}, {"colors": shares})
    result = await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["blue"])))
    assert top(result)[0] == "blue"
    assert gateway.calls[0].inputs["data"].dtype == np.float16


async def test_a_network_without_a_batch_dimension_gets_none_and_its_outputs_are_read_alike() -> None:
    gateway = FakeTritonGateway({"colors": signature(batch=0)}, {"colors": shares})
    result = await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["yellow"])))
    assert top(result)[0] == "yellow"
    assert gateway.calls[0].inputs["data"].shape == (3, 64, 64)


async def test_a_crop_is_what_the_network_sees() -> None:
    gateway = FakeTritonGateway({"colors": signature()}, {"colors": shares})
    image = png(COLOR_SAMPLES["red"], COLOR_SAMPLES["blue"], size=(96, 32))
    rec = recognizer(gateway)
    assert top(await rec.recognize(COLORS, ImageRequest(content=image, bbox=(0.55, 0.0, 1.0, 1.0))))[0] == "blue"
    assert top(await rec.recognize(COLORS, ImageRequest(content=image, bbox=(0.0, 0.0, 0.45, 1.0))))[0] == "red"


async def test_an_input_shape_the_preprocessing_does_not_give_is_a_failed_precondition() -> None:
    gateway = FakeTritonGateway({"colors": signature(size=32)}, {"colors": shares})
    with pytest.raises(FailedPreconditionError, match=r"takes shape \[3, 32, 32\] but the preprocessing gives"):
        await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["red"])))
    assert gateway.calls == []


async def test_an_output_that_does_not_match_the_labels_is_a_failed_precondition() -> None:
    def five(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
        return {"share": np.full((1, 5), 0.2, dtype=np.float32)}

    gateway = FakeTritonGateway({"colors": signature()}, {"colors": five})
    with pytest.raises(FailedPreconditionError, match="5 values for 6 labels"):
        await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["red"])))


async def test_the_gateways_errors_reach_the_caller_unchanged() -> None:
    outage = UnavailableError("the inference server did not answer for model 'colors'; retry later")
    gateway = FakeTritonGateway({"colors": signature()}, {"colors": shares}, fail=lambda call: outage)
    with pytest.raises(UnavailableError) as caught:
        await recognizer(gateway).recognize(COLORS, ImageRequest(content=png(COLOR_SAMPLES["red"])))
    assert caught.value is outage


@pytest.mark.parametrize("target", [Target(), Target(spec_id="colors-v1", version_id="colors-v1.1")])
async def test_a_target_is_one_spec_or_one_version(target: Target) -> None:
    gateway = FakeTritonGateway({"colors": signature()}, {"colors": shares})
    with pytest.raises(InvalidArgumentError, match="exactly one of spec_id or version_id"):
        await recognizer(gateway).recognize(target, ImageRequest(content=png(COLOR_SAMPLES["red"])))
    assert gateway.calls == []


async def test_max_predictions_bounds_what_comes_back() -> None:
    gateway = FakeTritonGateway({"colors": signature()}, {"colors": shares})
    rec = recognizer(gateway)
    image = ImageRequest(content=png(COLOR_SAMPLES["white"]))
    assert len((await rec.recognize(COLORS, image, max_predictions=1)).outputs[0].predicted) == 1
