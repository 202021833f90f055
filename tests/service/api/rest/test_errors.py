"""The REST facade's error answers: the HTTP status of each domain error, and the JSON body a client reads."""

from __future__ import annotations

import errno
import json

import pytest

from service.api.rest.errors import HttpError, error_response, http_status
from service.errors import (
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    ShuttingDownError,
    SightlineError,
    StorageFullError,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgumentError.field("name", "must not be empty"), 400),
        (NotFoundError("network", "7"), 404),
        (ResourceExhaustedError("too many pending tasks", retry_after_s=1.0), 429),
        (ResourceExhaustedError("the image is larger than the limit"), 413),
        (StorageFullError("No space left on device"), 507),
        (ShuttingDownError(), 503),
        (HttpError(405, "METHOD_NOT_ALLOWED", "GET only"), 405),
        (SightlineError("a fault"), 500),
    ],
)
def test_each_domain_error_has_its_http_status(error: SightlineError, status: int) -> None:
    assert http_status(error) == status


def body(response: object) -> dict[str, object]:
    text = getattr(response, "text", None)
    assert isinstance(text, str)
    decoded = json.loads(text)
    assert isinstance(decoded, dict)
    return decoded


def test_a_full_disk_is_answered_507_with_what_happened_not_an_internal_error() -> None:
    response = error_response(OSError(errno.ENOSPC, "No space left on device"))
    assert response.status == 507
    answer = body(response)
    assert answer["reason"] == "STORAGE_FULL"
    assert "No space left on device" in str(answer["error"])


def test_an_unexpected_error_is_500_without_its_text() -> None:
    response = error_response(RuntimeError("secret internals at /srv/app"))
    assert response.status == 500
    answer = body(response)
    assert answer["reason"] == "INTERNAL"
    assert "secret" not in str(answer["error"])


def test_field_violations_and_retry_delays_reach_the_body_and_headers() -> None:
    invalid = body(error_response(InvalidArgumentError.field("files[0].name", "no folders")))
    assert invalid["field_violations"] == [{"field": "files[0].name", "description": "no folders"}]
    busy = error_response(ResourceExhaustedError("too many pending tasks", retry_after_s=1.5))
    assert busy.headers["Retry-After"] == "2"
    assert body(busy)["retry_after_s"] == 1.5
