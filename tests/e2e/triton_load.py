"""Load on a Triton: requests kept in flight against one model, counting answers and failures (used by the
embedded Triton's process tests, in their own process and in a child process they start)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc.aio as grpcclient


def request(model: str) -> tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]:
    data = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    tensor = grpcclient.InferInput("data", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return [tensor], [grpcclient.InferRequestedOutput("share")]


@dataclass
class Load:
    """Requests kept in flight against one model until stopped; counts of answers and failures."""

    url: str
    model: str
    in_flight: int
    ok: int = 0
    failed: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _worker(self) -> None:
        client = grpcclient.InferenceServerClient(self.url)
        inputs, outputs = request(self.model)
        try:
            while True:
                try:
                    await client.infer(self.model, inputs, outputs=outputs, client_timeout=5)
                    self.ok += 1
                except Exception:
                    self.failed += 1
                    await asyncio.sleep(0.05)
        finally:
            await client.close()

    async def __aenter__(self) -> Load:
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(self.in_flight)]
        deadline = time.monotonic() + 30
        while self.ok < self.in_flight:
            assert time.monotonic() < deadline, f"no answers from {self.model}: {self.failed} failures"
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
