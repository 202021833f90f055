"""The stream use case (StreamRecognize): a config, then frames; one outcome per frame, with frames in flight.

A stream is made of named parts, one module each:

- ``types``: the config, the frames in, the outcomes out, the enums, and the records in between;
- ``admission``: the window bounding the frames a stream holds, the drop policies, the ``max_latency_ms`` budget;
- ``ordering``: ``ORDERED`` or ``AS_COMPLETED`` delivery (tracking always in order);
- ``frames``: the frame runner, at most ``max_in_flight`` frames in flight as tasks of the stream's task group;
- ``stream``: the coordinator of one call's stream (reader, dispatcher, out-queue);
- ``runner``: ``StreamRunner``, the streams of one server (metrics, drain).
"""

from __future__ import annotations

from service.streams.runner import StreamRunner
from service.streams.types import (
    CaptureTime,
    DropPolicy,
    FrameInput,
    FrameOutcome,
    FrameStatus,
    FrameTiming,
    Ordering,
    RawPixels,
    SkipKind,
    StreamConfig,
)

__all__ = [
    "CaptureTime",
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
