"""Stored records → domain resources, and the record look-ups every part shares.

A look-up answers ``NotFoundError`` for a resource the organisation does not have, whether it does not exist or
belongs to another organisation, so that its existence does not leak.
"""

from __future__ import annotations

from dataclasses import replace

from service.catalog import Catalog
from service.domain import Network, Specification, Version, parse_network, parse_post_processings, parse_specification
from service.errors import NotFoundError
from service.store import NetworkRecord, SpecRecord, Store, VersionRecord

__all__ = [
    "network_from_record",
    "network_record",
    "spec_from_record",
    "spec_record",
    "version_from_record",
    "version_record",
]


def network_from_record(record: NetworkRecord) -> Network:
    """The network a stored row describes (its preprocessing under the names it was uploaded with)."""
    body = {
        "name": record.name,
        "description": record.description,
        "metadata": record.metadata,
        "framework": record.framework,
        "preprocessing": record.preprocessing,
    }
    return replace(
        parse_network(body, network_id=record.id),
        task_id=record.task_id,
        create_date=record.create_date,
        update_date=record.update_date,
    )


def spec_from_record(record: SpecRecord) -> Specification:
    """The specification a stored row describes."""
    body = {
        "name": record.name,
        "description": record.description,
        "metadata": record.metadata,
        "outputs": record.outputs,
    }
    return replace(
        parse_specification(body, spec_id=record.id),
        current_version_id=record.current_version_id,
        update_date=record.update_date,
    )


def version_from_record(record: VersionRecord, catalog: Catalog) -> Version:
    """The version a stored row describes; the name of its network is the catalog's for a public network."""
    network_name = record.network_name
    if network_name is None and catalog.has_network(record.network_id):
        network_name = catalog.network(record.network_id).name
    return Version(
        id=record.id,
        spec_id=record.spec_id,
        network_id=record.network_id,
        post_processings=parse_post_processings(record.post_processings),
        spec_name=record.spec_name,
        network_name=network_name or "",
        update_date=record.update_date,
    )


async def network_record(store: Store, org: str, network_id: str) -> NetworkRecord:
    """The organisation's network row; ``NotFoundError`` when it has none of that id."""
    if (record := await store.get_network(org, network_id)) is None:
        raise NotFoundError("network", network_id)
    return record


async def spec_record(store: Store, org: str, spec_id: str) -> SpecRecord:
    """The organisation's specification row; ``NotFoundError`` when it has none of that id."""
    if (record := await store.get_spec(org, spec_id)) is None:
        raise NotFoundError("specification", spec_id)
    return record


async def version_record(store: Store, org: str, version_id: str) -> VersionRecord:
    """The organisation's version row; ``NotFoundError`` when it has none of that id."""
    if (record := await store.get_version(org, version_id)) is None:
        raise NotFoundError("version", version_id)
    return record
