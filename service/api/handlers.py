"""Rewrapping gRPC method handlers, for the server interceptors (observability, authentication)."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

__all__ = ["HandlerInterceptor", "Metadata", "wrap_handler"]

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # a string: grpc's class is generic only in its stubs
Metadata = tuple[tuple[str, str], ...]
"""A call's text metadata, every entry in order (a key sent twice is there twice)."""
Unary = Callable[[Any, Any], Awaitable[Any]]
Streaming = Callable[[Any, Any], AsyncGenerator[Any]]


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary: Callable[[Unary], Unary],
    streaming: Callable[[Streaming], Streaming],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler with its behaviour wrapped: ``unary`` for calls answered once (unary-unary and
    stream-unary), ``streaming`` for calls answered by a stream (unary-stream and stream-stream)."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(cast(Unary, handler.unary_unary)), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(cast(Streaming, handler.unary_stream)), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(cast(Unary, handler.stream_unary)), **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming(cast(Streaming, handler.stream_stream)), **kwargs)


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that rewraps the handler of each method: subclasses give ``wrap``. Methods starting
    with one of ``skip`` (health, reflection ...) keep their handler."""

    skip: tuple[str, ...] = ()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or method.startswith(self.skip):
            return handler
        metadata = tuple((k, v) for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str))
        return self.wrap(handler, method, metadata)

    @abc.abstractmethod
    def wrap(self, handler: Handler, method: str, metadata: Metadata) -> Handler:
        """The handler to serve ``method`` with, built around ``handler``."""
