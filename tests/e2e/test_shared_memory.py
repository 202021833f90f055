"""Triton's system shared memory on the real embedded Triton: the same answers as in-band, one region per call in
flight, a cancelled call's region kept until Triton is done with it, the fallbacks, and nothing left in
``/dev/shm`` once stopped. (A killed service's regions: tests/e2e/test_triton_process.py.)

The session's Triton is the service's "remote" one here (``triton_url``), on this host: ``auto`` keeps it in-band
and ``on`` turns shared memory on, as for a co-located sidecar."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc.aio as grpcclient
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.server import Application, running
from service.settings import Settings
from service.triton import shared_memory
from service.triton.gateway import GrpcTritonGateway
from service.triton.shared_memory import process_prefix
from tests.e2e.helpers import request
from tests.helpers import ROOT, TritonFixture

SCENE = (ROOT / "samples" / "shapes-scene.png").read_bytes()
CAT = (ROOT / "samples" / "chelsea.jpg").read_bytes()


def files(names: list[str]) -> list[str]:
    return [name for name in names if (Path("/dev/shm") / name).exists()]


async def unregister(client: grpcclient.InferenceServerClient, name: str) -> None:
    """Unregister a region, as soon as Triton lets go of it: it answers a call a moment before it does."""
    for _ in range(50):
        try:
            await client.unregister_system_shared_memory(name)
            return
        except InferenceServerException as error:
            if "in use" not in str(error):
                raise
        await asyncio.sleep(0.01)
    raise AssertionError(f"Triton still holds region {name} after 0.5 s")


def images(count: int, seed: int) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 3, 128, 128), dtype=np.float32) for _ in range(count)]


@pytest.fixture
async def gateways(triton: TritonFixture) -> AsyncIterator[tuple[GrpcTritonGateway, GrpcTritonGateway]]:
    """An in-band gateway and a shared-memory one (regions of this process's prefix) on the session's Triton."""
    in_band = GrpcTritonGateway(triton.url)
    shared = GrpcTritonGateway(triton.url, shared_memory=process_prefix, shm_min_bytes=0)
    yield in_band, shared
    assert shared.shared_memory is not None
    names = shared.shared_memory.names
    await shared.close()
    await in_band.close()
    assert files(names) == [], "close() should unlink every region"


async def test_recognition_through_shared_memory_equals_in_band(
    app: Application, triton: TritonFixture, tmp_path: Path
) -> None:
    assert app.gateway.shared_memory is None, "auto with a Triton URL: in-band"
    settings = Settings(port=0, metrics_port=0, triton_url=triton.url, data_dir=tmp_path, triton_shared_memory="on")
    frames = [
        streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id="shapes-yolo-v1", max_in_flight=16))
    ]
    frames += [
        streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, encoded=SCENE)) for i in range(40)
    ]
    answers: dict[str, list[dict[str, object]]] = {}
    async with running(settings) as shared:
        pool = shared.gateway.shared_memory
        assert pool is not None
        for name, server in (("in-band", app), ("shm", shared)):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
                results = [
                    await stub.Recognize(request(SCENE, spec="shapes-yolo-v1")),
                    await stub.Recognize(request(CAT, spec="imagenet-efficientnet-lite0-v1")),
                ]
                streamed = [r.result async for r in stub.StreamRecognize(iter(frames))]
                answers[name] = [json_format.MessageToDict(r) for r in [*results, *streamed]]
        assert pool.disabled is None
        names = pool.names
        assert names, "the shared-memory server should have used regions"
        assert all(name.startswith(process_prefix()) for name in names)
        assert len(names) <= 16 + 2, "regions are reused: at most one per call in flight"
    assert answers["shm"] == answers["in-band"]
    top = answers["shm"][1]["outputs"][0]["labels"]["predicted"][0]  # type: ignore[index]
    assert top["labelName"] == "Egyptian cat"
    boxes = answers["shm"][0]["outputs"][0]["labels"]["predicted"]  # type: ignore[index]
    assert {p["labelName"] for p in boxes} >= {"circle", "star"}, "the scene's shapes are found"
    assert files(names) == [], "a stopped service leaves no region in /dev/shm"


async def test_calls_in_flight_each_get_their_own_answer(gateways: tuple[GrpcTritonGateway, GrpcTritonGateway]) -> None:
    in_band, shared = gateways
    inputs = images(48, seed=1)
    expected = [await in_band.infer("shapes-yolo", {"images": x}, ["output"]) for x in inputs]
    got = await asyncio.gather(*(shared.infer("shapes-yolo", {"images": x}, ["output"]) for x in inputs))
    for want, have in zip(expected, got, strict=True):
        assert np.array_equal(want["output"], have["output"])
    pool = shared.shared_memory
    assert pool is not None
    assert 2 <= pool.regions <= 48
    assert pool.leased == 0
    again = await shared.infer("shapes-yolo", {"images": inputs[0]}, ["output"])
    assert np.array_equal(again["output"], expected[0]["output"])
    assert pool.regions <= 48, "a finished call's region is reused"


async def test_a_cancelled_call_keeps_its_region_until_triton_is_done(
    gateways: tuple[GrpcTritonGateway, GrpcTritonGateway],
) -> None:
    _, shared = gateways
    pool = shared.shared_memory
    assert pool is not None
    data = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    call = asyncio.create_task(shared.infer("slow-colors", {"data": data}, ["share"]))
    await asyncio.sleep(0.02)
    assert shared.in_flight == 1
    call.cancel()  # a stream cancelled while its frame is in Triton (60 ms an execution)
    with pytest.raises(asyncio.CancelledError):
        await call
    assert pool.leased == 1, "Triton may still write the outputs: the region is not back"
    await asyncio.wait_for(asyncio.gather(*shared._calls), 10)  # the abandoned request's end
    assert pool.leased == 0
    answer = await shared.infer("slow-colors", {"data": data}, ["share"])
    assert pool.regions == 1, "the region came back and is reused"
    assert answer["share"].shape == (1, 6)


async def test_a_triton_that_cannot_map_the_regions_is_answered_in_band(
    gateways: tuple[GrpcTritonGateway, GrpcTritonGateway],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    in_band, shared = gateways

    class Elsewhere(shared_memory.Region):
        def __init__(self, name: str, byte_size: int, generation: int, shm_dir: Path = Path("/dev/shm")) -> None:
            super().__init__(name, byte_size, generation, shm_dir)
            # What a Triton on another host sees: no such region in its /dev/shm.
            os.unlink(shm_dir / name)

    monkeypatch.setattr(shared_memory, "Region", Elsewhere)
    inputs = images(3, seed=3)
    with caplog.at_level(logging.WARNING, "service.triton.shared_memory"):
        for x in inputs:
            want = await in_band.infer("shapes-yolo", {"images": x}, ["output"])
            have = await shared.infer("shapes-yolo", {"images": x}, ["output"])
            assert np.array_equal(want["output"], have["output"])
    pool = shared.shared_memory
    assert pool is not None
    assert pool.disabled is not None
    assert "could not map" in pool.disabled
    assert pool.regions == 0
    warnings = [r.getMessage() for r in caplog.records if "in-band" in r.getMessage()]
    assert len(warnings) == 1, warnings


async def test_a_triton_that_forgot_the_regions_is_answered_and_they_are_registered_again(
    gateways: tuple[GrpcTritonGateway, GrpcTritonGateway], triton: TritonFixture
) -> None:
    in_band, shared = gateways
    pool = shared.shared_memory
    assert pool is not None
    x = images(1, seed=4)[0]
    want = await in_band.infer("shapes-yolo", {"images": x}, ["output"])
    await shared.infer("shapes-yolo", {"images": x}, ["output"])
    forgotten = pool.names
    client = grpcclient.InferenceServerClient(triton.url)
    try:
        for name in forgotten:  # what a restarted remote Triton knows of them
            await unregister(client, name)
        have = await shared.infer("shapes-yolo", {"images": x}, ["output"])
        assert np.array_equal(want["output"], have["output"])
        again = await shared.infer("shapes-yolo", {"images": x}, ["output"])
        assert np.array_equal(want["output"], again["output"])
        status = await client.get_system_shared_memory_status(as_json=True)
        registered = {r["name"] for r in status.get("regions", {}).values()} | set(status.get("regions", {}))
        assert set(pool.names) & registered, "new regions should be registered"
        assert not set(pool.names) & set(forgotten)
        assert pool.disabled is None
    finally:
        await client.close()
