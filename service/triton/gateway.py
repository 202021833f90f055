"""The Triton gateway: every call the service makes to Triton, through one long-lived ``grpc.aio`` client.

Embedded or remote, the gateway only knows an address. Triton's errors become domain errors here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from opentelemetry import trace
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service.errors import (
    FailedPreconditionError,
    InferenceFailedError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from service.observability import Metrics, trace_headers
from service.triton.tensors import Signature, signature_from_config

__all__ = [
    "GrpcTritonGateway",
    "ModelLoadError",
    "TritonGateway",
    "is_transient",
    "status_name",
]

log = logging.getLogger(__name__)

Tensors = Mapping[str, npt.NDArray[Any]]


class ModelLoadError(FailedPreconditionError):
    """Triton refused to load a model (a bad model file, a configuration it does not accept)."""

    reason = "MODEL_LOAD_FAILED"


class TritonGateway(Protocol):
    """What the use cases need from an inference server."""

    async def infer(
        self, model: str, inputs: Tensors, outputs: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        """Run one request; ``inputs`` and the returned outputs carry the batch dimension when the model does."""
        ...

    async def model_info(self, model: str) -> Signature:
        """The inputs and outputs of a loaded model, as its configuration in Triton says."""
        ...

    async def model_ready(self, model: str) -> bool: ...

    async def server_live(self) -> bool: ...

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        """Load (or reload) a model of the repository through the model-control API."""
        ...

    async def unload_model(self, model: str) -> None:
        """Unload a model; unknown or already unloaded models are not an error."""
        ...

    async def loaded_models(self) -> set[str]:
        """The names of the models Triton's repository index says are loaded (READY or loading)."""
        ...

    def forget(self, model: str) -> None:
        """Drop what is cached about a model (after it is unloaded or reloaded)."""
        ...

    async def close(self) -> None: ...


