"""The public models: networks, specifications and versions bundled in the read-only model repository.

Each model folder is a standard Triton folder plus ``sightline.json``, which holds the v0.7 JSON of its network
(with the preprocessing), its specification and its version. The folder name is the Triton model name and the
public network id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.domain import (
    ColorChannels,
    Network,
    ResolvedVersion,
    Specification,
    Target,
    Version,
    check_version_against_spec,
    parse_network,
    parse_post_processings,
    parse_specification,
)
from service.errors import InvalidArgumentError, NotFoundError
from service.meanfile import load_mean

__all__ = ["METADATA_FILE", "Catalog"]

log = logging.getLogger(__name__)

METADATA_FILE = "sightline.json"


class Catalog:
    """An in-memory, read-only index of the bundled public models."""

    def __init__(self, deployments: list[ResolvedVersion]) -> None:
        self._by_spec = {d.spec.id: d for d in deployments}
        self._by_version = {d.version.id: d for d in deployments}
        self._networks = {d.network.id: d.network for d in deployments}

    @classmethod
    def load(cls, repository: Path) -> Catalog:
        """Read every ``<model>/sightline.json`` below ``repository``; a broken file stops start-up loudly."""
        deployments = []
        for meta in sorted(repository.glob(f"*/{METADATA_FILE}")):
            try:
                deployments.append(_load_one(meta))
            except (InvalidArgumentError, KeyError, ValueError, OSError) as exc:
                raise RuntimeError(f"bundled model {meta.parent.name}: {exc}") from exc
        log.info("public models: %s", ", ".join(d.spec.id for d in deployments) or "none")
        return cls(deployments)

    def specifications(self) -> list[Specification]:
        return [d.spec for d in self._by_spec.values()]

    def networks(self) -> list[Network]:
        return list(self._networks.values())

    def versions(self, spec_id: str = "") -> list[Version]:
        return [d.version for d in self._by_spec.values() if not spec_id or d.spec.id == spec_id]

    def network(self, network_id: str) -> Network:
        if (network := self._networks.get(network_id)) is None:
            raise NotFoundError("network", network_id)
        return network

    def for_spec(self, spec_id: str) -> ResolvedVersion:
        if (deployment := self._by_spec.get(spec_id)) is None:
            raise NotFoundError("specification", spec_id)
        return deployment

    def for_version(self, version_id: str) -> ResolvedVersion:
        if (deployment := self._by_version.get(version_id)) is None:
            raise NotFoundError("version", version_id)
        return deployment

    def has_spec(self, spec_id: str) -> bool:
        return spec_id in self._by_spec

    def has_version(self, version_id: str) -> bool:
        return version_id in self._by_version

    def has_network(self, network_id: str) -> bool:
        return network_id in self._networks

    def means(self, network_id: str) -> Mapping[str, npt.NDArray[np.float32]]:
        """The mean arrays of a public network."""
        return next((d.means for d in self._by_spec.values() if d.network.id == network_id), {})

    async def resolve(self, target: Target) -> ResolvedVersion:
        """The public deployment a target names (a ``DeploymentResolver`` of public models only)."""
        return self.for_spec(target.spec_id) if target.spec_id else self.for_version(target.version_id)


def _load_one(meta: Path) -> ResolvedVersion:
    folder = meta.parent
    raw = json.loads(meta.read_text())
    stamp = datetime.fromtimestamp(meta.stat().st_mtime, tz=UTC)
    network = replace(parse_network(raw["network"], network_id=folder.name), create_date=stamp, update_date=stamp)
    if raw["network"].get("id", folder.name) != folder.name:
        raise ValueError(f"network id {raw['network']['id']!r} differs from the folder name {folder.name!r}")
    spec_raw = raw["spec"]
    version_raw = raw["version"]
    spec = parse_specification(spec_raw, spec_id=spec_raw["id"])
    post = parse_post_processings(version_raw["post_processings"])
    check_version_against_spec(post, spec)
    version = Version(
        id=version_raw["id"],
        spec_id=spec.id,
        network_id=network.id,
        post_processings=post,
        spec_name=spec.name,
        network_name=network.name,
        update_date=stamp,
    )
    spec = replace(spec, current_version_id=version.id, update_date=stamp)
    means = {}
    for item in network.preprocessing.image_inputs:
        assert item.image is not None
        if item.image.mean_file:
            channels = 1 if item.image.color_channels is ColorChannels.L else 3
            means[item.image.mean_file] = load_mean(folder / item.image.mean_file, channels)
    return ResolvedVersion(spec=spec, version=version, network=network, means=means)
