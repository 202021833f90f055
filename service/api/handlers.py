"""Rewrapping gRPC method handlers, for the server interceptors (observability, authentication)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

import grpc

__all__ = ["wrap_handler"]

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
