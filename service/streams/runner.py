"""The streams of one server: what they share (the recognizer, the metrics) and what the server asks of them
(open them, count their frames, drain them on SIGTERM)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from service.observability import Metrics
from service.recognition import Recognizer
from service.streams.frames import InFlight
from service.streams.stream import Stream
from service.streams.types import FrameInput, FrameOutcome, StreamConfig

__all__ = ["StreamRunner"]


class StreamRunner:
    """Runs streams for one server; ``in_flight`` counts frames being processed across all streams, and
    ``open_streams`` the streams open (from their first message on)."""

    def __init__(self, recognizer: Recognizer, *, metrics: Metrics | None = None) -> None:
        self._recognizer = recognizer
        self._metrics = metrics
        self._in_flight = InFlight()
        self.open_streams = 0
        self.draining = False
        self.streams: set[Stream] = set()
        if metrics is not None:
            metrics.frames_in_flight.set_function(lambda: self.in_flight)
            metrics.streams_open.set_function(lambda: self.open_streams)

    @property
    def in_flight(self) -> int:
        return self._in_flight.value

    def drain(self) -> None:
        """Streams stop admitting frames (read and dropped from then on), answer those they hold, then end with
        UNAVAILABLE (reconnect elsewhere)."""
        self.draining = True
        for stream in list(self.streams):
            stream.drain()

    def count(self, outcome: FrameOutcome) -> None:
        if self._metrics is None:
            return
        self._metrics.frames.labels(outcome.status.value).inc()
        if outcome.skip_kind is not None:
            self._metrics.frames_dropped.labels(outcome.skip_kind.value).inc()

    def stream(self, messages: AsyncIterator[StreamConfig | FrameInput]) -> AsyncGenerator[FrameOutcome]:
        """Outcomes of the frames of ``messages``, whose first item must be a ``StreamConfig``."""
        return self._serve(Stream(messages, self._recognizer, in_flight=self._in_flight, count=self.count))

    async def _serve(self, stream: Stream) -> AsyncGenerator[FrameOutcome]:
        self.streams.add(stream)
        self.open_streams += 1
        if self.draining:
            stream.drain()
        try:
            async with contextlib.aclosing(stream.run()) as outcomes:
                async for outcome in outcomes:
                    yield outcome
        finally:
            self.streams.discard(stream)
            self.open_streams -= 1
