"""The embedded Triton killed under a running ``sightline serve``: calls get UNAVAILABLE with RetryInfo while it is
down (the REST facade: 503 with Retry-After, before any task is made), health says NOT_SERVING (the process's
``""`` too), the service restarts it, and an open stream recovers by itself. Then the service's whole process
group killed with SIGKILL during inference leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc, streams_pb2
from tests.e2e.external import ROOT, ExternalService, free_port, wait_until

RED = (ROOT / "samples" / "red.png").read_bytes()
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid``: {pid: argv[0]}."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = argv0
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def tritonserver_of(service: ExternalService) -> int:
    assert service.process is not None
    pids = [p for p, name in descendants(service.process.pid).items() if name.endswith("/tritonserver")]
    assert len(pids) == 1, pids
    return pids[0]


def recognize(channel: grpc.Channel) -> inference_pb2.RecognitionResult:
    request = inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image={"content": RED})])
    result: inference_pb2.RecognitionResult = recognition_pb2_grpc.RecognitionServiceStub(channel).Recognize(
        request, timeout=10
    )
    return result


def paced_frames(stop: threading.Event) -> Iterator[streams_pb2.StreamRecognizeRequest]:
    yield streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id="colors-v1", max_in_flight=2))
    frame_id = 0
    while not stop.is_set():
        yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=frame_id, encoded=RED))
        frame_id += 1
        time.sleep(0.05)  # a 20 fps camera


def test_triton_killed_and_brought_back(tmp_path: Path) -> None:
    rest_port = free_port()
    service = ExternalService(tmp_path, SIGHTLINE_HEALTH_INTERVAL_S="0.5", SIGHTLINE_REST_PORT=str(rest_port)).start(
        timeout_s=300
    )
    rest_inference = f"http://127.0.0.1:{rest_port}/v0.7/recognition/public/colors-v1/inference"
    stop = threading.Event()
    frames: list[streams_pb2.StreamRecognizeResponse] = []
    stream_error: list[BaseException] = []
    try:
        with grpc.insecure_channel(service.address) as channel:

            def consume() -> None:
                try:
                    for response in recognition_pb2_grpc.RecognitionServiceStub(channel).StreamRecognize(
                        paced_frames(stop)
                    ):
                        frames.append(response)
                except grpc.RpcError as exc:
                    stream_error.append(exc)

            reader = threading.Thread(target=consume, daemon=True)
            reader.start()
            wait_until(lambda: len(frames) >= 5, timeout_s=30, what="the stream's first frames")
            first_triton = tritonserver_of(service)

            killed_at = time.monotonic()
            os.kill(first_triton, signal.SIGKILL)
            service.wait_health(NOT_SERVING, timeout_s=5)
            service.wait_health(NOT_SERVING, service="sightline.v1.RecognitionService", timeout_s=5)

            # While it is down: UNAVAILABLE with RetryInfo, not an error that would stop a client retrying.
            with pytest.raises(grpc.RpcError) as down:
                recognize(channel)
            assert down.value.code() is grpc.StatusCode.UNAVAILABLE, down.value
            status = rpc_status.from_call(down.value)
            assert status is not None
            assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
            # v0.7 clients retry a 503 (never a task that failed): the call is refused before a task exists.
            refused = requests.post(rest_inference, files={"inputs[0]image.source": ("red.png", RED)}, timeout=8)
            assert refused.status_code == 503, refused.text
            assert refused.json()["reason"] == "TRITON_UNAVAILABLE"
            assert refused.headers["Retry-After"] == "1"
            assert requests.get(rest_inference.removesuffix("inference"), timeout=8).status_code == 200

            service.wait_health(SERVING, timeout_s=60)
            recovered_s = time.monotonic() - killed_at
            print(f"Triton killed -> SERVING again in {recovered_s:.1f} s")
            assert recovered_s < 30, f"SERVING again only after {recovered_s:.1f} s"
            assert tritonserver_of(service) != first_triton
            assert recognize(channel).outputs[0].labels.predicted[0].label_name == "red"
            accepted = requests.post(rest_inference, files={"inputs[0]image.source": ("red.png", RED)}, timeout=8)
            assert accepted.status_code == 200, accepted.text

            # The stream stayed open: frames failed UNAVAILABLE during the outage, then were answered again.
            seen = len(frames)
            wait_until(lambda: len(frames) >= seen + 5, timeout_s=20, what="frames after the restart")
            stop.set()
            reader.join(10)
        assert not stream_error, stream_error
        statuses = [f.status for f in frames]
        errors = [f for f in frames if f.status == streams_pb2.ERROR]
        assert errors, "no frame failed while Triton was down"
        assert {f.error.code for f in errors} == {grpc.StatusCode.UNAVAILABLE.value[0]}
        assert statuses[-1] == streams_pb2.OK
        assert statuses.index(streams_pb2.ERROR) < len(statuses) - 1 - statuses[::-1].index(streams_pb2.OK)
        # One line per state change, not one per frame.
        outage_lines = [line for line in service.log.read_text().splitlines() if "UNAVAILABLE" in line]
        assert len(outage_lines) <= 4, outage_lines
        service.assert_alive()
    finally:
        stop.set()
        if service.alive():
            assert service.stop() == 0


def camera_frames(stop: threading.Event) -> Iterator[streams_pb2.StreamRecognizeRequest]:
    """shapes-yolo frames as fast as the stream takes them (4 in flight): many streams' frames share requests."""
    config = streams_pb2.StreamConfig(spec_id="shapes-yolo-v1", max_in_flight=4, drop_policy=streams_pb2.BLOCK)
    yield streams_pb2.StreamRecognizeRequest(config=config)
    pixels = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8).tobytes()
    raw = streams_pb2.RawImage(width=320, height=240, format=streams_pb2.RGB24, data=pixels)
    frame_id = 0
    while not stop.is_set():
        yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=frame_id, raw=raw))
        frame_id += 1


