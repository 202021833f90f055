"""The detection pipeline: thresholds, NMS, regions, limits, batches, edge cases; against a reference."""

from __future__ import annotations

import logging
from dataclasses import astuple, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from postprocess import (
    AnchoredOutput,
    BBox,
    DetectionConfig,
    DirectOutput,
    InvalidConfigError,
    Label,
    LabelsResult,
    MissingTensorError,
    OutputShapeError,
    PostprocessError,
    Prediction,
    YoloOutput,
    Yolov5Output,
    Yolov8Output,
    check_output_shapes,
    detect,
    reframe,
)
from postprocess.boxes import box_iou
from tests.postprocess.helpers import kernel

LABELS = (Label(1, "person"), Label(2, "bicycle"), Label(3, "car"))
SIZE = (100, 100)  # input (height, width): pixels are percents


def v8(*columns: tuple[float, ...]) -> dict[str, NDArray[Any]]:
    """A YOLOv8 output for one image from (cx, cy, w, h, score per label) columns."""
    return {"out": np.array(columns, dtype=np.float32).T[None]}


def config(
    thresholds: tuple[float, ...] | None = (0.5, 0.5, 0.5), nms: float = 0.5, discard: float = 0.1, **kwargs: Any
) -> DetectionConfig:
    return DetectionConfig(Yolov8Output("out"), LABELS, thresholds, nms, discard, **kwargs)


def run(outputs: dict[str, NDArray[Any]], cfg: DetectionConfig, **kwargs: Any) -> LabelsResult:
    (result,) = detect(outputs, cfg, input_size=SIZE, **kwargs)
    return result


def rows(predictions: tuple[Prediction, ...]) -> list[tuple[int, int | None]]:
    return [(p.label_id, p.region_id) for p in predictions]


def test_thresholds_split_predicted_and_discarded() -> None:
    outputs = v8((20, 20, 10, 10, 0.9, 0.3, 0.05), (70, 70, 10, 10, 0.4, 0.6, 0.0))
    result = run(outputs, config(thresholds=(0.5, 0.7, 0.5)))
    assert rows(result.predicted) == [(1, 0)]
    assert rows(result.discarded) == [(2, 1), (1, 1), (2, 0)]  # 0.05 < discard_threshold: gone
    assert [p.threshold for p in result.discarded] == [0.7, 0.5, 0.7]


def test_default_detection_threshold_is_0_8() -> None:
    result = run(v8((20, 20, 10, 10, 0.79, 0.8, 0.0)), config(thresholds=None))
    assert rows(result.predicted) == [(2, 0)]
    assert rows(result.discarded) == [(1, 0)]
    assert result.predicted[0].threshold == 0.8


def test_nms_is_class_aware() -> None:
    outputs = v8(
        (20, 20, 10, 10, 0.9, 0.0, 0.0),
        (21, 20, 10, 10, 0.8, 0.0, 0.0),  # same label, same spot: suppressed
        (20, 21, 10, 10, 0.0, 0.0, 0.7),  # another label on the same spot: kept
    )
    assert rows(run(outputs, config()).predicted) == [(1, 0), (3, 2)]
    assert rows(run(outputs, config(nms=1.0)).predicted) == [(1, 0), (1, 1), (3, 2)]


def test_class_agnostic_nms_among_predicted() -> None:
    outputs = v8((20, 20, 10, 10, 0.9, 0.0, 0.0), (20, 21, 10, 10, 0.0, 0.0, 0.7), (60, 60, 10, 10, 0.0, 0.6, 0.0))
    result = run(outputs, config(class_agnostic_nms=0.5))
    assert rows(result.predicted) == [(1, 0), (2, 2)]
    with pytest.raises(InvalidConfigError, match="class_agnostic_nms"):
        config(class_agnostic_nms=1.5)


