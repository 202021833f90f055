"""Versions checked against the tensors the network serves, without Triton: the registry's ``Versions`` over a
real SQLite store and a ``FakeTritonGateway`` that serves the public colors network's signature (or another one a
test gives), and ``Specifications`` beside it."""

from __future__ import annotations

from typing import Any

import pytest

from service.catalog import Catalog
from service.domain import ClassificationPostProcessing
from service.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from service.registry.specs import Specifications, Versions
from service.store import Store
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature, TensorSignature
from tests.fakes import FakeTritonGateway
from tests.helpers import ROOT

CATALOG = Catalog.load(ROOT / "model_repository")
LABELS = ["red", "green", "blue", "yellow", "black", "white"]


def colors_signature(shares: int = 6) -> Signature:
    return Signature(
        (TensorSignature("data", "FP32", (-1, 3, 64, 64)),), (TensorSignature("share", "FP32", (-1, shares)),), 32
    )


def spec_body(labels: list[str] = LABELS) -> dict[str, Any]:
    return {
        "name": "my colours",
        "outputs": [{"labels": {"labels": [{"id": i, "name": n} for i, n in enumerate(labels)], "exclusive": True}}],
    }


def classification(tensor: str = "share") -> dict[str, Any]:
    return {"classification": {"output_tensor": tensor}}


def versions(store: Store, signature: Signature | None = None) -> tuple[Versions, FakeTritonGateway]:
    gateway = FakeTritonGateway({"colors": signature or colors_signature()}, {"colors": lambda call: {}})
    checked: TritonGateway = gateway
    return Versions(CATALOG, store, checked), gateway


async def test_a_version_over_a_public_network_is_checked_against_what_triton_serves(store: Store) -> None:
    spec = await Specifications(CATALOG, store).create("acme", spec_body())
    made, gateway = versions(store)
    version = await made.create("acme", spec.id, "colors", [classification()])
    assert version.post_processings == (ClassificationPostProcessing("share"),)
    assert (version.spec_id, version.network_id) == (spec.id, "colors")
    assert (await made.get("acme", version.id)).id == version.id
    assert gateway.calls == []  # read the signature, ran nothing


async def test_a_tensor_the_network_does_not_serve_is_named_with_the_ones_it_does(store: Store) -> None:
    spec = await Specifications(CATALOG, store).create("acme", spec_body())
    made, _ = versions(store)
    with pytest.raises(
        InvalidArgumentError, match=r"'prob' is not an output of network 'colors' \(its outputs: share\)"
    ):
        await made.create("acme", spec.id, "colors", [classification("prob")])
    assert (await made.page("acme", spec.id, 0, 10))[0] == 0


async def test_an_output_holding_another_count_than_the_labels_is_refused(store: Store) -> None:
    spec = await Specifications(CATALOG, store).create("acme", spec_body())
    made, _ = versions(store, colors_signature(shares=5))
    with pytest.raises(InvalidArgumentError, match="'share' holds 5 values for 6 labels"):
        await made.create("acme", spec.id, "colors", [classification()])
    # An output of any size (-1) cannot be checked here, and is accepted.
    any_size, _ = versions(store, colors_signature(shares=-1))
    assert (await any_size.create("acme", spec.id, "colors", [classification()])).network_id == "colors"


async def test_public_specifications_and_their_versions_are_read_only(store: Store) -> None:
    specs = Specifications(CATALOG, store)
    with pytest.raises(PermissionDeniedError, match="public"):
        await specs.update("acme", "colors-v1", {"name": "mine"})
    made, _ = versions(store)
    with pytest.raises(PermissionDeniedError, match="public"):
        await made.create("acme", "colors-v1", "colors", [classification()])
    with pytest.raises(PermissionDeniedError, match="public"):
        await made.delete("acme", "colors-v1.1")


async def test_an_organisation_sees_its_own_and_the_public_ones_only(store: Store) -> None:
    specs = Specifications(CATALOG, store)
    mine = await specs.create("acme", spec_body())
    with pytest.raises(NotFoundError):
        await specs.get("globex", mine.id)
    total, page = await specs.page("globex", 0, 1000)
    assert mine.id not in [s.id for s in page]
    assert total == len(CATALOG.specifications())
    total_acme, page_acme = await specs.page("acme", 0, 1000)
    assert total_acme == total + 1
    assert page_acme[-1].id == mine.id  # the public ones first
