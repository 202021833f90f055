"""A target resolved: the version to run, with its specification, its network, the network's mean arrays and
the Triton model that serves it. ("Deploying" a network, elsewhere, means loading it into Triton.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.domain.resources import Network, Specification, Version


@dataclass(frozen=True, slots=True)
class ResolvedVersion:
    """Everything recognition needs for one version: what it implements, what it runs, and the mean arrays
    ((H, W, C) float32, by mean file name)."""

    spec: Specification
    version: Version
    network: Network
    means: Mapping[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    model: str = ""
    """The Triton model that serves the network when its name is not the network id (uploaded networks)."""

    @property
    def model_name(self) -> str:
        """The Triton model that serves the network: a public network's folder name is its id."""
        return self.model or self.network.id
