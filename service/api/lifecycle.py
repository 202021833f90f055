"""The life of every call in the server, in the outermost interceptor.

Three duties, for every RPC (health and reflection included):

- **A call's work stays in its own task.** grpcio's asyncio server drives a streaming handler written as an async
  generator with a plain ``async for`` and never ``aclose()``s it (grpc/grpc#42295): when the client cancels while
  the server is writing, the generator is abandoned mid-``yield`` and finalised later by the garbage collector in
  another task, after the call's C-core state is gone. Its ``finally`` blocks then run in the wrong context
  (OpenTelemetry's ``Token ... was created in a different Context``) and the stream's reader task, still alive,
  reads from the dead call: the process dies with SIGSEGV in ``cygrpc``. Here every response-streaming handler
  becomes a coroutine that writes each response with ``context.write`` and closes the generator in the call's
  task, whatever ends it; the layers below close theirs with ``contextlib.aclosing``. So nothing a call started
  outlives it.
- **Requests that do not parse** as their protobuf message are answered INVALID_ARGUMENT with ``ErrorInfo``
  (reason ``MALFORMED_REQUEST``) on every kind of RPC, instead of grpcio's UNKNOWN: the deserializer never raises,
  it hands on a marker that the call (or the request stream, at that message) turns into the error.
- **Drain.** Once the server stops taking calls (``refuse_new``), a call that raced the shutdown is answered
  UNAVAILABLE; when the grace runs out (``expire``) the calls still open are aborted with UNAVAILABLE, never
  CANCELLED, because gRPC retry policies and Envoy's ``retry_on`` retry the former and not the latter.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc

from service.api.errors import abort_with
from service.api.handlers import Handler, HandlerInterceptor, Metadata
from service.errors import MalformedRequestError, ShuttingDownError

__all__ = ["CallLifecycle"]

log = logging.getLogger("sightline.access")

_HEALTH_PREFIX = "/grpc.health."
_SHUTDOWN_RETRY_S = 0.5


class _Malformed:
    """What a request that failed to parse becomes, so that the call, not grpcio, answers it."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    owner = getattr(deserializer, "__self__", None)  # a generated ``Message.FromString``
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "its protobuf message"))


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> tuple[Callable[[bytes], Any] | None, str]:
    if deserializer is None:
        return None, "its protobuf message"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or whatever a custom deserializer raises on bad bytes
            return _Malformed(exc)

    return parse, _message_name(deserializer)


class CallLifecycle(HandlerInterceptor):
    """The outermost server interceptor (first in the server's list); also the handle the drain works through."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[Any], str] = {}
        self._refusing = False
        self._expired = False
        self._changed = asyncio.Event()  # a call ended

    @property
    def busy(self) -> int:
        """Calls open but health checks and watches, which never end by themselves."""
        return sum(not method.startswith(_HEALTH_PREFIX) for method in self._calls.values())

    def refuse_new(self) -> None:
        """From now on, new calls (but health checks) are answered UNAVAILABLE."""
        self._refusing = True

    async def settle(self, timeout_s: float) -> None:
        """Wait until no call but health watches is open, for at most ``timeout_s`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout_s)):
                while self.busy:
                    self._changed.clear()
                    await self._changed.wait()

    async def expire(self) -> None:
        """Abort every call still open with UNAVAILABLE and wait until they have ended."""
        self._expired = True
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=2.0)

    def wrap(self, handler: Handler, method: str, metadata: Metadata) -> Handler:
        deserializer, message = _tolerant(handler.request_deserializer)
        kwargs: dict[str, Any] = {
            "request_deserializer": deserializer,
            "response_serializer": handler.response_serializer,
        }
        request_streaming = bool(handler.request_streaming)
        behaviour = cast(
            Callable[..., Any],
            handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream,
        )

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._calls[task] = method
            try:
                if self._refusing and not method.startswith(_HEALTH_PREFIX):
                    await abort_with(context, ShuttingDownError(retry_after_s=_SHUTDOWN_RETRY_S))
                if request_streaming:
                    request = _checked(request, message)
                elif isinstance(request, _Malformed):
                    log.info("%s INVALID_ARGUMENT: the request does not parse as %s", method, message)
                    await abort_with(context, _malformed(message, request.error))
                if not handler.response_streaming:
                    return await behaviour(request, context)
                if inspect.isasyncgenfunction(behaviour):
                    await _write_all(behaviour(request, context), context)
                    return None
                return await behaviour(request, context)  # a coroutine handler writes with context.write itself
            except asyncio.CancelledError:
                if not self._expired:
                    raise
                task.uncancel()
                await abort_with(context, ShuttingDownError(retry_after_s=_SHUTDOWN_RETRY_S))
            finally:
                self._calls.pop(task, None)
                self._changed.set()

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(call, **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(call, **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(call, **kwargs)
        return grpc.stream_stream_rpc_method_handler(call, **kwargs)


async def _write_all(responses: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Write every response of a generator handler, and close it in this task however the call ends."""
    async with contextlib.aclosing(cast(Any, responses)) as items:
        async for item in items:
            await context.write(item)


async def _checked(requests: AsyncIterator[Any], message: str) -> AsyncIterator[Any]:
    """The request stream, failing with INVALID_ARGUMENT at the first message that did not parse."""
    async for request in requests:
        if isinstance(request, _Malformed):
            raise _malformed(message, request.error)
        yield request


def _malformed(message: str, error: Exception) -> MalformedRequestError:
    detail = str(error)[:200] or type(error).__name__
    return MalformedRequestError(f"the request does not parse as a {message} message ({detail}); send a valid one")
