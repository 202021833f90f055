"""Soak run: the service under every kind of client at once, for minutes, watching for crashes and leaks.

Run from the repository root::

    python -m bench.soak                    # 8 minutes; --minutes 1 for a short try, --json PATH for the figures

It starts ``sightline serve`` (with its embedded Triton) as a separate process on free loopback ports and, once
health says SERVING, drives it at saturation with clients that are each a process of their own, as users are:

- **unary** (4): ``Recognize`` on colors-v1 in a loop, synchronous client;
- **stream** (4): ``StreamRecognize`` on shapes-yolo-v1, raw 320x240 RGB frames as fast as the stream takes them;
- **cancel** (1): a stream (max_in_flight 8) that cancels itself after a random 1-5 s and reopens;
- **deadline** (1): streams with a 0.2 s deadline that expire mid-stream, one after another;
- **abrupt**: a process that opens a stream (and sometimes a unary call), sends frames for a random 0.5-3 s and
  is killed with SIGKILL; a new one every few seconds.

Every 10 s it samples RSS and open file descriptors of the service and of its descendants (Triton and its
backend stubs) from /proc, and the service's in-flight and open-stream gauges. At the end it prints first- vs
last-minute figures (RSS, fds, latency percentiles), counts per client kind with gRPC codes split into expected
(CANCELLED of self-cancels, DEADLINE_EXCEEDED of deadlines) and unexpected ones, a final health check and
recognition, and how long SIGTERM took. A service that dies during the run is reported with its exit code or
signal and ends the run. Exit status: 0 when the run went to its end (PASS/FAIL lines are figures, not a verdict),
1 when the service died, 2 when it never became ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc, streams_pb2

ROOT = Path(__file__).resolve().parent.parent
HEALTH_SERVICE = "sightline.v1.RecognitionService"
UNARY_SPEC = "colors-v1"
STREAM_SPEC = "shapes-yolo-v1"
UNARY_IMAGE = ROOT / "samples" / "red.png"
UNARY_LABEL = "red"
FRAME_IMAGE = ROOT / "samples" / "shapes-scene.png"
FRAME_W, FRAME_H = 320, 240
SAMPLE_EVERY_S = 10.0
# Client processes of each kind (the abrupt ones come and go besides these).
CLIENT_COUNTS = {"unary": 4, "stream": 4, "cancel": 1, "deadline": 1}
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 16 << 20), ("grpc.max_receive_message_length", 16 << 20)]
# Goals.
MAX_RSS_GROWTH_PCT = 5.0
MAX_FD_DRIFT = 5


# --- Clients (each runs in a process of its own) --------------------------------------------------------------


@dataclass
class Sync:
    """What the orchestrator shares with its client processes: a start line and a stop flag."""

    ready: Any  # multiprocessing Queue: each client puts its kind once it is connected
    go: Event
    stop: Event
    t0: Synchronized[float]  # CLOCK_MONOTONIC is system-wide on Linux, so one clock serves every process
    end: Synchronized[float]
    window_s: float

    def over(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.end.value


@dataclass
class ClientStats:
    kind: str
    calls: int = 0
    frames: int = 0
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    # Latencies (ms) of the first and the last window only: that is all the drift figures need, and it keeps a
    # long run's memory flat on the client side too.
    first_ms: list[float] = field(default_factory=list)
    last_ms: list[float] = field(default_factory=list)

    def record(self, ms: float, at: float, sync: Sync) -> None:
        if at - sync.t0.value < sync.window_s:
            self.first_ms.append(ms)
        if sync.end.value - at < sync.window_s:
            self.last_ms.append(ms)

    def merge(self, other: ClientStats) -> None:
        self.calls += other.calls
        self.frames += other.frames
        self.expected.update(other.expected)
        self.unexpected.update(other.unexpected)
        self.first_ms.extend(other.first_ms)
        self.last_ms.extend(other.last_ms)


def load_frames() -> list[bytes]:
    """Raw RGB24 frames of the sample scene, shifted so that consecutive frames differ (a moving camera)."""
    with Image.open(FRAME_IMAGE) as image:
        scene = np.asarray(image.convert("RGB").resize((FRAME_W, FRAME_H)))
    return [np.ascontiguousarray(np.roll(scene, shift * 8, axis=1)).tobytes() for shift in range(16)]


def frame_requests(
    config: streams_pb2.StreamConfig,
    frames: list[bytes],
    over: Callable[[], bool],
    sent: dict[int, float] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Iterator[streams_pb2.StreamRecognizeRequest]:
    """The config, then frames until ``over()``. gRPC pulls the next one only when the last is written, so this
    goes exactly as fast as the stream (and the server's flow control) takes frames."""
    yield streams_pb2.StreamRecognizeRequest(config=config)
    frame_id = 0
    while not over():
        raw = streams_pb2.RawImage(
            width=FRAME_W, height=FRAME_H, format=streams_pb2.RGB24, data=frames[frame_id % len(frames)]
        )
        if sent is not None:
            sent[frame_id] = time.monotonic()
        if on_frame is not None:
            on_frame()
        yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=frame_id, raw=raw))
        frame_id += 1


