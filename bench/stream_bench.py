"""Benchmark of StreamRecognize against clients that call Triton directly, in the same run.

Run from the repository root (``make bench-stream``; ``make bench`` runs it after the post-processing bench)::

    python -m bench.stream_bench     # --spec shapes-yolo-v1 --frames 300 --repeat 3 --streams 8,32

One embedded Triton serves every path; a Sightline server runs in a separate process, as in production. The
frames are raw 320x240 RGB24 arrays (no decoding anywhere).

- **opencv**: the user's alternative, the baseline of issue 16: a Python client that resizes each frame with
  OpenCV (``cv2.resize``, bilinear), scales it to float32 CHW, calls Triton with the synchronous
  ``tritonclient.grpc`` client (one per thread) and thresholds the output. 1 thread, 4 threads, and as many
  threads as the stream count of the concurrent-stream rows.
- **own**: the earlier baseline, kept as a second line: Sightline's own preprocessing and post-processing in this
  process, one ``tritonclient.grpc.aio`` client, as many concurrent loops as streams.
- **stream**: the same frames over ``StreamRecognize``: one stream with 1 frame in flight (each result awaited
  before the next frame is sent), one stream with 4 frames in flight (a window of 4), and 8 or 32 concurrent
  streams of 1 frame in flight each. The bench's Triton is on this machine, as the embedded one is, so the
  Sightline server sends its tensors through Triton's system shared memory (``--shared-memory on``, what
  ``auto`` does with the embedded Triton); ``off`` keeps them in-band, ``both`` runs two servers and adds
  **stream-inband**, interleaved with the others. The baselines stay in-band: they are the user's own client.

Each comparison is run ``--repeat`` times, its paths interleaved (opencv, own, stream, then again), because the
machine is shared and noisy; the table gives the median of each path's runs, and the ratio column the median and
the range of the per-repeat ratios ``stream fps / baseline fps``. Latency is from sending a frame to its result
(p50 and p99, all repeats pooled); ``+p50`` is the stream's p50 minus the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import numpy.typing as npt
import tritonclient.grpc as tritonclient

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.catalog import Catalog
from service.domain import Target
from service.recognition import Recognizer
from service.settings import BUNDLED_REPOSITORY, Settings
from service.streams.types import memory_bound
from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway

ROOT = Path(__file__).resolve().parent.parent


def frames(count: int, width: int, height: int, seed: int = 0) -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
        x, y = rng.integers(0, width // 2), rng.integers(0, height // 2)
        image[y : y + height // 3, x : x + width // 3] = rng.integers(0, 255, 3, dtype=np.uint8)
        out.append(image)
    return out


Stages = tuple[float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class Run:
    """One path's run: frames per second and every frame's latency in milliseconds."""

    fps: float
    latencies: list[float]
    stages: list[Stages] | None = None
    """The server's own ``timing`` of each frame (queue, preprocess, triton, postprocess, total ms), streams only."""
    cpu: dict[str, float] | None = None
    """CPU milliseconds per frame of each process over the run: the bench's client, the Sightline server, Triton, and
    Triton's backend stubs together as ``backend``."""


def timed(latencies: list[float], seconds: float, stages: list[Stages] | None = None) -> Run:
    return Run(len(latencies) / seconds, latencies, stages)


def constant(image: npt.NDArray[np.uint8]) -> Callable[[], npt.NDArray[np.uint8]]:
    """A loader that hands back an image already in memory (the frames are raw arrays)."""
    return lambda: image


@dataclass(frozen=True, slots=True)
class Network:
    """What the direct client must know of the network: its model, input and output, and the input size."""

    model: str
    input_name: str
    output_name: str
    width: int
    height: int


def network_of(catalog: Catalog, spec: str) -> Network:
    deployment = catalog.for_spec(spec)
    item = deployment.network.preprocessing.inputs[0]
    assert item.image is not None
    width, height = item.image.target
    names = sorted({n for pp in deployment.version.post_processings for n in pp.tensor_names})
    return Network(deployment.model_name, item.tensor_name, names[0], width, height)


