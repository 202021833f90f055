"""The batching gateway over FakeTritonGateway: which calls share a request, each call's rows, errors, cancels."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from service.errors import InvalidArgumentError, UnavailableError
from service.observability import Metrics
from service.triton.batching import BatchingGateway
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway

BATCHED = Signature((TensorSignature("x", "FP32", (-1, 3)),), (TensorSignature("y", "FP32", (-1, 2)),), 4)
UNBATCHED = Signature((TensorSignature("x", "FP32", (1, 3)),), (TensorSignature("y", "FP32", (1, 2)),), 0)


def outputs(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    """Each row's own answer: its sum and its first value, so a row given to the wrong call shows."""
    x = call.inputs["x"]
    return {"y": np.stack([x.sum(axis=1), x[:, 0]], axis=1)}


def gateway(latency: float = 0.01, **kwargs: Any) -> tuple[FakeTritonGateway, BatchingGateway]:
    fake = FakeTritonGateway(
        {"m": BATCHED, "flat": UNBATCHED}, {"m": outputs, "flat": outputs}, latency={"m": latency, "flat": latency}
    )
    return fake, BatchingGateway(fake, **kwargs)


def image(i: int) -> dict[str, npt.NDArray[np.float32]]:
    return {"x": np.full((1, 3), float(i), dtype=np.float32)}


def expected(i: int) -> npt.NDArray[np.float32]:
    return np.array([[3.0 * i, float(i)]], dtype=np.float32)


async def test_a_lone_call_goes_alone_and_at_once() -> None:
    fake, batching = gateway()
    answer = await batching.infer("m", image(5), ["y"])
    np.testing.assert_array_equal(answer["y"], expected(5))
    assert len(fake.calls) == 1
    assert fake.calls[0].inputs["x"].shape == (1, 3)
    assert batching.batches == 0


async def test_concurrent_calls_share_requests_and_each_gets_its_own_rows() -> None:
    fake, batching = gateway(concurrency=1, max_batch=8)
    answers = await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(10)))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer["y"], expected(i))
    # Made in one turn of the loop, the calls wait for none: ten calls in the model's batches of at most 4, in order.
    assert [c.inputs["x"].shape[0] for c in fake.calls] == [4, 4, 2]
    assert np.concatenate([c.inputs["x"][:, 0] for c in fake.calls]).tolist() == list(range(10))
    assert batching.batches == 3
    assert batching.batched_calls == 10


async def test_calls_wait_only_while_the_kinds_requests_are_in_triton() -> None:
    fake, batching = gateway(concurrency=2, max_batch=8)
    first = asyncio.ensure_future(batching.infer("m", image(0), ["y"]))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batching.infer("m", image(1), ["y"]))
    await asyncio.sleep(0.001)
    assert [c.inputs["x"].shape[0] for c in fake.calls] == [1, 1]  # two requests may be in Triton: neither waited
    rest = [asyncio.ensure_future(batching.infer("m", image(i), ["y"])) for i in range(2, 5)]
    await asyncio.sleep(0.001)
    assert len(fake.calls) == 2  # the three wait for an answer
    await asyncio.gather(first, second, *rest)
    assert [c.inputs["x"].shape[0] for c in fake.calls] == [1, 1, 3]
    for i, call in enumerate([first, second, *rest]):
        np.testing.assert_array_equal(call.result()["y"], expected(i))


async def test_calls_of_other_kinds_are_not_mixed() -> None:
    fake, batching = gateway(concurrency=1)
    wide = {"x": np.ones((1, 4), dtype=np.float32)}
    await asyncio.gather(
        batching.infer("m", image(1), ["y"]),
        batching.infer("m", image(2), ["y"]),
        batching.infer("m", wide, ["y"]),
        batching.infer("m", {"x": np.ones((1, 3), dtype=np.float64)}, ["y"]),
        batching.infer("flat", image(3), ["y"]),
        batching.infer("m", {"x": np.ones((2, 3), dtype=np.float32)}, ["y"]),
    )
    shapes = sorted((c.model, c.inputs["x"].shape, c.inputs["x"].dtype.str) for c in fake.calls)
    assert shapes == [
        ("flat", (1, 3), "<f4"),
        ("m", (1, 3), "<f8"),
        ("m", (1, 4), "<f4"),
        ("m", (2, 3), "<f4"),  # already a batch: goes as it is
        ("m", (2, 3), "<f4"),  # the two one-image calls of one kind, together
    ]