def test_discarded_never_remove_predicted_and_are_deduplicated() -> None:
    outputs = v8(
        (20, 20, 10, 10, 0.6, 0.0, 0.0),  # predicted (threshold 0.5)
        (20, 20, 10, 10, 0.0, 0.45, 0.0),  # discarded bicycle on the same spot: another label, stays
        (21, 20, 10, 10, 0.4, 0.0, 0.0),  # discarded person duplicating the predicted one: gone
        (60, 60, 10, 10, 0.3, 0.0, 0.0),  # discarded person elsewhere: stays
        (61, 60, 10, 10, 0.2, 0.0, 0.0),  # duplicate of the previous discarded one: gone
    )
    result = run(outputs, config())
    assert rows(result.predicted) == [(1, 0)]
    assert rows(result.discarded) == [(2, 1), (1, 3)]


def test_region_id_is_shared_by_alternatives() -> None:
    result = run(v8((50, 50, 20, 20, 0.3, 0.9, 0.2)), config())
    assert rows(result.predicted) == [(2, 0)]
    assert rows(result.discarded) == [(1, 0), (3, 0)]
    assert {p.bbox for p in result.predicted + result.discarded} == {BBox(0.4, 0.4, 0.6, 0.6)}


def test_max_predictions_caps_each_list_after_nms() -> None:
    columns = [(10.0 * i + 5, 50, 8, 8, 0.9 - 0.01 * i, 0.2, 0.0) for i in range(10)]
    outputs = v8(*columns)
    result = run(outputs, config(), max_predictions=3)
    assert rows(result.predicted) == [(1, 0), (1, 1), (1, 2)]
    assert rows(result.discarded) == [(2, 0), (2, 1), (2, 2)]
    assert run(outputs, config(), max_predictions=0) == LabelsResult((), ())
    with pytest.raises(InvalidConfigError, match="max_predictions"):
        run(outputs, config(), max_predictions=-1)


def test_ties_sorted_by_region_then_label() -> None:
    outputs = v8((80, 80, 10, 10, 0.6, 0.6, 0.0), (20, 20, 10, 10, 0.0, 0.6, 0.6))
    assert rows(run(outputs, config()).predicted) == [(1, 0), (2, 0), (2, 1), (3, 1)]


def test_boxes_are_clipped_and_empty_ones_dropped() -> None:
    outputs = v8(
        (0, 50, 20, 20, 0.9, 0.0, 0.0),  # half outside on the left: clipped
        (120, 50, 20, 20, 0.9, 0.0, 0.0),  # outside on the right: empty after clipping
        (50, 50, 0, 20, 0.9, 0.0, 0.0),  # zero width
    )
    result = run(outputs, config())
    assert rows(result.predicted) == [(1, 0)]
    assert result.predicted[0].bbox == BBox(0.0, 0.4, 0.1, 0.6)


def test_no_candidates_and_all_below_thresholds() -> None:
    assert run({"out": np.zeros((1, 7, 0), dtype=np.float32)}, config()) == LabelsResult((), ())
    assert run(v8((50, 50, 10, 10, 0.05, 0.01, 0.0)), config()) == LabelsResult((), ())
    below = run(v8((50, 50, 10, 10, 0.2, 0.01, 0.0)), config())
    assert below.predicted == ()
    assert rows(below.discarded) == [(1, 0)]


def test_non_finite_values_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    outputs = v8(
        (20, 20, 10, 10, np.nan, 0.0, 0.0),  # NaN score: below every threshold, silently
        (40, 40, 10, 10, np.inf, 0.0, 0.0),  # infinite score: ignored, logged
        (np.nan, 60, 10, 10, 0.9, 0.0, 0.0),  # NaN coordinate: ignored, logged
        (80, 80, np.inf, 10, 0.9, 0.0, 0.0),  # infinite width: ignored, logged
        (80, 80, 10, 10, 0.7, 0.0, 0.0),
    )
    with caplog.at_level(logging.WARNING, logger="postprocess.detection"):
        result = run(outputs, config())
    assert rows(result.predicted) == [(1, 4)]
    assert result.discarded == ()
    assert "ignored 3 detection candidates" in caplog.text


def test_batches() -> None:
    first = np.array([[20, 20, 10, 10, 0.9, 0.0, 0.0]], dtype=np.float32).T
    second = np.array([[70, 70, 10, 10, 0.0, 0.0, 0.8]], dtype=np.float32).T
    results = detect({"out": np.stack([first, second])}, config(), input_size=SIZE)
    assert [rows(r.predicted) for r in results] == [[(1, 0)], [(3, 0)]]
    assert detect({"out": np.zeros((0, 7, 5), dtype=np.float32)}, config(), input_size=SIZE) == []


