"""The frame runner of one stream (``FrameRunner``) and what a frame is run with (``settings_for``,
``image_source``): a real ``Recognizer`` over the public colors model and a ``FakeTritonGateway`` whose calls the
tests hold, fail or release."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service.catalog import Catalog
from service.domain import Target
from service.errors import InvalidArgumentError, NotFoundError, SightlineError, UnavailableError
from service.images import DecodeBudget
from service.preprocess import RawFrame
from service.recognition import Recognizer
from service.streams.frames import FrameRunner, InFlight, image_source, settings_for
from service.streams.types import FrameInput, FrameOutcome, FrameStatus, HeldFrame, RawPixels, StreamConfig
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway, Latency
from tests.helpers import COLOR_SAMPLES, ROOT

CATALOG = Catalog.load(ROOT / "model_repository")
NAMES = list(COLOR_SAMPLES)
COLORS_INFO = Signature(
    (TensorSignature("data", "FP32", (-1, 3, 64, 64)),), (TensorSignature("share", "FP32", (-1, 6)),), 32
)


def reds(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    share = np.full((1, 6), 0.02, dtype=np.float32)
    share[0, 0] = 0.9
    return {"share": share}


def recognizer(
    *, latency: Latency | None = None, fail: Callable[[FakeCall], Exception | None] | None = None
) -> tuple[Recognizer, FakeTritonGateway]:
    latencies = {"colors": latency} if latency is not None else None
    gateway = FakeTritonGateway({"colors": COLORS_INFO}, {"colors": reds}, latency=latencies, fail=fail)
    made = Recognizer(CATALOG, gateway, max_image_pixels=4_000_000, decode_budget=DecodeBudget(12_000_000))
    return made, gateway


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), COLOR_SAMPLES["red"]).save(buffer, format="PNG")
    return buffer.getvalue()


def config(**kwargs: Any) -> StreamConfig:
    return StreamConfig(Target(spec_id="colors-v1"), **kwargs)


async def held(made: Recognizer, seq: int, frame: FrameInput | None = None, **kwargs: Any) -> HeldFrame:
    settings = await settings_for(made, config(**kwargs))
    return HeldFrame(seq, frame or FrameInput(seq, encoded=png()), settings, time.perf_counter())


# ---------------------------------------------------------------------------------------------- settings


async def test_settings_are_a_snapshot_of_the_config_with_its_thresholds() -> None:
    made, _ = recognizer()
    settings = await settings_for(
        made, config(show_discarded=True, max_predictions=2, max_latency_ms=30, output_thresholds=((0.5,) * 6,))
    )
    assert (settings.show_discarded, settings.max_predictions, settings.max_latency_ms) == (True, 2, 30)
    assert settings.deployment.spec.id == "colors-v1"
    assert settings.deployment.version.post_processings[0].thresholds == (0.5,) * 6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_predictions": 0}, "max_predictions"),
        ({"max_latency_ms": -1}, "config.max_latency_ms"),
        ({"output_thresholds": ((0.5,),)}, "output_thresholds[0].thresholds"),
    ],
)
async def test_a_bad_config_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    made, _ = recognizer()
    with pytest.raises(InvalidArgumentError) as raised:
        await settings_for(made, config(**kwargs))
    assert [v.field for v in raised.value.violations] == [field]


async def test_an_unknown_target_is_not_found() -> None:
    made, _ = recognizer()
    with pytest.raises(NotFoundError):
        await settings_for(made, StreamConfig(Target(spec_id="nope")))


# ---------------------------------------------------------------------------------------------- images


def test_raw_pixels_are_a_raw_frame_as_sent() -> None:
    made, _ = recognizer()
    source = image_source(made, FrameInput(1, raw=RawPixels(bytes(2 * 3 * 3), 2, 3, 3, bgr=True)))
    assert isinstance(source, RawFrame)
    assert (source.width, source.height, source.channels, source.bgr) == (2, 3, 3, True)


def test_a_frame_without_an_image_is_refused() -> None:
    made, _ = recognizer()
    with pytest.raises(InvalidArgumentError, match="has no image: set encoded or raw") as raised:
        image_source(made, FrameInput(1))
    assert [v.field for v in raised.value.violations] == ["frame"]


# ---------------------------------------------------------------------------------------------- the runner


class Runner:
    """A ``FrameRunner`` in a task group, its outcomes by seq."""

    def __init__(self, made: Recognizer, group: asyncio.TaskGroup, max_in_flight: int) -> None:
        self.outcomes: dict[int, FrameOutcome] = {}
        self.in_flight = InFlight()
        self.runner = FrameRunner(made, group, max_in_flight, done=self._done, in_flight=self.in_flight)

    def _done(self, seq: int, outcome: FrameOutcome) -> None:
        assert seq not in self.outcomes
        self.outcomes[seq] = outcome


async def test_a_frame_runs_through_recognition_and_reports_its_timing() -> None:
    made, gateway = recognizer()
    async with asyncio.TaskGroup() as group:
        r = Runner(made, group, 2)
        await r.runner.reserve()
        r.runner.start(await held(made, 0, FrameInput(7, encoded=png())))
        await r.runner.idle()
    outcome = r.outcomes[0]
    assert (outcome.frame_id, outcome.status, outcome.error) == (7, FrameStatus.OK, None)
    assert outcome.result is not None
    assert outcome.result.outputs[0].predicted[0].label_name == "red"
    assert outcome.timing.total_ms >= outcome.timing.queue_ms >= 0
    assert outcome.timing.total_ms >= outcome.timing.triton_ms
    assert len(gateway.calls) == 1
    assert (r.runner.running, r.in_flight.value) == (0, 0)


async def test_at_most_max_in_flight_frames_run_and_a_slot_frees_when_one_ends() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    made, gateway = recognizer(latency=lambda call: gates[call.index])
    async with asyncio.TaskGroup() as group:
        r = Runner(made, group, 2)
        for seq in range(2):
            await r.runner.reserve()
            r.runner.start(await held(made, seq))
        third = asyncio.create_task(r.runner.reserve())
        await asyncio.sleep(0.05)
        assert not third.done()
        assert r.runner.running == 2
        gates[1].set()  # the second call to reach Triton, whichever frame it is (they race to the gateway)
        await asyncio.wait_for(third, 5)
        assert len(r.outcomes) == 1
        assert r.runner.running == 1
        r.runner.start(await held(made, 2))
        gates[0].set()
        gates[2].set()
        await r.runner.idle()
    assert sorted(r.outcomes) == [0, 1, 2]
    assert gateway.peak == 2


async def test_an_unreserved_slot_is_free_again() -> None:
    made, _ = recognizer()
    async with asyncio.TaskGroup() as group:
        r = Runner(made, group, 1)
        await r.runner.reserve()
        r.runner.unreserve()
        await asyncio.wait_for(r.runner.reserve(), 1)
        r.runner.unreserve()


async def test_a_failing_frame_is_its_own_error_outcome() -> None:
    made, _ = recognizer(fail=lambda call: UnavailableError("triton away") if call.index == 0 else None)
    async with asyncio.TaskGroup() as group:
        r = Runner(made, group, 2)
        for seq, frame in enumerate([FrameInput(10, encoded=png()), FrameInput(11, encoded=b"not an image")]):
            await r.runner.reserve()
            r.runner.start(await held(made, seq, frame))
        await r.runner.idle()
        await r.runner.reserve()
        r.runner.start(await held(made, 2, FrameInput(12, encoded=png())))
        await r.runner.idle()
    assert [r.outcomes[i].status for i in range(3)] == [FrameStatus.ERROR, FrameStatus.ERROR, FrameStatus.OK]
    assert isinstance(r.outcomes[0].error, UnavailableError)
    undecodable = r.outcomes[1].error
    assert isinstance(undecodable, InvalidArgumentError)
    assert [v.field for v in undecodable.violations] == ["frame.encoded"]
    assert r.outcomes[1].frame_id == 11
    assert r.in_flight.value == 0


async def test_a_bug_fails_its_frame_as_an_internal_error_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    made, _ = recognizer(fail=lambda call: KeyError("secret internals"))
    with caplog.at_level(logging.ERROR, logger="service.streams.frames"):
        async with asyncio.TaskGroup() as group:
            r = Runner(made, group, 1)
            await r.runner.reserve()
            r.runner.start(await held(made, 0))
            await r.runner.idle()
    error = r.outcomes[0].error
    assert r.outcomes[0].status is FrameStatus.ERROR
    assert type(error) is SightlineError
    assert error.message == "internal error"
    assert "frame 0 failed" in caplog.text
    assert "secret internals" in caplog.text  # the traceback is the operator's


async def test_cancel_ends_every_running_frame_and_frees_their_slots() -> None:
    made, _ = recognizer(latency=lambda call: asyncio.Event())  # never answered
    async with asyncio.TaskGroup() as group:
        r = Runner(made, group, 2)
        for seq in range(2):
            await r.runner.reserve()
            r.runner.start(await held(made, seq))
        for _ in range(100):
            if r.in_flight.value == 2:
                break
            await asyncio.sleep(0.005)
        assert r.in_flight.value == 2
        r.runner.cancel()
        await asyncio.wait_for(r.runner.idle(), 5)
        await asyncio.wait_for(r.runner.reserve(), 1)
    assert r.outcomes == {}
    assert (r.runner.running, r.in_flight.value) == (0, 0)
