"""Network CRUD: the public networks of the catalog merged with the organisation's (uploads are ``uploads``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.catalog import Catalog
from service.domain import Network
from service.errors import NotFoundError, PermissionDeniedError
from service.registry.deployments import Deployments
from service.registry.records import network_from_record, network_record
from service.registry.requests import check_mutable, merge_pages, required
from service.store import Store

__all__ = ["Networks"]


class Networks:
    """Lists, reads, changes and deletes networks; ``deployments`` takes a deleted network out of Triton."""

    def __init__(self, catalog: Catalog, store: Store, deployments: Deployments) -> None:
        self._catalog = catalog
        self._store = store
        self._deployments = deployments

    async def page(self, org: str, offset: int, limit: int) -> tuple[int, list[Network]]:
        """One page of the public networks followed by the organisation's, and their total count."""

        async def user(o: int, n: int) -> tuple[int, list[Network]]:
            count, rows = await self._store.list_networks(org, o, n)
            return count, [network_from_record(r) for r in rows]

        return await merge_pages(self._catalog.networks(), offset, limit, user)

    async def get(self, org: str, network_id: str) -> Network:
        """A public network or one of the organisation's (``NotFoundError`` otherwise)."""
        required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            return self._catalog.network(network_id)
        return network_from_record(await network_record(self._store, org, network_id))

    async def update(self, org: str, network_id: str, changes: Mapping[str, Any]) -> Network:
        """Change a network's name, description or metadata (``PermissionDeniedError`` for a public one)."""
        required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            raise PermissionDeniedError(f"network {network_id!r} is public and cannot be changed")
        check_mutable(changes, ("name", "description", "metadata"))
        if (record := await self._store.update_network(org, network_id, changes)) is None:
            raise NotFoundError("network", network_id)
        return network_from_record(record)

    async def delete(self, org: str, network_id: str) -> None:
        """Delete a network and its versions, unload it from Triton and remove its folder."""
        required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            raise PermissionDeniedError(f"network {network_id!r} is public and cannot be deleted")
        if (record := await self._store.delete_network(org, network_id)) is None:
            raise NotFoundError("network", network_id)
        await self._deployments.discard(record.id)