def test_pixel_sizes_from_a_tensor_or_input_size() -> None:
    outputs = v8((20, 40, 10, 10, 0.9, 0.0, 0.0))
    per_image = detect({**outputs, "im_info": np.array([[200.0, 100.0, 1.0]])}, config(normalize_wrt_tensor="im_info"))
    assert per_image[0].predicted[0].bbox == BBox(0.15, 0.175, 0.25, 0.225)
    fallback = detect(outputs, config(normalize_wrt_tensor="im_info"), input_size=(200, 100))
    assert fallback == per_image
    with pytest.raises(MissingTensorError, match="im_info"):
        detect(outputs, config(normalize_wrt_tensor="im_info"))
    with pytest.raises(OutputShapeError, match="positive"):
        detect(outputs, config(), input_size=(0, 100))
    with pytest.raises(OutputShapeError, match="im_info"):
        detect({**outputs, "im_info": np.ones((3, 3))}, config(normalize_wrt_tensor="im_info"))


def test_an_untrained_network_is_handled_quickly() -> None:
    # Every anchor point predicts the same box with a middling score for all 80 labels: 672,000 candidates.
    labels = tuple(Label(i, f"label-{i}") for i in range(80))
    tensor = np.full((1, 84, 8400), 0.5, dtype=np.float32)
    tensor[0, :4] = [[320.0], [320.0], [100.0], [100.0]]
    cfg = DetectionConfig(Yolov8Output("out"), labels, None, 0.45, 0.025)
    (result,) = detect({"out": tensor}, cfg, input_size=(640, 640))
    assert result.predicted == ()
    assert [(p.label_id, p.region_id) for p in result.discarded] == [(i, 0) for i in range(80)]


def test_outputs_are_not_modified() -> None:
    outputs = v8((20, 20, 10, 10, 0.9, 0.3, 0.0), (21, 20, 10, 10, 0.8, 0.0, 0.0))
    copy = outputs["out"].copy()
    outputs["out"].flags.writeable = False
    run(outputs, config())
    np.testing.assert_array_equal(outputs["out"], copy)


def test_config_validation_and_tensor_names() -> None:
    assert config().label_thresholds == (0.5, 0.5, 0.5)
    assert config(thresholds=None).label_thresholds == (0.8, 0.8, 0.8)
    assert config(thresholds=()).label_thresholds == (0.8, 0.8, 0.8)
    assert config().tensor_names == ("out",)
    assert config(normalize_wrt_tensor="im_info").tensor_names == ("out", "im_info")
    yolo = DetectionConfig(YoloOutput("grid", (1.0, 1.0)), LABELS, None, 0.3, 0.025, normalize_wrt_tensor="x")
    assert yolo.tensor_names == ("grid",)
    with pytest.raises(InvalidConfigError, match="2 thresholds"):
        config(thresholds=(0.5, 0.5))
    # Per-label thresholds are refused outside [0, 1], as InvalidConfigError says (#17 point 8a).
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidConfigError, match=r"in \[0, 1\]: label 1 has"):
            config(thresholds=(0.5, bad, 0.5))
    assert config(thresholds=(0.0, 1.0, 0.5)).label_thresholds == (0.0, 1.0, 0.5)
    with pytest.raises(InvalidConfigError, match="nms_threshold"):
        config(nms=-0.1)
    with pytest.raises(InvalidConfigError, match="discard_threshold"):
        config(discard=float("nan"))
    with pytest.raises(InvalidConfigError, match="unique"):
        DetectionConfig(Yolov8Output("out"), (Label(1, "a"), Label(1, "b")), None, 0.3, 0.025)
    with pytest.raises(InvalidConfigError, match="at least one label"):
        DetectionConfig(Yolov8Output("out"), (), None, 0.3, 0.025)
    assert hash(config()) == hash(config())
    assert config() == config()


def corners(p: Prediction) -> tuple[float, float, float, float]:
    assert p.bbox is not None
    return (p.bbox.xmin, p.bbox.ymin, p.bbox.xmax, p.bbox.ymax)


