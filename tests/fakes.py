"""A ``TritonGateway`` in memory for unit tests, in the spirit of httpx's ``MockTransport``.

Each model is given its ``Signature`` and a function from the call to the output tensors; a latency and a failure
hook (a domain error to raise for a call, or None) are optional. A latency is seconds, or a function of the call
giving seconds or an ``asyncio.Event`` the call waits for (a test then decides when each call ends). Every call is
recorded; ``running`` counts the calls inside ``infer`` now, ``peak`` the most at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from service.errors import NotFoundError
from service.triton.tensors import Signature

__all__ = ["FakeCall", "FakeTritonGateway"]

Tensors = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One ``infer`` call: the model, its input tensors (batch dimension included where the model has one), the
    output names asked for, and its number among the gateway's calls (from 0)."""

    model: str
    inputs: Tensors
    outputs: tuple[str, ...]
    index: int


Outputs = Callable[[FakeCall], dict[str, npt.NDArray[Any]]]
Latency = float | Callable[[FakeCall], float | asyncio.Event]


class FakeTritonGateway:
    def __init__(
        self,
        models: Mapping[str, Signature],
        outputs: Mapping[str, Outputs],
        *,
        latency: Mapping[str, Latency] | None = None,
        fail: Callable[[FakeCall], Exception | None] | None = None,
    ) -> None:
        self.models = dict(models)
        self.outputs = dict(outputs)
        self.latency = dict(latency or {})
        self.fail = fail
        """Called with each call after its latency: the error to raise for it, or None. May be replaced."""
        self.calls: list[FakeCall] = []
        self.running = 0
        self.peak = 0
        self.loaded = set(self.models)
        self.closed = False

    async def infer(
        self, model: str, inputs: Tensors, outputs: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        call = FakeCall(model, dict(inputs), tuple(outputs), len(self.calls))
        self.calls.append(call)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            latency = self.latency.get(model, 0.0)
            delay = latency(call) if callable(latency) else latency
            await (delay.wait() if isinstance(delay, asyncio.Event) else asyncio.sleep(delay))
            if self.fail is not None and (error := self.fail(call)) is not None:
                raise error
            if model not in self.outputs:
                raise NotFoundError("model", model)
            produced = self.outputs[model](call)
            return {name: produced[name] for name in outputs}
        finally:
            self.running -= 1

    async def model_info(self, model: str) -> Signature:
        if model not in self.models:
            raise NotFoundError("model", model)
        return self.models[model]

    async def model_ready(self, model: str) -> bool:
        return model in self.loaded

    async def server_live(self) -> bool:
        return not self.closed

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        if model not in self.models:
            raise NotFoundError("model", model)
        self.loaded.add(model)

    async def unload_model(self, model: str) -> None:
        self.loaded.discard(model)

    async def loaded_models(self) -> set[str]:
        return set(self.loaded)

    def forget(self, model: str) -> None:
        pass

    async def close(self) -> None:
        self.closed = True
