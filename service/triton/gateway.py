"""The Triton gateway: every call the service makes to Triton, through one long-lived ``grpc.aio`` client.

Embedded or remote, the gateway only knows an address, and, when Triton shares this host's ``/dev/shm``, the prefix
of the shared-memory regions its tensors may travel in (``shared_memory.py``). Triton's errors become domain errors
here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from opentelemetry import trace
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from service.errors import (
    FailedPreconditionError,
    InferenceFailedError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from service.observability import Metrics, trace_headers
from service.triton.shared_memory import Layout, Lease, RegionPool, RegistrationError
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
    # Channel arguments replace tritonclient's defaults, whose message limits these restore: gRPC's own 4 MB
    # receive limit failed every answer larger than that (a 3x640x640 float32 output) with RESOURCE_EXHAUSTED.
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


_LAYOUTS_PER_MODEL = 64
"""Layouts kept per model: a stream's frames share one; calls of many sizes (unary images of a flexible input)
beyond this are laid out afresh each time."""
_REQUESTED_KEPT = 1024
"""Requested-output lists kept (one per region and layout)."""

_LayoutKey = tuple[tuple[tuple[str, tuple[int, ...], int], ...], tuple[str, ...]]
_OutputsKey = tuple[str, tuple[tuple[str, tuple[int, int]], ...], tuple[str, ...]]

SHM_MIN_BYTES = 64 * 1024
"""Calls whose inputs hold fewer bytes go in-band: for small tensors gRPC's copy costs about what the region's does."""


class GrpcTritonGateway:
    """A ``TritonGateway`` over ``tritonclient.grpc.aio`` (KServe v2 gRPC).

    With ``shared_memory`` (a function giving the current region prefix, ``None`` while Triton is down), the
    inputs of a call of at least ``shm_min_bytes`` numeric input bytes, and its outputs of a size the model's
    configuration fixes, travel in a region of the gateway's pool (at most ``shm_max_bytes`` of them) instead of
    the gRPC messages; any call the pool cannot serve goes in-band. Results are the same either way.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
        shared_memory: Callable[[], str | None] | None = None,
        shm_max_bytes: int = 512 * 1024 * 1024,
        shm_min_bytes: int = SHM_MIN_BYTES,
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
        self._shm_min_bytes = shm_min_bytes
        self._layouts: dict[str, dict[_LayoutKey, Layout]] = {}
        """Per model, the region layout of each (input shapes and sizes, requested outputs) seen (``_layout``)."""
        self._outputs: dict[_OutputsKey, list[grpcclient.InferRequestedOutput]] = {}
        self.shared_memory = (
            None
            if shared_memory is None
            else RegionPool(_Registrar(self._client, timeout_s), shared_memory, max_bytes=shm_max_bytes)
        )
        """The pool of shared-memory regions, or ``None`` when every call goes in-band."""

    @property
    def url(self) -> str:
        return self._url

    async def close(self, timeout_s: float = 2.0) -> None:
        """Close the client once the requests still in Triton (abandoned ones too) have ended, or after
        ``timeout_s``."""
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=timeout_s)
        if self.shared_memory is not None:
            await self.shared_memory.close()
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
        self._layouts.pop(model, None)

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
        request = await self._shared_request(model, inputs, outputs) if self.shared_memory is not None else None
        if request is None:
            return await self._infer(model, _in_band(inputs, outputs), timeout_s)
        try:
            return await self._infer(model, request, timeout_s)
        except _SharedMemoryRefused as refused:
            # A stale cached configuration (outputs larger than reserved) or a Triton that forgot our regions: the
            # call is answered in-band, whose result or error is the truth.
            log.info("Triton refused a shared-memory call for model %s (%s); retrying it in-band", model, refused)
            self.forget(model)
            if "shared memory" in str(refused).lower() and self.shared_memory is not None:
                self.shared_memory.forget()
            return await self._infer(model, _in_band(inputs, outputs), timeout_s)

    async def _shared_request(self, model: str, inputs: Tensors, outputs: Sequence[str]) -> _Request | None:
        """The call's tensors placed in a leased region, or ``None`` when it goes in-band."""
        assert self.shared_memory is not None
        if any(a.dtype.hasobject for a in inputs.values()):
            return None  # BYTES tensors are length-prefixed strings, not one buffer: in-band
        if sum(a.nbytes for a in inputs.values()) < self._shm_min_bytes:
            return None
        layout = await self._layout(model, inputs, outputs)
        lease = await self.shared_memory.acquire(layout.byte_size)
        if lease is None:
            return None
        region = lease.region
        request_inputs = []
        try:
            for name, array in inputs.items():
                offset, size = layout.inputs[name]
                region.write(array, offset)
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                request_inputs.append(tensor.set_shared_memory(region.name, size, offset))
        except BaseException:
            lease.release()  # never sent: both holders let go here
            lease.release()
            raise
        return _Request(request_inputs, self._requested(region.name, layout, outputs), outputs, lease, layout)

    async def _layout(self, model: str, inputs: Tensors, outputs: Sequence[str]) -> Layout:
        """The call's layout in a region; the same for every call of a model with inputs of the same sizes (a
        stream's frames), so it is kept until the model is ``forget``-ten."""
        # Shapes, not only sizes: the outputs' sizes follow the batch, the inputs' first axis.
        key = (tuple((n, a.shape, a.nbytes) for n, a in inputs.items()), tuple(outputs))
        cached = self._layouts.setdefault(model, {})
        if (layout := cached.get(key)) is None:
            sizes = await self._output_sizes(model, inputs, outputs)
            layout = Layout.of([(n, a.nbytes) for n, a in inputs.items()], list(sizes.items()))
            if len(cached) < _LAYOUTS_PER_MODEL:
                cached[key] = layout
        return layout

    def _requested(self, region: str, layout: Layout, outputs: Sequence[str]) -> list[grpcclient.InferRequestedOutput]:
        """The requested outputs of a call in ``region``, those the layout places there pointing into it. A region
        serves one call at a time and its calls mostly share a layout, so the objects are kept per region and
        layout (tritonclient only reads them when it builds a request)."""
        key = (region, tuple(layout.outputs.items()), tuple(outputs))
        if (requested := self._outputs.get(key)) is None:
            requested = []
            for name in outputs:
                output = grpcclient.InferRequestedOutput(name)
                if name in layout.outputs:
                    offset, size = layout.outputs[name]
                    output.set_shared_memory(region, size, offset)
                requested.append(output)
            if len(self._outputs) >= _REQUESTED_KEPT:
                self._outputs.clear()  # regions come and go with Triton restarts: start again rather than grow
            self._outputs[key] = requested
        return requested

    async def _output_sizes(self, model: str, inputs: Tensors, outputs: Sequence[str]) -> dict[str, int]:
        """Bytes of each requested output whose size the configuration fixes (the others come in-band)."""
        try:
            signature = await self.model_info(model)
        except Exception:
            return {}  # the in-band part of the call meets the same failure and reports it
        batch = next(iter(inputs.values())).shape[0] if signature.batched and inputs else None
        sizes: dict[str, int] = {}
        for tensor in signature.outputs:
            if tensor.name not in outputs or tensor.dtype == "BYTES":
                continue
            dims = (batch, *tensor.dims[1:]) if batch is not None else tensor.dims
            if all(d is not None and d >= 0 for d in dims):
                sizes[tensor.name] = int(np.prod(dims, dtype=np.int64)) * tensor.numpy_dtype.itemsize
        return sizes

    async def _infer(self, model: str, request: _Request, timeout_s: float | None) -> dict[str, npt.NDArray[Any]]:
        started = time.perf_counter()
        lease = request.lease
        with self._tracer.start_as_current_span(f"triton.infer {model}", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("triton.model", model)
            span.set_attribute("triton.shared_memory", lease is not None)
            # Never cancelled once sent: Triton's gRPC frontend (2.51 here) can die with SIGSEGV when an inference is
            # cancelled as it completes (triton-inference-server/server#7368, fixed by PR #7840; a further race in
            # #8034), and every cancelled stream cancels its frames. Seen here: a soak of cancelling clients
            # crashed the embedded Triton after 285 s. An abandoned request runs to its end (milliseconds, at most
            # max_in_flight a stream) and its answer is dropped; ``in_flight`` counts it until then.
            call = asyncio.ensure_future(
                self._client.infer(
                    model,
                    request.inputs,
                    outputs=request.outputs,
                    client_timeout=timeout_s or self._timeout_s,
                    headers=trace_headers(),
                )
            )
            self._calls.add(call)
            self.in_flight += 1
            call.add_done_callback(self._call_done)
            if lease is not None:
                # The region's first holder: Triton, until its answer is in (it may write outputs until then),
                # even when this coroutine is cancelled first; the second is the reader below.
                call.add_done_callback(lambda _: lease.release())
            try:
                try:
                    result = await asyncio.shield(call)
                except InferenceServerException as exc:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc.status())))
                    if lease is not None and not is_transient(exc):
                        raise _SharedMemoryRefused(str(exc.message() or exc)) from None
                    raise self._failed(exc, model) from None
                finally:
                    if self._metrics is not None:
                        self._metrics.triton_latency.labels(model).observe(time.perf_counter() - started)
                self._answered()
                return _arrays(result, request, model)
            finally:
                if lease is not None:
                    lease.release()


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


