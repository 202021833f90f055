"""Benchmark of the gateway's tensors through Triton's system shared memory against in-band gRPC, in the same run.

Run from the repository root (``make bench`` runs it; about two minutes)::

    python -m bench.shm_bench     # --calls 200 --repeat 5 --in-flight 1,4

One embedded Triton serves two ONNX models the bench writes, both taking one 3x640x640 float32 image (4.9 MB):
``shm-reduce`` answers its three channel means (a classifier's output: small), ``shm-negate`` the negated image
(a dense output of the input's size). Two ``GrpcTritonGateway`` objects call them: **in-band** (tensors in the
gRPC messages) and **shm** (tensors in the gateway's pool of shared-memory regions, outputs too). Each
comparison runs ``--calls`` calls with 1 and with 4 calls in flight (as many concurrent loops), ``--repeat``
times, the two paths interleaved and their order alternated (the machine is shared and noisy); the ratio is shm
calls/s over in-band calls/s per repeat, printed as the median and the range. Both paths' answers are checked
equal first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway

SHAPE = (3, 640, 640)
MODELS = {"shm-reduce": ("ReduceMean", [3]), "shm-negate": ("Neg", list(SHAPE))}
"""Bench model → (its one ONNX operator, its output's sample dims)."""

CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: 4
input [ {{ name: "image", data_type: TYPE_FP32, dims: [ 3, 640, 640 ] }} ]
output [ {{ name: "out", data_type: TYPE_FP32, dims: [ {dims} ] }} ]
"""


def write_models(repository: Path) -> None:
    for name, (op, dims) in MODELS.items():
        node = (
            helper.make_node(op, ["image"], ["out"], axes=[2, 3], keepdims=0)
            if op == "ReduceMean"
            else helper.make_node(op, ["image"], ["out"])
        )
        graph = helper.make_graph(
            [node],
            name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", *SHAPE])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", *dims])],
        )
        # Opset 17: ReduceMean still takes its axes as an attribute there.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        folder = repository / name
        (folder / "1").mkdir(parents=True)
        onnx.save(model, str(folder / "1" / "model.onnx"))
        (folder / "config.pbtxt").write_text(CONFIG.format(name=name, dims=", ".join(map(str, dims))))


async def run(gateway: GrpcTritonGateway, model: str, images: list[npt.NDArray[np.float32]], in_flight: int) -> float:
    """Calls per second of ``len(images)`` calls, ``in_flight`` loops at once."""
    queue = list(range(len(images)))

    async def loop() -> None:
        while queue:
            index = queue.pop()
            await gateway.infer(model, {"image": images[index]}, ["out"])

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    return len(images) / (time.perf_counter() - began)


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sightline-shm-bench-"))
    write_models(work / "models")
    triton = EmbeddedTriton([work / "models"], work / "triton")
    url = await triton.start(timeout_s=300)
    in_band = GrpcTritonGateway(url)
    shared = GrpcTritonGateway(url, shared_memory=lambda: triton.shm_prefix)
    try:
        rng = np.random.default_rng(0)
        images = [rng.random((1, *SHAPE), dtype=np.float32) for _ in range(8)]
        for model in MODELS:
            expected = await in_band.infer(model, {"image": images[0]}, ["out"])
            got = await shared.infer(model, {"image": images[0]}, ["out"])
            if not np.array_equal(expected["out"], got["out"]):
                raise SystemExit(f"{model}: shared memory's answer differs from in-band's")
        assert shared.shared_memory is not None
        if shared.shared_memory.disabled is not None or shared.shared_memory.regions == 0:
            raise SystemExit(f"shared memory is not in use: {shared.shared_memory.disabled}")
        calls = [images[i % len(images)] for i in range(args.calls)]
        print(
            f"{args.calls} calls of one 1x3x640x640 float32 image per run, {args.repeat} interleaved repeats, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; calls/s: median of repeats; "
            "ratio: shm / in-band per repeat, median (range)"
        )
        print(f"{'model':<11} {'in flight':>9} | {'in-band':>8} {'shm':>8} | {'ratio':>5} {'(range)':<11}")
        for in_flight in (int(n) for n in args.in_flight.split(",")):
            for model in MODELS:
                await run(in_band, model, calls[:8], in_flight)  # warm both paths (regions, connections)
                await run(shared, model, calls[:8], in_flight)
                rates: dict[str, list[float]] = {"in-band": [], "shm": []}
                for repeat in range(args.repeat):
                    order = [("in-band", in_band), ("shm", shared)]
                    for path, gateway in order if repeat % 2 == 0 else order[::-1]:
                        rates[path].append(await run(gateway, model, calls, in_flight))
                ratios = [s / b for s, b in zip(rates["shm"], rates["in-band"], strict=True)]
                print(
                    f"{model:<11} {in_flight:>9} | {statistics.median(rates['in-band']):>8.1f} "
                    f"{statistics.median(rates['shm']):>8.1f} | {statistics.median(ratios):>5.2f} "
                    f"({min(ratios):.2f}-{max(ratios):.2f})"
                )
        print(
            f"load average at the end {os.getloadavg()[0]:.1f}; shm regions in the pool: {shared.shared_memory.regions}"
        )
    finally:
        await shared.close()
        await in_band.close()
        await triton.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--in-flight", default="1,4", help="calls in flight, comma-separated")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
