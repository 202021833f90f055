"""Client-side batching: concurrent one-image calls of a batched model leave as one Triton request.

Each Triton call costs the service a fixed amount of CPU whatever its size (grpc aio's call machinery,
tritonclient's request building, the span: about 0.7 ms a call on the development machine, a third of a
stream frame's CPU, docs/performance.md), and Triton a request of its own to parse and schedule. Frames of many
streams, or several frames of one stream, that wait for the same model at the same time gain nothing from going
separately: Triton's dynamic batcher would put them in one batch anyway.

The policy adds no delay (no timer, unlike Triton's ``max_queue_delay``): a call goes at once when fewer than
``concurrency`` requests of its kind are in Triton; otherwise it waits for one of them to come back, and then
leaves with every call of its kind that waited meanwhile, at most ``max_batch`` images (and the model's
``max_batch_size``). At light load every call goes alone, as before; under load the batches grow with it.

Calls of one kind share the model, the requested outputs and each input's name, shape and dtype, with one image
on the batch axis (a batched model's axis 0); the others, and models without a batch axis, go straight through.
A call's answer is its own rows of the batch's outputs. A batch that fails for a reason that is not transient
(the network rejected an input) is run again one call at a time, so that each call gets its own verdict; a
transient failure (Triton away) is every call's.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import UnavailableError
from service.observability import Metrics
from service.triton.gateway import Tensors, TritonGateway
from service.triton.tensors import Signature

__all__ = ["BatchingGateway"]

log = logging.getLogger(__name__)

_Kind = tuple[str, tuple[tuple[str, tuple[int, ...], str], ...], tuple[str, ...]]


@dataclass(slots=True)
class _Call:
    inputs: Tensors
    timeout_s: float | None
    answer: asyncio.Future[dict[str, npt.NDArray[Any]]]


@dataclass(slots=True)
class _Queue:
    """The calls of one kind: those waiting, and how many requests of the kind are in Triton."""

    limit: int
    waiting: list[_Call] = field(default_factory=list)
    sending: int = 0
    scheduled: bool = False


class BatchingGateway:
    """A ``TritonGateway`` that sends concurrent one-image calls of a batched model as one request (see the
    module's docstring); every other method is the wrapped gateway's. ``max_batch`` 1 turns batching off."""

    def __init__(
        self, inner: TritonGateway, *, max_batch: int = 8, concurrency: int = 2, metrics: Metrics | None = None
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self._inner = inner
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._metrics = metrics
        self._queues: dict[_Kind, _Queue] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Requests of more than one call sent so far."""
        self.batched_calls = 0
        """Calls answered from those requests."""

    async def infer(
        self, model: str, inputs: Tensors, outputs: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        batchable = await self._kind(model, inputs, outputs) if self._max_batch > 1 else None
        if batchable is None:
            return await self._inner.infer(model, inputs, outputs, timeout_s=timeout_s)
        kind, limit = batchable
        queue = self._queues.get(kind)
        if queue is None:
            queue = self._queues[kind] = _Queue(limit)
        call = _Call(inputs, timeout_s, asyncio.get_running_loop().create_future())
        queue.waiting.append(call)
        if queue.sending < self._concurrency and not queue.scheduled:
            # Sent on the loop's next turn, not now: calls made in this turn (frames of several streams read
            # together) leave with it.
            queue.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, kind, queue)
        # A cancelled caller's future is cancelled with it: a waiting call is then left out of its batch, a sent one
        # runs to its end (the gateway never cancels a request in Triton) and its rows are dropped.
        return await call.answer

    async def _kind(self, model: str, inputs: Tensors, outputs: Sequence[str]) -> tuple[_Kind, int] | None:
        """The call's kind and the most images a request of it may hold, when it can join a batch; else None."""
        if not inputs or any(a.ndim == 0 or a.shape[0] != 1 or a.dtype.hasobject for a in inputs.values()):
            return None
        try:
            info: Signature = await self._inner.model_info(model)
        except Exception:
            return None  # the call itself meets the failure and reports it
        if info.max_batch_size < 2:
            return None
        kind = (model, tuple((n, a.shape, a.dtype.str) for n, a in inputs.items()), tuple(outputs))
        return kind, min(self._max_batch, info.max_batch_size)

    def _flush(self, kind: _Kind, queue: _Queue) -> None:
        queue.scheduled = False
        while queue.sending < self._concurrency:
            batch: list[_Call] = []
            while queue.waiting and len(batch) < queue.limit:
                call = queue.waiting.pop(0)
                if not call.answer.done():  # cancelled while waiting
                    batch.append(call)
            if not batch:
                break
            queue.sending += 1
            sender = asyncio.get_running_loop().create_task(self._send(kind, queue, batch))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        if not queue.waiting and not queue.sending:
            self._queues.pop(kind, None)

    async def _send(self, kind: _Kind, queue: _Queue, batch: list[_Call]) -> None:
        model, _, outputs = kind
        if self._metrics is not None:
            self._metrics.triton_batch_images.labels(model).observe(len(batch))
        try:
            if len(batch) == 1:
                await self._answer(batch[0], model, outputs)
                return
            timeouts = [c.timeout_s for c in batch if c.timeout_s is not None]
            stacked = {name: np.concatenate([c.inputs[name] for c in batch]) for name in batch[0].inputs}
            try:
                result = await self._inner.infer(model, stacked, outputs, timeout_s=min(timeouts, default=None))
                rows = _split(result, len(batch))
            except UnavailableError as exc:
                for call in batch:
                    _settle(call, error=copy.copy(exc))
                return
            except Exception as exc:
                # One image may be what the network rejected: each call is asked again, alone, for its own verdict.
                log.info("a batch of %d calls for model %s failed (%s); asking each alone", len(batch), model, exc)
                await asyncio.gather(*(self._answer(c, model, outputs) for c in batch))
                return
            self.batches += 1
            self.batched_calls += len(batch)
            for call, answer in zip(batch, rows, strict=True):
                _settle(call, answer=answer)
        finally:
            for call in batch:  # cancelled (the gateway closed): no caller is left waiting
                _settle(call, error=UnavailableError("the inference server connection closed; retry"))
            queue.sending -= 1
            if queue.waiting and not queue.scheduled:
                queue.scheduled = True
                asyncio.get_running_loop().call_soon(self._flush, kind, queue)
            elif not queue.waiting and not queue.sending:
                self._queues.pop(kind, None)

    async def _answer(self, call: _Call, model: str, outputs: Sequence[str]) -> None:
        try:
            answer = await self._inner.infer(model, call.inputs, outputs, timeout_s=call.timeout_s)
        except Exception as exc:
            _settle(call, error=exc)
        else:
            _settle(call, answer=answer)

    async def model_info(self, model: str) -> Signature:
        return await self._inner.model_info(model)

    async def model_ready(self, model: str) -> bool:
        return await self._inner.model_ready(model)

    async def server_live(self) -> bool:
        return await self._inner.server_live()

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        await self._inner.load_model(model, timeout_s=timeout_s)

    async def unload_model(self, model: str) -> None:
        await self._inner.unload_model(model)

    async def loaded_models(self) -> set[str]:
        return await self._inner.loaded_models()

    def forget(self, model: str) -> None:
        self._inner.forget(model)

    async def close(self) -> None:
        await self._inner.close()
        for sender in list(self._senders):
            sender.cancel()


def _split(result: dict[str, npt.NDArray[Any]], count: int) -> list[dict[str, npt.NDArray[Any]]]:
    """Each call's rows of a batch's outputs (views, one image each on axis 0)."""
    for name, array in result.items():
        if array.ndim == 0 or array.shape[0] != count:
            raise UnavailableError(
                f"Triton answered output {name!r} with {array.shape[0] if array.ndim else 0} rows for a batch of "
                f"{count}"
            )
    return [{name: array[i : i + 1] for name, array in result.items()} for i in range(count)]


def _settle(
    call: _Call, *, answer: dict[str, npt.NDArray[Any]] | None = None, error: BaseException | None = None
) -> None:
    if call.answer.done():
        return  # its caller was cancelled
    if error is not None:
        call.answer.set_exception(error)
    else:
        assert answer is not None
        call.answer.set_result(answer)
