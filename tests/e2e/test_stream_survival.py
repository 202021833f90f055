"""The server survives the clients of the real world: streams cancelled, timed out and killed mid-flight.

The server runs in a process of its own (``sightline serve`` on the session's Triton), so that a crash is seen as
one; the clients are the synchronous and the asyncio grpc clients of this process and client processes killed
with SIGKILL. After each scenario: the server is alive and answers, no frame is left in flight (its gauges) and no
request is left in Triton (Triton's own pending-request gauge).

The crash these guard against: grpcio never closes a streaming handler's generator when a call is cancelled
while the server is writing (grpc/grpc#42295); the stream's reader then read from a dead call and the process
died with SIGSEGV. ``service.api.lifecycle`` explains the fix.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc, streams_pb2
from tests.e2e.external import ROOT, ExternalService, scrape, total, wait_until
from tests.e2e.stream_child import requests
from tests.helpers import TritonFixture

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
RED = (ROOT / "samples" / "red.png").read_bytes()
OUTPUT_KINDS = ["colors-v1", "shape-tags-v1", "shapes-yolo-v1", "shapes-anchored-v1", "shapes-direct-v1"]
"""A classifier, a tagger and the three detection decoders."""
ORDERINGS = [streams_pb2.ORDERED, streams_pb2.AS_COMPLETED]


@pytest.fixture(scope="module")
def service(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalService]:
    external = ExternalService(tmp_path_factory.mktemp("survival"), SIGHTLINE_TRITON_URL=triton.url)
    with external.running():
        yield external
    log = external.log.read_text(errors="replace")
    # The symptoms that came before the crash: a context detached in another task, work outliving its call.
    for symptom in ("was created in a different Context", "Task was destroyed but it is pending", "Traceback"):
        assert symptom not in log, f"{symptom!r} in the server's log:\n{external.tail(80)}"


@pytest.fixture(scope="module")
def stub(service: ExternalService) -> Iterator[Stub]:
    with grpc.insecure_channel(service.address) as channel:
        yield Stub(channel)


def settled(service: ExternalService, triton: TritonFixture, stub: Stub) -> None:
    """The server is alive, has nothing in flight, Triton has no request pending, and a known image is right."""
    service.assert_alive()

    def idle() -> bool:
        ours = service.metrics()
        theirs = scrape(triton.metrics_url)
        return (
            total(ours, "sightline_frames_in_flight") == 0
            and total(ours, "sightline_triton_requests_in_flight") == 0
            and total(theirs, "nv_inference_pending_request_count") == 0
        )

    wait_until(idle, timeout_s=15, what="no frame in flight and no request pending in Triton")
    result = stub.Recognize(
        inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image={"content": RED})]),
        timeout=30,
    )
    assert result.outputs[0].labels.predicted[0].label_name == "red"


def cancel_after(stub: Stub, spec: str, results: int, *, ordering: int = streams_pb2.ORDERED) -> grpc.StatusCode:
    """Open a stream fed as fast as it goes, read ``results`` results, cancel; the code the client saw."""
    config = streams_pb2.StreamConfig(spec_id=spec, max_in_flight=8, ordering=ordering)  # type: ignore[arg-type]

    def feed() -> Iterator[streams_pb2.StreamRecognizeRequest]:
        frames = requests(spec)
        next(frames)
        yield streams_pb2.StreamRecognizeRequest(config=config)
        yield from frames

    call = stub.StreamRecognize(feed())
    if results == 0:
        time.sleep(0.02)  # frames sent, none answered yet: cancel while they are in flight
        call.cancel()
    read = 0
    try:
        for _ in call:
            read += 1
            if read >= results:
                call.cancel()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def test_sync_client_cancels_after_five_results(service: ExternalService, triton: TritonFixture, stub: Stub) -> None:
    # The reproduction of the crash: a synchronous client, 8 frames in flight, cancel() after 5 results.
    for _ in range(10):
        assert cancel_after(stub, "colors-v1", 5) is grpc.StatusCode.CANCELLED
    settled(service, triton, stub)


async def test_aio_client_cancels_mid_stream(service: ExternalService, triton: TritonFixture) -> None:
    async with grpc.aio.insecure_channel(service.address) as channel:
        aio = Stub(channel)
        for n in range(10):

            async def feed() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
                for message in requests("shapes-yolo-v1"):
                    yield message
                    await asyncio.sleep(0)

            call = aio.StreamRecognize(feed())
            read = 0
            async for _ in call:
                read += 1
                if read == 1 + n % 4:
                    call.cancel()
                    break
            assert call.cancelled()
    await asyncio.to_thread(settled, service, triton, Stub(grpc.insecure_channel(service.address)))


def test_stream_deadline_shorter_than_the_work(service: ExternalService, triton: TritonFixture, stub: Stub) -> None:
    codes = []
    for _ in range(10):
        try:
            for _ in stub.StreamRecognize(requests("shapes-yolo-v1"), timeout=0.2):
                pass
        except grpc.RpcError as exc:
            codes.append(exc.code())
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 10
    settled(service, triton, stub)


@pytest.mark.parametrize("kind", ["stream", "unary"])
def test_client_process_killed_mid_stream(
    service: ExternalService, triton: TritonFixture, stub: Stub, kind: str
) -> None:
    for _ in range(3):
        args = [sys.executable, "-m", "tests.e2e.stream_child", service.address, "shapes-yolo-v1"]
        child = subprocess.Popen([*args, *(["unary"] if kind == "unary" else [])], cwd=ROOT, stdout=subprocess.PIPE)
        assert child.stdout is not None
        for _ in range(3):
            assert child.stdout.readline() == b"result\n"
        child.kill()  # SIGKILL: no cancel, no half-close
        child.wait()
        child.stdout.close()
        service.assert_alive()
    settled(service, triton, stub)


def test_two_hundred_cancels_across_output_kinds_and_orderings(
    service: ExternalService, triton: TritonFixture, stub: Stub
) -> None:
    rng = random.Random(11)
    codes = []
    cases = itertools.islice(itertools.cycle(itertools.product(OUTPUT_KINDS, ORDERINGS)), 200)
    for spec, ordering in cases:
        codes.append(cancel_after(stub, spec, rng.randrange(0, 6), ordering=ordering))
    assert set(codes) == {grpc.StatusCode.CANCELLED}, codes
    settled(service, triton, stub)


def test_many_streams_cancelled_at_once(service: ExternalService, triton: TritonFixture, stub: Stub) -> None:
    # A producer faster than the model on several streams, all cancelled together from other threads.
    codes: list[grpc.StatusCode] = []
    threads = [
        threading.Thread(target=lambda i=i: codes.append(cancel_after(stub, OUTPUT_KINDS[i % 5], 1 + i % 3)))
        for i in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert codes == [grpc.StatusCode.CANCELLED] * 12
    settled(service, triton, stub)


def test_port_in_use_is_an_error(service: ExternalService, tmp_path: Path) -> None:
    second = ExternalService(tmp_path, SIGHTLINE_TRITON_URL="127.0.0.1:1", SIGHTLINE_PORT=str(service.port))
    with second.log.open("wb") as out:
        code = subprocess.run(
            [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=second.env, stdout=out, stderr=out, timeout=60
        ).returncode
    assert code != 0
    message = second.log.read_text()
    assert f"127.0.0.1:{service.port}" in message
    assert "in use" in message
    service.assert_alive()