def unary_request() -> inference_pb2.RecognizeRequest:
    image = inference_pb2.ImageInput(content=UNARY_IMAGE.read_bytes())
    return inference_pb2.RecognizeRequest(spec_id=UNARY_SPEC, inputs=[inference_pb2.Input(image=image)])


def code_name(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, grpc.Call) else None
    return code.name if code is not None else "UNKNOWN"


def run_unary(stub: recognition_pb2_grpc.RecognitionServiceStub, sync: Sync, stats: ClientStats) -> None:
    request = unary_request()
    while not sync.over():
        started = time.monotonic()
        stats.calls += 1
        try:
            stub.Recognize(request, timeout=30)
        except grpc.RpcError as error:
            stats.unexpected[code_name(error)] += 1
            time.sleep(0.2)  # a dead or refusing server answers at once: do not spin on it
            continue
        done = time.monotonic()
        stats.record((done - started) * 1e3, done, sync)


def read_stream(
    responses: Iterator[streams_pb2.StreamRecognizeResponse],
    stats: ClientStats,
    sync: Sync | None = None,
    sent: dict[int, float] | None = None,
) -> None:
    for response in responses:
        stats.frames += 1
        if response.status != streams_pb2.OK:
            stats.unexpected[f"frame {streams_pb2.FrameStatus.Name(response.status)}"] += 1
        if sent is not None and sync is not None and (at := sent.pop(response.frame_id, None)) is not None:
            done = time.monotonic()
            stats.record((done - at) * 1e3, done, sync)


def run_stream(stub: recognition_pb2_grpc.RecognitionServiceStub, sync: Sync, stats: ClientStats) -> None:
    """One long stream for the whole run; reopened only if it fails."""
    frames = load_frames()
    config = streams_pb2.StreamConfig(spec_id=STREAM_SPEC, max_in_flight=4)
    while not sync.over():
        stats.calls += 1
        sent: dict[int, float] = {}
        timeout = max(1.0, sync.end.value - time.monotonic()) + 60  # bounded even if the server stops answering
        try:
            responses = stub.StreamRecognize(frame_requests(config, frames, sync.over, sent), timeout=timeout)
            read_stream(responses, stats, sync, sent)
        except grpc.RpcError as error:
            stats.unexpected[code_name(error)] += 1
            time.sleep(0.5)


def run_cancel(stub: recognition_pb2_grpc.RecognitionServiceStub, sync: Sync, stats: ClientStats) -> None:
    """Streams that the client cancels itself while frames are in flight (the path of last round's crash)."""
    frames = load_frames()
    config = streams_pb2.StreamConfig(spec_id=STREAM_SPEC, max_in_flight=8)
    rng = random.Random()
    while not sync.over():
        stats.calls += 1
        call = stub.StreamRecognize(frame_requests(config, frames, sync.over), timeout=60)
        timer = threading.Timer(rng.uniform(1, 5), call.cancel)
        timer.start()
        try:
            read_stream(call, stats)
        except grpc.RpcError as error:
            if code_name(error) == "CANCELLED":
                stats.expected["CANCELLED"] += 1
            else:
                stats.unexpected[code_name(error)] += 1
                time.sleep(0.2)  # a dead server refuses at once: do not spin on it
        finally:
            timer.cancel()