def run_opencv(triton_url: str, net: Network, images: list[npt.NDArray[np.uint8]], threads: int) -> Run:
    """The direct client: OpenCV resize, float32 CHW, synchronous tritonclient, a threshold; ``threads`` loops."""
    latencies: list[float] = []
    lock = threading.Lock()
    clients = [tritonclient.InferenceServerClient(triton_url) for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def loop(index: int) -> None:
        client = clients[index]
        output = [tritonclient.InferRequestedOutput(net.output_name)]
        mine: list[float] = []
        barrier.wait()
        for image in images[index::threads]:
            started = time.perf_counter()
            resized = cv2.resize(image, (net.width, net.height), interpolation=cv2.INTER_LINEAR)
            tensor = (resized.astype(np.float32) * np.float32(1 / 255)).transpose(2, 0, 1)[None]
            infer_input = tritonclient.InferInput(net.input_name, list(tensor.shape), "FP32")
            infer_input.set_data_from_numpy(np.ascontiguousarray(tensor))
            result = client.infer(net.model, [infer_input], outputs=output)
            values = result.as_numpy(net.output_name)
            np.flatnonzero(values > 0.5)
            mine.append((time.perf_counter() - started) * 1e3)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    return timed(latencies, seconds)


async def run_own(recognizer: Recognizer, spec: str, images: list[npt.NDArray[np.uint8]], loops: int) -> Run:
    """The earlier baseline: Sightline's preprocessing and post-processing in this process, ``loops`` at once."""
    deployment = await recognizer.resolve(Target(spec_id=spec))
    latencies: list[float] = []

    async def loop(index: int) -> None:
        for image in images[index::loops]:
            started = time.perf_counter()
            await recognizer.run(deployment, constant(image))
            latencies.append((time.perf_counter() - started) * 1e3)

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(loops)))
    return timed(latencies, time.perf_counter() - started)


def frame_requests(images: list[npt.NDArray[np.uint8]]) -> list[streams_pb2.StreamRecognizeRequest]:
    """The frames as a client holding raw RGB24 buffers sends them (built once, outside the timed runs)."""
    return [
        streams_pb2.StreamRecognizeRequest(
            frame=streams_pb2.Frame(
                frame_id=i,
                raw=streams_pb2.RawImage(
                    width=image.shape[1], height=image.shape[0], format=streams_pb2.RGB24, data=image.tobytes()
                ),
            )
        )
        for i, image in enumerate(images)
    ]


async def run_streams(
    stub: recognition_pb2_grpc.RecognitionServiceStub,
    spec: str,
    requests: list[streams_pb2.StreamRecognizeRequest],
    streams: int,
    in_flight: int,
) -> Run:
    """``streams`` concurrent StreamRecognize calls, each keeping ``in_flight`` frames outstanding."""
    latencies: list[float] = []
    stages: list[Stages] = []

    async def one(index: int) -> None:
        mine = requests[index::streams]
        sent: dict[int, float] = {}
        window = asyncio.Semaphore(in_flight)
        call = stub.StreamRecognize()
        config = streams_pb2.StreamConfig(spec_id=spec, max_in_flight=in_flight, drop_policy=streams_pb2.BLOCK)
        await call.write(streams_pb2.StreamRecognizeRequest(config=config))

        async def write() -> None:
            for request in mine:
                await window.acquire()
                sent[request.frame.frame_id] = time.perf_counter()
                await call.write(request)
            await call.done_writing()

        writer = asyncio.create_task(write())
        for _ in mine:
            response = await call.read()
            assert response is not grpc.aio.EOF, "the stream ended early"
            assert response.status == streams_pb2.OK, response
            latencies.append((time.perf_counter() - sent[response.frame_id]) * 1e3)
            t = response.timing
            stages.append((t.queue_ms, t.preprocess_ms, t.triton_ms, t.postprocess_ms, t.total_ms))
            window.release()
        await writer
        assert await call.read() is grpc.aio.EOF

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    return timed(latencies, time.perf_counter() - started, stages)


