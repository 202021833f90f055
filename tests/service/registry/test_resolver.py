"""What a target or a network id runs (``Resolver``), over a real SQLite store and a model repository in a
temporary folder: public resources from the catalog, the organisation's from its rows, with the tensor names as
served and the mean arrays read from the network's folder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.catalog import Catalog
from service.domain import ClassificationPostProcessing, Target
from service.errors import FailedPreconditionError, NotFoundError, UnavailableError
from service.registry.means import MeanCache
from service.registry.resolver import Resolver
from service.store import NetworkRecord, Store
from service.tasks import TaskRunner
from service.triton.repository import ModelRepository
from service.triton.tensors import Signature, TensorSignature
from tests.helpers import ROOT
from tests.service.registry.helpers import image_input, preprocessing_body

CATALOG = Catalog.load(ROOT / "model_repository")
SPEC_OUTPUTS = [{"labels": {"labels": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}], "exclusive": True}}]
# A converted network: uploaded as image:0 / prob:0, served as image / prob.
SIGNATURE = Signature(
    (TensorSignature("image", "FP32", (-1, 3, 8, 8)),),
    (TensorSignature("prob", "FP32", (-1, 2)),),
    8,
    {"image:0": "image", "prob:0": "prob"},
)


def preprocessing(mean_file: str = "") -> dict[str, Any]:
    return preprocessing_body(image_input("image:0", mean_file))


async def add_network(
    store: Store,
    repository: ModelRepository,
    org: str = "acme",
    *,
    ready: bool = True,
    signature: Signature = SIGNATURE,
    mean: list[float] | None = None,
) -> NetworkRecord:
    def place(network_id: str) -> None:
        folder = repository.folder(network_id)
        (folder / "1").mkdir(parents=True)
        if mean is not None:
            np.save(folder / "mean.npy", np.array(mean, dtype=np.float32))

    record = await store.insert_network(
        org,
        name="pets",
        description="",
        metadata={},
        framework="tensorflow-2.x",
        preprocessing=preprocessing("mean.npy" if mean is not None else ""),
        signature=signature.to_json(),
        files=["saved_model.pb"],
        task=TaskRunner[Any]().new(org, "deployment"),
        place=place,
    )
    if ready:
        assert await store.set_network_state(record.id, "ready")
    return record


async def add_spec(store: Store, org: str = "acme", network_id: str = "", tensor: str = "prob:0") -> tuple[str, str]:
    """A specification of the organisation, with one version over ``network_id`` when given: (spec id, version
    id or "")."""
    spec = await store.insert_spec(org, name="pets", description="", metadata={}, outputs=SPEC_OUTPUTS)
    if not network_id:
        return spec.id, ""
    version = await store.insert_version(
        org,
        spec_id=spec.id,
        network_id=network_id,
        post_processings=[{"classification": {"output_tensor": tensor}}],
    )
    assert version is not None
    return spec.id, version.id


def resolver(store: Store, repository: ModelRepository) -> Resolver:
    return Resolver(CATALOG, store, repository, MeanCache())


async def test_public_targets_are_the_catalogs_deployments(store: Store, repository: ModelRepository) -> None:
    made = resolver(store, repository)
    by_spec = await made.resolve(Target(spec_id="colors-v1", organisation="acme"))
    by_version = await made.resolve(Target(version_id="colors-v1.1", organisation="globex"))
    assert by_spec is CATALOG.for_spec("colors-v1")
    assert by_version is CATALOG.for_version("colors-v1.1")
    assert by_spec.model_name == "colors"


async def test_a_specification_of_the_organisation_runs_its_current_version_with_served_names(
    store: Store, repository: ModelRepository
) -> None:
    network = await add_network(store, repository, mean=[0.1, 0.2, 0.3])
    spec_id, version_id = await add_spec(store, network_id=network.id)
    resolved = await resolver(store, repository).resolve(Target(spec_id=spec_id, organisation="acme"))
    assert (resolved.spec.id, resolved.version.id, resolved.network.id) == (spec_id, version_id, network.id)
    assert resolved.model_name == repository.model_name(network.id)
    # The version and the preprocessing were stored with the uploaded names; Triton serves the other ones.
    assert resolved.version.post_processings == (ClassificationPostProcessing("prob"),)
    assert [i.tensor_name for i in resolved.network.preprocessing.inputs] == ["image"]
    assert list(resolved.means) == ["mean.npy"]
    assert resolved.means["mean.npy"].ravel().tolist() == pytest.approx([0.1, 0.2, 0.3])


async def test_a_version_resolves_with_its_own_specification(store: Store, repository: ModelRepository) -> None:
    network = await add_network(store, repository)
    spec_id, version_id = await add_spec(store, network_id=network.id)
    resolved = await resolver(store, repository).resolve(Target(version_id=version_id, organisation="acme"))
    assert (resolved.spec.id, resolved.version.id) == (spec_id, version_id)
    assert [o.labels[1].name for o in resolved.spec.outputs] == ["dog"]


async def test_a_version_of_the_organisation_over_a_public_network_runs_the_public_model(
    store: Store, repository: ModelRepository
) -> None:
    spec_id, _ = await add_spec(store, network_id="colors", tensor="share")
    resolved = await resolver(store, repository).resolve(Target(spec_id=spec_id, organisation="acme"))
    assert resolved.network is CATALOG.network("colors")
    assert resolved.model_name == "colors"
    assert resolved.version.post_processings == (ClassificationPostProcessing("share"),)
    assert resolved.version.network_name == CATALOG.network("colors").name
    assert set(resolved.means) == {"mean.npy"}


async def test_a_specification_without_a_version_is_a_failed_precondition(
    store: Store, repository: ModelRepository
) -> None:
    spec_id, _ = await add_spec(store)
    with pytest.raises(FailedPreconditionError, match="has no version yet: create one"):
        await resolver(store, repository).resolve(Target(spec_id=spec_id, organisation="acme"))


@pytest.mark.parametrize("by", ["spec_id", "version_id"])
async def test_another_organisations_resources_are_not_found(
    store: Store, repository: ModelRepository, by: str
) -> None:
    network = await add_network(store, repository)
    spec_id, version_id = await add_spec(store, network_id=network.id)
    target = Target(**{by: spec_id if by == "spec_id" else version_id}, organisation="globex")
    with pytest.raises(NotFoundError):
        await resolver(store, repository).resolve(target)
    with pytest.raises(NotFoundError):
        await resolver(store, repository).runnable("globex", network.id)


async def test_unknown_ids_are_not_found(store: Store, repository: ModelRepository) -> None:
    made = resolver(store, repository)
    for target in (Target(spec_id="41", organisation="acme"), Target(version_id="nope", organisation="acme")):
        with pytest.raises(NotFoundError):
            await made.resolve(target)
    with pytest.raises(NotFoundError):
        await made.runnable("acme", "41")


async def test_a_network_being_deployed_is_unavailable_for_a_second(store: Store, repository: ModelRepository) -> None:
    network = await add_network(store, repository, ready=False)
    spec_id, _ = await add_spec(store, network_id=network.id)
    made = resolver(store, repository)
    with pytest.raises(UnavailableError, match="still being deployed") as raw:
        await made.runnable("acme", network.id)
    assert raw.value.retry_after_s == 1.0
    with pytest.raises(UnavailableError, match="still being deployed"):
        await made.resolve(Target(spec_id=spec_id, organisation="acme"))


async def test_a_runnable_network_carries_its_signature_and_model(store: Store, repository: ModelRepository) -> None:
    network = await add_network(store, repository)
    runnable = await resolver(store, repository).runnable("acme", network.id)
    assert runnable.model == repository.model_name(network.id)
    assert runnable.signature == SIGNATURE
    assert runnable.signature.served("prob:0") == "prob"
    assert [i.tensor_name for i in runnable.network.preprocessing.inputs] == ["image"]
    assert runnable.means == {}


async def test_a_network_without_other_names_keeps_its_own(store: Store, repository: ModelRepository) -> None:
    plain = Signature(SIGNATURE.inputs, SIGNATURE.outputs, 8)
    network = await add_network(store, repository, signature=plain)
    spec_id, _ = await add_spec(store, network_id=network.id)
    resolved = await resolver(store, repository).resolve(Target(spec_id=spec_id, organisation="acme"))
    assert resolved.version.post_processings == (ClassificationPostProcessing("prob:0"),)
    assert [i.tensor_name for i in resolved.network.preprocessing.inputs] == ["image:0"]


async def test_a_public_network_runs_under_its_own_name(store: Store, repository: ModelRepository) -> None:
    runnable = await resolver(store, repository).runnable("acme", "colors")
    assert runnable.network is CATALOG.network("colors")
    assert (runnable.model, runnable.signature.names) == ("colors", {})
    assert set(runnable.means) == {"mean.npy"}