def run_deadline(stub: recognition_pb2_grpc.RecognitionServiceStub, sync: Sync, stats: ClientStats) -> None:
    """Streams whose 0.2 s deadline expires while frames are in flight."""
    frames = load_frames()
    config = streams_pb2.StreamConfig(spec_id=STREAM_SPEC, max_in_flight=4)
    while not sync.over():
        stats.calls += 1
        try:
            read_stream(stub.StreamRecognize(frame_requests(config, frames, sync.over), timeout=0.2), stats)
        except grpc.RpcError as error:
            bucket = stats.expected if code_name(error) == "DEADLINE_EXCEEDED" else stats.unexpected
            bucket[code_name(error)] += 1
        time.sleep(0.1)


CLIENTS: dict[str, Callable[[recognition_pb2_grpc.RecognitionServiceStub, Sync, ClientStats], None]] = {
    "unary": run_unary,
    "stream": run_stream,
    "cancel": run_cancel,
    "deadline": run_deadline,
}


def client_main(kind: str, address: str, sync: Sync, results: Any) -> None:
    """Entry point of a client process: connect, wait for the start line, run until the end, report."""
    stats = ClientStats(kind)
    try:
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            sync.ready.put(kind)
            if sync.go.wait(timeout=300):
                CLIENTS[kind](recognition_pb2_grpc.RecognitionServiceStub(channel), sync, stats)
    except Exception as error:  # the report must come back whatever happened to this client
        stats.unexpected[f"client {type(error).__name__}"] += 1
    finally:
        results.put(stats)


def abrupt_main(address: str, with_unary: bool, frames: Synchronized[int]) -> None:
    """A client that gets killed: streams (and maybe calls) until its parent sends SIGKILL, 20 s at most."""
    give_up = time.monotonic() + 20
    images = load_frames()
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    stub = recognition_pb2_grpc.RecognitionServiceStub(channel)

    def counted() -> None:
        # A plain shared integer, no lock: a lock held by a killed process would stay held for good.
        frames.value += 1

    def call_once() -> None:
        with contextlib.suppress(grpc.RpcError):
            stub.Recognize(unary_request(), timeout=20)

    if with_unary:
        threading.Thread(target=call_once, daemon=True).start()
    config = streams_pb2.StreamConfig(spec_id=STREAM_SPEC, max_in_flight=4)
    over = lambda: time.monotonic() > give_up  # noqa: E731
    with contextlib.suppress(grpc.RpcError):
        for _ in stub.StreamRecognize(frame_requests(config, images, over, on_frame=counted), timeout=25):
            pass


def wait_for_frames(frames: Synchronized[int], since: int, child: mp.process.BaseProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while frames.value == since and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return frames.value != since


def run_abrupt(ctx: SpawnContext, address: str, sync: Sync, stats: ClientStats) -> None:
    """A thread of the orchestrator: starts abrupt clients one after another and SIGKILLs each mid-stream."""
    rng = random.Random()
    frames: Synchronized[int] = ctx.Value("q", 0, lock=False)
    sync.go.wait(timeout=300)
    while not sync.over():
        child = ctx.Process(target=abrupt_main, args=(address, rng.random() < 0.5, frames), daemon=True)
        since = frames.value
        child.start()
        stats.calls += 1
        if wait_for_frames(frames, since, child, timeout_s=30):
            sync.stop.wait(rng.uniform(0.5, 3))
        else:
            stats.unexpected["never sent a frame"] += 1
        child.kill()
        child.join(timeout=10)
        if child.exitcode == -signal.SIGKILL:
            stats.expected["SIGKILL"] += 1
        else:
            stats.unexpected[f"ended by itself ({child.exitcode})"] += 1
        sync.stop.wait(rng.uniform(1, 3))
    stats.frames = frames.value


# --- The service and what is sampled of it --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    address: str
    metrics_url: str
    log_path: Path

    def exit_text(self) -> str:
        code = self.process.returncode
        if code is None:
            return "running"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exited with code {code}"


def start_service(work: Path) -> Service:
    port, metrics_port = free_port(), free_port()
    env = dict(
        os.environ,
        SIGHTLINE_PORT=str(port),
        SIGHTLINE_METRICS_PORT=str(metrics_port),
        SIGHTLINE_DATA_DIR=str(work / "data"),
        SIGHTLINE_HOST="127.0.0.1",
        # A segfault then leaves every thread's Python stack in the log: what the one fixing it needs first.
        PYTHONFAULTHANDLER="1",
    )
    log_path = work / "service.log"
    with log_path.open("wb") as log:
        # A session of its own: the terminal's Ctrl-C reaches this script, which then stops the service in order.
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "sightline"), "serve"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log_path)