def _stat(path: Path) -> tuple[int, float]:
    """A ``/proc/<pid>/stat`` file's parent pid and user and system CPU seconds so far, all threads."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far, all its threads."""
    return _stat(Path(f"/proc/{pid}/stat"))[1]


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds the live children of ``pid`` have used so far: for Triton, its Python backend stubs, where
    ONNX Runtime runs the models (a process's own figure leaves them out)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent, seconds = _stat(stat)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if parent == pid:
            total += seconds
    return total


async def measured(run: Awaitable[Run], pids: dict[str, int]) -> Run:
    """``run`` with the CPU each process of ``pids`` spent on it, per frame: on a shared machine a path's CPU per
    frame holds steadier than its fps, which the other work on the cores moves."""
    before = {name: reading(pid) for name, (pid, reading) in _readings(pids).items()}
    done = await run
    frames = len(done.latencies)
    spent = {name: (reading(pid) - before[name]) / frames * 1e3 for name, (pid, reading) in _readings(pids).items()}
    return replace(done, cpu=spent)


def _readings(pids: dict[str, int]) -> dict[str, tuple[int, Callable[[int], float]]]:
    """Each process of ``pids`` with its CPU reading, and Triton's backend stubs as ``backend`` beside it."""
    readings: dict[str, tuple[int, Callable[[int], float]]] = {name: (pid, cpu_seconds) for name, pid in pids.items()}
    if "triton" in pids:
        readings["backend"] = (pids["triton"], children_cpu_seconds)
    return readings


def report_cpu(name: str, paths: dict[str, list[Run]]) -> None:
    """Each path's CPU ms per frame by process (median of the repeats) and its total against the opencv path's."""
    totals = {kind: statistics.median(sum((r.cpu or {}).values()) for r in runs) for kind, runs in paths.items()}
    for kind, runs in paths.items():
        parts = " ".join(
            f"{process} {statistics.median((r.cpu or {})[process] for r in runs):.2f}" for process in runs[0].cpu or {}
        )
        print(
            f"  cpu ms/frame {name:<24} {kind:<14} {parts} | total {totals[kind]:.2f} "
            f"({totals[kind] / totals['opencv']:.2f} x opencv's)",
            flush=True,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def report(name: str, paths: dict[str, list[Run]]) -> None:
    """One comparison: each path's median fps and pooled p50/p99, each stream path's ratio to each baseline and,
    with an in-band stream, the shared-memory stream's ratio to it."""
    streams = [key for key in paths if key.startswith("stream")]
    bases = [key for key in paths if not key.startswith("stream")]
    for kind in streams:
        label = name if kind == "stream" else f"{name} ({kind.removeprefix('stream-')})"
        for base in bases:
            report_line(label, base, paths[kind], paths[base])
    if "stream-inband" in paths:
        report_line(f"{name} (shm)", "inband", paths["stream"], paths["stream-inband"])
    if "stream-alt" in paths:
        report_line(f"{name} (stream)", "alt", paths["stream"], paths["stream-alt"])


def report_line(name: str, base: str, stream: list[Run], baseline: list[Run]) -> None:
    ratios = [s.fps / b.fps for s, b in zip(stream, baseline, strict=True)]
    base_lat = [v for run in baseline for v in run.latencies]
    stream_lat = [v for run in stream for v in run.latencies]
    print(
        f"{name:<32} {base:<7} {statistics.median(r.fps for r in baseline):>8.1f} "
        f"{percentile(base_lat, 0.5):>7.2f} {percentile(base_lat, 0.99):>7.2f} | "
        f"{statistics.median(r.fps for r in stream):>8.1f} {percentile(stream_lat, 0.5):>7.2f} "
        f"{percentile(stream_lat, 0.99):>7.2f} | {statistics.median(ratios):>5.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}) {percentile(stream_lat, 0.5) - percentile(base_lat, 0.5):>+7.2f}",
        flush=True,
    )


PROFILE_STAGES = (
    # (stage, a function or file that marks it in a sampled stack frame); a sample goes to the stage of the frame
    # nearest its leaf that holds a mark (the work itself, not the task that awaits it), the first mark of the list
    # matching that frame.
    ("raw bytes -> array (from_raw_pixels)", "from_raw_pixels ("),
    ("resize (OpenCV, service/resampling.py)", "service/resampling.py"),
    ("resize (OpenCV, service/resampling.py)", "resize (service/preprocess.py"),
    ("tensor: scale, layout (image_tensor)", "image_tensor ("),
    ("crop, other preprocessing", "service/preprocess.py"),
    ("post-processing (decode, NMS, results)", "postprocess/"),
    ("result -> protobuf (outcome_to_proto)", "outcome_to_proto ("),
    ("frame protobuf -> domain (stream_message)", "stream_message ("),
    ("Triton call: gRPC aio of the client (the call's own machinery)", "grpc/aio/_call.py"),
    ("Triton call: gRPC aio of the client (the call's own machinery)", "grpc/aio/_channel.py"),
    ("Triton request and answer (gateway, tritonclient, shared memory)", "tritonclient/"),
    ("Triton request and answer (gateway, tritonclient, shared memory)", "service/triton/"),
    ("tracing (OpenTelemetry spans, trace headers)", "opentelemetry/"),
    ("tracing (OpenTelemetry spans, trace headers)", "trace/"),
    ("gRPC server: frames in, results out (grpc aio, interceptors)", "service/api/"),
    ("gRPC server: frames in, results out (grpc aio, interceptors)", "grpc/"),
    ("stream machinery (service/streams)", "service/streams/"),
    ("recognition use case (service/recognition.py)", "recognition.py"),
    ("event loop (asyncio: callbacks, task switches)", "asyncio/"),
)
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "Thread.run (threading.py", "select (selectors.py")
"""Leaves of stacks that wait: an idle worker thread, grpcio's own threads in native code, the loop's poll
(``EpollSelector.select``)."""


def stage_of(frames: list[str]) -> str:
    """The stage of one sampled stack (its frames, root first): that of the frame nearest the leaf with a mark."""
    for frame in reversed(frames):
        for name, mark in PROFILE_STAGES:
            if mark in frame:
                return name
    return "other"


def profile_summary(raw: Path) -> list[tuple[str, float]]:
    """Shares of the server's sampled busy time by stage, from py-spy's raw (collapsed stacks) output; stacks that
    wait (``IDLE_LEAVES``) are left out."""
    totals: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        function, _, where = frames[-1].partition(" (")
        if frames[-1].startswith(IDLE_LEAVES) or f"{function.rpartition('.')[2]} ({where}".startswith(IDLE_LEAVES):
            continue
        stage = stage_of(frames)
        totals[stage] = totals.get(stage, 0) + int(count)
    whole = sum(totals.values()) or 1
    return sorted(((name, 100 * n / whole) for name, n in totals.items()), key=lambda item: -item[1])


async def profile(
    server_pid: int,
    output: Path,
    stub: recognition_pb2_grpc.RecognitionServiceStub,
    spec: str,
    requests: list[streams_pb2.StreamRecognizeRequest],
    in_flight: int,
) -> None:
    """py-spy samples the server while one stream sends ``requests`` with ``in_flight`` frames outstanding; prints
    the server's per-stage timing (its ``timing`` fields) and where its CPU time went."""
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")),
        *("record", "--pid", str(server_pid), "--rate", "250", "--format", "raw", "--output", str(output)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    run = await run_streams(stub, spec, requests, 1, in_flight)
    spy.send_signal(signal.SIGINT)
    await spy.wait()
    assert run.stages is not None
    names = ("queue", "preprocess", "triton", "postprocess", "total")
    means = [statistics.mean(s[i] for s in run.stages) for i in range(5)]
    client = statistics.mean(run.latencies)
    print(f"profile: 1 stream, {in_flight} in flight, {len(requests)} frames, {run.fps:.1f} fps")
    print("server timing per frame (mean ms): " + ", ".join(f"{n} {m:.2f}" for n, m in zip(names, means, strict=True)))
    print(f"client latency (mean ms): {client:.2f}; outside the server's total: {client - means[4]:.2f}")
    print(f"server CPU by stage (py-spy, {output}):")
    for name, share in profile_summary(output):
        print(f"  {share:5.1f} %  {name}")


def photo_jpeg(width: int = 1920, height: int = 1080) -> bytes:
    """A 1080p JPEG of a photograph (the README's astronaut, enlarged), quality 90."""
    photo = cv2.imread(str(ROOT / "samples" / "astronaut.jpg"), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(".jpg", cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC))
    assert ok
    return bytes(encoded)


async def server_preprocess_ms(
    stub: recognition_pb2_grpc.RecognitionServiceStub, spec: str, frame: streams_pb2.Frame, count: int
) -> list[float]:
    """The server's ``timing.preprocess_ms`` of ``count`` copies of ``frame`` on one stream, 1 in flight."""
    call = stub.StreamRecognize()
    await call.write(streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id=spec, max_in_flight=1)))
    values = []
    for i in range(count):
        frame.frame_id = i
        await call.write(streams_pb2.StreamRecognizeRequest(frame=frame))
        response = await call.read()
        assert response is not grpc.aio.EOF, "the stream ended early"
        assert response.status == streams_pb2.OK, response
        values.append(response.timing.preprocess_ms)
    await call.done_writing()
    return values


