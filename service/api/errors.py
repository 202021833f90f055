"""One table from domain errors to gRPC status codes, and the decorators that apply it to every RPC.

Statuses carry ``google.rpc`` details where they help a client act: ``ErrorInfo`` (a stable reason) always,
``BadRequest`` field violations, ``ResourceInfo`` for what was not found, ``RetryInfo`` when retrying may work.
Unknown exceptions are logged with their traceback and reach the client as INTERNAL with a generic message.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.api.linger import linger
from service.auth import UnauthenticatedError
from service.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ShuttingDownError,
    SightlineError,
    UnavailableError,
    as_domain_error,
    without_paths,
)
from service.observability import REQUEST_ID

__all__ = ["STATUS_TABLE", "abort_with", "code_for", "grpc_errors", "grpc_stream_errors", "to_status"]

log = logging.getLogger(__name__)

DOMAIN = "sightline.dev"

STATUS_TABLE: dict[type[SightlineError], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    SightlineError: grpc.StatusCode.INTERNAL,
}


def code_for(exc: SightlineError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return grpc.StatusCode.INTERNAL


def _request_metadata() -> dict[str, str]:
    request_id = REQUEST_ID.get()
    return {"request_id": request_id} if request_id != "-" else {}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(exc: SightlineError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a domain error."""
    code = code_for(exc)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=_request_metadata()))]
    if isinstance(exc, InvalidArgumentError) and exc.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_bounded(v.field, 200), description=_bounded(without_paths(v.description), 500)
                        )
                        for v in exc.violations
                    ]
                )
            )
        )
    if isinstance(exc, NotFoundError):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=exc.resource_type,
                    resource_name=_bounded(exc.resource_id, 200),
                    description=_bounded(exc.message),
                )
            )
        )
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code.value[0], message=_bounded(without_paths(exc.message)), details=details)


def _wire_size(char: str) -> int:
    """Bytes a character takes in ``grpc-message``, which percent-encodes '%' and every non-ASCII byte."""
    if " " <= char <= "~" and char != "%":
        return 1
    return 3 * len(char.encode("utf-8"))


def _bounded(text: str, limit: int = 1000) -> str:
    """A status message or detail cut to ``limit`` bytes as sent: they travel in headers, which clients cap
    (8 KiB by default, all headers together), and a 1000-character message of 'é' is 6 KB there."""
    if len(text) * 12 <= limit or sum(_wire_size(c) for c in text[: limit + 1]) <= limit:
        return text  # (a character is at most 12 bytes there, and at least 1)
    used = 0
    for i, char in enumerate(text):
        used += _wire_size(char)
        if used > limit - 3:  # room for the ellipsis
            return text[:i] + "…"
    return text


def _internal_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; the server logged the details (request id {REQUEST_ID.get()})",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN, metadata=_request_metadata()))],
    )


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, request: object = None) -> None:
    """Abort the RPC with the status of ``exc`` (INTERNAL, without its text, for an unexpected one).

    ``request``, when it is a client stream, is read to its end first (bounded: ``service.api.linger``), so that
    the client hears the status rather than INTERNAL; not for a drain's refusal, whose grace is for answering.
    """
    if hasattr(request, "__aiter__") and not isinstance(exc, ShuttingDownError):
        await linger(cast(AsyncIterator[Message], request))
    error = as_domain_error(exc)
    if error is None:
        log.error("unexpected error", exc_info=exc)
        status = _internal_status()
    else:
        if error is not exc:
            log.error("%s", error.message, exc_info=exc)  # the operator must act: say it where they look
        status = to_status(error)
    await context.abort_with_status(_with_request_id(rpc_status.to_status(status)))


@dataclass(frozen=True, slots=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _with_request_id(status: grpc.Status) -> grpc.Status:
    """The status with the call's request id in its trailing metadata too: aborting replaces the trailers set
    when the call began, and a client should find the id where it finds it on success."""
    request_id = REQUEST_ID.get()
    if request_id == "-":
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, ("x-request-id", request_id)))


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


def grpc_errors(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Apply the status table to a unary RPC handler."""

    @functools.wraps(method)
    async def wrapper(self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc, request)
            raise AssertionError("unreachable: abort raises") from exc

    return wrapper


def grpc_stream_errors(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncGenerator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncGenerator[Resp]]:
    """Apply the status table to a streaming RPC handler (an async generator)."""

    @functools.wraps(method)
    async def wrapper(self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> AsyncGenerator[Resp]:
        try:
            async with contextlib.aclosing(method(self, request, context)) as items:
                async for item in items:
                    yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc, request)

    return wrapper
