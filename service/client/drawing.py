"""Drawing results on images: boxes, labels, scores and track ids (for the CLI's --draw and --out)."""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

__all__ = ["annotate", "drawing_scale"]

_MIN_FONT_PX = 12
_MIN_LINE_PX = 2
_MAX_LISTED = 8


def _color(key: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((key * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def drawing_scale(width: int, height: int) -> tuple[int, int]:
    """The label text size and the box line width, in pixels, for an image of ``width`` x ``height``: both grow
    with the image's shorter side (30 px text and 4 px lines on 1920x1080; never under 12 px and 2 px), so that
    a drawing reads the same at any size."""
    side = min(width, height)
    return max(_MIN_FONT_PX, round(side / 36)), max(_MIN_LINE_PX, round(side / 270))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's scalable built-in font (needs FreeType)
    except (ImportError, OSError):  # a Pillow without FreeType has only its fixed 11 px bitmap font
        return ImageFont.load_default()


def annotate(image: npt.NDArray[np.uint8], result: Any) -> npt.NDArray[np.uint8]:
    """An (H, W, 3) RGB copy of ``image`` with ``result`` (a ``RecognitionResult`` message) drawn on it.

    Detections get a box and ``label score [#track]``; classification and tagging labels are listed top-left (the
    first eight). Text and lines are sized by ``drawing_scale``.
    """
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    font_px, line_px = drawing_scale(width, height)
    font = _font(font_px)
    pad = max(1, font_px // 6)
    lines: list[str] = []
    for output in result.outputs:
        for p in output.labels.predicted:
            if p.roi.HasField("bbox"):
                b = p.roi.bbox
                box = (b.xmin * width, b.ymin * height, b.xmax * width, b.ymax * height)
                key = p.track_id if p.HasField("track_id") else p.label_id
                color = _color(key)
                draw.rectangle(box, outline=color, width=line_px)
                text = f"{p.label_name} {p.score:.2f}" + (f" #{p.track_id}" if p.HasField("track_id") else "")
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
                # Above the box, or inside its top edge when the box touches the top of the image.
                x = min(max(0.0, box[0]), max(0.0, width - label_w))
                y = box[1] - label_h if box[1] - label_h >= 0 else max(0.0, box[1])
                draw.rectangle((x, y, x + label_w, y + label_h), fill=color)
                draw.text((x + pad - left, y + pad - top), text, fill=(0, 0, 0), font=font)
            else:
                lines.append(f"{p.label_name} {p.score:.2f}")
    if lines:
        text = "\n".join(lines[:_MAX_LISTED])
        origin = (2 * pad, 2 * pad)
        left, top, right, bottom = draw.multiline_textbbox(origin, text, font=font, spacing=pad)
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
        draw.multiline_text(origin, text, fill=(255, 255, 255), font=font, spacing=pad)
    return np.asarray(canvas, dtype=np.uint8)