def test_reframe() -> None:
    p = Prediction(1, "person", 0.9, 0.5, 0, BBox(0.0, 0.5, 0.5, 1.0))
    q = Prediction(2, "bicycle", 0.4, 0.5, 1, BBox(0.0, 0.0, 0.1, 0.1))
    tag = Prediction(3, "car", 0.8, 0.5)
    result = LabelsResult((p, tag), (q,))
    # The network saw the right half of the image (a crop).
    crop = reframe(result, BBox(0.5, 0.0, 1.0, 1.0))
    assert corners(crop.predicted[0]) == pytest.approx((0.5, 0.5, 0.75, 1.0))
    assert crop.predicted[1] is tag
    assert corners(crop.discarded[0]) == pytest.approx((0.5, 0.0, 0.55, 0.1))
    assert crop.discarded[0].region_id == 1
    # The image was padded on the left to twice its width (FILL): boxes in the padding vanish.
    padded = reframe(result, BBox(-1.0, 0.0, 1.0, 1.0))
    assert padded.predicted == (tag,)
    assert padded.discarded == ()
    with pytest.raises(PostprocessError, match="window"):
        reframe(result, BBox(0.5, 0.0, 0.5, 1.0))


# ------------------------------------------------------------------------------------------ reference check


def reference_detect(
    tensor: NDArray[Any], thresholds: list[float], discard: float, nms: float, limit: int
) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """The pipeline written plainly, one candidate at a time, for one YOLOv8 image ``(4 + L, N)``."""
    n_labels = tensor.shape[0] - 4
    candidates = []
    for region in range(tensor.shape[1]):
        cx, cy, w, h = (float(v) for v in tensor[:4, region])
        box = [
            min(max((cx - w / 2) / SIZE[1], 0.0), 1.0),
            min(max((cy - h / 2) / SIZE[0], 0.0), 1.0),
            min(max((cx + w / 2) / SIZE[1], 0.0), 1.0),
            min(max((cy + h / 2) / SIZE[0], 0.0), 1.0),
        ]
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        for label in range(n_labels):
            score = tensor[4 + label, region]
            if score >= np.float32(discard):
                candidates.append((float(score), region, label, box, bool(score >= np.float32(thresholds[label]))))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))

    def iou(a: list[float], b: list[float]) -> float:
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    def greedy(pool: list[Any]) -> list[Any]:
        kept: list[Any] = []
        for c in pool:
            if all(k[2] != c[2] or iou(c[3], k[3]) <= nms for k in kept):
                kept.append(c)
        return kept

    predicted = greedy([c for c in candidates if c[4]])
    discarded = [c for c in greedy(predicted + [c for c in candidates if not c[4]]) if not c[4]]

    def out(cs: list[Any]) -> list[tuple[int, int, float]]:
        return [(LABELS[c[2]].id, c[1], c[0]) for c in cs[:limit]]

    return out(predicted), out(discarded)


@st.composite
def yolov8_image(draw: st.DrawFn) -> NDArray[Any]:
    n = draw(st.integers(0, 30))
    centres = draw(arrays(np.int64, (2, n), elements=st.integers(-5, 105)))
    sizes = draw(arrays(np.int64, (2, n), elements=st.integers(0, 40)))
    levels = [float(np.float32(v)) for v in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.9)]
    scores = draw(arrays(np.float32, (3, n), elements=st.sampled_from(levels)))
    tensor: NDArray[Any] = np.concatenate([centres, sizes, scores]).astype(np.float32)
    return tensor


