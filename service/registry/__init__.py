"""The registry use case: networks, specifications and versions of each organisation, beside the public models.

Public resources (the bundled ``Catalog``) have non-numeric string ids, are visible to every organisation and
cannot be changed. User resources have decimal ids from the database and belong to one organisation: to any
other they do not exist (NOT_FOUND, never PERMISSION_DENIED, so that their existence does not leak).

``Registry`` is a facade over the parts, each a module with one job:

- ``networks``: network CRUD (``Networks``);
- ``uploads`` + ``drafts``: CreateNetwork, from the declaration and its checks through staging and conversion to
  the stored network (``Uploads``; ``NetworkDraft``, ``UploadFile``, ``UploadLimits``, ``check_preprocessing``);
- ``deployments``: loading into Triton and unloading, and the start-up recovery (``Deployments``, ``reconcile``);
- ``specs``: specifications and versions CRUD (``Specifications``, ``Versions``);
- ``resolver``: what a target or a network id runs (``Resolver``), with the served tensor names
  (``tensor_names``) and the mean arrays (``means``);
- ``records`` and ``requests``: row → domain conversions and look-ups; request checks and merged pages.

Raw network inference is ``service.inference.NetworkInference``, over the resolver. A converted network keeps the
names it was uploaded with (``image_tensor:0``) in its preprocessing and versions; its stored signature maps them
to the served names, which recognition, InferNetwork and the version checks use. At start-up ``reconcile``
removes what a stopped service left half-done (staged uploads, folders without rows, rows without folders) and
``Registry.resume`` retries the deployments that were under way.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy.typing as npt

from service.catalog import Catalog
from service.convert import ConverterOptions
from service.domain import ImageRequest, Network, ResolvedVersion, Specification, Target, Version
from service.images import DecodeBudget
from service.inference import NetworkInference
from service.registry.deployments import Deployments, reconcile
from service.registry.drafts import NetworkDraft, UploadFile, UploadLimits, check_preprocessing
from service.registry.means import MeanCache
from service.registry.networks import Networks
from service.registry.resolver import Resolver
from service.registry.specs import Specifications, Versions
from service.registry.tensor_names import served_post_processing as _served_post_processing  # noqa: F401  (tests)
from service.registry.tensor_names import served_preprocessing as _served_preprocessing  # noqa: F401  (tests)
from service.registry.uploads import Uploads
from service.sources import ImageFetcher
from service.store import Store
from service.tasks import TaskRunner
from service.triton.gateway import TritonGateway
from service.triton.repository import ModelRepository

__all__ = ["NetworkDraft", "Registry", "Scope", "UploadFile", "UploadLimits", "check_preprocessing", "reconcile"]

T = TypeVar("T")


class Scope(enum.Enum):
    """Which resources a list holds: the public ones followed by the organisation's (gRPC), or either alone (the
    v0.7 REST paths ``/recognition/public/`` and ``/recognition/specs/``)."""

    ALL = "all"
    PUBLIC = "public"
    OWN = "own"


async def _scoped(
    scope: Scope,
    public: Sequence[T],
    offset: int,
    limit: int,
    merged: Callable[[int, int], Awaitable[tuple[int, list[T]]]],
) -> tuple[int, list[T]]:
    """A page of ``scope`` from the merged pages (the public items, then the organisation's): the organisation's
    page at ``offset`` is the merged page at ``len(public) + offset``."""
    if scope is Scope.PUBLIC:
        return len(public), list(public[offset : offset + limit])
    if scope is Scope.OWN:
        count, items = await merged(len(public) + offset, limit)
        return count - len(public), items
    return await merged(offset, limit)


class Registry:
    """Networks, specifications and versions per organisation, merged with the public catalog; the
    ``DeploymentResolver`` of recognition. Each method delegates to the part that holds its job."""

    def __init__(
        self,
        catalog: Catalog,
        store: Store,
        repository: ModelRepository,
        gateway: TritonGateway,
        tasks: TaskRunner[Any],
        *,
        limits: UploadLimits | None = None,
        load_timeout_s: float = 300.0,
        max_image_pixels: int = 40_000_000,
        decode_budget: DecodeBudget | None = None,
        fetcher: ImageFetcher | None = None,
        converter: ConverterOptions | None = None,
    ) -> None:
        self._catalog = catalog
        self._repo = repository
        means = MeanCache()
        self._deployments = Deployments(store, repository, gateway, tasks, means, load_timeout_s=load_timeout_s)
        self._networks = Networks(catalog, store, self._deployments)
        self._uploads = Uploads(store, repository, tasks, self._deployments, limits=limits, converter=converter)
        self._specs = Specifications(catalog, store)
        self._versions = Versions(catalog, store, gateway)
        self._resolver = Resolver(catalog, store, repository, means)
        self._inference = NetworkInference(
            self._resolver, gateway, max_image_pixels=max_image_pixels, decode_budget=decode_budget, fetcher=fetcher
        )

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    # ---------------------------------------------------------------------------------------------- networks

    async def list_networks(
        self, org: str, offset: int, limit: int, scope: Scope = Scope.ALL
    ) -> tuple[int, list[Network]]:
        return await _scoped(
            scope, self._catalog.networks(), offset, limit, lambda o, n: self._networks.page(org, o, n)
        )

    async def get_network(self, org: str, network_id: str) -> Network:
        return await self._networks.get(org, network_id)

    async def update_network(self, org: str, network_id: str, changes: Mapping[str, Any]) -> Network:
        """Change a network's name, description or metadata."""
        return await self._networks.update(org, network_id, changes)

    async def delete_network(self, org: str, network_id: str) -> None:
        """Delete a network and its versions, unload it from Triton and remove its folder."""
        await self._networks.delete(org, network_id)

    async def create_network(self, org: str, draft: NetworkDraft, chunks: AsyncIterator[tuple[str, bytes]]) -> Network:
        """Create a network from its declaration and the chunks of its files (file name, bytes); the model loads
        in the background, tracked by the network's task."""
        return await self._uploads.create(org, draft, chunks)

    async def resume(self) -> None:
        """After Triton is up: unload leftovers of ours it still serves, retry the deployments under way, and load
        ready networks a (remote) Triton does not serve."""
        await self._deployments.resume()

    async def infer_network(
        self, org: str, network_id: str, image: ImageRequest, output_names: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """Run a network raw on one image (``NetworkInference.infer``)."""
        return await self._inference.infer(org, network_id, image, output_names)

    # ------------------------------------------------------------------------------------ specs and versions

    async def list_specs(
        self, org: str, offset: int, limit: int, scope: Scope = Scope.ALL
    ) -> tuple[int, list[Specification]]:
        return await _scoped(
            scope, self._catalog.specifications(), offset, limit, lambda o, n: self._specs.page(org, o, n)
        )

    async def get_spec(self, org: str, spec_id: str) -> Specification:
        return await self._specs.get(org, spec_id)

    async def create_spec(self, org: str, body: Mapping[str, Any]) -> Specification:
        """Create a specification from its v0.7 JSON (``name``, ``description``, ``metadata``, ``outputs``)."""
        return await self._specs.create(org, body)

    async def update_spec(self, org: str, spec_id: str, changes: Mapping[str, Any]) -> Specification:
        """Change name, description, metadata or current_version_id (a version of this specification)."""
        return await self._specs.update(org, spec_id, changes)

    async def delete_spec(self, org: str, spec_id: str) -> None:
        await self._specs.delete(org, spec_id)

    async def list_versions(
        self, org: str, spec_id: str, offset: int, limit: int, scope: Scope = Scope.ALL
    ) -> tuple[int, list[Version]]:
        """The versions of ``spec_id`` (of every visible specification when empty); ``scope`` applies to the
        latter only, a specification's versions being all public or all the organisation's."""
        if spec_id:
            return await self._versions.page(org, spec_id, offset, limit)
        return await _scoped(
            scope, self._catalog.versions(), offset, limit, lambda o, n: self._versions.page(org, "", o, n)
        )

    async def get_version(self, org: str, version_id: str) -> Version:
        return await self._versions.get(org, version_id)

    async def create_version(self, org: str, spec_id: str, network_id: str, post_processings: Sequence[Any]) -> Version:
        """Create a version: the network (public or the organisation's) and one post-processing per output of the
        specification, whose tensors the network has."""
        return await self._versions.create(org, spec_id, network_id, post_processings)

    async def delete_version(self, org: str, version_id: str) -> None:
        await self._versions.delete(org, version_id)

    # ------------------------------------------------------------------------------------------- recognition

    async def resolve(self, target: Target) -> ResolvedVersion:
        """The deployment a target names, as its organisation sees it (``DeploymentResolver``)."""
        return await self._resolver.resolve(target)
