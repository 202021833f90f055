"""Ordering alone: ORDERED holds a fast frame back behind a slow one, AS_COMPLETED does not, skipped frames keep
their place, and tracking delivers in order with one track id per object across frames."""

from __future__ import annotations

import pytest

from postprocess.types import BBox, LabelsResult, Prediction
from service.domain import RecognitionResult
from service.streams import FrameOutcome, FrameStatus, Ordering, SkipKind
from service.streams.ordering import AsCompleted, InOrder, delivery_for
from service.streams.types import FrameInput


def done(frame_id: int, *boxes: BBox) -> FrameOutcome:
    predicted = tuple(Prediction(1, "square", 0.9, 0.5, region_id=i, bbox=b) for i, b in enumerate(boxes))
    result = RecognitionResult((LabelsResult(predicted, ()),))
    return FrameOutcome(frame_id, None, FrameStatus.OK, result=result)


def ids(outcomes: list[FrameOutcome]) -> list[int]:
    return [o.frame_id for o in outcomes]


def test_in_order_holds_later_frames_until_the_earlier_ones_are_done() -> None:
    order = InOrder()
    assert order.put(2, done(12)) == []
    assert order.put(1, done(11)) == []
    assert ids(order.put(0, done(10))) == [10, 11, 12]
    assert ids(order.put(3, done(13))) == [13]


def test_as_completed_hands_each_over_when_it_is_ready() -> None:
    order = AsCompleted()
    assert ids(order.put(2, done(12))) == [12]
    assert ids(order.put(0, done(10))) == [10]


def test_a_skipped_frame_keeps_its_place_in_order() -> None:
    order = InOrder()
    assert order.put(1, done(11)) == []
    skipped = FrameOutcome.skipped(FrameInput(10), SkipKind.DROP_OLDEST, "dropped")
    assert ids(order.put(0, skipped)) == [10, 11]


@pytest.mark.parametrize(
    ("ordering", "tracking", "kind"),
    [
        (Ordering.ORDERED, False, InOrder),
        (Ordering.AS_COMPLETED, False, AsCompleted),
        (Ordering.AS_COMPLETED, True, InOrder),  # a tracker must see the frames in order
    ],
)
def test_the_delivery_follows_the_config(ordering: Ordering, tracking: bool, kind: type) -> None:
    assert isinstance(delivery_for(ordering, tracking=tracking), kind)


def test_tracking_gives_an_object_one_id_across_frames_and_another_object_another() -> None:
    order = InOrder(tracking=True)
    a, b = BBox(0.1, 0.1, 0.3, 0.3), BBox(0.6, 0.6, 0.9, 0.9)
    moved = BBox(0.12, 0.11, 0.32, 0.31)
    # Frame 1 is done first: it waits, and is tracked after frame 0 all the same.
    assert order.put(1, done(11, moved, b)) == []
    first, second = order.put(0, done(10, a))
    tracks = [[p.track_id for p in o.result.outputs[0].predicted] for o in (first, second)]  # type: ignore[union-attr]
    assert tracks[0][0] is not None
    assert tracks[1][0] == tracks[0][0]  # the same object, moved a little
    assert tracks[1][1] not in (None, tracks[0][0])  # a new one
    untracked = InOrder().put(0, done(10, a))[0]
    assert untracked.result is not None
    assert untracked.result.outputs[0].predicted[0].track_id is None