_CHANNEL_ARGS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class GrpcTritonGateway:
    """A ``TritonGateway`` over ``tritonclient.grpc.aio`` (KServe v2 gRPC)."""

    def __init__(
        self, url: str, *, timeout_s: float = 30.0, metrics: Metrics | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self._url = url
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        # gRPC's default reconnect backoff grows to 120 s: after a Triton restart calls would wait for it.
        self._client = grpcclient.InferenceServerClient(url, channel_args=_CHANNEL_ARGS)
        self._timeout_s = timeout_s
        self.in_flight = 0
        """Inference requests sent to Triton and not answered yet (abandoned ones included)."""
        self._calls: set[asyncio.Future[Any]] = set()
        self._reachable = True
        self._info: dict[str, Signature] = {}
        self._info_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return self._url

    async def close(self, timeout_s: float = 2.0) -> None:
        """Close the client once the requests still in Triton (abandoned ones too) have ended, or after
        ``timeout_s``."""
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=timeout_s)
        await self._client.close()

    def _call_done(self, call: asyncio.Future[Any]) -> None:
        self._calls.discard(call)
        self.in_flight -= 1
        if not call.cancelled():
            call.exception()  # an abandoned call's failure is nobody's: mark it retrieved

    async def server_live(self) -> bool:
        try:
            return bool(await self._client.is_server_live(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_ready(self, model: str) -> bool:
        try:
            return bool(await self._client.is_model_ready(model, client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_info(self, model: str) -> Signature:
        """The model's configuration, read once and cached (a model's tensors do not change while loaded)."""
        if (info := self._info.get(model)) is not None:
            return info
        async with self._info_lock:
            if (info := self._info.get(model)) is None:
                try:
                    config = await self._client.get_model_config(model, as_json=True, client_timeout=self._timeout_s)
                except InferenceServerException as exc:
                    raise self._failed(exc, model) from None
                info = signature_from_config(config["config"])
                self._info[model] = info
        return info

    def _failed(self, exc: InferenceServerException, model: str) -> Exception:
        """The domain error for a failed call; logs once when Triton stops answering, not once a call."""
        if is_transient(exc):
            if self._reachable:
                self._reachable = False
                log.warning(
                    "Triton stopped answering (%s: %s); calls fail with UNAVAILABLE until it is back",
                    status_name(exc) or "no status",
                    exc.message() or exc,
                )
        else:
            log.info("Triton refused a call for model %s: %s %s", model, status_name(exc), exc.message() or exc)
        return _domain_error(exc, model)

    def _answered(self) -> None:
        if not self._reachable:
            self._reachable = True
            log.warning("Triton answers again")

    def forget(self, model: str) -> None:
        """Drop the cached configuration of a model (after it is unloaded or reloaded)."""
        self._info.pop(model, None)

    async def load_model(self, model: str, *, timeout_s: float | None = None) -> None:
        self.forget(model)
        try:
            await self._client.load_model(model, client_timeout=timeout_s or self._timeout_s)
        except InferenceServerException as exc:
            message = str(exc.message() or exc)
            log.warning("Triton could not load model %s: %s %s", model, status_name(exc), message)
            if is_transient(exc):
                raise UnavailableError(
                    f"the inference server did not load model {model!r} in time: {message}"
                ) from None
            raise ModelLoadError(f"the inference server could not load the network: {message}") from None
        finally:
            self.forget(model)

    async def unload_model(self, model: str) -> None:
        self.forget(model)
        try:
            await self._client.unload_model(model, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            if status_name(exc) == "NOT_FOUND":
                return
            raise self._failed(exc, model) from None

    async def loaded_models(self) -> set[str]:
        try:
            index = await self._client.get_model_repository_index(as_json=True, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            raise self._failed(exc, "(repository index)") from None
        return {str(m["name"]) for m in index.get("models", []) if m.get("state") in {"READY", "LOADING", "UNLOADING"}}

    async def infer(
        self, model: str, inputs: Tensors, outputs: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        request_inputs = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            request_inputs.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        started = time.perf_counter()
        with self._tracer.start_as_current_span(f"triton.infer {model}", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("triton.model", model)
            # Never cancelled once sent: Triton's gRPC frontend (2.51 here) can die with SIGSEGV when an inference is
            # cancelled as it completes (triton-inference-server/server#7368, fixed by PR #7840; a further race in
            # #8034), and every cancelled stream cancels its frames. Seen here: a soak of cancelling clients
            # crashed the embedded Triton after 285 s. An abandoned request runs to its end (milliseconds, at most
            # max_in_flight a stream) and its answer is dropped; ``in_flight`` counts it until then.
            call = asyncio.ensure_future(
                self._client.infer(
                    model,
                    request_inputs,
                    outputs=requested,
                    client_timeout=timeout_s or self._timeout_s,
                    headers=trace_headers(),
                )
            )
            self._calls.add(call)
            self.in_flight += 1
            call.add_done_callback(self._call_done)
            try:
                result = await asyncio.shield(call)
            except InferenceServerException as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc.status())))
                raise self._failed(exc, model) from None
            finally:
                if self._metrics is not None:
                    self._metrics.triton_latency.labels(model).observe(time.perf_counter() - started)
            self._answered()
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise UnavailableError(f"Triton returned no output {name!r} for model {model!r}")
            arrays[name] = array
        return arrays


_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"})
"""Triton's gRPC codes that may pass: retrying later can work. The others will fail the same way again."""
_REJECTED = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE", "UNIMPLEMENTED"})


def status_name(exc: InferenceServerException) -> str:
    """The gRPC code name of a tritonclient error (``StatusCode.UNAVAILABLE`` → ``UNAVAILABLE``); "" if none."""
    return str(exc.status() or "").removeprefix("StatusCode.")


def is_transient(exc: InferenceServerException) -> bool:
    # tritonclient raises without a status for failures of its own before any answer (no connection yet).
    name = status_name(exc)
    return not name or name in _TRANSIENT


def _domain_error(exc: InferenceServerException, model: str) -> Exception:
    """A Triton failure in the service's words, by its gRPC status code (not its text, which changes)."""
    name = status_name(exc)
    message = str(exc.message() or exc)
    if is_transient(exc):
        return UnavailableError(f"the inference server did not answer for model {model!r}; retry later")
    if name == "NOT_FOUND":
        return NotFoundError("model", model)
    if name in _REJECTED:
        return InvalidArgumentError(f"the network rejected its inputs: {message}")
    return InferenceFailedError(f"the network failed on this input ({name or 'error'}): {message}")
