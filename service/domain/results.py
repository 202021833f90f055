"""What recognition answers: one ``LabelsResult`` per specification output."""

from __future__ import annotations

from dataclasses import dataclass

from postprocess.types import LabelsResult


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    """One ``LabelsResult`` per specification output, in the specification's order; boxes normalised to the
    whole source image."""

    outputs: tuple[LabelsResult, ...]
