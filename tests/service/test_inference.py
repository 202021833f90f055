"""InferNetwork's use case without Triton: a real ``NetworkInference`` (decoding, the colors network's
preprocessing) over a ``FakeTritonGateway`` and a resolver stub. What it sends (batch axis, dtype), which outputs it
asks for and under which names it answers them (a converted network's uploaded names as well as the served ones),
and what it refuses before calling the network."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service.catalog import Catalog
from service.domain import ImageRequest
from service.errors import FailedPreconditionError, InvalidArgumentError
from service.inference import NetworkInference, RunnableNetwork
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeCall, FakeTritonGateway
from tests.helpers import ROOT

CATALOG = Catalog.load(ROOT / "model_repository")


def served(batch: int = 32, dtype: str = "FP32", inputs: tuple[str, ...] = ("data",), first: int = 1) -> Signature:
    """The colors model as Triton serves it: ``data`` (3, 64, 64) in, ``share`` (6) and ``votes`` (6) out; without
    batching, each tensor's first axis is ``first`` (1: a graph with a batch axis of its own; 0: none)."""
    front = (-1,) if batch else ((first,) if first else ())
    return Signature(
        tuple(TensorSignature(name, dtype, (*front, 3, 64, 64)) for name in inputs),
        (TensorSignature("share", "FP32", (*front, 6)), TensorSignature("votes", "FP32", (*front, 6))),
        batch,
    )


def answer(call: FakeCall) -> dict[str, npt.NDArray[Any]]:
    lead = call.inputs["data"].shape[:-3]
    return {
        "share": np.full((*lead, 6), 0.5, dtype=np.float32),
        "votes": np.arange(6, dtype=np.float32).reshape(*([1] * len(lead)), 6),
    }


class Networks:
    """The registry's side: the colors network under a model name, with the names its signature maps."""

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.signature = Signature((), (), 0, names or {})
        self.asked: list[tuple[str, str]] = []

    async def runnable(self, org: str, network_id: str) -> RunnableNetwork:
        self.asked.append((org, network_id))
        return RunnableNetwork(CATALOG.network("colors"), CATALOG.means("colors"), "net-7", self.signature)


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> ImageRequest:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format="PNG")
    return ImageRequest(content=buffer.getvalue())


def inference(gateway: FakeTritonGateway, networks: Networks | None = None) -> NetworkInference:
    checked: TritonGateway = gateway
    return NetworkInference(networks or Networks(), checked, max_image_pixels=1_000_000)


async def test_the_outputs_asked_for_come_back_and_only_they_are_asked_of_triton() -> None:
    gateway = FakeTritonGateway({"net-7": served()}, {"net-7": answer})
    networks = Networks()
    got = await inference(gateway, networks).infer("acme", "7", png(), ["votes"])
    assert list(got) == ["votes"]
    assert got["votes"].tolist() == [[0, 1, 2, 3, 4, 5]]
    [call] = gateway.calls
    assert (call.model, call.outputs) == ("net-7", ("votes",))
    assert networks.asked == [("acme", "7")]


async def test_with_no_output_asked_every_output_comes_back_by_its_served_name() -> None:
    gateway = FakeTritonGateway({"net-7": served()}, {"net-7": answer})
    got = await inference(gateway).infer("acme", "7", png(), [])
    assert sorted(got) == ["share", "votes"]
    assert gateway.calls[0].outputs == ("share", "votes")


async def test_an_uploaded_name_is_answered_under_that_name_and_asked_under_the_served_one() -> None:
    gateway = FakeTritonGateway({"net-7": served()}, {"net-7": answer})
    networks = Networks({"share:0": "share"})
    got = await inference(gateway, networks).infer("acme", "7", png(), ["share:0", "share"])
    assert sorted(got) == ["share", "share:0"]
    np.testing.assert_array_equal(got["share:0"], got["share"])
    assert gateway.calls[0].outputs == ("share",)  # one served tensor, asked once


async def test_an_output_the_network_lacks_is_the_callers_error_before_any_work() -> None:
    gateway = FakeTritonGateway({"net-7": served()}, {"net-7": answer})
    with pytest.raises(InvalidArgumentError, match=r"'boxes' is not an output of network '7' \(share, votes\)") as e:
        await inference(gateway).infer("acme", "7", png(), ["share", "boxes"])
    assert [v.field for v in e.value.violations] == ["output_tensors[1]"]
    assert gateway.calls == []


async def test_an_empty_network_id_is_refused_without_asking_the_registry() -> None:
    networks = Networks()
    with pytest.raises(InvalidArgumentError, match="network_id"):
        await inference(FakeTritonGateway({}, {}), networks).infer("acme", "", png(), [])
    assert networks.asked == []


async def test_a_batching_model_gets_a_batch_of_one_in_its_declared_dtype() -> None:
    gateway = FakeTritonGateway({"net-7": served(dtype="FP16")}, {"net-7": answer})
    await inference(gateway).infer("acme", "7", png(), ["share"])
    data = gateway.calls[0].inputs["data"]
    assert data.shape == (1, 3, 64, 64)
    assert data.dtype == np.float16


@pytest.mark.parametrize(("first", "shape"), [(1, (1, 3, 64, 64)), (0, (3, 64, 64))])
async def test_a_model_triton_does_not_batch_gets_a_batch_axis_only_if_its_graph_has_one(
    first: int, shape: tuple[int, ...]
) -> None:
    gateway = FakeTritonGateway({"net-7": served(batch=0, first=first)}, {"net-7": answer})
    await inference(gateway).infer("acme", "7", png(), ["share"])
    assert gateway.calls[0].inputs["data"].shape == shape


async def test_a_preprocessed_input_the_served_model_lacks_is_a_failed_precondition() -> None:
    gateway = FakeTritonGateway({"net-7": served(inputs=("image",))}, {"net-7": answer})
    with pytest.raises(FailedPreconditionError, match="has no input 'data'"):
        await inference(gateway).infer("acme", "7", png(), ["share"])
    assert gateway.calls == []
