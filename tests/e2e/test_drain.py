"""SIGTERM drains a real ``sightline serve`` within its grace, with a Health.Watch, a stream and a call open.

What a load balancer and a client see: NOT_SERVING on the Watch at once, calls still served during
``SIGHTLINE_DRAIN_DELAY_S``, then UNAVAILABLE for everything (never CANCELLED, which retry policies skip), and the
process gone within ``SIGHTLINE_DRAIN_GRACE_S``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.sightline.v1 import inference_pb2, networks_pb2, networks_pb2_grpc, recognition_pb2_grpc
from tests.e2e.external import ROOT, ExternalService
from tests.e2e.stream_child import requests
from tests.helpers import TritonFixture, colors_files, network_message, upload_messages

GRACE_S = 4.0
DELAY_S = 1.0
RED = (ROOT / "samples" / "red.png").read_bytes()


class Recorder(threading.Thread):
    """Runs one blocking client call in a thread; keeps what it received and the status it ended with."""

    def __init__(self, target: Any) -> None:
        super().__init__(daemon=True)
        self._target = target
        self.items: list[tuple[float, Any]] = []
        self.code: grpc.StatusCode | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            for item in self._target():
                self.items.append((time.monotonic(), item))
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.code = exc.code()
        self.ended_at = time.monotonic()


def recognize(channel: grpc.Channel) -> inference_pb2.RecognitionResult:
    stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
    request = inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image={"content": RED})])
    result: inference_pb2.RecognitionResult = stub.Recognize(request, timeout=10)
    return result


def test_sigterm_drains_within_the_grace(triton: TritonFixture, tmp_path: Path) -> None:
    service = ExternalService(
        tmp_path,
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_DRAIN_GRACE_S=str(GRACE_S),
        SIGHTLINE_DRAIN_DELAY_S=str(DELAY_S),
    ).start()
    channel = grpc.insecure_channel(service.address)
    health = health_pb2_grpc.HealthStub(channel)
    recognition = recognition_pb2_grpc.RecognitionServiceStub(channel)
    networks = networks_pb2_grpc.NetworkServiceStub(channel)
    stalled = threading.Event()

    def upload() -> Iterator[networks_pb2.Network]:
        # An upload that never finishes sending: open until the grace runs out.
        def messages() -> Iterator[networks_pb2.CreateNetworkRequest]:
            yield from upload_messages(network_message("stalled"), colors_files(), chunk=1000)[:2]
            stalled.wait(30)

        yield networks.CreateNetwork(messages())

    watch = Recorder(lambda: health.Watch(health_pb2.HealthCheckRequest(service="")))
    stream = Recorder(lambda: recognition.StreamRecognize(requests("shapes-yolo-v1", max_in_flight=4)))
    pending = Recorder(upload)
    for recorder in (watch, stream, pending):
        recorder.start()
    try:
        deadline = time.monotonic() + 10
        while not (watch.items and len(stream.items) >= 3):
            assert time.monotonic() < deadline, "the watch and the stream did not start"
            time.sleep(0.05)

        sent = time.monotonic()
        service.signal(15)
        time.sleep(DELAY_S / 3)
        during_delay = recognize(channel)  # the listener is still open and the call is served
        assert during_delay.outputs[0].labels.predicted[0].label_name == "red"
        assert service.process is not None
        code = service.process.wait(GRACE_S + 5)
        exited = time.monotonic() - sent
        for recorder in (watch, stream, pending):
            recorder.join(5)
    finally:
        stalled.set()
        if service.alive():
            service.process.kill()  # type: ignore[union-attr]
        channel.close()

    assert code == 0, service.tail()
    assert exited <= GRACE_S + 1.0, f"the drain took {exited:.1f} s for a grace of {GRACE_S} s"
    statuses = [item.status for _, item in watch.items]
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
    assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
    not_serving_at = next(t for t, item in watch.items if item.status == health_pb2.HealthCheckResponse.NOT_SERVING)
    assert not_serving_at - sent < 0.5, "health did not turn NOT_SERVING at once"
    # Every call open at the shutdown ends UNAVAILABLE, so clients and Envoy retry it elsewhere.
    assert (watch.code, stream.code, pending.code) == (grpc.StatusCode.UNAVAILABLE,) * 3
    assert stream.ended_at - sent >= DELAY_S * 0.9, "the stream was ended before the drain delay"


def test_a_call_after_the_drain_delay_is_unavailable(triton: TritonFixture, tmp_path: Path) -> None:
    service = ExternalService(
        tmp_path, SIGHTLINE_TRITON_URL=triton.url, SIGHTLINE_DRAIN_GRACE_S="3", SIGHTLINE_DRAIN_DELAY_S="0.2"
    ).start()
    with grpc.insecure_channel(service.address) as channel:
        recognize(channel)
        stream = Recorder(
            lambda: recognition_pb2_grpc.RecognitionServiceStub(channel).StreamRecognize(requests("colors-v1"))
        )
        stream.start()
        while len(stream.items) < 2:
            time.sleep(0.02)
        service.signal(15)
        time.sleep(0.5)
        codes = set()
        for _ in range(5):
            try:
                recognize(channel)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.add(exc.code())
        stream.join(5)
    assert service.process is not None
    assert service.process.wait(5) == 0  # one SIGTERM is enough
    assert codes == {grpc.StatusCode.UNAVAILABLE}
    assert stream.code is grpc.StatusCode.UNAVAILABLE
