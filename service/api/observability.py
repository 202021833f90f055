"""The observability interceptor: request id, server span, access log line and metrics around every RPC.

- A request id per RPC: the client's ``x-request-id`` metadata (when it can travel back) or a new one; it is in
  every log line written while the RPC runs, in every error's ``ErrorInfo`` and in the trailing metadata.
- A server span per RPC whose parent is the client's W3C ``traceparent``; the Triton gateway's child span passes
  the context on. The collectors and the context variables live in ``service.observability``, below this layer.
- Health and reflection calls (a mesh's or a load balancer's probes, grpcurl) are counted and timed like every
  other call, under their own ``method`` label (``/grpc.health.v1.Health/Check`` ...), so that probe traffic shows
  on the metrics page; their access line is at DEBUG and they get no span, so that probes every few seconds flood
  neither the log nor the traces. A ``Watch`` is counted when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

import grpc
from opentelemetry import trace

from service.api.handlers import Handler, HandlerInterceptor, Metadata, wrap_handler
from service.observability import PROPAGATOR, REQUEST_ID, Metrics

__all__ = ["ObservabilityInterceptor", "usable_request_id"]

log = logging.getLogger("sightline.access")

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_PROBES = ("/grpc.health.", "/grpc.reflection.")
"""Methods of health checks and reflection: counted, but logged at DEBUG and never traced."""


def usable_request_id(value: str) -> str:
    """The client's request id if it can travel back in metadata and in log lines (printable, ≤ 128 characters);
    "" otherwise, and the call gets one of its own."""
    return value if _REQUEST_ID.match(value) else ""


def _code_of(context: Any, error: BaseException | None) -> grpc.StatusCode:
    code = context.code()  # set by abort() and set_code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class ObservabilityInterceptor(HandlerInterceptor):
    """Request id, server span, access log line and metrics around every RPC (unary and streaming); probes
    (health, reflection) get the metrics, the request id and a DEBUG access line only."""

    def __init__(self, metrics: Metrics, tracer: trace.Tracer) -> None:
        self._metrics = metrics
        self._tracer = tracer

    def wrap(self, handler: Handler, method: str, metadata: Metadata) -> Handler:
        observe = _Observation(self._metrics, self._tracer, method, dict(metadata))
        return wrap_handler(handler, observe.unary, observe.streaming)


class _Observation:
    def __init__(self, metrics: Metrics, tracer: trace.Tracer, method: str, metadata: dict[str, str]) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._method = method
        self._metadata = metadata
        self._probe = method.startswith(_PROBES)

    def _begin(self, context: Any) -> tuple[str, Any]:
        request_id = usable_request_id(self._metadata.get("x-request-id", "")) or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        if self._probe:
            return request_id, trace.INVALID_SPAN
        parent = PROPAGATOR.extract(self._metadata)
        span = self._tracer.start_span(self._method.lstrip("/"), context=parent, kind=trace.SpanKind.SERVER)
        span.set_attribute("rpc.system", "grpc")
        span.set_attribute("sightline.request_id", request_id)
        return request_id, span

    def _end(self, context: Any, span: Any, started: float, error: BaseException | None) -> None:
        code = _code_of(context, error)
        seconds = time.perf_counter() - started
        self._metrics.requests.labels(self._method, code.name).inc()
        self._metrics.latency.labels(self._method, code.name).observe(seconds)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
        span.end()
        peer = context.peer() if hasattr(context, "peer") else ""
        log.log(
            logging.DEBUG if self._probe else logging.INFO,
            "%s %s %.1f ms peer=%s",
            self._method,
            code.name,
            seconds * 1e3,
            peer,
        )

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: Any) -> Any:
            _, span = self._begin(context)
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                with trace.use_span(span, end_on_exit=False):
                    return await behaviour(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._end(context, span, started, error)

        return wrapper

    def streaming(self, behaviour: Callable[..., AsyncGenerator[Any]]) -> Callable[..., AsyncGenerator[Any]]:
        if not inspect.isasyncgenfunction(behaviour):
            # A coroutine that writes its responses with context.write (grpcio's health Watch): awaited whole.
            return cast(Callable[..., AsyncGenerator[Any]], self.unary(cast(Callable[..., Awaitable[Any]], behaviour)))

        async def wrapper(request: Any, context: Any) -> AsyncGenerator[Any]:
            _, span = self._begin(context)
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                # The generator below is closed here, in the call's task (see service.api.lifecycle).
                with trace.use_span(span, end_on_exit=False):
                    async with contextlib.aclosing(behaviour(request, context)) as items:
                        async for item in items:
                            yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._end(context, span, started, error)

        return wrapper
