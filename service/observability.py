"""Metrics, request ids and tracing context, for every layer (the interceptor that applies them to each RPC is
``service.api.observability``; nothing here imports upwards).

- Prometheus metrics in a registry of the application's own (several servers may share a process in tests),
  served over HTTP on ``SIGHTLINE_METRICS_PORT``.
- A request id per RPC: the client's ``x-request-id`` metadata or a new one; it is in every log line written
  while the RPC runs (a logging filter reads a context variable), in every error's ``ErrorInfo`` and in the
  trailing metadata.
- OpenTelemetry: a server span per RPC whose parent is the client's W3C ``traceparent``; the Triton gateway opens
  a child span and passes the context on to Triton as ``traceparent`` metadata.
"""

from __future__ import annotations

import contextvars
import logging

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["PROPAGATOR", "REQUEST_ID", "Metrics", "RequestIdFilter", "trace_headers"]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
PROPAGATOR = TraceContextTextMapPropagator()
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
        self.triton_batch_images = Histogram(
            "sightline_triton_batch_images",
            "Images per Triton inference request made by the batching of concurrent calls, by model.",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
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
    PROPAGATOR.inject(carrier)
    return carrier
