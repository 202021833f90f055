"""The stream: a small coordinator of a reader, a dispatcher and the frame runner, inside one ``TaskGroup``.

::

    reader ──▶ admission ──▶ dispatcher ──▶ frame runner ──▶ ordering ──▶ out-queue ──▶ the client
    (messages)  (window,      (a slot, then  (≤ max_in_flight  (ORDERED /     (outcomes, then
                 drop policy)  the oldest     tasks)            AS_COMPLETED)  one end)
                               frame; too old?)

Every task the stream starts belongs to its task group, so none outlives the call: when the generator is closed
(``aclose``) or cancelled, the group cancels and awaits them all before the generator returns, and the request
iterator is never read again. A normal end, a bad message and a drain end the stream through the out-queue: its
last item is a ``StreamEnd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidArgumentError, UnavailableError
from service.recognition import Recognizer
from service.streams.admission import Admission, overdue
from service.streams.frames import FrameRunner, InFlight, settings_for
from service.streams.ordering import Delivery, delivery_for
from service.streams.types import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT,
    FrameInput,
    FrameOutcome,
    FrameSettings,
    HeldFrame,
    StreamConfig,
)

__all__ = ["Stream", "StreamEnd"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The stream's last item: it ends with OK (``error`` None) or with ``error``'s status."""

    error: Exception | None = None


def first_config(message: StreamConfig | FrameInput | None) -> StreamConfig:
    """The stream's first message, which must be a config with ``max_in_flight`` in range."""
    if not isinstance(message, StreamConfig):
        raise InvalidArgumentError.field("config", "the first message of a stream must be a config")
    if not 1 <= (message.max_in_flight or DEFAULT_MAX_IN_FLIGHT) <= MAX_IN_FLIGHT:
        raise InvalidArgumentError.field(
            "config.max_in_flight", f"must be between 1 and {MAX_IN_FLIGHT}, got {message.max_in_flight}"
        )
    return message


class Stream:
    """One call's stream. ``run`` is the async generator of its outcomes; ``drain`` makes it stop admitting
    frames (those it still reads are dropped unanswered), answer the frames it holds, then end with UNAVAILABLE."""

    def __init__(
        self,
        messages: AsyncIterator[StreamConfig | FrameInput],
        recognizer: Recognizer,
        *,
        in_flight: InFlight,
        count: Callable[[FrameOutcome], None],
    ) -> None:
        self._messages = messages
        self._recognizer = recognizer
        self._in_flight = in_flight
        self._count = count
        self._out: asyncio.Queue[FrameOutcome | StreamEnd] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._reading = False  # the reader waits for room or for a message: a drain may interrupt it
        self.draining = False

    def drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        if self._reader is not None and self._reading:
            self._reader.cancel()

    async def run(self) -> AsyncGenerator[FrameOutcome]:
        config = first_config(await anext(self._messages, None))
        settings = await settings_for(self._recognizer, config)
        max_in_flight = config.max_in_flight or DEFAULT_MAX_IN_FLIGHT
        admission = Admission(max_in_flight, config.drop_policy)
        delivery = delivery_for(config.ordering, tracking=config.tracking)
        end = StreamEnd()
        closed: GeneratorExit | None = None
        async with asyncio.TaskGroup() as group:
            frames = FrameRunner(
                self._recognizer,
                group,
                max_in_flight,
                done=lambda seq, outcome: self._deliver(delivery, seq, outcome),
                in_flight=self._in_flight,
            )
            self._reader = self._start(group, self._read(admission, delivery, settings), "stream-reader")
            self._start(group, self._dispatch(admission, delivery, frames), "stream-dispatcher")
            try:
                while not isinstance(item := await self._out.get(), StreamEnd):
                    yield item
                    await admission.release()
                end = item
            except GeneratorExit as exc:
                # Closed by the consumer (aclose): the group must not see it, Python 3.11's TaskGroup would
                # report it as an error of its own.
                closed = exc
            # A normal end finds every task done; an error or a close may leave the reader, the dispatcher and
            # frames running: cancelled here, awaited by the group as it exits.
            for task in self._tasks:
                task.cancel()
            frames.cancel()
        if closed is not None:
            raise closed
        if end.error is not None:
            raise end.error

    def _start(self, group: asyncio.TaskGroup, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = group.create_task(self._guarded(work), name=name)
        self._tasks.append(task)
        return task

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """A bug in a task ends the stream with it (INTERNAL), never the task group's parent."""
        try:
            await work
        except Exception as exc:
            log.exception("stream task failed")
            self._out.put_nowait(StreamEnd(exc))

    async def _read(self, admission: Admission, delivery: Delivery, settings: FrameSettings) -> None:
        seq = 0
        half_closed = False
        try:
            while not self.draining:
                self._reading = True
                try:
                    await admission.room()
                    message = await anext(self._messages, None)
                except asyncio.CancelledError:
                    if not self.draining:
                        raise
                    # Cancelled by ``drain``: admit no more, answer what is held.
                    if (task := asyncio.current_task()) is not None:
                        task.uncancel()
                    break
                finally:
                    self._reading = False
                if message is None:
                    half_closed = True
                    break
                if isinstance(message, StreamConfig):
                    settings = await settings_for(self._recognizer, message)
                    continue
                dropped = await admission.admit(HeldFrame(seq, message, settings, time.perf_counter()))
                seq += 1
                if dropped is not None:
                    skipped, outcome = dropped
                    self._deliver(delivery, skipped.seq, outcome)
        except Exception as exc:  # a bad message or config ends the stream with its status
            self._out.put_nowait(StreamEnd(exc))
            return
        await admission.close()
        if self.draining and not half_closed:
            await self._drop_the_rest()

    async def _drop_the_rest(self) -> None:
        """While a drained stream answers the frames it holds, read and drop what the client still sends, until
        it half-closes or the stream's end cancels this. Not reading would leave the client's writes blocked on
        flow control when the stream ends, and grpcio's asyncio client then reports INTERNAL instead of the
        drain's UNAVAILABLE (grpc/grpc#36066): a client told to reconnect must hear it."""
        with contextlib.suppress(Exception):  # a bad message now changes nothing: the stream is ending anyway
            while await anext(self._messages, None) is not None:
                pass

    async def _dispatch(self, admission: Admission, delivery: Delivery, frames: FrameRunner) -> None:
        while True:
            await frames.reserve()
            held = await admission.take()
            if held is None:
                frames.unreserve()
                break
            if (skipped := overdue(held, time.perf_counter())) is not None:
                frames.unreserve()
                self._deliver(delivery, held.seq, skipped)
                continue
            frames.start(held)
        await frames.idle()
        error = UnavailableError("the server is shutting down; reconnect to continue the stream")
        self._out.put_nowait(StreamEnd(error if self.draining else None))

    def _deliver(self, delivery: Delivery, seq: int, outcome: FrameOutcome) -> None:
        try:
            for due in delivery.put(seq, outcome):
                self._count(due)
                self._out.put_nowait(due)
        except Exception as exc:  # a bug (tracking, metrics) ends the stream, never the task group's parent
            log.exception("stream delivery failed")
            self._out.put_nowait(StreamEnd(exc))
