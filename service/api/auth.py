"""Authentication of every RPC: the caller's API key (gRPC metadata) → a ``Principal`` for the servicers.

Health and reflection stay open. A missing, unknown or revoked key is answered UNAUTHENTICATED; a read key
calling anything but inference PERMISSION_DENIED. The principal is set in a context variable for the duration
of the call, inside the handler (where the servicer runs), for unary and streaming RPCs alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from service.api.errors import abort_with
from service.api.handlers import Handler, HandlerInterceptor, Metadata, wrap_handler
from service.auth import PRINCIPAL, Authenticator, Principal

__all__ = ["AuthInterceptor"]


class AuthInterceptor(HandlerInterceptor):
    skip = ("/grpc.health.", "/grpc.reflection.")

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def wrap(self, handler: Handler, method: str, metadata: Metadata) -> Handler:
        guard = _Guard(self._authenticator, method, metadata)
        return wrap_handler(handler, guard.unary, guard.streaming)


class _Guard:
    def __init__(self, authenticator: Authenticator, method: str, metadata: Metadata) -> None:
        self._authenticator = authenticator
        self._method = method
        self._metadata = metadata

    async def _principal(self, request: Any, context: Any) -> Principal | None:
        try:
            principal = await self._authenticator.authenticate(self._metadata)
            self._authenticator.authorize(principal, self._method)
        except Exception as exc:
            await abort_with(context, exc, request)
            return None
        return principal

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: Any) -> Any:
            principal = await self._principal(request, context)
            token = PRINCIPAL.set(principal)
            try:
                return await behaviour(request, context)
            finally:
                PRINCIPAL.reset(token)

        return wrapper

    def streaming(self, behaviour: Callable[..., AsyncGenerator[Any]]) -> Callable[..., AsyncGenerator[Any]]:
        async def wrapper(request: Any, context: Any) -> AsyncGenerator[Any]:
            PRINCIPAL.set(await self._principal(request, context))
            async with contextlib.aclosing(behaviour(request, context)) as items:
                async for item in items:
                    yield item

        return wrapper
