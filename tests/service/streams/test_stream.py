"""The stream pipeline without Triton: a real ``Recognizer`` (real decoding, preprocessing and post-processing of
the public colors model) over a ``FakeTritonGateway`` whose calls the tests hold and release."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service._proto.sightline.v1 import streams_pb2
from service.api.converters import outcome_to_proto, stream_message
from service.catalog import Catalog
from service.domain import Target
from service.errors import InvalidArgumentError, NotFoundError, UnavailableError
from service.images import DecodeBudget
from service.recognition import Recognizer
from service.streams import (
    CaptureTime,
    DropPolicy,
    FrameInput,
    FrameOutcome,
    FrameStatus,
    Ordering,
    RawPixels,
    SkipKind,
    StreamConfig,
    StreamRunner,
)
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway
from tests.helpers import COLOR_SAMPLES, ROOT

CATALOG = Catalog.load(ROOT / "model_repository")
COLORS = COLOR_SAMPLES
NAMES = list(COLORS)  # the colors model's labels, in order
COLORS_INFO = Signature(
    (TensorSignature("data", "FP32", (-1, 3, 64, 64)),),
    (TensorSignature("share", "FP32", (-1, 6)),),
    32,
)


def colour(call: FakeCall) -> str:
    """The colour of a call's (single) image, read back from its tensor: pixel / 255 - 0.5 (the model's mean)."""
    rgb = (call.inputs["data"][0].mean(axis=(1, 2)) + 0.5) * 255
    return min(NAMES, key=lambda n: float(np.sum((rgb - np.array(COLORS[n])) ** 2)))


def shares(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    share = np.full((1, len(NAMES)), 0.02, dtype=np.float32)
    share[0, NAMES.index(colour(call))] = 0.9
    return {"share": share}


def make(**kwargs: Any) -> tuple[StreamRunner, FakeTritonGateway]:
    gateway = FakeTritonGateway({"colors": COLORS_INFO}, {"colors": shares}, **kwargs)
    checked: TritonGateway = gateway
    recognizer = Recognizer(
        CATALOG,
        checked,
        max_image_pixels=4_000_000,
        triton_timeout_s=5.0,
        fetcher=None,
        decode_budget=DecodeBudget(12_000_000),
    )
    return StreamRunner(recognizer), gateway


def png(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), COLORS[name]).save(buffer, format="PNG")
    return buffer.getvalue()


def frame(frame_id: int, name: str = "red") -> FrameInput:
    return FrameInput(frame_id, CaptureTime(1_700_000_000 + frame_id, 7), encoded=png(name))


def raw(frame_id: int, name: str, *, bgr: bool = False) -> FrameInput:
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:] = COLORS[name][::-1] if bgr else COLORS[name]
    return FrameInput(frame_id, raw=RawPixels(pixels.tobytes(), 48, 32, 3, bgr))


def config(**kwargs: Any) -> StreamConfig:
    return StreamConfig(Target(spec_id=kwargs.pop("spec_id", "colors-v1")), **kwargs)


def top(outcome: FrameOutcome) -> str:
    assert outcome.result is not None, outcome
    return outcome.result.outputs[0].predicted[0].label_name


class Feed:
    """A stream's request iterator: the messages a test sends, read one at a time. ``reads`` counts the calls
    for a message (a call waiting for one included); ``end`` half-closes."""

    def __init__(self, *messages: StreamConfig | FrameInput) -> None:
        self._queue: asyncio.Queue[StreamConfig | FrameInput | None] = asyncio.Queue()
        self.reads = 0
        self.send(*messages)

    def send(self, *messages: StreamConfig | FrameInput) -> None:
        for message in messages:
            self._queue.put_nowait(message)

    def end(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> StreamConfig | FrameInput:
        self.reads += 1
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message


async def settle(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition`` holds (the frame tasks' preprocessing runs in worker threads)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (worker threads cannot set an asyncio.Event)
            await asyncio.sleep(0.001)


async def quiet() -> None:
    """Let every task that can run, run (worker threads included)."""
    for _ in range(20):
        await asyncio.sleep(0.001)


async def collect(outcomes: AsyncGenerator[FrameOutcome], into: list[FrameOutcome] | None = None) -> list[FrameOutcome]:
    """The outcomes of a stream, appended to ``into`` as they come (what came before an error is kept there)."""
    seen = [] if into is None else into
    async for outcome in outcomes:
        seen.append(outcome)
    return seen


def stream_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("stream-")]


# ---------------------------------------------------------------------------------------------- basics


async def test_frames_get_their_colour_in_order_with_their_capture_time() -> None:
    runner, gateway = make()
    names = [NAMES[i % 6] for i in range(12)]
    feed = Feed(config(max_in_flight=3), *(frame(i, n) for i, n in enumerate(names)))
    feed.end()
    outcomes = await collect(runner.stream(feed))
    assert [o.frame_id for o in outcomes] == list(range(12))
    assert [top(o) for o in outcomes] == names
    assert outcomes[5].timestamp == CaptureTime(1_700_000_005, 7)
    assert all(o.timing.total_ms >= o.timing.triton_ms >= 0 for o in outcomes)
    assert len(gateway.calls) == 12
    assert gateway.peak <= 3
    assert runner.open_streams == 0
    assert runner.in_flight == 0


async def test_raw_pixels_rgb_bgr() -> None:
    runner, _ = make()
    feed = Feed(config(), raw(0, "blue"), raw(1, "yellow", bgr=True))
    feed.end()
    assert [top(o) for o in await collect(runner.stream(feed))] == ["blue", "yellow"]


async def test_a_bad_frame_fails_alone() -> None:
    runner, gateway = make()
    short = FrameInput(3, raw=RawPixels(b"", 10, 10, 3))
    feed = Feed(config(), frame(1, "red"), FrameInput(2, encoded=b"\xff\xd8\xffjunk"), short, FrameInput(4))
    feed.send(frame(5, "green"))
    feed.end()
    outcomes = await collect(runner.stream(feed))
    statuses = [o.status for o in outcomes]
    assert statuses == [FrameStatus.OK, FrameStatus.ERROR, FrameStatus.ERROR, FrameStatus.ERROR, FrameStatus.OK]
    assert all(isinstance(o.error, InvalidArgumentError) for o in outcomes[1:4])
    assert "holds 0 bytes" in str(outcomes[2].error)
    assert "has no image" in str(outcomes[3].error)
    assert top(outcomes[4]) == "green"
    assert len(gateway.calls) == 2  # the bad frames never reach Triton


@pytest.mark.parametrize(
    ("messages", "error", "words"),
    [
        ([frame(1)], InvalidArgumentError, "first message of a stream must be a config"),
        ([], InvalidArgumentError, "first message of a stream must be a config"),
        ([config(max_in_flight=1000)], InvalidArgumentError, "max_in_flight"),
        ([config(max_latency_ms=-1)], InvalidArgumentError, "max_latency_ms"),
        ([config(spec_id="nope")], NotFoundError, "nope"),
    ],
)
async def test_a_bad_first_message_ends_the_stream(
    messages: list[StreamConfig | FrameInput], error: type[Exception], words: str
) -> None:
    runner, gateway = make()
    feed = Feed(*messages, frame(9))
    with pytest.raises(error, match=words):
        await collect(runner.stream(feed))
    assert feed.reads == 1
    assert gateway.calls == []
    assert runner.open_streams == 0


async def test_a_bad_later_config_ends_the_stream_after_the_frames_before_it() -> None:
    runner, _ = make()
    feed = Feed(config(max_in_flight=1), frame(0), frame(1), config(output_thresholds=((0.5,),)), frame(2))
    feed.end()
    seen: list[FrameOutcome] = []
    with pytest.raises(InvalidArgumentError, match="1 values for 6"):
        await collect(runner.stream(feed), seen)
    assert [o.frame_id for o in seen] in ([], [0], [0, 1])  # what was answered before the error; frame 2 never
    assert not stream_tasks()


async def test_a_later_config_applies_to_the_frames_after_it() -> None:
    runner, _ = make()
    strict = config(output_thresholds=((1.0,) * 6,), show_discarded=True)
    feed = Feed(config(max_in_flight=2), frame(0), strict, frame(1))
    feed.end()
    first, second = await collect(runner.stream(feed))
    assert top(first) == "red"
    assert second.result is not None
    assert second.result.outputs[0].predicted == ()
    assert second.result.outputs[0].discarded[0].label_name == "red"


# ---------------------------------------------------------------------------------------------- admission


@pytest.mark.parametrize("policy", list(DropPolicy))
async def test_a_client_that_stops_reading_stops_being_read(policy: DropPolicy) -> None:
    runner, _ = make()
    window = 4 * 2 + 16
    feed = Feed(config(max_in_flight=2, drop_policy=policy), *(frame(i) for i in range(100)))
    outcomes = runner.stream(feed)
    await anext(outcomes)  # then the client reads no more
    await settle(lambda: feed.reads == 1 + window)  # the config and the window's frames
    await quiet()
    assert feed.reads == 1 + window
    assert runner.in_flight == 0
    await outcomes.aclose()


async def test_block_reads_no_further_than_the_waiting_room() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": lambda call: hold})
    feed = Feed(config(max_in_flight=2), *(frame(i) for i in range(10)))
    feed.end()
    consumer = asyncio.create_task(collect(runner.stream(feed)))
    await settle(lambda: gateway.running == 2)
    await quiet()
    # Two frames in flight, two waiting; the reader waits for room before it asks for the fifth.
    assert feed.reads == 1 + 4
    hold.set()
    outcomes = await consumer
    assert [o.status for o in outcomes] == [FrameStatus.OK] * 10
    assert gateway.peak == 2


@pytest.mark.parametrize(
    ("policy", "answered", "kind"),
    [(DropPolicy.DROP_NEWEST, {0, 1}, SkipKind.DROP_NEWEST), (DropPolicy.DROP_OLDEST, {0, 9}, SkipKind.DROP_OLDEST)],
)
async def test_drop_policies_when_the_waiting_room_is_full(
    policy: DropPolicy, answered: set[int], kind: SkipKind
) -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": lambda call: hold})
    feed = Feed(config(max_in_flight=1, drop_policy=policy), frame(0))
    consumer = asyncio.create_task(collect(runner.stream(feed)))
    await settle(lambda: gateway.running == 1)
    feed.send(*(frame(i) for i in range(1, 10)))
    feed.end()
    await settle(lambda: feed.reads == 1 + 10 + 1)
    hold.set()
    outcomes = await consumer
    assert [o.frame_id for o in outcomes] == list(range(10)), "ORDERED holds for skipped frames too"
    assert {o.frame_id for o in outcomes if o.status is FrameStatus.OK} == answered
    skipped = [o for o in outcomes if o.status is FrameStatus.SKIPPED]
    assert len(skipped) == 8
    assert all(o.skip_kind is kind and "dropped" in o.skip_reason for o in skipped)
    assert len(gateway.calls) == 2


async def test_max_latency_skips_a_frame_that_waited_too_long() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": lambda call: hold})
    feed = Feed(config(max_in_flight=1, max_latency_ms=20), frame(0), frame(1))
    consumer = asyncio.create_task(collect(runner.stream(feed)))
    await settle(lambda: gateway.running == 1)
    await asyncio.sleep(0.04)  # frame 1 waits behind frame 0 past its 20 ms
    feed.send(frame(2))
    feed.end()
    hold.set()
    outcomes = await consumer
    assert [o.status for o in outcomes] == [FrameStatus.OK, FrameStatus.SKIPPED, FrameStatus.OK]
    assert outcomes[1].skip_kind is SkipKind.TOO_OLD
    assert "too old" in outcomes[1].skip_reason
    assert len(gateway.calls) == 2  # the skipped frame never reached Triton


# ---------------------------------------------------------------------------------------------- ordering


def red_held(hold: asyncio.Event) -> Callable[[FakeCall], float | asyncio.Event]:
    return lambda call: hold if colour(call) == "red" else 0.0


async def test_ordered_waits_for_a_slow_frame() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": red_held(hold)})
    feed = Feed(config(max_in_flight=4), *(frame(i, n) for i, n in enumerate(["red", "green", "blue", "yellow"])))
    feed.end()
    consumer = asyncio.create_task(collect(runner.stream(feed)))
    await settle(lambda: len(gateway.calls) == 4 and gateway.running == 1)
    await quiet()
    assert not consumer.done()
    hold.set()
    outcomes = await consumer
    assert [(o.frame_id, top(o)) for o in outcomes] == [(0, "red"), (1, "green"), (2, "blue"), (3, "yellow")]


async def test_as_completed_answers_each_frame_when_done() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": red_held(hold)})
    feed = Feed(config(max_in_flight=4, ordering=Ordering.AS_COMPLETED))
    feed.send(*(frame(i, n) for i, n in enumerate(["red", "green", "blue", "yellow"])))
    feed.end()
    outcomes = runner.stream(feed)
    early = [await anext(outcomes) for _ in range(3)]
    assert {o.frame_id for o in early} == {1, 2, 3}
    # Frame 0 may still be in its worker thread's preprocessing when the others are answered.
    await settle(lambda: gateway.running == 1)
    hold.set()
    rest = await collect(outcomes)
    assert [(o.frame_id, top(o)) for o in rest] == [(0, "red")]


async def test_tracking_delivers_in_order_even_as_completed() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": red_held(hold)})
    feed = Feed(config(max_in_flight=4, ordering=Ordering.AS_COMPLETED, tracking=True))
    feed.send(*(frame(i, n) for i, n in enumerate(["red", "green", "blue"])))
    feed.end()
    consumer = asyncio.create_task(collect(runner.stream(feed)))
    await settle(lambda: len(gateway.calls) == 3 and gateway.running == 1)
    hold.set()
    assert [o.frame_id for o in await consumer] == [0, 1, 2]


# ---------------------------------------------------------------------------------------------- cancellation


async def test_closing_the_stream_ends_every_task_and_reads_no_more() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": red_held(hold)})
    feed = Feed(config(max_in_flight=4), frame(0, "green"), *(frame(i, "red") for i in range(1, 30)))
    outcomes = runner.stream(feed)
    first = await anext(outcomes)
    assert first.status is FrameStatus.OK
    await settle(lambda: gateway.running == 4)
    assert runner.open_streams == 1
    assert stream_tasks()
    await outcomes.aclose()
    # Every task of the stream was cancelled and awaited inside aclose.
    assert gateway.running == 0
    assert not stream_tasks()
    assert (runner.open_streams, runner.in_flight) == (0, 0)
    reads = feed.reads
    feed.send(*(frame(i) for i in range(30, 40)))
    await quiet()
    assert feed.reads == reads


async def test_cancelling_the_consumer_ends_every_task() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": lambda call: hold})
    feed = Feed(config(max_in_flight=3), *(frame(i) for i in range(10)))
    outcomes = runner.stream(feed)
    consumer = asyncio.create_task(anext(outcomes))
    await settle(lambda: gateway.running == 3)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert gateway.running == 0
    assert not stream_tasks()
    assert (runner.open_streams, runner.in_flight) == (0, 0)
    reads = feed.reads
    await quiet()
    assert feed.reads == reads
    await outcomes.aclose()


# ---------------------------------------------------------------------------------------------- drain


async def test_drain_answers_the_frames_held_then_ends_unavailable() -> None:
    hold = asyncio.Event()
    runner, gateway = make(latency={"colors": lambda call: hold})
    feed = Feed(config(max_in_flight=2), *(frame(i) for i in range(10)))
    seen: list[FrameOutcome] = []
    consumer = asyncio.create_task(collect(runner.stream(feed), seen))
    await settle(lambda: gateway.running == 2 and feed.reads == 1 + 4)
    runner.drain()
    # The frames the client still sends are read and dropped, so that its writes never wait on flow control:
    # the config and all 10 frames read, and one more read waiting.
    await settle(lambda: feed.reads == 1 + 10 + 1)
    hold.set()
    with pytest.raises(UnavailableError, match="shutting down"):
        await consumer
    assert [(o.frame_id, o.status) for o in seen] == [(i, FrameStatus.OK) for i in range(4)]
    assert len(gateway.calls) == 4
    assert not stream_tasks()


async def test_a_stream_opened_while_draining_ends_unavailable() -> None:
    runner, gateway = make()
    runner.drain()
    feed = Feed(config(), frame(0))
    with pytest.raises(UnavailableError):
        await collect(runner.stream(feed))
    assert gateway.calls == []


# ---------------------------------------------------------------------------------------------- Triton away


async def test_frames_fail_unavailable_then_recover_with_one_log_line_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner, _ = make(fail=lambda call: UnavailableError("triton away") if 2 <= call.index <= 4 else None)
    feed = Feed(config(max_in_flight=1), *(frame(i, NAMES[i % 6]) for i in range(8)))
    feed.end()
    with caplog.at_level(logging.WARNING, logger="service.streams"):
        outcomes = await collect(runner.stream(feed))
    assert [o.status for o in outcomes] == [FrameStatus.OK] * 2 + [FrameStatus.ERROR] * 3 + [FrameStatus.OK] * 3
    assert all(isinstance(o.error, UnavailableError) for o in outcomes[2:5])
    assert [top(o) for o in outcomes[5:]] == NAMES[5:6] + NAMES[0:2]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("service.streams")]
    assert len(lines) == 2
    assert "UNAVAILABLE from frame 2" in lines[0]
    assert "answered again from frame 5" in lines[1]


# ---------------------------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(("seconds", "nanos"), [(1_700_000_000, 5_000_000), (-(2**63), 0), (2**63 - 1, -1)])
def test_capture_times_are_echoed_exactly(seconds: int, nanos: int) -> None:
    request = streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=3, encoded=b"x"))
    request.frame.timestamp.seconds = seconds
    request.frame.timestamp.nanos = nanos
    message = stream_message(request)
    assert isinstance(message, FrameInput)
    assert message.timestamp == CaptureTime(seconds, nanos)
    outcome = FrameOutcome(3, message.timestamp, FrameStatus.OK)
    echoed = outcome_to_proto(outcome).timestamp
    assert (echoed.seconds, echoed.nanos) == (seconds, nanos)
    assert not outcome_to_proto(FrameOutcome(4, None, FrameStatus.OK)).HasField("timestamp")