def opencv_ms(work: Callable[[], object], count: int) -> list[float]:
    values = []
    for _ in range(count):
        started = time.perf_counter()
        work()
        values.append((time.perf_counter() - started) * 1e3)
    return values


async def compare_preprocessing(
    stub: recognition_pb2_grpc.RecognitionServiceStub,
    spec: str,
    net: Network,
    frame: npt.NDArray[np.uint8],
    repeat: int,
) -> None:
    """P3: the server's preprocessing of a 1080p JPEG and of a raw frame against OpenCV doing the same here."""
    jpeg = photo_jpeg()
    size = (net.width, net.height)
    buffer = np.frombuffer(jpeg, dtype=np.uint8)

    def tensor(image: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray((resized.astype(np.float32) * np.float32(1 / 255)).transpose(2, 0, 1))

    cases: list[tuple[str, streams_pb2.Frame, list[tuple[str, Callable[[], object]]]]] = [
        (
            "1080p JPEG",
            streams_pb2.Frame(encoded=jpeg),
            [
                ("imdecode + resize", lambda: tensor(cv2.imdecode(buffer, cv2.IMREAD_COLOR))),
                ("imdecode 1/4 + resize", lambda: tensor(cv2.imdecode(buffer, cv2.IMREAD_REDUCED_COLOR_4))),
            ],
        ),
        (
            f"raw {frame.shape[1]}x{frame.shape[0]} RGB24",
            streams_pb2.Frame(
                raw=streams_pb2.RawImage(
                    width=frame.shape[1], height=frame.shape[0], format=streams_pb2.RGB24, data=frame.tobytes()
                )
            ),
            [("resize", lambda: tensor(frame))],
        ),
    ]
    print(
        f"preprocessing to the {net.width}x{net.height} tensor: median ms of {repeat} x 20 interleaved "
        "(server: timing.preprocess_ms)"
    )
    for name, message, baselines in cases:
        ours: list[float] = []
        theirs: dict[str, list[float]] = {label: [] for label, _ in baselines}
        for _ in range(repeat):  # interleaved
            ours += await server_preprocess_ms(stub, spec, message, 20)
            for label, work in baselines:
                theirs[label] += await asyncio.to_thread(opencv_ms, work, 20)
        mine = statistics.median(ours)
        for label, values in theirs.items():
            base = statistics.median(values)
            print(f"  {name:<22} sightline {mine:6.2f} | OpenCV {label:<22} {base:6.2f} | ratio {mine / base:5.2f}")


def rss_mib(pid: int) -> float:
    """A process's resident memory now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def many_streams(
    stub: recognition_pb2_grpc.RecognitionServiceStub,
    spec: str,
    requests: list[streams_pb2.StreamRecognizeRequest],
    streams: int,
    per_stream: int,
    policy: streams_pb2.DropPolicy,
    server_pid: int,
    bound_mib: float | None,
) -> None:
    """P4: ``streams`` streams of 1 frame in flight whose clients write ``per_stream`` frames as fast as the stream
    takes them (a camera that does not wait for results): statuses, latency of the answered frames, server RSS and
    its growth against ``bound_mib`` (``memory_bound``; None: gRPC's windows unbounded)."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    peak = baseline = rss_mib(server_pid)
    running = True

    async def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss_mib(server_pid))
            await asyncio.sleep(0.05)

    async def one(index: int) -> None:
        sent: dict[int, float] = {}
        call = stub.StreamRecognize()
        config = streams_pb2.StreamConfig(spec_id=spec, max_in_flight=1, drop_policy=policy)
        await call.write(streams_pb2.StreamRecognizeRequest(config=config))

        async def write() -> None:
            for i in range(per_stream):
                request = streams_pb2.StreamRecognizeRequest()
                request.CopyFrom(requests[(index * per_stream + i) % len(requests)])
                request.frame.frame_id = i
                sent[i] = time.perf_counter()
                await call.write(request)
            await call.done_writing()

        writer = asyncio.create_task(write())
        async for response in call:
            name = streams_pb2.FrameStatus.Name(response.status)
            statuses[name] = statuses.get(name, 0) + 1
            if response.status == streams_pb2.OK:
                latencies.append((time.perf_counter() - sent[response.frame_id]) * 1e3)
        await writer

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    seconds = time.perf_counter() - started
    running = False
    await sampler
    answered = sum(statuses.values())
    print(
        f"  {streams} streams, {streams_pb2.DropPolicy.Name(policy):<11} {answered}/{streams * per_stream} answered "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}), {len(latencies) / seconds:.1f} fps OK, "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, server RSS "
        f"{baseline:.0f} -> peak {peak:.0f} MiB, growth {peak - baseline:.0f} MiB "
        + (
            "(no stated bound: gRPC's own stream windows)"
            if bound_mib is None
            else f"{'within' if peak - baseline <= bound_mib else 'ABOVE'} the bound of {bound_mib:.0f} MiB"
        )
    )


