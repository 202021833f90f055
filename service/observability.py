"""Metrics, access logs, request ids and tracing for every RPC, in one server interceptor.

- Prometheus metrics in a registry of the application's own (several servers may share a process in tests),
  served over HTTP on ``SIGHTLINE_METRICS_PORT``.
- A request id per RPC: the client's ``x-request-id`` metadata or a new one; it is in every log line written
  while the RPC runs (a logging filter reads a context variable), in every error's ``ErrorInfo`` and in the
  trailing metadata.
- OpenTelemetry: a server span per RPC whose parent is the client's W3C ``traceparent``; the Triton gateway opens
  a child span and passes the context on to Triton as ``traceparent`` metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.api.handlers import wrap_handler

__all__ = ["REQUEST_ID", "Metrics", "ObservabilityInterceptor", "RequestIdFilter", "trace_headers"]

log = logging.getLogger("sightline.access")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_PROPAGATOR = TraceContextTextMapPropagator()
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The service's Prometheus collectors, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sightline_requests", "RPCs handled, by method and status code.", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "sightline_request_seconds",
            "RPC duration, by method and status code.",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.streams_open = Gauge("sightline_streams_open", "StreamRecognize calls open.", registry=r)
        self.frames = Counter(
            "sightline_frames", "Stream frames answered, by status (rate() gives fps).", ["status"], registry=r
        )
        self.frames_dropped = Counter(
            "sightline_frames_dropped", "Stream frames skipped, by reason.", ["reason"], registry=r
        )
        self.frames_in_flight = Gauge("sightline_frames_in_flight", "Stream frames being processed.", registry=r)
        self.triton_latency = Histogram(
            "sightline_triton_seconds",
            "Duration of Triton inference calls, by model.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.triton_in_flight = Gauge(
            "sightline_triton_requests_in_flight", "Inference requests sent to Triton and not answered yet.", registry=r
        )
        self.tasks_pending = Gauge(
            "sightline_tasks_pending", "Asynchronous inference tasks queued or running.", registry=r
        )


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (``-`` outside an RPC)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``), to pass on to Triton."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def _usable_request_id(value: str) -> str:
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


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Request id, server span, access log line and metrics around every RPC (unary and streaming)."""

    def __init__(self, metrics: Metrics, tracer: trace.Tracer) -> None:
        self._metrics = metrics
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        if method.startswith("/grpc.reflection") or method.startswith("/grpc.health"):
            return handler
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        observe = _Observation(self._metrics, self._tracer, method, metadata)
        return wrap_handler(handler, observe.unary, observe.streaming)


class _Observation:
    def __init__(self, metrics: Metrics, tracer: trace.Tracer, method: str, metadata: dict[str, str]) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._method = method
        self._metadata = metadata

    def _begin(self, context: Any) -> tuple[str, Any]:
        request_id = _usable_request_id(self._metadata.get("x-request-id", "")) or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        parent = _PROPAGATOR.extract(self._metadata)
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
        log.info("%s %s %.1f ms peer=%s", self._method, code.name, seconds * 1e3, peer)

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
