"""Resolution: what a recognition target runs (``resolve``, recognition's ``DeploymentResolver``) and which
network an organisation may run raw (``runnable``, InferNetwork's ``NetworkResolver``), with tensor names as
Triton serves them.
"""

from __future__ import annotations

from dataclasses import replace

from service.catalog import Catalog
from service.domain import ResolvedVersion, Target
from service.errors import FailedPreconditionError, UnavailableError
from service.inference import RunnableNetwork
from service.registry.means import MeanCache
from service.registry.records import (
    network_from_record,
    network_record,
    spec_from_record,
    spec_record,
    version_from_record,
    version_record,
)
from service.registry.tensor_names import PUBLIC_SIGNATURE, served_post_processing, served_preprocessing
from service.store import Store
from service.triton.repository import ModelRepository
from service.triton.repository import signature_from_json as _signature

__all__ = ["Resolver"]


class Resolver:
    """Resolves targets and networks against the catalog and the organisation's resources; ``repository`` gives
    an uploaded network's folder and model name, ``means`` keeps its mean arrays once read."""

    def __init__(self, catalog: Catalog, store: Store, repository: ModelRepository, means: MeanCache) -> None:
        self._catalog = catalog
        self._store = store
        self._repo = repository
        self._means = means

    async def resolve(self, target: Target) -> ResolvedVersion:
        """The deployment a target names, as its organisation sees it: a specification's current version, or a
        version. ``NotFoundError`` for what the organisation does not have, ``FailedPreconditionError`` for a
        specification without a version, ``UnavailableError`` while its network is being deployed."""
        org = target.organisation
        if target.spec_id:
            if self._catalog.has_spec(target.spec_id):
                return self._catalog.for_spec(target.spec_id)
            spec_row = await spec_record(self._store, org, target.spec_id)
            if spec_row.current_version_id is None:
                raise FailedPreconditionError(
                    f"specification {target.spec_id!r} has no version yet: create one (CreateVersion)"
                )
            version_row = await version_record(self._store, org, spec_row.current_version_id)
        else:
            if self._catalog.has_version(target.version_id):
                return self._catalog.for_version(target.version_id)
            version_row = await version_record(self._store, org, target.version_id)
            spec_row = await spec_record(self._store, org, version_row.spec_id)
        runnable = await self.runnable(org, version_row.network_id)
        version = version_from_record(version_row, self._catalog)
        if runnable.signature.names:
            post = tuple(served_post_processing(pp, runnable.signature) for pp in version.post_processings)
            version = replace(version, post_processings=post)
        return ResolvedVersion(
            spec=spec_from_record(spec_row),
            version=version,
            network=runnable.network,
            means=runnable.means,
            model=runnable.model,
        )

    async def runnable(self, org: str, network_id: str) -> RunnableNetwork:
        """A network ready to run, public or the organisation's (its preprocessing with the served tensor names).
        ``NotFoundError`` when the organisation has no such network, ``UnavailableError`` (retry after 1 s) while
        it is being deployed."""
        if self._catalog.has_network(network_id):
            return RunnableNetwork(
                self._catalog.network(network_id), self._catalog.means(network_id), network_id, PUBLIC_SIGNATURE
            )
        record = await network_record(self._store, org, network_id)
        if record.state != "ready":
            raise UnavailableError(f"network {network_id!r} is still being deployed; retry shortly", retry_after_s=1.0)
        network = network_from_record(record)
        means = await self._means.get(record.id, self._repo.folder(record.id), network.preprocessing)
        signature = _signature(record.signature)
        network = replace(network, preprocessing=served_preprocessing(network.preprocessing, signature))
        return RunnableNetwork(network, means, self._repo.model_name(record.id), signature)
