"""Admission: which frames a stream reads, how many it holds, and which it lets through to the frame runner.

Two bounds, both per stream:

- the **window**: frames read and not yet handed to the client (waiting, in flight, or done and not delivered)
  never exceed ``window_for(max_in_flight)``; the reader waits for room *before* it reads the next message, so a
  client that stops reading results stops being read;
- the **waiting room**: at most ``max_in_flight`` frames wait for a slot. When it is full, ``BLOCK`` stops reading
  (gRPC flow control then slows the client), ``DROP_OLDEST`` skips the oldest waiting frame for the new one,
  ``DROP_NEWEST`` skips the new one.

A frame whose turn comes after it waited more than its ``max_latency_ms`` is skipped "too old" (``overdue``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from service.streams.types import DropPolicy, FrameOutcome, HeldFrame, SkipKind, window_for

__all__ = ["Admission", "overdue"]


def _drop_newest(waiting: deque[HeldFrame], new: HeldFrame) -> tuple[HeldFrame, FrameOutcome]:
    return new, FrameOutcome.skipped(
        new.frame, SkipKind.DROP_NEWEST, "dropped: max_in_flight frames were already waiting"
    )


def _drop_oldest(waiting: deque[HeldFrame], new: HeldFrame) -> tuple[HeldFrame, FrameOutcome]:
    oldest = waiting.popleft()
    waiting.append(new)
    return oldest, FrameOutcome.skipped(oldest.frame, SkipKind.DROP_OLDEST, "dropped for a newer frame (DROP_OLDEST)")


_WhenFull = Callable[[deque[HeldFrame], HeldFrame], tuple[HeldFrame, FrameOutcome]]
_WHEN_FULL: dict[DropPolicy, _WhenFull] = {
    DropPolicy.DROP_NEWEST: _drop_newest,
    DropPolicy.DROP_OLDEST: _drop_oldest,
}
"""What each dropping policy does with a frame that finds the waiting room full (``BLOCK`` never lets one in)."""


def overdue(held: HeldFrame, now: float) -> FrameOutcome | None:
    """The "too old" outcome of a frame that waited more than its ``max_latency_ms`` by ``now``; None if in time."""
    limit = held.settings.max_latency_ms
    age_ms = (now - held.read_at) * 1e3
    if limit and age_ms > limit:
        return FrameOutcome.skipped(held.frame, SkipKind.TOO_OLD, f"too old: waited {age_ms:.0f} ms > {limit} ms")
    return None


class Admission:
    """The waiting room and the window of one stream. One reader calls ``room``, ``admit`` and ``close``; one
    dispatcher calls ``take``; the stream calls ``release`` for each outcome the client has taken."""

    def __init__(self, max_in_flight: int, policy: DropPolicy) -> None:
        self.window = window_for(max_in_flight)
        self.capacity = max_in_flight
        self.policy = policy
        self.held = 0
        """Frames read and not yet handed to the client."""
        self._waiting: deque[HeldFrame] = deque()
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _has_room(self) -> bool:
        if self.held >= self.window:
            return False
        return self.policy is not DropPolicy.BLOCK or len(self._waiting) < self.capacity

    async def room(self) -> None:
        """Wait until the stream may read one more message."""
        async with self._changed:
            await self._changed.wait_for(self._has_room)

    async def admit(self, held: HeldFrame) -> tuple[HeldFrame, FrameOutcome] | None:
        """Hold a frame just read. Returns the frame the policy skipped to make room, with its outcome, if any."""
        async with self._changed:
            self.held += 1
            if len(self._waiting) < self.capacity:
                self._waiting.append(held)
                dropped = None
            else:
                dropped = _WHEN_FULL[self.policy](self._waiting, held)
            self._changed.notify_all()
        return dropped

    async def take(self) -> HeldFrame | None:
        """The oldest waiting frame, once there is one; None once the stream reads no more and nothing waits."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._waiting) or self._closed)
            if not self._waiting:
                return None
            held = self._waiting.popleft()
            self._changed.notify_all()
            return held

    async def release(self) -> None:
        """One outcome was handed to the client: its frame no longer counts in the window."""
        async with self._changed:
            self.held -= 1
            self._changed.notify_all()

    async def close(self) -> None:
        """No more frames will come (the input ended or the stream drains): ``take`` returns None once empty."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