class _SharedMemoryRefused(Exception):
    """Triton refused a call whose tensors were in shared memory for a reason that is not transient."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One call's request tensors; with a lease, those in its region lie where ``layout`` says."""

    inputs: list[grpcclient.InferInput]
    outputs: list[grpcclient.InferRequestedOutput]
    names: Sequence[str]
    lease: Lease | None = None
    layout: Layout | None = None


def _in_band(inputs: Tensors, outputs: Sequence[str]) -> _Request:
    request_inputs = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        request_inputs.append(tensor)
    return _Request(request_inputs, [grpcclient.InferRequestedOutput(name) for name in outputs], outputs)


def _arrays(result: grpcclient.InferResult, request: _Request, model: str) -> dict[str, npt.NDArray[Any]]:
    """The requested outputs: copied out of the region when Triton wrote them there, else from the answer."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name in request.names:
        placed = request.layout.outputs.get(name) if request.layout is not None else None
        if placed is not None and request.lease is not None:
            tensor = result.get_output(name)
            if tensor is None:
                raise UnavailableError(f"Triton returned no output {name!r} for model {model!r}")
            dtype = np.dtype(triton_to_np_dtype(tensor.datatype))
            arrays[name] = request.lease.region.read(dtype, list(tensor.shape), placed[0])
            continue
        array = result.as_numpy(name)
        if array is None:
            raise UnavailableError(f"Triton returned no output {name!r} for model {model!r}")
        arrays[name] = array
    return arrays


class _Registrar:
    """The pool's Triton calls, over the gateway's client."""

    def __init__(self, client: grpcclient.InferenceServerClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def register(self, name: str, key: str, byte_size: int) -> None:
        try:
            await self._client.register_system_shared_memory(name, key, byte_size, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            raise RegistrationError(str(exc.message() or exc), transient=is_transient(exc)) from None

    async def unregister(self, name: str) -> None:
        try:
            await self._client.unregister_system_shared_memory(name, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            raise RegistrationError(str(exc.message() or exc), transient=is_transient(exc)) from None
