"""The streams of one server (``StreamRunner``): the metrics it keeps (frames by status, skipped frames by
reason, frames in flight, streams open) and the streams it knows while they are open. The pipeline itself is
tests/service/streams/test_stream.py's."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.catalog import Catalog
from service.domain import Target
from service.observability import Metrics
from service.recognition import Recognizer
from service.streams import DropPolicy, FrameInput, FrameOutcome, FrameStatus, SkipKind, StreamConfig, StreamRunner
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway
from tests.helpers import COLOR_SAMPLES, ROOT

CATALOG = Catalog.load(ROOT / "model_repository")
COLORS_INFO = Signature(
    (TensorSignature("data", "FP32", (-1, 3, 64, 64)),), (TensorSignature("share", "FP32", (-1, 6)),), 32
)


def shares(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    return {"share": np.full((1, 6), 1 / 6, dtype=np.float32)}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), COLOR_SAMPLES["blue"]).save(buffer, format="PNG")
    return buffer.getvalue()


def runner(metrics: Metrics | None, gate: asyncio.Event | None = None) -> StreamRunner:
    latency = {"colors": (lambda call: gate)} if gate is not None else None
    gateway = FakeTritonGateway({"colors": COLORS_INFO}, {"colors": shares}, latency=latency)
    return StreamRunner(Recognizer(CATALOG, gateway), metrics=metrics)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Feed:
    def __init__(self, *messages: StreamConfig | FrameInput) -> None:
        self.queue: asyncio.Queue[StreamConfig | FrameInput | None] = asyncio.Queue()
        for message in messages:
            self.queue.put_nowait(message)

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> StreamConfig | FrameInput:
        message = await self.queue.get()
        if message is None:
            raise StopAsyncIteration
        return message


async def test_frames_are_counted_by_status_and_skips_by_reason() -> None:
    metrics = Metrics()
    streams = runner(metrics)
    streams.count(FrameOutcome(1, None, FrameStatus.OK))
    streams.count(FrameOutcome(2, None, FrameStatus.OK))
    streams.count(FrameOutcome(3, None, FrameStatus.ERROR))
    streams.count(FrameOutcome.skipped(FrameInput(4), SkipKind.DROP_OLDEST, "dropped"))
    streams.count(FrameOutcome.skipped(FrameInput(5), SkipKind.TOO_OLD, "too old"))
    assert sample(metrics, "sightline_frames_total", status="OK") == 2
    assert sample(metrics, "sightline_frames_total", status="ERROR") == 1
    assert sample(metrics, "sightline_frames_total", status="SKIPPED") == 2
    assert sample(metrics, "sightline_frames_dropped_total", reason="drop_oldest") == 1
    assert sample(metrics, "sightline_frames_dropped_total", reason="too_old") == 1
    assert sample(metrics, "sightline_frames_dropped_total", reason="drop_newest") == 0


def test_without_metrics_counting_does_nothing() -> None:
    runner(None).count(FrameOutcome(1, None, FrameStatus.OK))  # no collector to touch, no error


async def test_the_gauges_read_the_streams_open_and_the_frames_in_flight() -> None:
    metrics, gate = Metrics(), asyncio.Event()
    streams = runner(metrics, gate)
    feed = Feed(StreamConfig(Target(spec_id="colors-v1"), max_in_flight=2, drop_policy=DropPolicy.BLOCK))
    for i in range(2):
        feed.queue.put_nowait(FrameInput(i, encoded=png()))
    outcomes: list[FrameOutcome] = []

    async def consume() -> None:
        async for outcome in streams.stream(feed):
            outcomes.append(outcome)

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        while streams.in_flight < 2:  # noqa: ASYNC110 (the preprocessing runs in worker threads)
            await asyncio.sleep(0.002)
    assert sample(metrics, "sightline_streams_open") == 1
    assert sample(metrics, "sightline_frames_in_flight") == 2
    assert len(streams.streams) == 1
    gate.set()
    feed.queue.put_nowait(None)
    await asyncio.wait_for(consumer, 5)
    assert [o.status for o in outcomes] == [FrameStatus.OK] * 2
    assert sample(metrics, "sightline_frames_total", status="OK") == 2
    assert (sample(metrics, "sightline_streams_open"), sample(metrics, "sightline_frames_in_flight")) == (0, 0)
    assert streams.streams == set()
