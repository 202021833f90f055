"""On the real embedded Triton, the ``onnxruntime`` backend's stubs run ONNX Runtime with one thread a session,
or the launcher's ``cpu_threads`` (``SIGHTLINE_TRITON_CPU_THREADS``), and a model's ``intra_op_thread_count``
parameter reaches its stubs through Triton's own model configuration."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from service.triton.embedded import EmbeddedTriton
from tests.helpers import ROOT, TritonFixture

SHAPES_YOLO = ROOT / "model_repository" / "shapes-yolo"


def parameter(threads: int) -> str:
    return f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{threads}" }} }}\n'


def write_copy(repository: Path, name: str, extra: str = "") -> Path:
    """``shapes-yolo`` as ``name`` in ``repository``, its config followed by ``extra``."""
    folder = repository / name
    shutil.copytree(SHAPES_YOLO / "1", folder / "1")
    config = (SHAPES_YOLO / "config.pbtxt").read_text().replace('name: "shapes-yolo"', f'name: "{name}"')
    (folder / "config.pbtxt").write_text(config + extra)
    return folder


def stub_threads(model_folder: Path) -> list[int]:
    """The live thread count of each backend stub serving the model in ``model_folder`` (a stub's first argument is
    its model's file)."""
    counts = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            status = (cmdline.parent / "status").read_text()
        except OSError:
            continue  # gone meanwhile
        if len(argv) > 1 and argv[0].endswith(b"triton_python_backend_stub") and str(model_folder).encode() in argv[1]:
            counts.append(int(next(s for s in status.splitlines() if s.startswith("Threads:")).split()[1]))
    return counts


@pytest.fixture
async def two_models(triton: TritonFixture) -> AsyncIterator[tuple[triton_aio.InferenceServerClient, Path, Path]]:
    """``shapes-yolo`` twice in the session Triton's writable repository: as bundled, and asking for 3 threads."""
    folders = {
        name: write_copy(triton.models, name, extra)
        for name, extra in [("threads-default", ""), ("threads-three", parameter(3))]
    }
    client = triton_aio.InferenceServerClient(triton.url)
    try:
        for name in folders:
            await client.load_model(name)
        yield client, folders["threads-default"], folders["threads-three"]
    finally:
        for name, folder in folders.items():
            await client.unload_model(name)
            shutil.rmtree(folder)
        await client.close()


async def test_a_models_thread_parameter_reaches_its_stubs(
    two_models: tuple[triton_aio.InferenceServerClient, Path, Path],
) -> None:
    client, default, three = two_models
    image = np.random.default_rng(7).random((1, 3, 128, 128), dtype=np.float32)
    answers = []
    for name in ("threads-default", "threads-three"):
        tensor = InferInput("images", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        result = await client.infer(name, [tensor])
        answers.append(result.as_numpy("output"))
    np.testing.assert_allclose(answers[0], answers[1], rtol=1e-5, atol=1e-5)
    # Triton runs two instances of a CPU model, a stub each. A session of 3 threads has a pool of 2 beside the
    # caller; the default one has none, so the stubs differ by exactly those 2 threads.
    plain, pooled = stub_threads(default), stub_threads(three)
    assert len(plain) == len(pooled) >= 1
    assert sorted(pooled) == [n + 2 for n in sorted(plain)]


async def test_the_launchers_thread_count_is_the_default_a_models_parameter_overrides(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    default, pinned = write_copy(repository, "by-default"), write_copy(repository, "pinned", parameter(1))
    embedded = EmbeddedTriton([repository], tmp_path / "triton", cpu_threads=3)
    await embedded.start(timeout_s=300)
    try:
        plain, pooled = stub_threads(pinned), stub_threads(default)
    finally:
        await embedded.stop()
    assert len(plain) == len(pooled) >= 1
    assert sorted(pooled) == [n + 2 for n in sorted(plain)]
