"""The REST facade's error answers: the gRPC status table (``service.api.errors``) mapped to HTTP statuses, and
the v0.7 JSON error body ``{"error": "<message>", "reason", "request_id", ...}``.

The HTTP status of each gRPC code follows Google's HTTP mapping (``google/rpc/code.proto``), with one change: a
RESOURCE_EXHAUSTED that retrying will not cure (an image or an upload above its limit) is 413, the one that
retrying may cure (the task queue or the decode budget full, with a retry delay) 429.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import grpc
from aiohttp import web

from service.api.errors import code_for
from service.errors import (
    InvalidArgumentError,
    NotFoundError,
    SightlineError,
    StorageFullError,
    as_domain_error,
    without_paths,
)
from service.observability import REQUEST_ID

__all__ = ["HttpError", "UnsupportedMediaType", "error_response", "http_status", "json_response"]

log = logging.getLogger(__name__)

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class HttpError(SightlineError):
    """An error of HTTP itself (no such path, a method the path does not take), with its status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class UnsupportedMediaType(HttpError):
    """A body in a media type the facade does not read."""

    def __init__(self, message: str) -> None:
        super().__init__(415, "UNSUPPORTED_MEDIA_TYPE", message)


def http_status(exc: SightlineError) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, HttpError):
        return exc.status
    if isinstance(exc, StorageFullError):
        return 507  # Insufficient Storage: neither the client's fault (413) nor a rate it can slow down to (429)
    code = code_for(exc)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and getattr(exc, "retry_after_s", None) is None:
        return 413
    return _HTTP_STATUS.get(code, 500)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (``Content-Type: application/json``), with the request id."""
    text = "" if status == 204 else json.dumps(body, ensure_ascii=False, allow_nan=False)
    response = web.Response(text=text, status=status, content_type="application/json", headers=headers)
    return response


def error_response(exc: BaseException) -> web.Response:
    """The JSON answer for an error; an unexpected one is logged and answered 500 without its text."""
    request_id = REQUEST_ID.get()
    body: dict[str, Any]
    headers: dict[str, str] = {}
    error = as_domain_error(exc)
    if error is not None and error is not exc:
        log.error("%s", error.message, exc_info=exc)  # the operator must act: say it where they look
    if error is not None:
        status = http_status(error)
        body = {"error": without_paths(error.message), "reason": error.reason, "request_id": request_id}
        if isinstance(error, InvalidArgumentError) and error.violations:
            body["field_violations"] = [
                {"field": v.field, "description": without_paths(v.description)} for v in error.violations
            ]
        if isinstance(error, NotFoundError):
            body["resource_type"], body["resource_id"] = error.resource_type, error.resource_id
        retry = getattr(error, "retry_after_s", None)
        if retry is not None:
            body["retry_after_s"] = retry
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
    else:
        log.error("unexpected error", exc_info=exc)
        status = 500
        body = {
            "error": f"internal error; the server logged the details (request id {request_id})",
            "reason": "INTERNAL",
            "request_id": request_id,
        }
    return json_response(body, status, headers)