@settings(max_examples=60, deadline=None)
@given(
    tensor=yolov8_image(),
    nms=st.sampled_from([0.0, 0.3, 0.45, 0.7]),
    limit=st.integers(0, 6),
    thresholds=st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.9]), min_size=3, max_size=3),
)
@pytest.mark.parametrize("name", ["default", "compiled-hands-over-early", "numpy", "loop", "heads", "sweep"])
def test_detect_matches_a_plain_reference(
    name: str, tensor: NDArray[Any], nms: float, limit: int, thresholds: list[float]
) -> None:
    centres, sizes = tensor[:2].T.astype(np.float64), tensor[2:4].T.astype(np.float64)
    boxes = np.clip(np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) / 100, 0, 1)
    gaps = np.abs(box_iou(boxes, boxes) - nms)
    assume(not ((gaps > 0) & (gaps < 1e-9)).any())  # IoUs computed in another order may differ in the last bit
    cfg = config(thresholds=tuple(thresholds), nms=nms, discard=0.1)
    with kernel(name):
        result = run({"out": tensor[None]}, cfg, max_predictions=limit)
    expected = reference_detect(tensor, thresholds, 0.1, nms, limit)
    found = [(p.label_id, p.region_id, p.score) for p in result.predicted]
    assert (found, [(p.label_id, p.region_id, p.score) for p in result.discarded]) == expected
    predicted_only = run({"out": tensor[None]}, cfg, max_predictions=limit, with_discarded=False)
    assert predicted_only == LabelsResult(result.predicted, ())


def test_results_equal_those_of_the_dataclass_constructors() -> None:
    outputs = v8((20, 20, 10, 10, 0.9, 0.3, 0.05), (70, 70, 10, 10, 0.4, 0.6, 0.0))
    result = run(outputs, config(thresholds=(0.5, 0.7, 0.5)))
    built = result.predicted + result.discarded
    assert built == tuple(
        Prediction(p.label_id, p.label_name, p.score, p.threshold, p.region_id, BBox(*astuple(p.bbox)), p.track_id)
        for p in built
        if p.bbox is not None
    )
    assert all(type(p) is Prediction and type(p.bbox) is BBox and p.track_id is None for p in built)
    assert [hash(p) for p in built] == [hash(replace(p)) for p in built]


# ------------------------------------------------------------------------------------- layouts against shapes

FIVE = tuple(Label(i, f"l{i}") for i in range(5))


@pytest.mark.parametrize(
    ("output", "shapes", "labels"),
    [
        (Yolov8Output("o"), {"o": (22, -1)}, FIVE),  # #17 point 1: 5 labels need 9 features
        (Yolov8Output("o"), {"o": (22, 8400)}, FIVE),
        (Yolov5Output("o"), {"o": (-1, 85)}, tuple(Label(i, str(i)) for i in range(18))),  # 80 classes, not 18
        (YoloOutput("o", (1.0, 1.0, 2.0, 2.0)), {"o": (21, 13, 13)}, FIVE),  # 2 anchors x (5 + 5) = 20
        (DirectOutput("b", "s", "c"), {"b": (-1, 4), "s": (-1,), "c": (-1, 2)}, FIVE),
        (AnchoredOutput("a", "s", "d"), {"a": (-1, 5), "s": (-1, 5), "d": (-1, 24)}, FIVE),  # background left out
    ],
)
def test_layouts_that_cannot_fit_the_output_shapes_are_refused(
    output: Any, shapes: dict[str, tuple[int, ...]], labels: tuple[Label, ...]
) -> None:
    with pytest.raises(OutputShapeError, match=f"do not fit {len(labels)} labels"):
        check_output_shapes(output, labels, shapes)


@pytest.mark.parametrize(
    ("output", "shapes"),
    [
        (Yolov8Output("o"), {"o": (9, -1)}),
        (Yolov8Output("o"), {"o": (-1, 9)}),
        (Yolov5Output("o"), {"o": (25200, 10)}),
        (YoloOutput("o", (1.0, 1.0, 2.0, 2.0)), {"o": (20, -1, -1)}),
        (YoloOutput("o", (1.0, 1.0, 2.0, 2.0)), {"o": (13, 13, 20)}),
        (DirectOutput("b", "s", "c"), {"b": (100, 4), "s": (100,), "c": (100,)}),
        (AnchoredOutput("a", "s", "d"), {"a": (300, 5), "s": (300, 6), "d": (300, 24)}),
        (Yolov8Output("o"), {"o": ()}),  # unknown rank: not checked
        (Yolov8Output("o"), {}),  # not among the shapes: not checked (the caller says which tensors exist)
    ],
)
def test_layouts_that_fit_the_output_shapes_pass(output: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    check_output_shapes(output, FIVE, shapes)
