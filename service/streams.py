"""The stream use case: a config, then frames; one outcome per frame, with frames in flight.

Flow per stream::

    reader ──▶ waiting (≤ max_in_flight frames) ──▶ dispatcher ──▶ up to max_in_flight frame tasks ──▶ outcomes
                 │ full: BLOCK waits (gRPC flow control),                 (decode, preprocess, Triton,     │
                 │ DROP_OLDEST / DROP_NEWEST skip a frame                  post-process)                    ▼
                 └────────────── every frame read and not yet handed to the client counts in a window ◀── emit

Memory is bounded per stream: at most ``window`` frames are held between reading and delivery, whatever the
client does (a client that stops reading results stops being read). A frame's age is measured from the moment
the server read it; ``max_latency_ms`` skips frames that waited longer when their turn comes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from postprocess.tracking import IouTracker
from postprocess.types import LabelsResult
from service.domain import DEFAULT_MAX_PREDICTIONS, RecognitionResult, ResolvedVersion, Target
from service.errors import InvalidArgumentError, SightlineError, UnavailableError
from service.observability import Metrics
from service.preprocess import RGBImage, from_raw_pixels
from service.recognition import Recognizer, check_max_predictions, with_thresholds

__all__ = [
    "DropPolicy",
    "FrameInput",
    "FrameOutcome",
    "FrameStatus",
    "FrameTiming",
    "Ordering",
    "RawPixels",
    "SkipKind",
    "StreamConfig",
    "StreamRunner",
]

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64


class Ordering(enum.Enum):
    ORDERED = "ORDERED"
    AS_COMPLETED = "AS_COMPLETED"


class DropPolicy(enum.Enum):
    BLOCK = "BLOCK"
    DROP_OLDEST = "DROP_OLDEST"
    DROP_NEWEST = "DROP_NEWEST"


class SkipKind(enum.Enum):
    """Why a frame was skipped (the metrics' ``reason`` label)."""

    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    TOO_OLD = "too_old"


class FrameStatus(enum.Enum):
    OK = "OK"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """A config message. ``max_in_flight``, ``ordering``, ``drop_policy`` and ``tracking`` count only in the
    first one; the others apply to the frames read after the message."""

    target: Target
    show_discarded: bool = False
    max_predictions: int = DEFAULT_MAX_PREDICTIONS
    max_in_flight: int = 4
    ordering: Ordering = Ordering.ORDERED
    drop_policy: DropPolicy = DropPolicy.BLOCK
    max_latency_ms: int = 0
    tracking: bool = False
    output_thresholds: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class RawPixels:
    data: bytes
    width: int
    height: int
    channels: int
    bgr: bool = False


@dataclass(frozen=True, slots=True)
class FrameInput:
    """One frame: the client's id and capture time (echoed back), and encoded bytes or raw pixels."""

    frame_id: int
    timestamp: Any = None
    encoded: bytes = b""
    raw: RawPixels | None = None


@dataclass(frozen=True, slots=True)
class FrameTiming:
    queue_ms: float = 0.0
    preprocess_ms: float = 0.0
    triton_ms: float = 0.0
    postprocess_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    frame_id: int
    timestamp: Any
    status: FrameStatus
    result: RecognitionResult | None = None
    skip_reason: str = ""
    skip_kind: SkipKind | None = None
    error: SightlineError | None = None
    timing: FrameTiming = field(default_factory=FrameTiming)


@dataclass(frozen=True, slots=True)
class _Settings:
    """What a frame is run with: a snapshot of the config when the frame was read."""

    deployment: ResolvedVersion
    show_discarded: bool
    max_predictions: int
    max_latency_ms: int


@dataclass(slots=True)
class _Pending:
    seq: int
    frame: FrameInput
    settings: _Settings
    read_at: float


class StreamRunner:
    """Runs streams for one server; ``in_flight`` counts frames being processed across all streams."""

    def __init__(self, recognizer: Recognizer, *, metrics: Metrics | None = None) -> None:
        self._recognizer = recognizer
        self._metrics = metrics
        self.in_flight = 0
        self.open_streams = 0
        self.draining = False
        self.streams: set[_Stream] = set()
        if metrics is not None:
            metrics.frames_in_flight.set_function(lambda: self.in_flight)
            metrics.streams_open.set_function(lambda: self.open_streams)

    def drain(self) -> None:
        """Streams stop reading frames, answer those they hold, then end with UNAVAILABLE (reconnect elsewhere)."""
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
        return _Stream(self, messages).run()

    async def settings_for(self, config: StreamConfig) -> _Settings:
        check_max_predictions(config.max_predictions)
        if config.max_latency_ms < 0:
            raise InvalidArgumentError.field("config.max_latency_ms", "must not be negative")
        deployment = with_thresholds(await self._recognizer.resolve(config.target), config.output_thresholds)
        return _Settings(deployment, config.show_discarded, config.max_predictions, config.max_latency_ms)

    def load(self, frame: FrameInput) -> Callable[[], RGBImage]:
        raw = frame.raw
        if raw is not None:
            return lambda: from_raw_pixels(raw.data, raw.width, raw.height, raw.channels, bgr=raw.bgr)
        if not frame.encoded:
            raise InvalidArgumentError.field("frame", "has no image: set encoded or raw")
        return self._recognizer.encoded(frame.encoded)

    async def process(self, item: _Pending) -> FrameOutcome:
        frame, settings = item.frame, item.settings
        started = time.perf_counter()
        queue_ms = (started - item.read_at) * 1e3
        self.in_flight += 1
        try:
            result, stages = await self._recognizer.run(
                settings.deployment,
                self.load(frame),
                show_discarded=settings.show_discarded,
                max_predictions=settings.max_predictions,
            )
        except SightlineError as exc:
            return FrameOutcome(
                frame.frame_id, frame.timestamp, FrameStatus.ERROR, error=exc, timing=FrameTiming(queue_ms=queue_ms)
            )
        except Exception:
            # A bug must not hang the stream: this frame fails, the others go on.
            log.exception("frame %s failed", frame.frame_id)
            return FrameOutcome(
                frame.frame_id,
                frame.timestamp,
                FrameStatus.ERROR,
                error=SightlineError("internal error"),
                timing=FrameTiming(queue_ms=queue_ms),
            )
        finally:
            self.in_flight -= 1
        timing = FrameTiming(
            queue_ms=queue_ms,
            preprocess_ms=stages.preprocess_ms,
            triton_ms=stages.triton_ms,
            postprocess_ms=stages.postprocess_ms,
            total_ms=(time.perf_counter() - item.read_at) * 1e3,
        )
        return FrameOutcome(frame.frame_id, frame.timestamp, FrameStatus.OK, result=result, timing=timing)


_END = object()


class _Stream:
    def __init__(self, runner: StreamRunner, messages: AsyncIterator[StreamConfig | FrameInput]) -> None:
        self._runner = runner
        self._messages = messages
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: deque[_Pending] = deque()
        self._wake = asyncio.Event()  # something changed: a frame arrived, a slot freed, input ended
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: dict[int, FrameOutcome] = {}
        self._next_emit = 0
        self._seq = 0
        self._processing = 0
        self._held = 0  # frames read and not yet handed to the client
        self._input_done = False
        self._draining = False
        self._reader: asyncio.Task[None] | None = None
        self._trackers: dict[int, IouTracker] | None = None
        self._unavailable = False

    async def run(self) -> AsyncGenerator[FrameOutcome]:
        first = await anext(self._messages, None)
        if not isinstance(first, StreamConfig):
            raise InvalidArgumentError.field("config", "the first message of a stream must be a config")
        if not 1 <= (first.max_in_flight or 4) <= MAX_IN_FLIGHT:
            raise InvalidArgumentError.field(
                "config.max_in_flight", f"must be between 1 and {MAX_IN_FLIGHT}, got {first.max_in_flight}"
            )
        self._config = first
        self._max_in_flight = first.max_in_flight or 4
        self._window = 4 * self._max_in_flight + 16
        self._settings = await self._runner.settings_for(first)
        self._ordered = first.ordering is Ordering.ORDERED or first.tracking
        self._trackers = {} if first.tracking else None
        self._room = asyncio.Condition()
        self._runner.open_streams += 1
        reader = self._reader = asyncio.create_task(self._read(), name="stream-reader")
        dispatcher = asyncio.create_task(self._dispatch(), name="stream-dispatcher")
        self._runner.streams.add(self)
        if self._runner.draining:
            self.drain()
        try:
            while True:
                item = await self._out.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
                async with self._room:
                    self._held -= 1
                    self._room.notify_all()
        finally:
            self._runner.streams.discard(self)
            self._runner.open_streams -= 1
            for task in (reader, dispatcher, *self._tasks):
                task.cancel()
            await asyncio.gather(reader, dispatcher, *self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for message in self._messages:
                if isinstance(message, StreamConfig):
                    self._settings = await self._runner.settings_for(message)
                    continue
                async with self._room:
                    await self._room.wait_for(lambda: self._held < self._window)
                    if self._config.drop_policy is DropPolicy.BLOCK:
                        await self._room.wait_for(lambda: len(self._waiting) < self._max_in_flight)
                    self._held += 1
                item = _Pending(self._seq, message, self._settings, time.perf_counter())
                self._seq += 1
                if len(self._waiting) >= self._max_in_flight:
                    if self._config.drop_policy is DropPolicy.DROP_NEWEST:
                        self._deliver(
                            item.seq,
                            _skipped(
                                message, SkipKind.DROP_NEWEST, "dropped: max_in_flight frames were already waiting"
                            ),
                        )
                        continue
                    oldest = self._waiting.popleft()
                    self._deliver(
                        oldest.seq,
                        _skipped(oldest.frame, SkipKind.DROP_OLDEST, "dropped for a newer frame (DROP_OLDEST)"),
                    )
                self._waiting.append(item)
                self._wake.set()
        except asyncio.CancelledError:
            if not self._draining:
                raise
        except Exception as exc:  # a bad config (or a bug) ends the stream with its status
            self._out.put_nowait(exc)
            return
        self._input_done = True
        self._wake.set()

    def drain(self) -> None:
        """Stop reading: the frames held are answered, then the stream ends with UNAVAILABLE."""
        if self._reader is not None and not self._draining:
            self._draining = True
            self._reader.cancel()

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting and self._processing < self._max_in_flight:
                item = self._waiting.popleft()
                async with self._room:
                    self._room.notify_all()
                limit = item.settings.max_latency_ms
                age_ms = (time.perf_counter() - item.read_at) * 1e3
                if limit and age_ms > limit:
                    self._deliver(
                        item.seq,
                        _skipped(item.frame, SkipKind.TOO_OLD, f"too old: waited {age_ms:.0f} ms > {limit} ms"),
                    )
                    continue
                self._processing += 1
                task = asyncio.create_task(self._process(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._input_done and not self._waiting and self._processing == 0 and self._next_emit == self._seq:
                if self._draining:
                    self._out.put_nowait(
                        UnavailableError("the server is shutting down; reconnect to continue the stream")
                    )
                self._out.put_nowait(_END)
                return

    async def _process(self, item: _Pending) -> None:
        try:
            outcome = await self._runner.process(item)
        finally:
            self._processing -= 1
            self._wake.set()
        self._note_availability(outcome)
        self._deliver(item.seq, outcome)

    def _note_availability(self, outcome: FrameOutcome) -> None:
        """One log line per change between frames failing UNAVAILABLE (Triton away) and frames answered."""
        unavailable = isinstance(outcome.error, UnavailableError)
        if unavailable != self._unavailable:
            self._unavailable = unavailable
            if unavailable:
                log.warning(
                    "stream: frames fail with UNAVAILABLE from frame %s on (%s)", outcome.frame_id, outcome.error
                )
            else:
                log.warning("stream: frames are answered again from frame %s on", outcome.frame_id)

    def _deliver(self, seq: int, outcome: FrameOutcome) -> None:
        if not self._ordered:
            self._emit(outcome)
            self._next_emit += 1
        else:
            self._ready[seq] = outcome
            while self._next_emit in self._ready:
                self._emit(self._ready.pop(self._next_emit))
                self._next_emit += 1
        self._wake.set()

    def _emit(self, outcome: FrameOutcome) -> None:
        if self._trackers is not None and outcome.result is not None:
            outcome = _tracked(outcome, self._trackers)
        self._runner.count(outcome)
        self._out.put_nowait(outcome)


def _skipped(frame: FrameInput, kind: SkipKind, reason: str) -> FrameOutcome:
    return FrameOutcome(frame.frame_id, frame.timestamp, FrameStatus.SKIPPED, skip_reason=reason, skip_kind=kind)


def _tracked(outcome: FrameOutcome, trackers: dict[int, IouTracker]) -> FrameOutcome:
    """Track ids for the predicted boxes of each output (one tracker per output; every frame ages the tracks)."""
    assert outcome.result is not None
    outputs = tuple(
        LabelsResult(trackers.setdefault(i, IouTracker()).update(labels.predicted), labels.discarded)
        for i, labels in enumerate(outcome.result.outputs)
    )
    return replace(outcome, result=RecognitionResult(outputs))