async def test_max_batch_one_sends_every_call_alone() -> None:
    fake, batching = gateway(max_batch=1)
    await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(5)))
    assert [c.inputs["x"].shape[0] for c in fake.calls] == [1] * 5


async def test_a_rejected_batch_is_asked_again_one_call_at_a_time() -> None:
    fake, batching = gateway(concurrency=1)

    def fail(call: FakeCall) -> Exception | None:
        return InvalidArgumentError("bad image") if bool((call.inputs["x"] == 3).any()) else None

    fake.fail = fail
    results = await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(4)), return_exceptions=True)
    assert isinstance(results[3], InvalidArgumentError)
    for i in range(3):
        answer = results[i]
        assert isinstance(answer, dict)
        np.testing.assert_array_equal(answer["y"], expected(i))
    assert [c.inputs["x"].shape[0] for c in fake.calls] == [4, 1, 1, 1, 1]


async def test_a_transient_failure_is_every_calls_without_asking_again() -> None:
    fake, batching = gateway(concurrency=1)
    fake.fail = lambda call: UnavailableError("Triton is away")
    results = await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, UnavailableError) for r in results)
    assert len({id(r) for r in results}) == 3  # one exception each: raised in three tasks
    assert len(fake.calls) == 1


async def test_a_cancelled_waiting_call_is_left_out_and_a_sent_ones_rows_are_dropped() -> None:
    release = asyncio.Event()
    fake = FakeTritonGateway({"m": BATCHED}, {"m": outputs}, latency={"m": lambda call: release})
    batching = BatchingGateway(fake, concurrency=1)
    sent = asyncio.ensure_future(batching.infer("m", image(0), ["y"]))
    await asyncio.sleep(0.001)
    waiting = [asyncio.ensure_future(batching.infer("m", image(i), ["y"])) for i in (1, 2, 3)]
    await asyncio.sleep(0.001)
    waiting[1].cancel()
    sent.cancel()
    release.set()
    done = await asyncio.gather(waiting[0], waiting[2])
    np.testing.assert_array_equal(done[0]["y"], expected(1))
    np.testing.assert_array_equal(done[1]["y"], expected(3))
    assert [c.inputs["x"][:, 0].tolist() for c in fake.calls] == [[0.0], [1.0, 3.0]]
    assert sent.cancelled()
    assert waiting[1].cancelled()


async def test_a_batch_answered_with_the_wrong_rows_fails_its_calls() -> None:
    fake = FakeTritonGateway({"m": BATCHED}, {"m": lambda call: {"y": np.zeros((1, 2), np.float32)}})
    batching = BatchingGateway(fake, concurrency=1)
    results = await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(2)), return_exceptions=True)
    assert all(isinstance(r, UnavailableError) and "1 rows for a batch of 2" in str(r) for r in results)


async def test_unknown_models_fail_as_the_gateway_says() -> None:
    _, batching = gateway()
    with pytest.raises(Exception, match="model"):
        await batching.infer("nope", image(0), ["y"])


async def test_the_batch_sizes_are_measured() -> None:
    metrics = Metrics()
    _, batching = gateway(concurrency=1, metrics=metrics)
    await asyncio.gather(*(batching.infer("m", image(i), ["y"]) for i in range(6)))
    count = metrics.registry.get_sample_value("sightline_triton_batch_images_count", {"model": "m"})
    total = metrics.registry.get_sample_value("sightline_triton_batch_images_sum", {"model": "m"})
    assert (count, total) == (2.0, 6.0)


async def test_every_other_method_is_the_wrapped_gateways() -> None:
    fake, batching = gateway()
    assert await batching.model_info("m") == BATCHED
    assert await batching.model_ready("m")
    assert await batching.server_live()
    await batching.unload_model("m")
    assert await batching.loaded_models() == {"flat"}
    await batching.load_model("m")
    assert await batching.loaded_models() == {"flat", "m"}
    await batching.close()
    assert fake.closed


async def test_closing_with_calls_in_flight_leaves_no_caller_waiting() -> None:
    release = asyncio.Event()
    fake = FakeTritonGateway({"m": BATCHED}, {"m": outputs}, latency={"m": lambda call: release})
    batching = BatchingGateway(fake, concurrency=1)
    calls = [asyncio.ensure_future(batching.infer("m", image(i), ["y"])) for i in range(3)]
    await asyncio.sleep(0.001)
    await batching.close()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1.0)
    assert all(isinstance(r, UnavailableError) for r in results), results


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchingGateway(FakeTritonGateway({}, {}), max_batch=0)
