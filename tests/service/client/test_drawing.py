"""The CLI's drawings (service/client/drawing.py): text and lines that scale with the image, measured in pixels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import json_format

from service._proto.sightline.v1 import inference_pb2
from service.client.drawing import annotate, drawing_scale

GREY = 90


def detection(box: tuple[float, float, float, float]) -> inference_pb2.RecognitionResult:
    xmin, ymin, xmax, ymax = box
    prediction = {
        "label_name": "person",
        "label_id": 0,
        "score": 0.98,
        "roi": {"bbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}},
    }
    return json_format.ParseDict(
        {"outputs": [{"labels": {"predicted": [prediction]}}]}, inference_pb2.RecognitionResult()
    )


def changed(image: npt.NDArray[np.uint8], drawn: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.asarray(np.any(image != drawn, axis=2))


def measure(width: int, height: int) -> tuple[int, int, int]:
    """(label height, box line width, height of the label's black text) of one box drawn on a grey image."""
    image = np.full((height, width, 3), GREY, dtype=np.uint8)
    box = (0.3, 0.4, 0.7, 0.9)
    drawn = annotate(image, detection(box))
    mask = changed(image, drawn)
    top, left = round(box[1] * height), round(box[0] * width)
    middle = round(0.65 * height)
    line = int(mask[middle, left - 1 : left + width // 10].sum())  # the left edge, where it crosses the middle row
    above = mask[:top, left + 2]  # the column just inside the box's left edge, above the box
    label = int(above.sum())
    text_rows = np.any(np.all(drawn[:top, left : round(box[2] * width)] == 0, axis=2), axis=1)
    return label, line, int(text_rows.sum())


def test_text_and_lines_read_on_full_hd() -> None:
    label, line, text = measure(1920, 1080)
    assert drawing_scale(1920, 1080) == (30, 4)
    assert line == 4
    assert label >= 30  # the label's band, text and padding
    assert text >= 18  # rows of black glyph pixels: the default bitmap font gives 9 here


@pytest.mark.parametrize(("width", "height"), [(320, 240), (640, 480), (1280, 720), (1920, 1080), (3840, 2160)])
def test_drawings_scale_with_the_shorter_side(width: int, height: int) -> None:
    label, line, _ = measure(width, height)
    font_px, line_px = drawing_scale(width, height)
    assert line == line_px
    assert font_px <= label <= 2 * font_px
    assert font_px == max(12, round(min(width, height) / 36))


def test_labels_stay_inside_the_image() -> None:
    image = np.full((1080, 1920, 3), GREY, dtype=np.uint8)
    drawn = annotate(image, detection((0.9, 0.0, 1.0, 0.2)))  # at the top right corner: no room above or right
    mask = changed(image, drawn)
    rows = np.flatnonzero(np.any(np.all(drawn == 0, axis=2), axis=1))
    assert rows.size > 0, "the label's text is not drawn"
    assert mask[: round(0.2 * 1080), round(0.9 * 1920) :].any()


def test_classification_labels_are_listed_in_the_same_size() -> None:
    image = np.full((1080, 1920, 3), GREY, dtype=np.uint8)
    result = json_format.ParseDict(
        {"outputs": [{"labels": {"predicted": [{"label_name": "tabby", "label_id": 281, "score": 0.7}]}}]},
        inference_pb2.RecognitionResult(),
    )
    drawn = annotate(image, result)
    white_rows = np.flatnonzero(np.any(np.all(drawn == 255, axis=2), axis=1))
    assert white_rows.size > 0
    assert white_rows.max() - white_rows.min() + 1 >= 18  # "tabby 0.70" at 30 px: ascenders to descenders
