"""The client side of ``sightline stream``: decode a video (PyAV), stream raw frames, report, annotate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import av
import numpy as np
import numpy.typing as npt
from av.video.stream import VideoStream
from google.protobuf import json_format

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.client import channel as client
from service.client.drawing import annotate

__all__ = ["StreamOptions", "StreamReport", "stream_video"]


@dataclass(frozen=True, slots=True)
class StreamOptions:
    server: str
    spec_id: str
    max_in_flight: int = 4
    drop_policy: str = "BLOCK"
    ordering: str = "ORDERED"
    max_latency_ms: int = 0
    tracking: bool = True
    show_discarded: bool = False
    realtime: bool = False
    max_frames: int = 0
    out: Path | None = None
    jsonl: Path | None = None


@dataclass(slots=True)
class StreamReport:
    frames: int = 0
    ok: int = 0
    skipped: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    """Stopped by SIGINT or SIGTERM (Ctrl-C: a camera has no end): no frame was sent after it, and the answers of
    those in flight were awaited."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    def line(self) -> str:
        return (
            f"{self.frames} frames  {self.fps:6.1f} fps  p50 {self.percentile(50):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms  skipped {self.skipped}  errors {self.errors}"
        )


def _open(source: str) -> Any:
    if source.startswith("/dev/video"):
        return av.open(source, format="v4l2")
    return av.open(source)


async def stream_video(source: str, options: StreamOptions, progress: TextIO = sys.stderr) -> StreamReport:
    """Stream every frame of ``source`` (a video file or a /dev/videoN camera) and collect the results.

    The first SIGINT or SIGTERM (Ctrl-C) ends the stream in order: no more frames are sent, the answers of those in
    flight are awaited and written, and the written video is closed whole (``report.interrupted``). A second one
    stops at once (``KeyboardInterrupt``).
    """
    container = _open(source)
    video = container.streams.video[0]
    rate = float(video.average_rate or 25)
    sent: dict[int, tuple[float, npt.NDArray[np.uint8] | None]] = {}
    report = StreamReport()
    config = streams_pb2.StreamConfig(
        spec_id=options.spec_id,
        max_in_flight=options.max_in_flight,
        drop_policy=cast(Any, streams_pb2.DropPolicy.Value(options.drop_policy)),
        ordering=cast(Any, streams_pb2.Ordering.Value(options.ordering)),
        max_latency_ms=options.max_latency_ms,
        tracking=options.tracking,
        show_discarded=options.show_discarded,
    )

    stopping = asyncio.Event()

    async def requests() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
        yield streams_pb2.StreamRecognizeRequest(config=config)
        started = time.perf_counter()
        for index, decoded in enumerate(container.decode(video)):
            if options.max_frames and index >= options.max_frames:
                break
            if options.realtime:
                # Pace like a camera: frame i leaves at i / fps.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), max(0.0, started + index / rate - time.perf_counter()))
            if stopping.is_set():
                break
            rgb = decoded.to_ndarray(format="rgb24")
            sent[index] = (time.perf_counter(), rgb if options.out else None)
            raw = streams_pb2.RawImage(
                width=rgb.shape[1], height=rgb.shape[0], format=streams_pb2.RGB24, data=rgb.tobytes()
            )
            frame = streams_pb2.Frame(frame_id=index, raw=raw)
            frame.timestamp.GetCurrentTime()
            yield streams_pb2.StreamRecognizeRequest(frame=frame)

    writer = _Writer(options.out, rate) if options.out else None
    jsonl = options.jsonl.open("w") if options.jsonl else None
    started = time.perf_counter()
    last_print = 0.0
    signals = _SignalStop(stopping)
    try:
        async with client.channel(options.server) as channel:
            stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
            async for response in stub.StreamRecognize(requests()):
                sent_at, rgb = sent.pop(response.frame_id, (time.perf_counter(), None))
                report.frames += 1
                if response.status == streams_pb2.OK:
                    report.ok += 1
                    report.latencies_ms.append((time.perf_counter() - sent_at) * 1e3)
                elif response.status == streams_pb2.SKIPPED:
                    report.skipped += 1
                else:
                    report.errors += 1
                if jsonl is not None:
                    entry = json_format.MessageToDict(response, preserving_proto_field_name=True)
                    jsonl.write(json.dumps(entry) + "\n")
                if writer is not None and rgb is not None:
                    writer.write(annotate(rgb, response.result) if response.status == streams_pb2.OK else rgb)
                report.seconds = time.perf_counter() - started
                if report.seconds - last_print > 0.5:
                    last_print = report.seconds
                    progress.write("\r" + report.line())
                    progress.flush()
    finally:
        signals.close()
        container.close()
        if writer is not None:
            writer.close()
        if jsonl is not None:
            jsonl.close()
    report.seconds = time.perf_counter() - started
    report.interrupted = stopping.is_set()
    progress.write("\r" + report.line() + "\n")
    if report.interrupted:
        progress.write("stopped on request: no frame was sent after it, and those in flight were answered\n")
    return report


class _Writer:
    """An H.264 (or MPEG-4 where libx264 is missing) writer of RGB frames."""

    def __init__(self, path: Path, rate: float) -> None:
        self._container = av.open(str(path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = cast(VideoStream, self._container.add_stream(codec, rate=round(rate) or 25))
        self._stream.pix_fmt = "yuv420p"
        self._size: tuple[int, int] | None = None

    def write(self, rgb: npt.NDArray[np.uint8]) -> None:
        if self._size is None:
            # yuv420p needs even sizes.
            self._size = (rgb.shape[1] - rgb.shape[1] % 2, rgb.shape[0] - rgb.shape[0] % 2)
            self._stream.width, self._stream.height = self._size
        width, height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


class _SignalStop:
    """SIGINT and SIGTERM set ``stopping`` once, then get their usual handling back (a second Ctrl-C interrupts);
    where handlers cannot be set (not the main thread), nothing changes. ``close()`` gives them back too."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._before: dict[signal.Signals, Any] = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            before = signal.getsignal(number)
            try:
                self._loop.add_signal_handler(number, self._first, stopping)
            except (RuntimeError, ValueError, NotImplementedError):
                continue
            self._before[number] = before

    def _first(self, stopping: asyncio.Event) -> None:
        stopping.set()
        self.close()

    def close(self) -> None:
        for number, before in self._before.items():
            self._loop.remove_signal_handler(number)
            if before is not None:  # what the process had (asyncio would leave the default)
                signal.signal(number, before)
        self._before = {}
