"""Client-side helpers for the CLI: a channel that sends the API key with every call."""

from __future__ import annotations

import os
from typing import Any

import grpc

__all__ = ["API_KEY_ENV", "channel"]

API_KEY_ENV = "SIGHTLINE_API_KEY"


class _ApiKey(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, key: str) -> None:
        self._metadata = ("authorization", f"Bearer {key}")

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._metadata)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def channel(server: str, api_key: str | None = None) -> grpc.aio.Channel:
    """An insecure channel to ``server`` that sends ``api_key`` (default: $SIGHTLINE_API_KEY) as a bearer token."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    interceptors = [_ApiKey(key)] if key else None
    return grpc.aio.insecure_channel(
        server, interceptors=interceptors, options=[("grpc.max_send_message_length", 64 << 20)]
    )
