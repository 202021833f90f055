"""Many streams of cameras that never wait, on a real server process: every frame answered, drops only by the
policy, and the server's memory grows by no more than the stated bound (``service.streams.types.memory_bound``,
docs/performance.md P4). Memory, unlike time, does not move with the load beside the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.settings import Settings
from service.streams.types import memory_bound
from tests.e2e.external import ExternalService
from tests.helpers import TritonFixture

STREAMS = 32
FRAMES = 24
WIDTH, HEIGHT = 320, 240
TENSOR_BYTES = 3 * 128 * 128 * 4  # shapes-yolo's input


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def service(triton: TritonFixture, tmp_path: Path) -> Iterator[ExternalService]:
    # The session's Triton is on this host: its tensors go through shared memory, as with the embedded one.
    with ExternalService(
        tmp_path, SIGHTLINE_TRITON_URL=triton.url, SIGHTLINE_TRITON_SHARED_MEMORY="on"
    ).running() as running:
        yield running


def frame(i: int, rng: np.random.Generator) -> streams_pb2.StreamRecognizeRequest:
    pixels = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    raw = streams_pb2.RawImage(width=WIDTH, height=HEIGHT, format=streams_pb2.RGB24, data=pixels.tobytes())
    return streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw))


async def cameras(address: str, policy: streams_pb2.DropPolicy, pid: int) -> tuple[dict[str, int], int]:
    """``STREAMS`` clients writing ``FRAMES`` frames each as fast as their streams take them; the statuses of the
    answers, and the peak of the server's RSS meanwhile (sampled every 20 ms)."""
    rng = np.random.default_rng(policy)
    frames = [frame(i, rng) for i in range(FRAMES)]
    statuses: dict[str, int] = {}
    peak = rss_bytes(pid)
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.02)

    async def camera(stub: recognition_pb2_grpc.RecognitionServiceStub) -> None:
        config = streams_pb2.StreamConfig(spec_id="shapes-yolo-v1", max_in_flight=1, drop_policy=policy)
        messages = [streams_pb2.StreamRecognizeRequest(config=config), *frames]
        async for response in stub.StreamRecognize(iter(messages)):
            name = streams_pb2.FrameStatus.Name(response.status)
            statuses[name] = statuses.get(name, 0) + 1
            if response.status == streams_pb2.SKIPPED:
                assert response.skip_reason, response

    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(camera(stub) for _ in range(STREAMS)))
        done.set()
        await sampler
    return statuses, peak


@pytest.mark.parametrize("policy", [streams_pb2.DROP_OLDEST, streams_pb2.BLOCK], ids=["drop-oldest", "block"])
async def test_memory_stays_within_the_stated_bound(service: ExternalService, policy: streams_pb2.DropPolicy) -> None:
    assert service.process is not None
    pid = service.process.pid
    await cameras(service.address, streams_pb2.BLOCK, pid)  # warm: model info, regions, buffers of a first run
    before = rss_bytes(pid)
    statuses, peak = await cameras(service.address, policy, pid)
    service.assert_alive()
    assert sum(statuses.values()) == STREAMS * FRAMES, statuses
    assert set(statuses) <= {"OK", "SKIPPED"}, statuses
    if policy == streams_pb2.BLOCK:
        assert statuses == {"OK": STREAMS * FRAMES}
    window = Settings.model_fields["grpc_stream_window_bytes"].default
    bound = memory_bound(STREAMS, 1, WIDTH * HEIGHT * 3, TENSOR_BYTES, window)
    assert bound is not None
    growth = peak - before
    assert growth <= bound, f"the server grew by {growth >> 20} MiB, beyond the stated {bound >> 20} MiB"
