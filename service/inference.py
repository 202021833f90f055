"""Raw network inference (InferNetwork): one image through a network, its preprocessing applied, and the output
tensors back as they are, without a specification or post-processing.

The use case beside recognition: recognition runs a version (network + post-processings) for a specification;
this runs the network alone. Which networks exist, and what their tensors are called, is the registry's business:
it is asked through ``NetworkResolver``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.domain import ImageRequest, Network
from service.errors import FailedPreconditionError, InvalidArgumentError
from service.image_source import image_bytes
from service.images import DecodeBudget
from service.preprocess import build_inputs, crop, decode_image, with_own_batch_axis
from service.recognition import needed_size
from service.sources import ImageFetcher
from service.triton.gateway import TritonGateway
from service.triton.repository import Signature

__all__ = ["NetworkInference", "NetworkResolver", "RunnableNetwork"]


@dataclass(frozen=True, slots=True)
class RunnableNetwork:
    """A network ready to run: the network (its preprocessing with the tensor names Triton serves), its mean
    arrays by mean-file name, its Triton model name, and its signature (whose ``served`` maps the names a
    converted network was uploaded with to the served ones; empty for public networks)."""

    network: Network
    means: Mapping[str, npt.NDArray[np.float32]]
    model: str
    signature: Signature


class NetworkResolver(Protocol):
    """Finds a network an organisation may run (the registry)."""

    async def runnable(self, org: str, network_id: str) -> RunnableNetwork:
        """The network, public or the organisation's; ``NotFoundError`` when the organisation has no such
        network, ``UnavailableError`` while it is still being deployed."""
        ...


class NetworkInference:
    """Runs networks raw on one image. ``decode_budget`` is the pixel budget shared by every decode in flight
    (give it the one recognition uses); ``fetcher`` fetches URL sources (``None``: they are refused)."""

    def __init__(
        self,
        networks: NetworkResolver,
        gateway: TritonGateway,
        *,
        max_image_pixels: int = 40_000_000,
        decode_budget: DecodeBudget | None = None,
        fetcher: ImageFetcher | None = None,
    ) -> None:
        self._networks = networks
        self._gateway = gateway
        self._max_image_pixels = max_image_pixels
        self._decode_budget = decode_budget
        self._fetcher = fetcher

    async def infer(
        self, org: str, network_id: str, image: ImageRequest, output_names: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """Run a network raw on one image (its preprocessing applied): output tensor name → array, batch
        dimension included when the network has one. Outputs come back under the names asked for (a converted
        network's ``detection_boxes:0`` as well as its served ``detection_boxes``); all of them, by their served
        names, when none is asked for.

        Raises ``InvalidArgumentError`` for an empty ``network_id``, an output the network does not have
        (``output_tensors[i]``) or an image that cannot be had or decoded; ``FailedPreconditionError`` when the
        preprocessing feeds an input the served model lacks; and the resolver's and the gateway's errors."""
        if not network_id:
            raise InvalidArgumentError.field("network_id", "must not be empty")
        runnable = await self._networks.runnable(org, network_id)
        signature = runnable.signature
        info = await self._gateway.model_info(runnable.model)
        known = [t.name for t in info.outputs]
        for i, name in enumerate(output_names):
            if signature.served(name) not in known:
                raise InvalidArgumentError.field(
                    f"output_tensors[{i}]", f"{name!r} is not an output of network {network_id!r} ({', '.join(known)})"
                )
        asked = list(dict.fromkeys(output_names)) or known
        names = list(dict.fromkeys(signature.served(n) for n in asked))
        data = await image_bytes(image, self._fetcher)
        preprocessing = runnable.network.preprocessing

        def prepare() -> dict[str, npt.NDArray[Any]]:
            decoded = decode_image(
                data,
                max_pixels=self._max_image_pixels,
                min_size=needed_size(preprocessing, image),
                budget=self._decode_budget,
            )
            cropped, _ = crop(
                decoded, bbox=image.bbox, polygon=image.polygon, uniform_background=image.crop_uniform_background
            )
            return dict(build_inputs(cropped, preprocessing, runnable.means).tensors)

        tensors = await asyncio.to_thread(prepare)
        fitted: dict[str, npt.NDArray[Any]] = {}
        for name, array in tensors.items():
            spec = info.input(name)
            if spec is None:
                raise FailedPreconditionError(f"network {network_id!r} has no input {name!r}")
            cast = array.astype(spec.numpy_dtype, copy=False)
            fitted[name] = cast[None] if info.batched else with_own_batch_axis(cast, spec.dims)
        outputs = await self._gateway.infer(runnable.model, fitted, names)
        return {name: outputs[signature.served(name)] for name in asked}
