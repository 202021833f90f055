"""The protocol every detection decoder implements, and the candidates it produces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from postprocess.errors import MissingTensorError, OutputShapeError
from postprocess.types import Label

__all__ = [
    "Candidates",
    "Layout",
    "OutputDecoder",
    "batched",
    "features_first",
    "floating",
    "get_tensor",
    "nonzero_2d",
    "same_batch",
]

Layout = Literal["auto", "channels_first", "channels_last"]
"""Where a per-candidate feature axis sits in a tensor; ``"auto"`` decides from the shapes."""


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate detections of one image: one row per (region, label) pair above the discard threshold.

    Attributes:
        regions: ``(K,)`` int64, index of the candidate region in the network's output (``region_id``).
        labels: ``(K,)`` intp, row of the label in the specification's labels (not its id).
        scores: ``(K,)`` floating, in the network's precision (or the decoder's, for computed scores).
        boxes: ``(K, 4)`` float64 xyxy, top-left origin, not clipped; in pixels of the network input
            when the decoder's ``boxes_in_pixels`` says so, else normalised to ``[0, 1]``.
    """

    regions: NDArray[np.int64]
    labels: NDArray[np.intp]
    scores: NDArray[np.floating[Any]]
    boxes: NDArray[np.float64]

    def __post_init__(self) -> None:
        k = self.regions.shape
        if len(k) != 1 or self.labels.shape != k or self.scores.shape != k or self.boxes.shape != (*k, 4):
            raise ValueError(
                "candidates need regions (K,), labels (K,), scores (K,) and boxes (K, 4); got "
                f"{self.regions.shape}, {self.labels.shape}, {self.scores.shape}, {self.boxes.shape}"
            )

    @classmethod
    def empty(cls, dtype: DTypeLike = np.float32) -> Candidates:
        """No candidate; ``scores`` of the given floating dtype."""
        return cls(
            regions=np.empty(0, dtype=np.int64),
            labels=np.empty(0, dtype=np.intp),
            scores=np.empty(0, dtype=dtype),
            boxes=np.empty((0, 4), dtype=np.float64),
        )


class OutputDecoder(Protocol):
    """Turns one kind of network output (batched) into candidates, one :class:`Candidates` per image.

    Implementations are the frozen dataclasses that name the output's tensors
    (:class:`~postprocess.decoders.AnchoredOutput`, ...): the version's post-processing picks the decoder.
    """

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Names of the output tensors the decoder reads."""
        ...

    def boxes_in_pixels(self, normalize_wrt_tensor: str) -> bool:
        """Whether decoded boxes are in pixels of the network input (then divided by its size)."""
        ...

    def decode(
        self, outputs: Mapping[str, NDArray[Any]], labels: Sequence[Label], discard_threshold: float
    ) -> list[Candidates]:
        """Candidates of each image whose score is at or above ``discard_threshold``.

        Args:
            outputs: tensors by name, with a leading batch axis (or without one, for a batch of one
                image: the rank tells).
            labels: the specification's labels, in the order of the network's outputs.
            discard_threshold: scores below it are dropped (compared in the scores' precision).

        Raises:
            MissingTensorError, OutputShapeError: the outputs do not fit the layout.
        """
        ...


def get_tensor(outputs: Mapping[str, NDArray[Any]], name: str) -> NDArray[Any]:
    """``outputs[name]`` as an array, or :class:`MissingTensorError`."""
    try:
        return np.asarray(outputs[name])
    except KeyError:
        raise MissingTensorError(
            f"tensor {name!r} is missing from the outputs (have: {', '.join(map(repr, outputs)) or 'none'})"
        ) from None


def batched(tensor: NDArray[Any], rank: int, name: str) -> NDArray[Any]:
    """The tensor with a leading batch axis: ``rank``-dimensional tensors (one image) gain one."""
    if tensor.ndim == rank:
        return tensor[np.newaxis]
    if tensor.ndim == rank + 1:
        return tensor
    raise OutputShapeError(
        f"tensor {name!r} has shape {tensor.shape}: expected {rank} dimensions per image, with or without a batch axis"
    )


def same_batch(tensors: Mapping[str, NDArray[Any]]) -> int:
    """The common batch size (first axis) of the tensors, or :class:`OutputShapeError`."""
    sizes = {name: tensor.shape[0] for name, tensor in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise OutputShapeError(f"tensors disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def floating(tensor: NDArray[Any]) -> NDArray[np.floating[Any]]:
    """The tensor itself if floating, else read as float64 (no copy for floating inputs)."""
    if np.issubdtype(tensor.dtype, np.floating):
        return tensor
    return tensor.astype(np.float64)


def features_first(layout: Layout, shape: tuple[int, ...], features: int, *, prefer_first: bool, name: str) -> bool:
    """Whether the feature axis of one image's tensor comes first (channel-first) or last (channel-last).

    Args:
        layout: ``"channels_first"`` or ``"channels_last"`` to insist, ``"auto"`` to decide from ``shape``.
        shape: the tensor's shape for one image (no batch axis).
        features: the size of the feature axis (e.g. ``4 + L`` for YOLOv8).
        prefer_first: the answer when both the first and the last axes have that size.
        name: the tensor's name, for errors.

    Raises:
        OutputShapeError: the axis the layout names (or, for ``"auto"``, either end) has another size.
    """
    first = shape[0] == features
    last = shape[-1] == features
    if layout == "channels_first" and first:
        return True
    if layout == "channels_last" and last:
        return False
    if layout == "auto" and (first or last):
        return prefer_first if first and last else first
    where = {"channels_first": "first", "channels_last": "last"}.get(layout, "first or last")
    raise OutputShapeError(
        f"tensor {name!r} has shape {shape} per image: expected {features} features on its {where} axis"
    )


def nonzero_2d(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the true entries of a 2-D mask, row-major: ``np.nonzero``, several times faster."""
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return flat, flat.copy()
    rows, columns = np.divmod(flat, mask.shape[1])
    return rows, columns
