"""Ordering: when an outcome may go to the client.

``ORDERED`` hands outcomes over in the order the frames were read (a slow frame holds back the ones after it);
``AS_COMPLETED`` hands each over when it is ready. Skipped frames follow the same rule. Tracking always delivers
in order: each tracker must see the frames in order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from postprocess.tracking import IouTracker
from postprocess.types import LabelsResult
from service.domain import RecognitionResult
from service.streams.types import FrameOutcome, Ordering

__all__ = ["AsCompleted", "Delivery", "InOrder", "delivery_for"]


class Delivery(Protocol):
    def put(self, seq: int, outcome: FrameOutcome) -> list[FrameOutcome]:
        """Record the outcome of frame ``seq`` (each once); returns the outcomes now due, in delivery order."""
        ...


class AsCompleted:
    def put(self, seq: int, outcome: FrameOutcome) -> list[FrameOutcome]:
        return [outcome]


class InOrder:
    """Outcomes in frame order; with ``tracking``, track ids on the predicted boxes of each output."""

    def __init__(self, *, tracking: bool = False) -> None:
        self._ready: dict[int, FrameOutcome] = {}
        self._next = 0
        self._trackers: dict[int, IouTracker] | None = {} if tracking else None

    def put(self, seq: int, outcome: FrameOutcome) -> list[FrameOutcome]:
        self._ready[seq] = outcome
        due = []
        while (ready := self._ready.pop(self._next, None)) is not None:
            self._next += 1
            due.append(self._tracked(ready))
        return due

    def _tracked(self, outcome: FrameOutcome) -> FrameOutcome:
        """One tracker per output; every frame with a result ages the tracks."""
        if self._trackers is None or outcome.result is None:
            return outcome
        trackers = self._trackers
        outputs = tuple(
            LabelsResult(trackers.setdefault(i, IouTracker()).update(labels.predicted), labels.discarded)
            for i, labels in enumerate(outcome.result.outputs)
        )
        return replace(outcome, result=RecognitionResult(outputs))


def delivery_for(ordering: Ordering, *, tracking: bool) -> Delivery:
    if tracking or ordering is Ordering.ORDERED:
        return InOrder(tracking=tracking)
    return AsCompleted()
