"""The REST facade's HTTP server: aiohttp, on its own port, beside gRPC, over the same use cases.

One middleware does for each request what the gRPC interceptors do for each call: a request id (the client's
``X-Request-Id`` when usable, else a new one, sent back in ``X-Request-Id`` and in error bodies), a server span
whose parent is the client's ``traceparent``, one access log line and the request metrics (``method`` is
``"/v0.7 <HTTP method> <route>"``, ``code`` the HTTP status), the API key (``X-API-KEY``, or
``Authorization: Bearer``) checked by the same ``Authenticator`` with the rule of the gRPC method the route
stands for, errors as v0.7 JSON, and the drain: once ``refuse_new`` is called new requests get 503
SERVER_SHUTTING_DOWN while those under way finish.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry import trace

from service.api.observability import usable_request_id
from service.api.rest.errors import HttpError, error_response
from service.api.rest.routes import PREFIX, RestRoutes, Route
from service.auth import PRINCIPAL, Authenticator
from service.errors import NotFoundError, ResourceExhaustedError, ShuttingDownError
from service.observability import PROPAGATOR, REQUEST_ID, Metrics

__all__ = ["RestServer"]

log = logging.getLogger("sightline.access")

_MAX_LINE_BYTES = 1024 * 1024
"""Longest request line: ``batch_wait`` polls ``/tasks/?task_ids=...`` with every pending id, thousands of them."""


class _OneLineForBadRequests(logging.Filter):
    """aiohttp logs each request it cannot parse (bytes that are not HTTP, a header over the limit, an HTTP/2
    preface on this HTTP/1.1 port) at ERROR with a traceback and the bytes it got, up to kilobytes of them: the
    client's error, not the server's, and a way for anyone who reaches the port to fill the log. It becomes one
    INFO line with the parser's verdict cut short; aiohttp still answers 400 and closes the connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            verdict = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
            said = record.getMessage()
            record.msg, record.args = "%s: %s %d, %r", (said, type(exc).__name__, exc.code, verdict[:80])
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


_PROTOCOL_LOG = logging.getLogger("sightline.rest.protocol")
_PROTOCOL_LOG.addFilter(_OneLineForBadRequests())


class RestServer:
    """The facade's aiohttp application and the site it listens on."""

    def __init__(
        self,
        routes: RestRoutes,
        authenticator: Authenticator,
        metrics: Metrics,
        tracer: trace.Tracer,
        *,
        max_body_bytes: int,
    ) -> None:
        self._authenticator = authenticator
        self._metrics = metrics
        self._tracer = tracer
        self._refusing = False
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.app = web.Application(
            middlewares=[self._middleware],
            client_max_size=max_body_bytes,
            handler_args={"max_line_size": _MAX_LINE_BYTES, "max_field_size": 64 * 1024, "logger": _PROTOCOL_LOG},
        )
        for route in routes.routes():
            handler = self._guarded(route)
            for path in (PREFIX + route.path, PREFIX + route.path + "/"):
                self.app.router.add_route(route.method, path, handler, name=None)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        """Listen on ``host:port`` (0: a free port); the bound port."""
        # Requests still open when the runner stops are cut after 1 s: the drain has waited for them already.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                f"could not listen on {host}:{port} for the REST facade ({exc.strerror}): the port is in use or the "
                "address is not this machine's; set SIGHTLINE_REST_PORT"
            ) from None
        self.port = int(self._runner.addresses[0][1])  # the bound port, also when 0 asked for a free one
        return self.port

    def refuse_new(self) -> None:
        """From now on new requests are answered 503 SERVER_SHUTTING_DOWN (with ``Connection: close``)."""
        self._refusing = True

    async def settle(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the requests under way to finish."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
        except TimeoutError:
            log.warning("REST: %d requests still open at the end of the drain", self._open)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -------------------------------------------------------------------------------------------- per request

    def _guarded(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            request["grpc_method"] = route.grpc_method
            pairs = [("x-api-key", v) for v in request.headers.getall("X-API-KEY", [])]
            pairs += [("authorization", v) for v in request.headers.getall("Authorization", [])]
            principal = await self._authenticator.authenticate(pairs)
            self._authenticator.authorize(principal, route.grpc_method)
            token = PRINCIPAL.set(principal)
            try:
                return await route.handler(request)
            finally:
                PRINCIPAL.reset(token)

        return handler

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request_id = usable_request_id(request.headers.get("X-Request-Id", "")) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else "unmatched"
        method = f"/v0.7 {request.method} {template.removeprefix(PREFIX).rstrip('/') or '/'}"
        span = self._tracer.start_span(
            method, context=PROPAGATOR.extract(dict(request.headers)), kind=trace.SpanKind.SERVER
        )
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("sightline.request_id", request_id)
        started = time.perf_counter()
        self._open += 1
        self._idle.clear()
        try:
            with trace.use_span(span, end_on_exit=False):
                response = await self._answer(request, handler)
            response.headers["X-Request-Id"] = request_id
            seconds = time.perf_counter() - started
            code = str(response.status)
            self._metrics.requests.labels(method, code).inc()
            self._metrics.latency.labels(method, code).observe(seconds)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR, code))
            log.info("%s %s %.1f ms peer=%s", method, code, seconds * 1e3, request.remote)
            return response
        finally:
            span.end()
            self._open -= 1
            if self._open == 0:
                self._idle.set()
            REQUEST_ID.reset(token)

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._refusing:
            response = error_response(ShuttingDownError())
            response.force_close()
            return response
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no such path, a method the path does not take, too big
            if exc.status == 404:
                return error_response(NotFoundError("path", request.path))
            if exc.status == 413:
                return error_response(ResourceExhaustedError("the body is larger than SIGHTLINE_MAX_MESSAGE_BYTES"))
            if exc.status == 405:
                allowed = exc.headers.get("Allow", "")
                return error_response(
                    HttpError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here; use {allowed}")
                )
            return error_response(HttpError(exc.status, "BAD_REQUEST", exc.reason))
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            # The client went away mid-request (closed, killed, its body cut short): nobody to answer, nothing
            # for the operator to fix. 499, nginx's "client closed request", is for the access log and metrics.
            return web.Response(status=499)
        except Exception as exc:
            return error_response(exc)
