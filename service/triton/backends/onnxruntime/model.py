"""A Python-based Triton backend named ``onnxruntime``: runs ``<version>/model.onnx`` with ONNX Runtime on the CPU.

The embedded Triton (the ``nvidia-pytriton`` wheel) has no native ONNX Runtime backend; this file, installed as
``<backend-dir>/onnxruntime/model.py``, serves every model whose ``config.pbtxt`` says ``backend: "onnxruntime"``.
An official Triton container serves the same model folders with its native backend, unchanged.

It runs inside Triton's Python backend stub, not in the service, so it imports nothing from the service.
Requests of one execution (Triton's dynamic batcher groups them) are concatenated along the batch dimension and
run as one ONNX Runtime call.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# The stub's embedded interpreter ignores PYTHONPATH and may see another environment's packages (a numpy 2 there
# makes outputs come back empty): the launcher names the service environment's packages, which go first.
sys.path[:0] = [p for p in os.environ.get("SIGHTLINE_BACKEND_PATH", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        if int(np.__version__.split(".")[0]) >= 2:
            raise RuntimeError(
                f"numpy {np.__version__} at {np.__file__}: the Python backend needs numpy < 2 (with numpy 2 its "
                "outputs come back empty); set SIGHTLINE_BACKEND_PATH to an environment with numpy < 2"
            )
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = session_options(config.get("parameters", {}), int(os.environ.get("SIGHTLINE_BACKEND_THREADS") or 1))
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.output_names = [o["name"] for o in config.get("output", [])] or [
            o.name for o in self.session.get_outputs()
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds_per_request: list[dict[str, Any]] = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name) for name in self.input_types}
            arrays = {k: v.as_numpy() for k, v in feeds.items() if v is not None}
            # Triton hands string tensors over as bytes; ONNX Runtime wants str (it would feed str(b"...")).
            for name, array in arrays.items():
                if self.input_types[name] == "tensor(string)":
                    arrays[name] = np.array([_text(b) for b in array.ravel()], dtype=np.object_).reshape(array.shape)
            feeds_per_request.append(arrays)
        if any(_BAD_TEXT in a for f in feeds_per_request for k, a in f.items() if a.dtype == np.object_):
            return [self._run_one(f) for f in feeds_per_request]
        if self.batched and len(requests) > 1:
            sizes = [next(iter(f.values())).shape[0] for f in feeds_per_request]
            merged = {k: np.concatenate([f[k] for f in feeds_per_request]) for k in feeds_per_request[0]}
            try:
                outputs = self.session.run(self.output_names, merged)
            except Exception:
                return [self._run_one(f) for f in feeds_per_request]
            responses = []
            start = 0
            for size in sizes:
                tensors = [
                    pb_utils.Tensor(n, o[start : start + size]) for n, o in zip(self.output_names, outputs, strict=True)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
                start += size
            return responses
        return [self._run_one(f) for f in feeds_per_request]

    def _run_one(self, feeds: dict[str, Any]) -> Any:
        if any(a.dtype == np.object_ and _BAD_TEXT in a for a in feeds.values()):
            message = "onnxruntime: a string input is not UTF-8 text"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
        try:
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:
            return _error(exc)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, o) for n, o in zip(self.output_names, outputs, strict=True)]
        )

    def finalize(self) -> None:
        self.session = None


def session_options(parameters: dict[str, Any], default_threads: int = 1) -> Any:
    """ONNX Runtime's options for one model: ``parameters`` is its config's ``parameters`` map (as JSON: name to
    ``{"string_value": ...}``), read with the native backend's names, ``intra_op_thread_count`` and
    ``inter_op_thread_count``; when unset or 0 they are ``default_threads`` (the launcher's
    ``SIGHTLINE_BACKEND_THREADS``) and 1.

    ONNX Runtime's own default is a thread per core for every session, spinning while it waits for work. Here the
    cores are shared with the service, its clients and the other models' stubs, and a spinning thread takes the
    CPU they need: on 2 cores one thread per run, without spinning, served `shapes-yolo` at 1.3-1.9 times the
    frames per second (bench/stream_bench.py, docs/performance.md). Parallelism comes from Triton's dynamic
    batching instead."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = _count(parameters, "intra_op_thread_count") or default_threads
    options.inter_op_num_threads = _count(parameters, "inter_op_thread_count") or 1
    for pool in ("intra_op", "inter_op"):
        options.add_session_config_entry(f"session.{pool}.allow_spinning", "0")
    return options


def _count(parameters: dict[str, Any], name: str) -> int:
    """The whole number ``parameters`` give ``name``; 0 when unset."""
    text = str(parameters.get(name, {}).get("string_value", "")).strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"parameter {name} is {text!r}: give a thread count of 1 or more, or 0 for the default")
    return int(text)


_BAD_TEXT = object()
"""Stands for an element of a string input that is not UTF-8: its request alone is refused."""


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return _BAD_TEXT
    return value


def _error(exc: Exception) -> Any:
    # ONNX Runtime's InvalidArgument (a shape or type the graph refuses) will fail again on every retry: say so with
    # Triton's INVALID_ARG, which reaches the client as a gRPC INVALID_ARGUMENT; anything else stays INTERNAL.
    invalid = type(exc).__name__ in {"InvalidArgument", "InvalidGraph"}
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {exc}", code))
