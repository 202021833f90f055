"""The values a stream is made of: its config, the frames in, the outcomes out, and the records in between."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from service.domain import DEFAULT_MAX_PREDICTIONS, RecognitionResult, ResolvedVersion, Target
from service.errors import SightlineError

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "MAX_IN_FLIGHT",
    "CaptureTime",
    "DropPolicy",
    "FrameInput",
    "FrameOutcome",
    "FrameSettings",
    "FrameStatus",
    "FrameTiming",
    "HeldFrame",
    "Ordering",
    "RawPixels",
    "SkipKind",
    "StreamConfig",
    "memory_bound",
    "window_for",
]

MAX_IN_FLIGHT = 64
DEFAULT_MAX_IN_FLIGHT = 4


def window_for(max_in_flight: int) -> int:
    """The most frames a stream holds between reading them and handing their outcomes to the client."""
    return 4 * max_in_flight + 16


def memory_bound(
    streams: int, max_in_flight: int, frame_bytes: int, tensor_bytes: int, window_bytes: int
) -> int | None:
    """The stated bound (docs/performance.md, P4) on the bytes a server's memory grows by while ``streams`` streams
    of raw frames of ``frame_bytes``, ``max_in_flight`` each, send as fast as they can; None when gRPC's own flow
    control sizes the windows (``window_bytes`` 0: no bound). Per stream: the admission window's frames and the
    one being received (``window_for(m) + 1``), the fixed gRPC receive window (``SIGHTLINE_GRPC_STREAM_WINDOW_BYTES``)
    and, per frame in flight, four network inputs' worth of ``tensor_bytes`` (the tensor, its share of a batched
    request, of the shared-memory region, and the outputs). Not counted: what the allocator keeps after a run, and
    encoded frames' decoding, which the decode budget bounds."""
    if not window_bytes:
        return None
    per_stream = (window_for(max_in_flight) + 1) * frame_bytes + window_bytes + max_in_flight * 4 * tensor_bytes
    return streams * per_stream


class Ordering(enum.Enum):
    ORDERED = "ORDERED"
    AS_COMPLETED = "AS_COMPLETED"


class DropPolicy(enum.Enum):
    """What the stream does with a frame when ``max_in_flight`` frames already wait for a slot."""

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
    first one; the others apply to the frames read after the message. ``max_in_flight`` 0 means the default."""

    target: Target
    show_discarded: bool = False
    max_predictions: int = DEFAULT_MAX_PREDICTIONS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    ordering: Ordering = Ordering.ORDERED
    drop_policy: DropPolicy = DropPolicy.BLOCK
    max_latency_ms: int = 0
    tracking: bool = False
    output_thresholds: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class RawPixels:
    """Rows of ``channels`` bytes a pixel (3: RGB, or BGR when ``bgr``; 1: gray), no padding; 0 channels: an
    unknown format (the frame fails alone)."""

    data: bytes
    width: int
    height: int
    channels: int
    bgr: bool = False


@dataclass(frozen=True, slots=True)
class CaptureTime:
    """The client's capture time of a frame, as it sent it (seconds and nanoseconds since the Unix epoch).

    Never compared to the server's clock and never range-checked: it is echoed back exactly, whatever it holds.
    """

    seconds: int
    nanos: int = 0


@dataclass(frozen=True, slots=True)
class FrameInput:
    """One frame: the client's id and capture time (echoed back), and encoded bytes or raw pixels."""

    frame_id: int
    timestamp: CaptureTime | None = None
    encoded: bytes = b""
    raw: RawPixels | None = None


@dataclass(frozen=True, slots=True)
class FrameTiming:
    """Milliseconds: read → sent to preprocessing, preprocessing, Triton, post-processing, read → result."""

    queue_ms: float = 0.0
    preprocess_ms: float = 0.0
    triton_ms: float = 0.0
    postprocess_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    frame_id: int
    timestamp: CaptureTime | None
    status: FrameStatus
    result: RecognitionResult | None = None
    skip_reason: str = ""
    skip_kind: SkipKind | None = None
    error: SightlineError | None = None
    timing: FrameTiming = field(default_factory=FrameTiming)

    @classmethod
    def skipped(cls, frame: FrameInput, kind: SkipKind, reason: str) -> FrameOutcome:
        return cls(frame.frame_id, frame.timestamp, FrameStatus.SKIPPED, skip_reason=reason, skip_kind=kind)


@dataclass(frozen=True, slots=True)
class FrameSettings:
    """What a frame is run with: a snapshot of the stream's config when the frame was read."""

    deployment: ResolvedVersion
    show_discarded: bool
    max_predictions: int
    max_latency_ms: int


@dataclass(frozen=True, slots=True)
class HeldFrame:
    """A frame the stream has read and not answered yet: its place in the stream (``seq``, from 0), the frame,
    its settings, and when it was read (``time.perf_counter()``)."""

    seq: int
    frame: FrameInput
    settings: FrameSettings
    read_at: float
