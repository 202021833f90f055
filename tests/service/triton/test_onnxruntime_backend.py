"""The embedded Triton's Python-based ``onnxruntime`` backend gives each model's ONNX Runtime session one thread
and no spinning unless the model's config asks for more, read with the native backend's parameter names."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.triton import embedded

MODEL_ONNX = Path(__file__).parents[3] / "model_repository" / "shapes-yolo" / "1" / "model.onnx"


@pytest.fixture(scope="module")
def backend() -> Iterator[types.ModuleType]:
    """The backend's ``model.py`` as the stub loads it, with a stand-in for the stub's ``triton_python_backend_utils``
    (only its import is needed here)."""
    sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
    spec = importlib.util.spec_from_file_location("sightline_onnxruntime_backend", embedded._BACKEND_SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    del sys.modules["triton_python_backend_utils"]


def counts(intra: str | None = None, inter: str | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if intra is not None:
        parameters["intra_op_thread_count"] = {"string_value": intra}
    if inter is not None:
        parameters["inter_op_thread_count"] = {"string_value": inter}
    return parameters


def test_unset_and_zero_mean_one_thread_without_spinning(backend: types.ModuleType) -> None:
    for parameters in (counts(), counts("0", "0"), counts("", "")):
        options = backend.session_options(parameters)
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
        for pool in ("intra_op", "inter_op"):
            assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"


def test_a_models_parameters_set_its_thread_counts(backend: types.ModuleType) -> None:
    options = backend.session_options(counts("3", "2"))
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_launchers_default_applies_where_the_model_says_nothing(backend: types.ModuleType) -> None:
    for parameters, expected in ((counts(), (4, 1)), (counts("0"), (4, 1)), (counts("2", "3"), (2, 3))):
        options = backend.session_options(parameters, default_threads=4)
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == expected


def test_the_launcher_hands_its_thread_count_to_the_stubs(tmp_path: Path) -> None:
    triton = embedded.EmbeddedTriton([tmp_path], tmp_path / "work", cpu_threads=5)
    install = embedded.find_triton()
    assert triton._environment(install)["SIGHTLINE_BACKEND_THREADS"] == "5"
    with pytest.raises(ValueError, match="cpu_threads"):
        embedded.EmbeddedTriton([tmp_path], tmp_path / "work", cpu_threads=0)


@pytest.mark.parametrize("text", ["-2", "two", "1.5"])
def test_a_count_that_is_not_a_whole_number_is_refused_by_name(backend: types.ModuleType, text: str) -> None:
    with pytest.raises(ValueError, match=f"inter_op_thread_count is '{text}'"):
        backend.session_options(counts("2", text))


CHILD = """
import importlib.util, json, sys, types
from pathlib import Path
import onnxruntime as ort
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
spec = importlib.util.spec_from_file_location("backend", sys.argv[1])
backend = importlib.util.module_from_spec(spec)
spec.loader.exec_module(backend)
def threads():
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])
added, sessions = [], []
for parameters in json.loads(sys.argv[3]):
    before = threads()
    options = backend.session_options(parameters)
    sessions.append(ort.InferenceSession(sys.argv[2], options, providers=["CPUExecutionProvider"]))
    added.append(threads() - before)
print(json.dumps(added))
"""


def test_a_default_session_starts_no_worker_threads(backend: types.ModuleType) -> None:
    # ONNX Runtime's own default starts a pool of a thread per core beside the caller's: the point of the setting.
    # Counted in a process of its own, where no other test's threads come and go meanwhile.
    cases = [counts(), counts("3"), counts("1", "1")]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(embedded._BACKEND_SOURCE), str(MODEL_ONNX), json.dumps(cases)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(child.stdout) == [0, 2, 0]


def test_sessions_of_one_and_three_threads_answer_alike(backend: types.ModuleType) -> None:
    image = np.random.default_rng(0).random((2, 3, 128, 128), dtype=np.float32)
    answers = [
        ort.InferenceSession(str(MODEL_ONNX), backend.session_options(p), providers=["CPUExecutionProvider"]).run(
            None, {"images": image}
        )[0]
        for p in (counts(), counts("3"))
    ]
    np.testing.assert_allclose(answers[0], answers[1], rtol=1e-5, atol=1e-5)