def test_triton_killed_under_batched_requests(tmp_path: Path) -> None:
    """Triton killed while requests of several streams' frames are in it: every frame is still answered (the
    batch's failure is each of its frames', UNAVAILABLE), no stream ends, and frames are batched and answered again
    once the service has restarted Triton."""
    service = ExternalService(tmp_path, SIGHTLINE_HEALTH_INTERVAL_S="0.5").start(timeout_s=300)
    stop = threading.Event()
    answers: list[list[streams_pb2.StreamRecognizeResponse]] = [[] for _ in range(6)]
    stream_errors: list[BaseException] = []
    batch_sum = 'sightline_triton_batch_images_sum{model="shapes-yolo"}'
    batch_count = 'sightline_triton_batch_images_count{model="shapes-yolo"}'
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = recognition_pb2_grpc.RecognitionServiceStub(channel)

            def consume(into: list[streams_pb2.StreamRecognizeResponse]) -> None:
                try:
                    into.extend(stub.StreamRecognize(camera_frames(stop)))
                except grpc.RpcError as exc:
                    stream_errors.append(exc)

            readers = [threading.Thread(target=consume, args=(each,), daemon=True) for each in answers]
            for reader in readers:
                reader.start()
            wait_until(lambda: all(len(a) >= 20 for a in answers), timeout_s=60, what="every stream's first frames")
            before = service.metrics()
            assert before[batch_sum] > before[batch_count], "frames of the streams should share requests"
            os.kill(tritonserver_of(service), signal.SIGKILL)
            service.wait_health(NOT_SERVING, timeout_s=5)
            service.wait_health(SERVING, timeout_s=60)
            seen = [len(a) for a in answers]

            def answered_again() -> bool:
                pairs = zip(answers, seen, strict=True)
                return all(len(a) >= n + 20 and a[-1].status == streams_pb2.OK for a, n in pairs)

            wait_until(answered_again, timeout_s=60, what="frames answered again on every stream")
            after = service.metrics()
            stop.set()
            for reader in readers:
                reader.join(15)
        assert not stream_errors, stream_errors
        assert after[batch_sum] - before[batch_sum] > after[batch_count] - before[batch_count]
        failed = [f for a in answers for f in a if f.status != streams_pb2.OK]
        assert failed, "no frame failed while Triton was down"
        assert {(f.status, f.error.code) for f in failed} == {(streams_pb2.ERROR, grpc.StatusCode.UNAVAILABLE.value[0])}
        for each in answers:  # ordered streams: every frame answered once, in order
            assert [f.frame_id for f in each] == list(range(len(each)))
        service.assert_alive()
    finally:
        stop.set()
        if service.alive():
            assert service.stop() == 0


def test_service_group_killed_during_inference_leaves_nothing(tmp_path: Path) -> None:
    service = ExternalService(tmp_path).start(timeout_s=300)
    assert service.process is not None
    with grpc.insecure_channel(service.address) as channel:
        recognize(channel)
        tree = descendants(service.process.pid)
        assert any(name.endswith("triton_python_backend_stub") for name in tree.values()), tree
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    recognize(channel)
                except grpc.RpcError:
                    return

        workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        os.killpg(service.process.pid, signal.SIGKILL)  # the service leads its own group (start_new_session)
        service.process.wait()
        stop.set()
        for worker in workers:
            worker.join(15)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in tree)

    wait_until(gone, timeout_s=15, what="every process of the killed service gone")
    leftovers = [p.name for p in Path("/dev/shm").iterdir() if any(f"_{pid}_" in p.name for pid in tree)]
    assert not leftovers, leftovers


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"
