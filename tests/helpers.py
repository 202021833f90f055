"""Helpers every kind of test shares (not fixtures: those are in the conftest.py files): the repository's root,
solid colours and image encoding, the session Triton's handle, a slow test model, the test databases, and the
registry's messages and typed client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from PIL import Image

from service._proto.sightline.v1 import (
    networks_pb2,
    networks_pb2_grpc,
    recognition_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


COLOR_SAMPLES = {
    "red": (230, 20, 25),
    "green": (10, 220, 30),
    "blue": (20, 30, 210),
    "yellow": (240, 230, 20),
    "black": (5, 5, 10),
    "white": (250, 250, 245),
}
"""Solid colours and the colors model's label for each (its labels, in order)."""


def encode(array: npt.NDArray[Any], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class TritonFixture:
    url: str
    models: Path
    """The writable repository the session's Triton serves besides the bundled one (test-only models)."""
    metrics_url: str = ""
    """Triton's Prometheus page (``nv_inference_pending_request_count`` ...)."""


SLOW_CONFIG = """name: "slow-colors"
backend: "python"
max_batch_size: 8
input [{ name: "data" data_type: TYPE_FP32 dims: [3, 64, 64] }]
output [{ name: "share" data_type: TYPE_FP32 dims: [6] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def write_slow_model(repository: Path) -> None:
    """A test-only public model ``slow-colors-v1``: the colors answer, 60 ms an execution (Python backend)."""
    folder = repository / "slow-colors"
    (folder / "1").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "e2e" / "models" / "slow_colors.py", folder / "1" / "model.py")
    shutil.copy(ROOT / "model_repository" / "colors" / "mean.npy", folder / "mean.npy")
    (folder / "config.pbtxt").write_text(SLOW_CONFIG)
    meta = json.loads((ROOT / "model_repository" / "colors" / "sightline.json").read_text())
    meta["network"]["id"] = "slow-colors"
    meta["spec"]["id"] = "slow-colors-v1"
    meta["version"]["id"] = "slow-colors-v1.1"
    (folder / "sightline.json").write_text(json.dumps(meta))


POSTGRES_DSN = os.environ.get("SIGHTLINE_TEST_POSTGRES_DSN", "")

DATABASES = ["sqlite", "postgres"] if POSTGRES_DSN else ["sqlite"]
"""The stores every registry test runs on: SQLite always, PostgreSQL when SIGHTLINE_TEST_POSTGRES_DSN is set."""


async def fresh_database(kind: str) -> str:
    """A ``SIGHTLINE_DATABASE_URL`` for an empty database: "" (SQLite in the data folder) or a new PostgreSQL
    database on the test server."""
    if kind == "sqlite":
        return ""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"sightline_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(POSTGRES_DSN)
    params["dbname"] = name
    return make_conninfo("", **params)


COLORS = ROOT / "model_repository" / "colors"

COLORS_PREPROCESSING = json.loads((COLORS / "sightline.json").read_text())["network"]["preprocessing"]


def network_message(name: str, preprocessing: dict[str, Any] | None = None, **fields: Any) -> networks_pb2.Network:
    body = {"name": name, "framework": "onnx", "preprocessing": preprocessing or COLORS_PREPROCESSING, **fields}
    return json_format.ParseDict(body, networks_pb2.Network())


def upload_messages(
    network: networks_pb2.Network,
    files: dict[str, bytes],
    *,
    chunk: int = 64 * 1024,
    declared: Sequence[networks_pb2.NetworkFile] | None = None,
) -> list[networks_pb2.CreateNetworkRequest]:
    """The messages of a CreateNetwork call: the upload, then each file in chunks."""
    announced = declared or [
        networks_pb2.NetworkFile(name=n, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for n, d in files.items()
    ]
    messages = [networks_pb2.CreateNetworkRequest(upload=networks_pb2.NetworkUpload(network=network, files=announced))]
    for name, data in files.items():
        for start in range(0, len(data), chunk):
            piece = networks_pb2.FileChunk(file_name=name, data=data[start : start + chunk])
            messages.append(networks_pb2.CreateNetworkRequest(chunk=piece))
    return messages


def colors_files() -> dict[str, bytes]:
    return {"colors.onnx": (COLORS / "1" / "model.onnx").read_bytes(), "mean.npy": (COLORS / "mean.npy").read_bytes()}


async def wait_task(
    tasks: tasks_pb2_grpc.TaskServiceStub, task_id: str, metadata: Sequence[tuple[str, str]] = (), timeout_s: float = 60
) -> tasks_pb2.Task:
    """Poll a task until it leaves pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        task: tasks_pb2.Task = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id), metadata=metadata)
        if task.status != tasks_pb2.pending:
            return task
        assert loop.time() < deadline, f"task {task_id} still pending after {timeout_s} s"
        await asyncio.sleep(0.05)


@dataclass
class Client:
    """Typed stubs over one channel, with the metadata (API key) sent on every call."""

    recognition: recognition_pb2_grpc.RecognitionServiceStub
    networks: networks_pb2_grpc.NetworkServiceStub
    tasks: tasks_pb2_grpc.TaskServiceStub
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def over(cls, channel: grpc.aio.Channel, key: str = "") -> Client:
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        return cls(
            recognition_pb2_grpc.RecognitionServiceStub(channel),
            networks_pb2_grpc.NetworkServiceStub(channel),
            tasks_pb2_grpc.TaskServiceStub(channel),
            metadata,
        )

    async def upload(
        self, network: networks_pb2.Network, files: dict[str, bytes], **kwargs: Any
    ) -> networks_pb2.Network:
        messages = upload_messages(network, files, **kwargs)

        async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
            for message in messages:
                yield message

        result: networks_pb2.Network = await self.networks.CreateNetwork(stream(), metadata=self.metadata)
        return result

    async def deployed(self, network: networks_pb2.Network, files: dict[str, bytes]) -> networks_pb2.Network:
        """Upload a network and wait until its deployment succeeds."""
        created = await self.upload(network, files)
        task = await wait_task(self.tasks, created.task_id, self.metadata)
        assert task.status == tasks_pb2.success, task.error
        return created


def registry_settings(triton: TritonFixture, data_dir: Path, database_url: str, prefix: str, **extra: Any) -> Settings:
    """Settings of a Sightline on the session's Triton whose uploads land in the Triton's writable repository
    under model names of their own (``prefix``), so that test servers never touch each other's models."""
    return Settings(
        port=0,
        metrics_port=-1,
        triton_url=triton.url,
        data_dir=data_dir,
        models_dir=triton.models,
        model_name_prefix=prefix,
        database_url=database_url,
        auth_cache_s=0,
        drain_grace_s=0.5,
        **extra,
    )


def cv2_jpeg(bgr: npt.NDArray[np.uint8], quality: int = 92) -> bytes:
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buffer)