async def wait_for_server(address: str, timeout_s: float = 120) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(
                    health_pb2.HealthCheckRequest(service="sightline.v1.RecognitionService"), timeout=2
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Sightline server did not become ready")
            await asyncio.sleep(0.2)


async def start_server(
    url: str, work: Path, port: int, shared_memory: str, extra_env: dict[str, str]
) -> asyncio.subprocess.Process:
    """A Sightline server process on ``port`` against the Triton at ``url``, its tensors through Triton's shared
    memory or not (``SIGHTLINE_TRITON_SHARED_MEMORY``: the bench's Triton shares this machine's ``/dev/shm``)."""
    env = dict(
        os.environ,
        SIGHTLINE_TRITON_URL=url,
        SIGHTLINE_TRITON_SHARED_MEMORY=shared_memory,
        SIGHTLINE_PORT=str(port),
        SIGHTLINE_METRICS_PORT="-1",
        SIGHTLINE_DATA_DIR=str(work / f"data-{port}"),
        SIGHTLINE_LOG_LEVEL="WARNING",
        **extra_env,
    )
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "service", "serve", env=env, cwd=ROOT)


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sightline-bench-"))
    (work / "models").mkdir()
    triton = EmbeddedTriton([BUNDLED_REPOSITORY, work / "models"], work / "triton")
    url = await triton.start(timeout_s=300)
    port = 50000 + os.getpid() % 10000
    modes = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}[args.shared_memory]
    extra = dict(item.split("=", 1) for item in args.server_env)
    servers = [await start_server(url, work, port + i, mode, extra) for i, mode in enumerate(modes)]
    alt = dict(extra, **dict(item.split("=", 1) for item in args.alt_env)) if args.alt_env else None
    if alt is not None:
        servers.append(await start_server(url, work, port + len(servers), modes[0], alt))
    server = servers[0]
    gateway = GrpcTritonGateway(url)
    try:
        addresses = [f"127.0.0.1:{port + i}" for i in range(len(servers))]
        for address in addresses:
            await wait_for_server(address)
        catalog = Catalog.load(BUNDLED_REPOSITORY)
        recognizer = Recognizer(catalog, gateway)
        net = network_of(catalog, args.spec)
        width, height = (int(v) for v in args.size.split("x"))
        images = frames(args.frames, width, height)
        requests = frame_requests(images)
        options = [("grpc.max_send_message_length", 64 << 20)]
        async with contextlib.AsyncExitStack() as stack:
            channels = [
                await stack.enter_async_context(grpc.aio.insecure_channel(address, options=options))
                for address in addresses
            ]
            stubs = [recognition_pb2_grpc.RecognitionServiceStub(channel) for channel in channels]
            stub = stubs[0]
            # Warm every path (model configs cached, connections open, regions registered, batchers busy once).
            await asyncio.to_thread(run_opencv, url, net, images[:40], 4)
            await run_own(recognizer, args.spec, images[:40], 4)
            for each in stubs:
                await run_streams(each, args.spec, requests[:40], 4, 1)
            if args.profile is not None:
                await profile(server.pid, args.profile, stub, args.spec, requests * 5, args.profile_in_flight)
                return
            print(
                f"spec {args.spec} (model {net.model}, input {net.width}x{net.height}), {args.frames} frames of "
                f"{args.size} RGB24 per run, {args.repeat} interleaved repeats; Sightline's tensors to Triton: "
                f"{'shared memory' if modes[0] == 'on' else 'in-band'}"
                f"{' (stream-inband: in-band)' if len(modes) > 1 else ''}; load average {load_average()}"
            )
            print(
                "fps: median of repeats; p50/p99 ms: pooled; ratio: stream fps / baseline fps, median (range); "
                "+p50: stream p50 - baseline p50 (ms)"
            )
            print(
                f"{'comparison':<32} {'base':<7} {'fps':>8} {'p50':>7} {'p99':>7} | {'stream':>8} {'p50':>7} "
                f"{'p99':>7} | {'ratio':>5} {'(range)':<11} {'+p50':>7}"
            )
            if args.many:
                print(
                    f"{args.many} concurrent streams, 1 frame in flight each, clients writing without waiting for "
                    "results; frames held per stream are bounded by the admission window (4 x max_in_flight + 16)"
                )
                window = int(
                    extra.get(
                        "SIGHTLINE_GRPC_STREAM_WINDOW_BYTES",
                        Settings.model_fields["grpc_stream_window_bytes"].default,
                    )
                )
                bound_bytes = memory_bound(args.many, 1, width * height * 3, 3 * net.width * net.height * 4, window)
                bound = None if bound_bytes is None else bound_bytes / (1 << 20)
                print(
                    f"stated bound on the server's RSS growth: {args.many} x ((4 x 1 + 16 + 1) frames of "
                    f"{width * height * 3} B + gRPC stream window {window} B + 4 x {3 * net.width * net.height * 4} B)"
                    + ("" if bound is None else f" = {bound:.0f} MiB")
                )
                for policy in (streams_pb2.DROP_OLDEST, streams_pb2.BLOCK):
                    await many_streams(stub, args.spec, requests, args.many, 40, policy, server.pid, bound)
            if args.preprocess:
                await compare_preprocessing(stub, args.spec, net, images[0], args.repeat)
            triton_pid = triton.pid
            assert triton_pid is not None
            paths_of_stubs = ["stream", "stream-inband"][: len(modes)] + (["stream-alt"] if alt is not None else [])
            cases = [("1 stream, 1 in flight", 1, 1, 1), ("1 stream, 4 in flight", 1, 4, 4)]
            cases += [(f"{n} streams, 1 in flight", n, 1, n) for n in (int(s) for s in args.streams.split(",") if s)]
            for name, streams, in_flight, parallel in cases:
                paths: dict[str, list[Run]] = {"opencv": [], "own": [], "stream": []}
                if len(modes) > 1:
                    paths["stream-inband"] = []
                if alt is not None:
                    paths["stream-alt"] = []
                for _ in range(args.repeat):
                    pids = {"client": os.getpid(), "triton": triton_pid}
                    paths["opencv"].append(
                        await measured(asyncio.to_thread(run_opencv, url, net, images, parallel), pids)
                    )
                    paths["own"].append(await measured(run_own(recognizer, args.spec, images, parallel), pids))
                    for kind, each, process in zip(paths_of_stubs, stubs, servers, strict=True):
                        paths[kind].append(
                            await measured(
                                run_streams(each, args.spec, requests, streams, in_flight),
                                dict(pids, sightline=process.pid),
                            )
                        )
                report(name, paths)
                report_cpu(name, paths)
            print(f"load average at the end: {load_average()}")
    finally:
        await gateway.close()
        for each in servers:
            each.terminate()
        for each in servers:
            await asyncio.wait_for(each.wait(), 30)
        await triton.stop()


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages (the figures' context: the cores are shared)."""
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="shapes-yolo-v1")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="320x240", help="frame size WxH")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--streams", default="8,32", help="concurrent-stream counts, each stream 1 frame in flight")
    parser.add_argument(
        "--profile",
        type=Path,
        help="instead of the comparisons: sample the server with py-spy (pip install py-spy) during one stream of "
        "5 x --frames frames, write its raw stacks here and print the time per stage",
    )
    parser.add_argument("--profile-in-flight", type=int, default=4)
    parser.add_argument(
        "--shared-memory",
        choices=("on", "off", "both"),
        default="on",
        help="the Sightline server's tensors to Triton: through Triton's system shared memory (on, as with the "
        "embedded Triton), in-band (off), or both (two servers; the in-band stream runs interleaved as a fourth path)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the Sightline server (repeatable), e.g. "
        "SIGHTLINE_GRPC_STREAM_WINDOW_BYTES=0 (gRPC's own windows)",
    )
    parser.add_argument(
        "--alt-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="start one more Sightline server with these variables besides --server-env (repeatable); its stream, "
        "stream-alt, runs interleaved as one more path, e.g. SIGHTLINE_TRITON_BATCH_MAX=1 (no client-side batching)",
    )
    parser.add_argument("--many", type=int, default=64, help="streams of the P4 run (0: skip it)")
    parser.add_argument(
        "--no-preprocess", dest="preprocess", action="store_false", help="skip the preprocessing comparison (P3)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
