"""The embedded Triton's process model, with the real ``tritonserver``: a killed server comes back on the same port
with nothing left of the old one, a killed service takes its whole Triton tree with it, and ``stop()`` keeps to its
grace during inference.

Processes are told apart by this test's own work folder (in every command line of the tree: the reaper's and
``tritonserver``'s ``--backend-directory``, the stubs' executable) and by the instance's shm prefix, never by name
alone: other Tritons of other sessions may run on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc.aio as grpcclient

from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway
from tests.e2e.triton_load import Load, request
from tests.helpers import ROOT, write_slow_model

START_TIMEOUT_S = 120.0


def instance_processes(marker: str) -> list[int]:
    """Pids of the live (non-zombie) processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def shm_regions(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


async def gone(marker: str, timeout_s: float) -> list[int]:
    """Wait until no process mentions ``marker``; those still there after ``timeout_s``."""
    for _ in range(int(timeout_s * 10)):
        if not instance_processes(marker):
            return []
        await asyncio.sleep(0.1)
    return instance_processes(marker)


def still_there(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def infer_once(url: str, model: str = "colors") -> npt.NDArray[np.float32]:
    client = grpcclient.InferenceServerClient(url)
    try:
        inputs, outputs = request(model)
        result = await client.infer(model, inputs, outputs=outputs, client_timeout=10)
        share = result.as_numpy("share")
        assert share is not None
        return np.asarray(share, dtype=np.float32)
    finally:
        await client.close()


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """A work folder whose Triton tree, if a test leaves one, is killed at the end (by that folder, not by name)."""
    yield tmp_path
    for pid in instance_processes(str(tmp_path)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def repositories(work: Path) -> list[Path]:
    """The bundled repository, plus the Python-backend ``slow-colors`` (the ``python`` backend's shm prefix too)."""
    models = work / "models"
    models.mkdir()
    write_slow_model(models)
    return [ROOT / "model_repository", models]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(child.stdout)


async def test_killed_triton_restarts_on_the_same_port(work: Path) -> None:
    stale = Path("/dev/shm") / f"sightline_{dead_pid()}_0000-stale-test-region"
    stale.write_bytes(b"left by a Triton whose reaper died")
    events: list[str] = []
    back = asyncio.Event()

    async def on_up() -> None:
        events.append("up")
        back.set()

    embedded = EmbeddedTriton(
        repositories(work), work / "triton", on_down=lambda: events.append("down"), on_up=on_up, stop_grace_s=4
    )
    url = await embedded.start(timeout_s=START_TIMEOUT_S)
    gateway = GrpcTritonGateway(url, shared_memory=lambda: embedded.shm_prefix)
    image = np.random.default_rng(5).random((1, 3, 128, 128), dtype=np.float32)
    try:
        expected = (await gateway.infer("shapes-yolo", {"images": image}, ["output"]))["output"]
        assert gateway.shared_memory is not None
        old_regions = gateway.shared_memory.names
        old_pid, old_prefix = embedded.pid, embedded.shm_prefix
        assert old_pid is not None
        assert old_prefix is not None
        assert embedded.is_up
        assert not stale.exists(), "start() should remove the regions of dead instances"
        assert shm_regions(old_prefix), "the instance's regions should carry its own prefix"
        old_stubs = instance_processes(old_prefix)
        assert old_stubs, "the backend stubs should be named after the instance's shm prefix"
        async with Load(url, "colors", in_flight=4) as load:
            killed_at = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            await asyncio.wait_for(back.wait(), 60)
            ready_s = time.monotonic() - killed_at
            answered = load.ok
            await asyncio.sleep(0.5)
            assert load.ok > answered, "the load should be answered again after the restart"
        print(f"\nkill -9 tritonserver during inference -> ready again in {ready_s:.1f} s")
        assert ready_s < 30
        assert events == ["down", "up"]
        assert embedded.is_up
        assert embedded.url == url
        assert embedded.restarts == 1
        assert embedded.pid not in (None, old_pid)
        assert (await infer_once(url)).shape == (1, 6)
        assert old_regions
        assert all(name.startswith(old_prefix) for name in old_regions)
        after = await gateway.infer("shapes-yolo", {"images": image}, ["output"])
        assert np.array_equal(after["output"], expected), "shared memory should work with the new Triton"
        new_regions = gateway.shared_memory.names
        assert new_regions
        assert not set(new_regions) & set(old_regions), "the new Triton gets regions of its own"
        assert not instance_processes(old_prefix), "processes of the killed instance are left"
        assert not still_there(old_stubs)
        assert not shm_regions(old_prefix)
        new_prefix = embedded.shm_prefix
        assert new_prefix is not None
        assert all(name.startswith(new_prefix) for name in new_regions)
        await gateway.close()
        assert not set(shm_regions(new_prefix)) & set(new_regions), "close() unlinks the gateway's regions"
        began = time.monotonic()
        await embedded.stop()
        print(f"stop() idle: {time.monotonic() - began:.2f} s (grace 4 s)")
        assert not await gone(str(work), 2)
        assert not shm_regions(new_prefix)
        assert events == ["down", "up"], "a stop is not an outage"
    finally:
        await gateway.close()
        await embedded.stop()


SERVICE = """
import asyncio, sys
import numpy as np
from pathlib import Path
from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway
from service.triton.gateway import GrpcTritonGateway
from tests.e2e.triton_load import Load

async def main() -> None:
    work = Path(sys.argv[1])
    embedded = EmbeddedTriton([Path(sys.argv[2])], work)
    url = await embedded.start(timeout_s=float(sys.argv[3]))
    gateway = GrpcTritonGateway(url, shared_memory=lambda: embedded.shm_prefix)
    image = np.zeros((1, 3, 128, 128), np.float32)
    await asyncio.gather(*(gateway.infer("shapes-yolo", {"images": image}, ["output"]) for _ in range(4)))
    async with Load(url, "colors", in_flight=4):
        print(embedded.shm_prefix, *gateway.shared_memory.names, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_service_leaves_no_triton_behind(work: Path) -> None:
    triton_dir = work / "triton"
    service = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", SERVICE, str(triton_dir), str(ROOT / "model_repository"), str(START_TIMEOUT_S)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert service.stdout is not None
        line = await asyncio.wait_for(service.stdout.readline(), START_TIMEOUT_S + 30)
        prefix, *gateway_regions = line.decode().split()
        assert prefix.startswith("sightline_"), f"the service did not start: {line!r}"
        assert len(instance_processes(str(triton_dir))) >= 3, "expected the reaper, tritonserver and its stubs"
        assert shm_regions(prefix)
        assert gateway_regions, "the service's gateway should hold shared-memory regions"
        assert set(gateway_regions) <= set(shm_regions(prefix)), "the gateway's regions carry the reaper's prefix"
        os.killpg(service.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await service.wait()
        left = await gone(str(triton_dir), 5)
        print(f"\nSIGKILL of the service: its Triton tree was gone {time.monotonic() - killed_at:.2f} s later")
        assert not left, f"left behind: {left}"
        assert not instance_processes(prefix)
        assert not shm_regions(prefix), "neither Triton's nor the gateway's regions may outlive a killed service"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        await service.wait()


@pytest.mark.parametrize(
    ("stop_grace_s", "grace_s"),
    [(5.0, None), (10.0, 2.0)],
    ids=["default-grace", "shorter-grace-escalates"],
)
async def test_stop_during_inference_keeps_to_its_grace(work: Path, stop_grace_s: float, grace_s: float | None) -> None:
    embedded = EmbeddedTriton(repositories(work), work / "triton", stop_grace_s=stop_grace_s)
    url = await embedded.start(timeout_s=START_TIMEOUT_S)
    budget = stop_grace_s if grace_s is None else grace_s
    try:
        prefix = embedded.shm_prefix
        assert prefix is not None
        async with Load(url, "slow-colors", in_flight=16), Load(url, "colors", in_flight=4):
            began = time.monotonic()
            await embedded.stop(grace_s)
            took = time.monotonic() - began
        print(f"\nstop({grace_s}) with stop_grace_s={stop_grace_s} during inference (20 in flight): {took:.2f} s")
        assert took < budget + 0.1
        assert not embedded.is_up
        assert not await gone(str(work), 2)
        assert not shm_regions(prefix)
    finally:
        await embedded.stop()
