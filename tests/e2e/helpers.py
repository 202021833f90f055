"""Helpers the end-to-end tests share (fixtures are in conftest.py): requests for the public colors model, the
registry's messages, stream messages, and running the ``sightline`` command and the Node.js example client."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from service._proto.sightline.v1 import inference_pb2, recognition_pb2, streams_pb2
from tests.helpers import COLOR_SAMPLES, ROOT, encode

COLORS = COLOR_SAMPLES


def request(content: bytes = b"", *, spec: str = "colors-v1", **kwargs: Any) -> inference_pb2.RecognizeRequest:
    image = inference_pb2.ImageInput(content=content)
    return inference_pb2.RecognizeRequest(spec_id=spec, inputs=[inference_pb2.Input(image=image)], **kwargs)


COLOR_LABELS = ["red", "green", "blue", "yellow", "black", "white"]


def colors_spec(name: str = "My colours") -> recognition_pb2.Specification:
    body = {
        "name": name,
        "metadata": {"team": "vision"},
        "outputs": [
            {
                "labels": {
                    "labels": [{"id": 10 + i, "name": n} for i, n in enumerate(COLOR_LABELS)],
                    "exclusive": True,
                    "roi": "NONE",
                }
            }
        ],
    }
    return json_format.ParseDict(body, recognition_pb2.Specification())


def classification(tensor: str = "share", **extra: Any) -> recognition_pb2.PostProcessing:
    return json_format.ParseDict(
        {"classification": {"output_tensor": tensor, **extra}}, recognition_pb2.PostProcessing()
    )


def recognize(image: bytes, **target: Any) -> inference_pb2.RecognizeRequest:
    return inference_pb2.RecognizeRequest(
        inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))], show_discarded=True, **target
    )


def config(**kwargs: Any) -> streams_pb2.StreamRecognizeRequest:
    kwargs.setdefault("spec_id", "colors-v1")
    return streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(**kwargs))


def solid(name: str, size: tuple[int, int] = (48, 32)) -> npt.NDArray[np.uint8]:
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[:] = COLORS[name]
    return array


def frame(frame_id: int, name: str) -> streams_pb2.StreamRecognizeRequest:
    f = streams_pb2.Frame(frame_id=frame_id, encoded=encode(solid(name)))
    f.timestamp.FromMilliseconds(1_700_000_000_000 + frame_id)
    return streams_pb2.StreamRecognizeRequest(frame=f)


def slow_config(**kwargs: Any) -> streams_pb2.StreamRecognizeRequest:
    return config(spec_id="slow-colors-v1", **kwargs)


CLIENT_DIR = ROOT / "examples" / "node"

RUN_TIMEOUT_S = 60.0


def node_executable() -> str:
    """The ``node`` binary, once the example's dependencies are installed; fails (never skips) otherwise."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not on PATH: install Node.js 18+ (e.g. apt-get install nodejs npm)")
    if not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("examples/node/node_modules is missing: run examples/node/install.sh (npm ci) first")
    return path


async def run_client(node: str, *args: str, timeout_s: float = RUN_TIMEOUT_S) -> tuple[int, str, str]:
    # Asynchronous on purpose: the server under test answers on this same event loop.
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "client.js"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"the Node client ran longer than {timeout_s} s")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass(frozen=True)
class StreamOutput:
    results: list[dict[str, Any]]
    summary: dict[str, Any]


def stream_output(out: str) -> StreamOutput:
    """The stream mode's stdout: one JSON line per result, then the summary line."""
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines, "the stream printed nothing"
    assert set(lines[-1]) == {"summary"}, f"the last line is not the summary: {lines[-1]}"
    assert all("frame_id" in line and "summary" not in line for line in lines[:-1])
    return StreamOutput(results=lines[:-1], summary=lines[-1]["summary"])


async def sightline(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def reason(error: grpc.RpcError) -> str:
    """The ``ErrorInfo`` reason of a failed call's ``google.rpc.Status`` (the call must carry one)."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the status")


def violations(error: grpc.RpcError) -> list[str]:
    """The fields of a failed call's ``BadRequest`` violations, in order."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    return violated_fields(status)


def violated_fields(status: status_pb2.Status) -> list[str]:
    """The fields of a ``google.rpc.Status``'s ``BadRequest`` violations (a frame's error, a call's status)."""
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields
