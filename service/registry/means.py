"""Mean arrays of uploaded networks: read from their model folders, kept in memory once read.

The cache is shared by the resolver (which fills it when a network first runs) and the deployments (which forget a
network's entry when its model is discarded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.domain import ColorChannels, Preprocessing
from service.meanfile import load_mean

__all__ = ["MeanCache", "load_means"]

Means = Mapping[str, npt.NDArray[np.float32]]


def load_means(folder: Path, preprocessing: Preprocessing) -> dict[str, npt.NDArray[np.float32]]:
    """The mean arrays the image inputs of ``preprocessing`` name, by file name, read from ``folder`` (blocking)."""
    means: dict[str, npt.NDArray[np.float32]] = {}
    for item in preprocessing.image_inputs:
        assert item.image is not None
        if item.image.mean_file:
            channels = 1 if item.image.color_channels is ColorChannels.L else 3
            means[item.image.mean_file] = load_mean(folder / item.image.mean_file, channels)
    return means


class MeanCache:
    """The mean arrays of each uploaded network, by network id, read once (in a worker thread)."""

    def __init__(self) -> None:
        self._means: dict[str, Means] = {}

    async def get(self, network_id: str, folder: Path, preprocessing: Preprocessing) -> Means:
        """The network's mean arrays, read from ``folder`` the first time they are asked for."""
        means = self._means.get(network_id)
        if means is None:
            means = await asyncio.to_thread(load_means, folder, preprocessing)
            self._means[network_id] = means
        return means

    def forget(self, network_id: str) -> None:
        """Drop a network's arrays (its model is gone, or replaced)."""
        self._means.pop(network_id, None)
