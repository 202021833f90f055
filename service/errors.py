"""Domain errors: what went wrong, in the service's words. They know nothing of gRPC.

The API layer maps each class to a status code in one table (``service.api.errors``), looked up along the MRO.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from dataclasses import dataclass

__all__ = [
    "AlreadyExistsError",
    "ConfigurationError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InferenceFailedError",
    "InvalidArgumentError",
    "MalformedRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ShuttingDownError",
    "SightlineError",
    "SourceUnavailableError",
    "StorageFullError",
    "UnavailableError",
    "as_domain_error",
    "quote",
    "without_paths",
]


_QUOTE_LIMIT = 64


def quote(value: str) -> str:
    """``repr(value)``, cut to a short prefix when long: messages echo user input, but never all of it (a 1 MB id
    in a status message would overflow gRPC's header limits and hide the real error)."""
    if len(value) <= _QUOTE_LIMIT:
        return repr(value)
    return f"{value[:_QUOTE_LIMIT]!r}… ({len(value)} characters)"


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/(?:[\w.+@-]+/)+([\w.+@-]+)")


def without_paths(text: str) -> str:
    """``text`` with every absolute file path cut to its last part: a library's error message
    (``Load model from /srv/.../staging/<id>/1/model.onnx failed``) must not tell clients the server's layout."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: ``field`` is a dotted path such as ``inputs[0].image.bbox.xmin``."""

    field: str
    description: str


class SightlineError(Exception):
    """Base of every error the service raises on purpose; ``reason`` is a stable UPPER_SNAKE identifier."""

    reason = "SIGHTLINE_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(SightlineError):
    """The request itself is wrong; resending it unchanged will fail again."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgumentError:
        """An error about one field, whose message names the field."""
        return cls(f"{field}: {description}", (FieldViolation(field, description),))


class MalformedRequestError(InvalidArgumentError):
    """The request's bytes do not parse as the protobuf message of the method called."""

    reason = "MALFORMED_REQUEST"


class NotFoundError(SightlineError):
    """A resource the request names does not exist (or is not visible to the caller)."""

    reason = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(f"{resource_type} {quote(resource_id)} not found")
        self.resource_type = resource_type
        self.resource_id = resource_id


class AlreadyExistsError(SightlineError):
    reason = "ALREADY_EXISTS"


class FailedPreconditionError(SightlineError):
    """The request is valid but the system is not in a state to serve it (e.g. a spec without a version)."""

    reason = "FAILED_PRECONDITION"


class InferenceFailedError(FailedPreconditionError):
    """The inference server ran the network and it failed; the same request will fail again."""

    reason = "INFERENCE_FAILED"


class ResourceExhaustedError(SightlineError):
    """A limit was reached (queue full, image too large); the client may retry later or send less."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageFullError(ResourceExhaustedError):
    """The server's storage (its disk, a quota, a file-size limit, its database's disk) had no room for what a
    request wrote; what the request had written was removed or rolled back."""

    reason = "STORAGE_FULL"

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(
            f"the server's storage is full ({cause}): nothing of this request was kept; retry later, once the "
            "server's operator has made room (the server logged it)"
        )


# ENOSPC: the disk; EDQUOT: a quota; EFBIG: a file-size limit (RLIMIT_FSIZE, the file system's largest file).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_POSTGRES_DISK_FULL = "53100"


def as_domain_error(exc: BaseException) -> SightlineError | None:
    """``exc`` as the domain error it stands for, or None for a fault of the server's own.

    Beyond the service's own errors, storage that runs out is a condition of the server, not a bug, wherever it
    is met (staging an upload, writing a model folder, a database write): SQLite's SQLITE_FULL and PostgreSQL's
    ``disk_full`` (SQLSTATE 53100) too.
    """
    if isinstance(exc, SightlineError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        return StorageFullError(os.strerror(exc.errno))
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StorageFullError("the database's disk is full")
    if getattr(exc, "sqlstate", None) == _POSTGRES_DISK_FULL:
        return StorageFullError("the database's disk is full")
    return None


class UnavailableError(SightlineError):
    """The inference server (or a model on it) cannot answer now; retrying later may work."""

    reason = "TRITON_UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDownError(UnavailableError):
    """This server is draining: the call may be retried at once, on another replica."""

    reason = "SERVER_SHUTTING_DOWN"

    def __init__(self, retry_after_s: float | None = 0.5) -> None:
        super().__init__("this server is shutting down; retry the call (another replica will take it)", retry_after_s)


class SourceUnavailableError(UnavailableError):
    """An image source (a URL) could not be reached or answered with a server error; retrying later may work."""

    reason = "SOURCE_UNAVAILABLE"


class PermissionDeniedError(SightlineError):
    """The server's policy forbids what the request asks (e.g. fetching from a private address)."""

    reason = "PERMISSION_DENIED"


class DeadlineExceededError(SightlineError):
    """A server-side time limit ran out (e.g. fetching an image source took too long)."""

    reason = "DEADLINE_EXCEEDED"


class ConfigurationError(ValueError):
    """The service cannot start with these settings: the message names the setting (its ``SIGHTLINE_*``
    variable), the value and what to give instead. Not a request's error (no status): the ``sightline`` command
    prints it and exits with 2."""
