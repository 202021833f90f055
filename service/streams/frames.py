"""The frame runner: the frames of one stream in flight, each a task of the stream's ``asyncio.TaskGroup``.

At most ``max_in_flight`` frames of a stream run at once. A frame runs through the recognition use case
(decode, crop, preprocessing, Triton, post-processing); its failure is its own ``ERROR`` outcome, never the
stream's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.errors import InvalidArgumentError, SightlineError, UnavailableError
from service.preprocess import RawFrame, RGBImage
from service.recognition import Recognizer, check_max_predictions, with_thresholds
from service.streams.types import (
    FrameInput,
    FrameOutcome,
    FrameSettings,
    FrameStatus,
    FrameTiming,
    HeldFrame,
    StreamConfig,
)

__all__ = ["FrameRunner", "InFlight", "image_source", "settings_for"]

log = logging.getLogger(__name__)


class InFlight:
    """Frames being processed, across every stream of a server (the ``frames_in_flight`` gauge)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


async def settings_for(recognizer: Recognizer, config: StreamConfig) -> FrameSettings:
    """The settings the frames read after ``config`` run with; a bad config raises its domain error."""
    check_max_predictions(config.max_predictions)
    if config.max_latency_ms < 0:
        raise InvalidArgumentError.field("config.max_latency_ms", "must not be negative")
    deployment = with_thresholds(await recognizer.resolve(config.target), config.output_thresholds)
    return FrameSettings(deployment, config.show_discarded, config.max_predictions, config.max_latency_ms)


def image_source(recognizer: Recognizer, frame: FrameInput) -> Callable[[], RGBImage]:
    """The frame's image as ``Recognizer.run`` takes it: its encoded bytes under the recognizer's limits (decoded
    at the reduced scale the deployment allows), or its raw pixels (a ``RawFrame``, resized with OpenCV); both are
    converted in the worker thread."""
    raw = frame.raw
    if raw is not None:
        return RawFrame(raw.data, raw.width, raw.height, raw.channels, bgr=raw.bgr)
    if not frame.encoded:
        raise InvalidArgumentError.field("frame", "has no image: set encoded or raw")
    return recognizer.encoded(frame.encoded, field="frame.encoded")


class FrameRunner:
    """Runs the frames of one stream. The stream's dispatcher ``reserve``\\ s a slot (waiting while
    ``max_in_flight`` frames run), then ``start``\\ s a frame in it or ``unreserve``\\ s it; each outcome goes to
    ``done`` with the frame's ``seq``."""

    def __init__(
        self,
        recognizer: Recognizer,
        group: asyncio.TaskGroup,
        max_in_flight: int,
        *,
        done: Callable[[int, FrameOutcome], None],
        in_flight: InFlight,
    ) -> None:
        self._recognizer = recognizer
        self._group = group
        self._done = done
        self._in_flight = in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unavailable = False

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def reserve(self) -> None:
        await self._slots.acquire()

    def unreserve(self) -> None:
        self._slots.release()

    def start(self, held: HeldFrame) -> None:
        """Run ``held`` in the slot reserved for it."""
        task = self._group.create_task(self._run(held), name=f"stream-frame-{held.frame.frame_id}")
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not self._tasks:
            self._idle.set()

    async def idle(self) -> None:
        """Wait until no frame runs."""
        await self._idle.wait()

    def cancel(self) -> None:
        """Cancel every frame running (the stream's task group awaits them)."""
        for task in self._tasks:
            task.cancel()

    async def _run(self, held: HeldFrame) -> None:
        outcome = await self.process(held)
        self._note_availability(outcome)
        self._done(held.seq, outcome)

    async def process(self, held: HeldFrame) -> FrameOutcome:
        frame, settings = held.frame, held.settings
        started = time.perf_counter()
        queue_ms = (started - held.read_at) * 1e3
        self._in_flight.value += 1
        try:
            result, stages = await self._recognizer.run(
                settings.deployment,
                image_source(self._recognizer, frame),
                show_discarded=settings.show_discarded,
                max_predictions=settings.max_predictions,
            )
        except SightlineError as exc:
            return _failed(frame, exc, queue_ms)
        except Exception:
            # A bug must not hang the stream: this frame fails, the others go on.
            log.exception("frame %s failed", frame.frame_id)
            return _failed(frame, SightlineError("internal error"), queue_ms)
        finally:
            self._in_flight.value -= 1
        timing = FrameTiming(
            queue_ms=queue_ms,
            preprocess_ms=stages.preprocess_ms,
            triton_ms=stages.triton_ms,
            postprocess_ms=stages.postprocess_ms,
            total_ms=(time.perf_counter() - held.read_at) * 1e3,
        )
        return FrameOutcome(frame.frame_id, frame.timestamp, FrameStatus.OK, result=result, timing=timing)

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


def _failed(frame: FrameInput, error: SightlineError, queue_ms: float) -> FrameOutcome:
    return FrameOutcome(
        frame.frame_id, frame.timestamp, FrameStatus.ERROR, error=error, timing=FrameTiming(queue_ms=queue_ms)
    )