def health_status(address: str, timeout_s: float = 2.0) -> str:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        except grpc.RpcError as error:
            return code_name(error)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_serving(service: Service, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and service.process.poll() is None:
        if health_status(service.address) == "SERVING":
            return True
        time.sleep(0.5)
    return False


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time) of a process, or None if it is gone. The start time tells a reused pid apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def gauges(metrics_url: str) -> dict[str, float]:
    wanted = {"sightline_frames_in_flight", "sightline_streams_open"}
    try:
        with urllib.request.urlopen(metrics_url, timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


@dataclass
class Sample:
    t_s: float
    service_rss_kib: int
    service_fds: int
    triton_rss_kib: int
    triton_fds: int
    triton_processes: int
    frames_in_flight: float | None
    streams_open: float | None


# The Sample fields compared between windows.
RESOURCES = ("service_rss_kib", "triton_rss_kib", "service_fds", "triton_fds")


def sample(service: Service, t0: float, triton_seen: dict[int, int]) -> Sample:
    pid = service.process.pid
    kids = descendants(pid)
    for kid in kids:
        if (stat := proc_stat(kid)) is not None:
            triton_seen[kid] = stat[1]
    values = gauges(service.metrics_url)
    return Sample(
        t_s=round(time.monotonic() - t0, 1),
        service_rss_kib=rss_kib(pid),
        service_fds=fd_count(pid),
        triton_rss_kib=sum(rss_kib(k) for k in kids),
        triton_fds=sum(fd_count(k) for k in kids),
        triton_processes=len(kids),
        frames_in_flight=values.get("sightline_frames_in_flight"),
        streams_open=values.get("sightline_streams_open"),
    )


def still_alive(seen: dict[int, int]) -> list[int]:
    return [pid for pid, start in seen.items() if (stat := proc_stat(pid)) is not None and stat[1] == start]


# --- The run ----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    minutes: float
    window_s: float
    before: Sample | None = None
    samples: list[Sample] = field(default_factory=list)
    after: Sample | None = None
    clients: dict[str, ClientStats] = field(default_factory=dict)
    crash: str | None = None
    crash_at_s: float | None = None
    final_health: str | None = None
    final_recognition: str | None = None
    shutdown_s: float | None = None
    shutdown_exit: str | None = None
    left_behind: list[int] = field(default_factory=list)
    triton_exits: list[str] = field(default_factory=list)
    """The supervisor's lines for each time the embedded Triton died and was restarted."""


def start_clients(
    ctx: SpawnContext, address: str, sync: Sync, results: Any, counts: dict[str, int]
) -> list[mp.process.BaseProcess]:
    processes: list[mp.process.BaseProcess] = []
    for kind, count in counts.items():
        for _ in range(count):
            process = ctx.Process(target=client_main, args=(kind, address, sync, results), daemon=True)
            process.start()
            processes.append(process)
    return processes


def wait_ready(sync: Sync, count: int, service: Service, timeout_s: float = 180) -> bool:
    deadline = time.monotonic() + timeout_s
    ready = 0
    while ready < count and time.monotonic() < deadline and service.process.poll() is None:
        with contextlib.suppress(queue.Empty):
            sync.ready.get(timeout=1)
            ready += 1
    return ready == count


def monitor(run: Run, service: Service, sync: Sync, triton_seen: dict[int, int]) -> None:
    """Sample every 10 s until the end, and once at the end; stop at once if the service dies."""
    next_sample = time.monotonic() + SAMPLE_EVERY_S  # t=0 would be an idle sample: run.before already is one
    while time.monotonic() < sync.end.value:
        if service.process.poll() is not None:
            run.crash = service.exit_text()
            run.crash_at_s = round(time.monotonic() - sync.t0.value, 1)
            print(f"!!! the service died: {run.crash} at t={run.crash_at_s:.0f} s; stopping the run", flush=True)
            return
        if time.monotonic() >= next_sample:
            run.samples.append(sample(service, sync.t0.value, triton_seen))
            print(format_sample(run.samples[-1]), flush=True)
            next_sample += SAMPLE_EVERY_S
        time.sleep(0.25)
    if service.process.poll() is None:
        run.samples.append(sample(service, sync.t0.value, triton_seen))
        print(format_sample(run.samples[-1]), flush=True)


def collect(results: Any, processes: list[mp.process.BaseProcess], run: Run) -> None:
    """Each client's report, then the processes; a client that never reports is counted and terminated."""
    deadline = time.monotonic() + 90
    reports = 0
    while reports < len(processes) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            stats: ClientStats = results.get(timeout=1)
            run.clients.setdefault(stats.kind, ClientStats(stats.kind)).merge(stats)
            reports += 1
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
    if reports < len(processes):
        run.clients.setdefault("orchestrator", ClientStats("orchestrator")).unexpected["client never reported"] += (
            len(processes) - reports
        )


def settle(service: Service, timeout_s: float = 20) -> Sample | None:
    """After the clients stop: wait for the gauges to fall to 0 (or the time to pass), then sample once idle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and service.process.poll() is None:
        values = gauges(service.metrics_url)
        if values.get("sightline_frames_in_flight") == 0 and values.get("sightline_streams_open") == 0:
            break
        time.sleep(0.5)
    time.sleep(2)  # closed connections release their fds a moment later
    return None if service.process.poll() is not None else sample(service, time.monotonic(), {})


def final_recognition(address: str) -> str:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        try:
            result = stub.Recognize(unary_request(), timeout=30)
        except grpc.RpcError as error:
            return f"failed: {code_name(error)}"
    predicted = [p.label_name for output in result.outputs for p in output.labels.predicted]
    return "ok" if predicted[:1] == [UNARY_LABEL] else f"wrong: {predicted}"


def shut_down(service: Service, run: Run, triton_seen: dict[int, int]) -> None:
    """SIGTERM and time the drain; SIGKILL the service's process group if it overstays (drain grace is 20 s)."""
    if service.process.poll() is None:
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(timeout=90)
            run.shutdown_s = round(time.monotonic() - started, 2)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=10)
        run.shutdown_exit = service.exit_text()
    # Triton dies with its parent (PR_SET_PDEATHSIG); give the kernel a moment, then report and end stragglers.
    deadline = time.monotonic() + 10
    while still_alive(triton_seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    run.left_behind = still_alive(triton_seen)
    for pid in run.left_behind:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def barrage(ctx: SpawnContext, service: Service, run: Run, triton_seen: dict[int, int]) -> None:
    duration_s = run.minutes * 60
    sync = Sync(ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Value("d", 0.0), ctx.Value("d", 0.0), run.window_s)
    results = ctx.Queue()
    sync.end.value = time.monotonic() + 600  # bounds the clients' waits until the real start line is drawn
    processes = start_clients(ctx, service.address, sync, results, CLIENT_COUNTS)
    abrupt = ClientStats("abrupt")
    killer = threading.Thread(target=run_abrupt, args=(ctx, service.address, sync, abrupt), daemon=True)
    killer.start()
    try:
        if not wait_ready(sync, len(processes), service):
            print("not every client connected in time; running with those that did", flush=True)
        sync.t0.value = time.monotonic()
        sync.end.value = sync.t0.value + duration_s
        sync.go.set()
        print(f"barrage: {len(processes)} client processes and abrupt ones for {run.minutes:g} min", flush=True)
        monitor(run, service, sync, triton_seen)
    finally:
        sync.stop.set()
        killer.join(timeout=60)
        collect(results, processes, run)
        run.clients["abrupt"] = abrupt


def soak(minutes: float) -> tuple[Run, Path]:
    run = Run(minutes=minutes, window_s=min(60.0, minutes * 60 / 3))
    work = Path(tempfile.mkdtemp(prefix="sightline-soak-"))
    ctx = mp.get_context("spawn")  # grpc does not survive fork; clients start clean interpreters
    service = start_service(work)
    triton_seen: dict[int, int] = {}
    print(f"service pid {service.process.pid} on {service.address}, log {service.log_path}", flush=True)
    try:
        if not wait_serving(service, timeout_s=300):
            run.crash = f"never became SERVING ({service.exit_text()})"
            return run, work
        run.before = sample(service, time.monotonic(), triton_seen)
        barrage(ctx, service, run, triton_seen)
        if run.crash is None and service.process.poll() is not None:
            run.crash = service.exit_text()
        if run.crash is None:
            run.after = settle(service)
            run.final_health = health_status(service.address)
            run.final_recognition = final_recognition(service.address)
    finally:
        shut_down(service, run, triton_seen)
        # The service outlives a Triton crash (it restarts it): count them, they are crashes all the same.
        with contextlib.suppress(OSError):
            log_lines = service.log_path.read_text(errors="replace").splitlines()
            run.triton_exits = [line for line in log_lines if "the embedded Triton exited" in line]
    return run, work


# --- Figures ----------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def window(samples: list[Sample], run: Run, last: bool) -> list[Sample]:
    if not samples:
        return []
    end = samples[-1].t_s
    picked = [s for s in samples if (end - s.t_s < run.window_s if last else s.t_s < run.window_s)]
    return picked or samples[-1:]


def median_of(samples: list[Sample], name: str) -> float | None:
    return statistics.median(getattr(s, name) for s in samples) if samples else None


def growth_pct(first: float | None, last: float | None) -> float | None:
    return None if not first or last is None else round((last - first) / first * 100, 2)


def figures(run: Run) -> dict[str, Any]:
    first, last = window(run.samples, run, last=False), window(run.samples, run, last=True)
    out: dict[str, Any] = {"minutes": run.minutes, "window_s": run.window_s}
    for name in RESOURCES:
        a, b = median_of(first, name), median_of(last, name)
        out[name] = {
            "idle_before": getattr(run.before, name) if run.before else None,
            "first_window": a,
            "last_window": b,
            "growth_pct": growth_pct(a, b),
            "idle_after": getattr(run.after, name) if run.after else None,
        }
    out["clients"] = {
        kind: {
            "calls": s.calls,
            "frames": s.frames,
            "expected": dict(s.expected),
            "unexpected": dict(s.unexpected),
            "first_p50_ms": percentile(s.first_ms, 0.5),
            "first_p99_ms": percentile(s.first_ms, 0.99),
            "last_p50_ms": percentile(s.last_ms, 0.5),
            "last_p99_ms": percentile(s.last_ms, 0.99),
        }
        for kind, s in run.clients.items()
    }
    out["crash"] = run.crash
    out["crash_at_s"] = run.crash_at_s
    out["frames_in_flight_after"] = run.after.frames_in_flight if run.after else None
    out["streams_open_after"] = run.after.streams_open if run.after else None
    out["final_health"] = run.final_health
    out["final_recognition"] = run.final_recognition
    out["shutdown_s"] = run.shutdown_s
    out["shutdown_exit"] = run.shutdown_exit
    out["triton_left_behind"] = run.left_behind
    out["triton_exits"] = run.triton_exits
    out["samples"] = [vars(s) for s in run.samples]
    out["goals"] = goals(out)
    return out


def goals(out: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal met (True), missed (False) or not measurable (None: the service died before it could be)."""

    def flat(name: str, a: str, b: str) -> bool | None:
        x, y = out[name][a], out[name][b]
        return None if x is None or y is None else abs(y - x) <= MAX_FD_DRIFT

    def small(name: str) -> bool | None:
        growth = out[name]["growth_pct"]
        return None if growth is None else growth < MAX_RSS_GROWTH_PCT

    def after(ok: bool) -> bool | None:
        return None if out["crash"] else ok

    return {
        "no crash": out["crash"] is None,
        "no Triton crash (restarts by the supervisor)": not out["triton_exits"],
        f"service RSS growth < {MAX_RSS_GROWTH_PCT:g} %": small("service_rss_kib"),
        f"Triton RSS growth < {MAX_RSS_GROWTH_PCT:g} %": small("triton_rss_kib"),
        f"service fds flat (±{MAX_FD_DRIFT}), first vs last window": flat("service_fds", "first_window", "last_window"),
        f"service fds flat (±{MAX_FD_DRIFT}), idle before vs after": flat("service_fds", "idle_before", "idle_after"),
        f"Triton fds flat (±{MAX_FD_DRIFT}), idle before vs after": flat("triton_fds", "idle_before", "idle_after"),
        "in-flight gauge back to 0": after(out["frames_in_flight_after"] == 0),
        "final health SERVING and recognition correct": after(
            out["final_health"] == "SERVING" and out["final_recognition"] == "ok"
        ),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_sample(s: Sample) -> str:
    return (
        f"t={s.t_s:>6.0f}s  service {s.service_rss_kib / 1024:>7.1f} MiB {s.service_fds:>4} fds  "
        f"triton ({s.triton_processes} procs) {s.triton_rss_kib / 1024:>7.1f} MiB {s.triton_fds:>4} fds  "
        f"in flight {fmt(s.frames_in_flight, 0)}  streams open {fmt(s.streams_open, 0)}"
    )


def print_report(out: dict[str, Any]) -> None:
    print(f"\n=== soak: {out['minutes']:g} min; windows are the first and last {out['window_s']:g} s ===")
    print(f"{'':<18} {'idle before':>12} {'first':>10} {'last':>10} {'growth %':>9} {'idle after':>11}")
    for name, scale, unit in (
        ("service_rss_kib", 1024, "MiB"),
        ("triton_rss_kib", 1024, "MiB"),
        ("service_fds", 1, ""),
        ("triton_fds", 1, ""),
    ):
        row = out[name]
        cells = [None if row[k] is None else row[k] / scale for k in ("idle_before", "first_window", "last_window")]
        after = None if row["idle_after"] is None else row["idle_after"] / scale
        label = name.replace("_kib", f" {unit}").replace("_", " ")
        print(
            f"{label:<18} {fmt(cells[0]):>12} {fmt(cells[1]):>10} {fmt(cells[2]):>10} "
            f"{fmt(row['growth_pct'], 2):>9} {fmt(after):>11}"
        )
    print(f"\n{'client':<9} {'calls':>7} {'frames':>8}  {'p50/p99 ms first':>18}  {'p50/p99 ms last':>18}  codes")
    for kind, c in out["clients"].items():
        first = f"{fmt(c['first_p50_ms'])}/{fmt(c['first_p99_ms'])}"
        last = f"{fmt(c['last_p50_ms'])}/{fmt(c['last_p99_ms'])}"
        codes = f"expected {c['expected'] or '{}'}  unexpected {c['unexpected'] or '{}'}"
        print(f"{kind:<9} {c['calls']:>7} {c['frames']:>8}  {first:>18}  {last:>18}  {codes}")
    print()
    if out["crash"]:
        print(f"!!! THE SERVICE DIED: {out['crash']} at t={fmt(out['crash_at_s'])} s after the start line !!!")
    else:
        print("service alive to the end of the barrage")
    print(f"after the barrage: in flight {out['frames_in_flight_after']}, streams open {out['streams_open_after']}")
    print(f"final health {out['final_health']}, final recognition {out['final_recognition']}")
    print(f"SIGTERM to exit: {fmt(out['shutdown_s'], 2)} s ({out['shutdown_exit']})")
    if out["triton_left_behind"]:
        print(f"Triton processes left behind (killed now): {out['triton_left_behind']}")
    for line in out["triton_exits"]:
        print(f"TRITON DIED (restarted by the service): {line}")
    print()
    verdicts = {True: "PASS", False: "FAIL", None: "n/a "}
    for goal, ok in out["goals"].items():
        print(f"{verdicts[ok]}  {goal}")


def log_tail(path: Path, lines: int = 40) -> str:
    """A fatal error's report (faulthandler: the crashing thread first), else the log's last lines; never the
    access log's, which would bury either under thousands of calls."""
    try:
        kept = [line for line in path.read_text(errors="replace").splitlines() if " sightline.access " not in line]
    except OSError:
        return ""
    fatal = next((i for i, line in enumerate(kept) if line.startswith("Fatal Python error")), None)
    return "\n".join(kept[fatal : fatal + 2 * lines] if fatal is not None else kept[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="length of the barrage (default 8)")
    parser.add_argument("--json", type=Path, help="write the figures (and every sample) to this file")
    args = parser.parse_args()
    run, work = soak(args.minutes)
    out = figures(run)
    print_report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if run.crash is not None:
        print(f"\nlast lines of the service's log ({work / 'service.log'}):\n{log_tail(work / 'service.log')}")
        return 2 if run.before is None else 1
    shutil.rmtree(work, ignore_errors=True)  # kept above: the log and Triton's folder are the evidence of a crash
    return 0


if __name__ == "__main__":
    sys.exit(main())
