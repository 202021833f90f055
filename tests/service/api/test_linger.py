"""The bounds of reading a refused stream to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service._proto.sightline.v1 import networks_pb2
from service.api import linger as linger_module
from service.api.linger import linger


def chunk(size: int) -> networks_pb2.CreateNetworkRequest:
    return networks_pb2.CreateNetworkRequest(chunk=networks_pb2.FileChunk(file_name="m", data=bytes(size)))


class Requests:
    """A client stream of ``count`` chunks that counts what was read, then ends, fails or hangs."""

    def __init__(self, count: int, size: int = 1000, then: str = "end") -> None:
        self.count, self.size, self.then, self.read = count, size, then, 0

    async def __aiter__(self) -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
        for _ in range(self.count):
            self.read += 1
            yield chunk(self.size)
        if self.then == "fail":
            raise RuntimeError("the client went away")
        if self.then == "hang":
            await asyncio.Event().wait()


async def test_a_stream_is_read_to_its_end() -> None:
    requests = Requests(50)
    await linger(aiter(requests))
    assert requests.read == 50


async def test_reading_stops_past_the_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linger_module, "LINGER_BYTES", 10_000)
    requests = Requests(1000)
    await linger(aiter(requests))
    assert 10 <= requests.read <= 11


async def test_reading_stops_past_the_time_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linger_module, "LINGER_S", 0.05)
    requests = Requests(3, then="hang")
    await asyncio.wait_for(linger(aiter(requests)), 2)
    assert requests.read == 3


async def test_a_failing_stream_ends_the_reading_quietly() -> None:
    requests = Requests(2, then="fail")
    await linger(aiter(requests))
    assert requests.read == 2


async def test_a_cancellation_still_reaches_the_caller() -> None:
    task = asyncio.create_task(linger(aiter(Requests(1, then="hang"))))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
