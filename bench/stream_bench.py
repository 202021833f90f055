"""Benchmark of StreamRecognize against a client that calls Triton directly, in the same run.

Run from the repository root::

    python -m bench.stream_bench                      # --spec colors-v1 --frames 200 --streams 1,8,32

One embedded Triton serves both paths:

- **baseline**: this process decodes nothing (frames are raw RGB arrays), runs Sightline's own preprocessing,
  calls Triton with one long-lived ``tritonclient.grpc.aio`` client and runs the same post-processing: the
  least a client could do to get the same answers.
- **stream**: this process sends the same raw frames (RGB24) over ``StreamRecognize`` to a Sightline server (a
  separate process, as in production) which does that work.

For 1, 8 and 32 concurrent streams (baseline: as many concurrent loops), each with one frame in flight, it prints
frames per second and p50/p99 latency of each path and their ratios. Latency is from sending a frame to its
result. The machine's noise shows up in absolute numbers; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.catalog import Catalog
from service.domain import Target
from service.recognition import Recognizer
from service.settings import BUNDLED_REPOSITORY
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


def constant(image: npt.NDArray[np.uint8]) -> Callable[[], npt.NDArray[np.uint8]]:
    """A loader that hands back an image already in memory (the frames are raw arrays)."""
    return lambda: image


def summary(latencies: list[float], seconds: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(latencies) / seconds, statistics.median(ordered), p99


async def run_baseline(
    recognizer: Recognizer, spec: str, images: list[npt.NDArray[np.uint8]], streams: int
) -> tuple[float, float, float]:
    deployment = await recognizer.resolve(Target(spec_id=spec))
    latencies: list[float] = []

    async def loop(index: int) -> None:
        for image in images[index::streams]:
            started = time.perf_counter()
            await recognizer.run(deployment, constant(image))
            latencies.append((time.perf_counter() - started) * 1e3)

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(streams)))
    return summary(latencies, time.perf_counter() - started)


async def run_streams(
    address: str, spec: str, images: list[npt.NDArray[np.uint8]], streams: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)

        async def one(index: int) -> None:
            mine = images[index::streams]
            sent: dict[int, float] = {}
            call = stub.StreamRecognize()
            await call.write(
                streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id=spec, max_in_flight=1))
            )
            for i, image in enumerate(mine):
                raw = streams_pb2.RawImage(
                    width=image.shape[1], height=image.shape[0], format=streams_pb2.RGB24, data=image.tobytes()
                )
                sent[i] = time.perf_counter()
                await call.write(streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw)))
                response = await call.read()  # one frame in flight: wait for its result
                assert response.status == streams_pb2.OK, response
                latencies.append((time.perf_counter() - sent[response.frame_id]) * 1e3)
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(streams)))
        return summary(latencies, time.perf_counter() - started)


async def wait_for_server(address: str, timeout_s: float = 60) -> None:
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


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sightline-bench-"))
    triton = EmbeddedTriton([BUNDLED_REPOSITORY, work / "models"], work / "triton")
    (work / "models").mkdir()
    url = await triton.start(timeout_s=300)
    port = 50000 + os.getpid() % 10000
    env = dict(
        os.environ,
        SIGHTLINE_TRITON_URL=url,
        SIGHTLINE_PORT=str(port),
        SIGHTLINE_METRICS_PORT="-1",
        SIGHTLINE_DATA_DIR=str(work / "data"),
        SIGHTLINE_LOG_LEVEL="WARNING",
    )
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "service", "serve", env=env, cwd=ROOT)
    gateway = GrpcTritonGateway(url)
    try:
        address = f"127.0.0.1:{port}"
        await wait_for_server(address)
        recognizer = Recognizer(Catalog.load(BUNDLED_REPOSITORY), gateway)
        width, height = (int(v) for v in args.size.split("x"))
        images = frames(args.frames, width, height)
        # Warm both paths (model configs cached, connections open, batchers busy once).
        await run_baseline(recognizer, args.spec, images[:20], 2)
        await run_streams(address, args.spec, images[:20], 2)
        print(f"spec {args.spec}, {args.frames} frames of {args.size} per run, one frame in flight per stream")
        print(
            f"{'streams':>7} | {'baseline fps':>12} {'p50 ms':>7} {'p99 ms':>7} | {'stream fps':>10} {'p50 ms':>7} "
            f"{'p99 ms':>7} | {'fps ratio':>9} {'+p50 ms':>8}"
        )
        for streams in (int(s) for s in args.streams.split(",")):
            base = await run_baseline(recognizer, args.spec, images, streams)
            stream = await run_streams(address, args.spec, images, streams)
            baseline_part = f"{base[0]:>12.1f} {base[1]:>7.2f} {base[2]:>7.2f}"
            stream_part = f"{stream[0]:>10.1f} {stream[1]:>7.2f} {stream[2]:>7.2f}"
            ratios = f"{stream[0] / base[0]:>9.2f} {stream[1] - base[1]:>+8.2f}"
            print(f"{streams:>7} | {baseline_part} | {stream_part} | {ratios}")
    finally:
        await gateway.close()
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
        await triton.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="colors-v1")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="320x240", help="frame size WxH")
    parser.add_argument("--streams", default="1,8,32")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
