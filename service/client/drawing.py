"""Drawing results on images: boxes, labels, scores and track ids (for the CLI's --draw and --out)."""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

__all__ = ["annotate"]


def _color(key: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((key * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def annotate(image: npt.NDArray[np.uint8], result: Any) -> npt.NDArray[np.uint8]:
    """An (H, W, 3) RGB copy of ``image`` with ``result`` (a ``RecognitionResult`` message) drawn on it.

    Detections get a box and ``label score [#track]``; classification and tagging labels are listed top-left.
    """
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    lines: list[str] = []
    for output in result.outputs:
        for p in output.labels.predicted:
            if p.roi.HasField("bbox"):
                b = p.roi.bbox
                box = (b.xmin * width, b.ymin * height, b.xmax * width, b.ymax * height)
                key = p.track_id if p.HasField("track_id") else p.label_id
                color = _color(key)
                draw.rectangle(box, outline=color, width=max(1, round(min(width, height) / 200)))
                text = f"{p.label_name} {p.score:.2f}" + (f" #{p.track_id}" if p.HasField("track_id") else "")
                left, top, right, bottom = draw.textbbox((box[0], box[1]), text)
                y = max(0.0, box[1] - (bottom - top) - 2)
                draw.rectangle((left, y, right + 2, y + (bottom - top) + 2), fill=color)
                draw.text((box[0] + 1, y), text, fill=(0, 0, 0))
            else:
                lines.append(f"{p.label_name} {p.score:.2f}")
    if lines:
        text = "\n".join(lines[:8])
        left, top, right, bottom = draw.multiline_textbbox((4, 4), text)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
        draw.multiline_text((4, 4), text, fill=(255, 255, 255))
    return np.asarray(canvas, dtype=np.uint8)
