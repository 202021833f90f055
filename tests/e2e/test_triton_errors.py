"""Triton's failures reach clients classified by Triton's gRPC status code: only those that may pass are
UNAVAILABLE (with RetryInfo); a request Triton refuses is INVALID_ARGUMENT, a network that fails is
INFERENCE_FAILED (FAILED_PRECONDITION), and neither invites a retry."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from service.errors import (
    InferenceFailedError,
    InvalidArgumentError,
    NotFoundError,
    SightlineError,
    UnavailableError,
)
from service.triton.gateway import GrpcTritonGateway, _domain_error
from tests.helpers import TritonFixture


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.UNAVAILABLE", UnavailableError),
        ("StatusCode.DEADLINE_EXCEEDED", UnavailableError),
        ("StatusCode.RESOURCE_EXHAUSTED", UnavailableError),
        (None, UnavailableError),  # tritonclient's own failure before any answer
        ("StatusCode.INVALID_ARGUMENT", InvalidArgumentError),
        ("StatusCode.UNIMPLEMENTED", InvalidArgumentError),
        ("StatusCode.NOT_FOUND", NotFoundError),
        ("StatusCode.INTERNAL", InferenceFailedError),
        ("StatusCode.UNKNOWN", InferenceFailedError),
    ],
)
def test_classified_by_status_code(status: str | None, expected: type[SightlineError]) -> None:
    # The text says "unavailable" on purpose: the code decides, not the words.
    error = _domain_error(InferenceServerException("model is unavailable, not found", status=status), "m")
    assert type(error) is expected
    assert (getattr(error, "retry_after_s", None) is not None) is (expected is UnavailableError)


async def test_a_shape_triton_refuses_is_invalid_argument(triton: TritonFixture) -> None:
    gateway = GrpcTritonGateway(triton.url)
    try:
        with pytest.raises(InvalidArgumentError, match="rejected its inputs"):
            await gateway.infer("colors", {"data": np.zeros((1, 3, 32, 32), np.float32)}, ["share"])
        with pytest.raises(InvalidArgumentError):
            await gateway.infer("colors", {"data": np.zeros((1, 3, 64, 64), np.int32)}, ["share"])
        shares = await gateway.infer("colors", {"data": np.zeros((1, 3, 64, 64), np.float32)}, ["share"])
        assert shares["share"].shape == (1, 6)
        assert gateway.in_flight == 0
    finally:
        await gateway.close()


async def test_an_unreachable_triton_is_unavailable() -> None:
    gateway = GrpcTritonGateway("127.0.0.1:1", timeout_s=2)
    try:
        with pytest.raises(UnavailableError) as caught:
            await gateway.infer("colors", {"data": np.zeros((1, 3, 64, 64), np.float32)}, ["share"])
        assert caught.value.retry_after_s is not None
    finally:
        await gateway.close()
