"""The IoU tracker on objects with known trajectories."""

from __future__ import annotations

import pytest

from postprocess.tracking import IouTracker
from postprocess.types import BBox, Prediction


def box(label: int, x: float, y: float, size: float = 0.2) -> Prediction:
    return Prediction(label, f"l{label}", 0.9, 0.5, region_id=0, bbox=BBox(x, y, x + size, y + size))


def test_ids_are_stable_for_two_objects_moving_in_opposite_directions() -> None:
    tracker = IouTracker()
    seen: list[tuple[int | None, int | None]] = []
    for step in range(20):
        a = box(0, 0.05 + 0.02 * step, 0.1)
        b = box(0, 0.75 - 0.02 * step, 0.6)
        out = tracker.update([a, b])
        seen.append((out[0].track_id, out[1].track_id))
    assert len(set(seen)) == 1, "no id switch"
    assert seen[0][0] != seen[0][1]


def test_fast_motion_is_followed_thanks_to_velocity() -> None:
    tracker = IouTracker()
    ids = set()
    # 0.12 per frame with a 0.2 box: IoU with the last position is 0.25 (< 0.3), with the predicted one 1.0.
    for step in range(6):
        (out,) = tracker.update([box(1, 0.02 + 0.12 * step, 0.4)])
        ids.add(out.track_id)
    assert len(ids) <= 2  # the first two frames have no velocity yet; after that the id holds
    (last,) = tracker.update([box(1, 0.02 + 0.12 * 6, 0.4)])
    (again,) = tracker.update([box(1, 0.02 + 0.12 * 7, 0.4)])
    assert last.track_id == again.track_id


def test_labels_do_not_share_tracks_and_lost_tracks_end() -> None:
    tracker = IouTracker(max_age=2)
    (first,) = tracker.update([box(0, 0.3, 0.3)])
    (other,) = tracker.update([box(1, 0.3, 0.3)])
    assert other.track_id != first.track_id
    for _ in range(3):
        tracker.update([])
    assert tracker.live_tracks == 0
    (back,) = tracker.update([box(0, 0.3, 0.3)])
    assert back.track_id not in (first.track_id, other.track_id), "ids are never reused"


def test_predictions_without_boxes_pass_through() -> None:
    tracker = IouTracker()
    plain = Prediction(3, "cat", 0.9, 0.5)
    assert tracker.update([plain]) == (plain,)
    with pytest.raises(ValueError, match="iou_threshold"):
        IouTracker(iou_threshold=0.0)
