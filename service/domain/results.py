"""What inference answers: one ``LabelsResult`` per specification output (recognition), or raw tensors
(InferNetwork)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from postprocess.types import LabelsResult


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    """One ``LabelsResult`` per specification output, in the specification's order; boxes normalised to the
    whole source image."""

    outputs: tuple[LabelsResult, ...]


@dataclass(frozen=True, slots=True)
class NamedTensor:
    """One raw output of a network, as Triton gave it: ``shape`` includes the batch axis where the network has
    one; ``data`` is the flat row-major values (numbers, or text for string tensors)."""

    name: str
    shape: tuple[int, ...]
    data: tuple[float | int | str, ...]


@dataclass(frozen=True, slots=True)
class TensorsResult:
    """What raw network inference answers (v0.7 ``{"tensors": [{"name", "shape", "data"}]}``), in the order the
    output tensors were asked for."""

    tensors: tuple[NamedTensor, ...]

    @classmethod
    def from_arrays(cls, outputs: Mapping[str, npt.NDArray[Any]]) -> TensorsResult:
        """The arrays by output name; bytes (Triton's string tensors) become text, other values Python numbers."""
        tensors = []
        for name, array in outputs.items():
            flat = np.asarray(array).reshape(-1)
            if flat.dtype.kind in "OSU":
                data: tuple[float | int | str, ...] = tuple(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()
                )
            else:
                data = tuple(flat.tolist())
            tensors.append(NamedTensor(name, tuple(int(d) for d in np.shape(array)), data))
        return cls(tuple(tensors))

    def to_v07(self) -> dict[str, Any]:
        """v0.7's JSON of raw tensors, ``{"tensors": [{"name", "shape", "data"}]}`` (also how a task stores them)."""
        return {"tensors": [{"name": t.name, "shape": list(t.shape), "data": list(t.data)} for t in self.tensors]}

    @classmethod
    def from_v07(cls, body: Mapping[str, Any]) -> TensorsResult:
        return cls(tuple(NamedTensor(str(t["name"]), tuple(t["shape"]), tuple(t["data"])) for t in body["tensors"]))


TaskData = RecognitionResult | TensorsResult
"""What an inference task holds once it succeeds: a recognition result, or a network's raw tensors."""
