"""StreamRecognize end to end: ordering, drop policies, latency limits, cancellation, bad frames, configs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeAlias

import grpc
import numpy as np
import pytest

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.server import Application
from tests.e2e.helpers import COLORS, config, frame, slow_config, solid, violated_fields

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
NAMES = list(COLORS)


def raw_frame(frame_id: int, name: str, fmt: streams_pb2.PixelFormat) -> streams_pb2.StreamRecognizeRequest:
    pixels = solid(name)
    if fmt == streams_pb2.BGR24:
        pixels = pixels[..., ::-1]
    data = np.ascontiguousarray(pixels).tobytes()
    raw = streams_pb2.RawImage(width=pixels.shape[1], height=pixels.shape[0], format=fmt, data=data)
    return streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=frame_id, raw=raw))


async def run(
    stub: Stub, messages: Iterable[streams_pb2.StreamRecognizeRequest]
) -> list[streams_pb2.StreamRecognizeResponse]:
    return [r async for r in stub.StreamRecognize(iter(list(messages)))]


def top(response: streams_pb2.StreamRecognizeResponse) -> str:
    return str(response.result.outputs[0].labels.predicted[0].label_name)


async def test_ordered_results_under_concurrency(recognition: Stub) -> None:
    names = [NAMES[i % len(NAMES)] for i in range(48)]
    responses = await run(recognition, [config(max_in_flight=8), *(frame(i, n) for i, n in enumerate(names))])
    assert [r.frame_id for r in responses] == list(range(48))
    assert all(r.status == streams_pb2.OK for r in responses)
    assert [top(r) for r in responses] == names
    assert responses[5].timestamp.ToMilliseconds() == 1_700_000_000_005
    t = responses[0].timing
    assert t.total_ms >= t.triton_ms > 0
    assert t.preprocess_ms > 0


async def test_as_completed_answers_every_frame(recognition: Stub) -> None:
    names = [NAMES[(3 * i) % len(NAMES)] for i in range(30)]
    messages = [config(max_in_flight=6, ordering=streams_pb2.AS_COMPLETED), *(frame(i, n) for i, n in enumerate(names))]
    responses = await run(recognition, messages)
    assert sorted(r.frame_id for r in responses) == list(range(30))
    assert {r.frame_id: top(r) for r in responses} == dict(enumerate(names))


@pytest.mark.parametrize("fmt", [streams_pb2.RGB24, streams_pb2.BGR24])
async def test_raw_pixels(recognition: Stub, fmt: streams_pb2.PixelFormat) -> None:
    responses = await run(recognition, [config(), raw_frame(1, "blue", fmt), raw_frame(2, "yellow", fmt)])
    assert [top(r) for r in responses] == ["blue", "yellow"]


async def test_gray_raw_pixels(recognition: Stub) -> None:
    gray = streams_pb2.RawImage(width=4, height=2, format=streams_pb2.GRAY8, data=bytes([250] * 8))
    responses = await run(
        recognition, [config(), streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(raw=gray))]
    )
    assert top(responses[0]) == "white"


async def test_a_corrupt_frame_fails_alone(recognition: Stub) -> None:
    bad = streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=2, encoded=b"\xff\xd8\xffjunk"))
    short = streams_pb2.StreamRecognizeRequest(
        frame=streams_pb2.Frame(frame_id=3, raw=streams_pb2.RawImage(width=10, height=10, format=streams_pb2.RGB24))
    )
    responses = await run(recognition, [config(), frame(1, "red"), bad, short, frame(4, "green")])
    assert [r.status for r in responses] == [streams_pb2.OK, streams_pb2.ERROR, streams_pb2.ERROR, streams_pb2.OK]
    assert responses[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "could not be decoded" in responses[1].error.message
    assert "holds 0 bytes" in responses[2].error.message
    # The violations name the stream's own fields, never a unary request's inputs[0].image.
    assert violated_fields(responses[1].error) == ["frame.encoded"]
    assert violated_fields(responses[2].error) == ["frame.raw.data"]
    assert top(responses[3]) == "green"


async def test_a_later_config_changes_thresholds_and_target(recognition: Stub) -> None:
    strict = streams_pb2.OutputThresholds(thresholds=[1.0] * 6)
    responses = await run(
        recognition,
        [
            config(),
            frame(1, "red"),
            config(output_thresholds=[strict], show_discarded=True),
            frame(2, "red"),
            config(version_id="colors-v1.1"),
            frame(3, "red"),
        ],
    )
    assert top(responses[0]) == "red"
    assert len(responses[1].result.outputs[0].labels.predicted) == 0
    assert responses[1].result.outputs[0].labels.discarded[0].label_name == "red"
    assert top(responses[2]) == "red"


@pytest.mark.parametrize(
    ("messages", "code", "words"),
    [
        ([frame(1, "red")], grpc.StatusCode.INVALID_ARGUMENT, "first message of a stream must be a config"),
        ([config(spec_id="nope")], grpc.StatusCode.NOT_FOUND, "nope"),
        ([config(max_in_flight=1000)], grpc.StatusCode.INVALID_ARGUMENT, "max_in_flight"),
        (
            [config(), config(output_thresholds=[streams_pb2.OutputThresholds(thresholds=[0.5])])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "1 values for 6",
        ),
    ],
)
async def test_bad_configs_end_the_stream_with_a_status_even_while_the_client_writes(
    recognition: Stub, messages: list[streams_pb2.StreamRecognizeRequest], code: grpc.StatusCode, words: str
) -> None:
    # The client goes on writing frames after the message the server refuses, as a real producer does. grpcio's
    # asyncio client reports INTERNAL for a call ended while it writes (grpc/grpc#36066) unless the server reads
    # the rest of the stream before it answers; repeated, since the race is lost only some of the time.
    frames = [frame(i, NAMES[i % len(NAMES)]) for i in range(40)]
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await run(recognition, [*messages, *frames])
        assert error.value.code() == code, error.value.details()
        assert words in (error.value.details() or "")


# ------------------------------------------------------------------------------------- slow model (60 ms)


async def test_block_loses_nothing_and_slows_the_producer(slow_recognition: Stub) -> None:
    # Frames large enough (0.9 MB each) that HTTP/2 flow-control windows cannot hide the backpressure.
    pixels = np.zeros((480, 640, 3), dtype=np.uint8)
    pixels[:] = COLORS["yellow"]
    raw = streams_pb2.RawImage(width=640, height=480, format=streams_pb2.RGB24, data=pixels.tobytes())
    n = 20
    sent_at: list[float] = []

    async def producer() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
        yield slow_config(max_in_flight=1, drop_policy=streams_pb2.BLOCK)
        for i in range(n):
            sent_at.append(time.perf_counter())
            yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw))

    started = time.perf_counter()
    responses = [r async for r in slow_recognition.StreamRecognize(producer())]
    elapsed = time.perf_counter() - started
    assert [r.status for r in responses] == [streams_pb2.OK] * n
    assert all(top(r) == "yellow" for r in responses)
    assert elapsed >= n * 0.06 * 0.9
    # One frame in flight and one waiting at the server: the producer is held back by the model, not buffered.
    assert sent_at[-1] - sent_at[0] > 0.3


@pytest.mark.parametrize("policy", [streams_pb2.DROP_NEWEST, streams_pb2.DROP_OLDEST])
async def test_drop_policies_with_a_fast_producer(slow_recognition: Stub, policy: int) -> None:
    n = 20
    responses = await run(
        slow_recognition, [slow_config(max_in_flight=1, drop_policy=policy), *(frame(i, "red") for i in range(n))]
    )
    assert sorted(r.frame_id for r in responses) == list(range(n))
    ok = [r.frame_id for r in responses if r.status == streams_pb2.OK]
    skipped = [r for r in responses if r.status == streams_pb2.SKIPPED]
    assert len(skipped) >= n // 2, "a producer 20x faster than the model must lose frames"
    assert all("dropped" in r.skip_reason for r in skipped)
    assert ok[0] == 0  # the first frame goes straight to Triton
    if policy == streams_pb2.DROP_OLDEST:
        assert ok[-1] == n - 1  # the freshest frame wins
    else:
        assert n - 1 not in ok  # new frames are the ones dropped
    assert [r.frame_id for r in responses] == list(range(n)), "ORDERED holds for skipped frames too"


async def test_max_latency_skips_frames_that_waited_too_long(slow_recognition: Stub) -> None:
    messages = [slow_config(max_in_flight=1, max_latency_ms=30), *(frame(i, "green") for i in range(6))]
    responses = await run(slow_recognition, messages)
    statuses = [r.status for r in responses]
    assert statuses[0] == streams_pb2.OK
    assert streams_pb2.SKIPPED in statuses
    assert all("too old" in r.skip_reason for r in responses if r.status == streams_pb2.SKIPPED)


async def test_cancelling_a_stream_cancels_its_work(slow_app: Application, slow_recognition: Stub) -> None:
    async def producer() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
        yield slow_config(max_in_flight=4)
        for i in range(1000):
            yield frame(i, "blue")
            await asyncio.sleep(0.005)

    call = slow_recognition.StreamRecognize(producer())
    first = await call.read()
    assert first.status == streams_pb2.OK
    assert slow_app.streams.open_streams == 1
    call.cancel()
    for _ in range(100):
        if slow_app.streams.in_flight == 0 and slow_app.streams.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert slow_app.streams.in_flight == 0
    assert slow_app.streams.open_streams == 0


async def test_half_close_delivers_every_remaining_result(slow_recognition: Stub) -> None:
    call = slow_recognition.StreamRecognize()
    await call.write(slow_config(max_in_flight=4))
    for i in range(5):
        await call.write(frame(i, "white"))
    await call.done_writing()
    responses = [r async for r in call]
    assert [r.frame_id for r in responses] == list(range(5))
    assert all(top(r) == "white" for r in responses)
    assert await call.code() == grpc.StatusCode.OK


async def test_dropped_frames_are_counted_by_reason(slow_app: Application, slow_recognition: Stub) -> None:
    def dropped(reason: str) -> float:
        value = slow_app.metrics.registry.get_sample_value("sightline_frames_dropped_total", {"reason": reason})
        return value or 0.0

    before = dropped("drop_newest")
    messages = [
        slow_config(max_in_flight=1, drop_policy=streams_pb2.DROP_NEWEST),
        *(frame(i, "red") for i in range(12)),
    ]
    responses = await run(slow_recognition, messages)
    skipped = sum(r.status == streams_pb2.SKIPPED for r in responses)
    assert skipped > 0
    assert dropped("drop_newest") - before == skipped
