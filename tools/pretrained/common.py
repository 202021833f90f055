"""What both conversions share: the photographs, the v0.7 preprocessing they are fed through, model folders.

numpy, Pillow, onnx and the service's ``config.pbtxt`` writer only. The preprocessing repeats the service's
(``service/preprocess.py``: Pillow bilinear resizing, CROP and FILL as v0.7 defines them,
``pixel * pixel_scaling / 255 - mean``), so that the tensors the conversions are checked on are the ones Sightline
will send to Triton.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from PIL import Image

from service.triton.repository import config_pbtxt, inspect_onnx

__all__ = [
    "OPSET",
    "REPOSITORY",
    "max_abs_diff",
    "max_rel_diff",
    "photographs",
    "prepare",
    "save_onnx",
    "write_folder",
]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
REPOSITORY = ROOT / "model_repository"
OPSET = 17
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "motorcycle_left", "rocket")


def photographs() -> dict[str, NDArray[np.uint8]]:
    """scikit-image's bundled photographs by name, (H, W, 3) uint8 RGB (shipped in its wheel, no download)."""
    from skimage import io as skio
    from skimage.data import data_dir

    return {name: np.asarray(skio.imread(Path(data_dir) / _FILES[name]))[..., :3] for name in PHOTOGRAPHS}


_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "motorcycle_left": "motorcycle_left.png",
    "rocket": "rocket.jpg",
}


def prepare(image: NDArray[np.uint8], image_spec: dict[str, Any], mean: NDArray[np.float32]) -> NDArray[np.float32]:
    """One unbatched FLOAT32 input tensor from an (H, W, 3) RGB image, as the service builds it.

    Supports what the bundled pretrained models declare: CROP or FILL to ``WxH``, RGB, FLOAT32, NCHW or NHWC.
    """
    tw, th = (int(v) for v in image_spec["target_size"].split("x"))
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    kind = image_spec["resize_type"]
    scale = max(tw / w, th / h) if kind == "CROP" else min(tw / w, th / h)
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = pil.resize((rw, rh), Image.Resampling.BILINEAR)
    ox, oy = (rw - tw) // 2, (rh - th) // 2
    if kind == "CROP":
        out = scaled.crop((ox, oy, ox + tw, oy + th))
    elif kind == "FILL":
        out = Image.new("RGB", (tw, th), (255, 255, 255))
        out.paste(scaled, (-ox, -oy))
    else:
        raise ValueError(f"resize_type {kind} is not used by the pretrained models")
    if (image_spec["color_channels"], image_spec["data_type"]) != ("RGB", "FLOAT32"):
        raise ValueError("the pretrained models take RGB FLOAT32 inputs")
    values = np.asarray(out, dtype=np.uint8).astype(np.float32) * np.float32(image_spec["pixel_scaling"] / 255.0)
    values = values - mean.reshape(1, 1, -1)
    if image_spec["dimension_order"] == "NCHW":
        return np.ascontiguousarray(values.transpose(2, 0, 1))
    assert image_spec["dimension_order"] == "NHWC"
    return np.ascontiguousarray(values)


def max_abs_diff(a: NDArray[Any], b: NDArray[Any]) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def max_rel_diff(reference: NDArray[Any], other: NDArray[Any]) -> float:
    """``max |a - b| / max(1, |a|)``: absolute for values below 1, relative above."""
    a, b = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))


def save_onnx(model: onnx.ModelProto, path: Path, doc: str) -> None:
    """Check, stamp and write a model; onnxruntime must load it."""
    import onnxruntime as ort

    onnx.checker.check_model(model, full_check=True)
    model.producer_name = "sightline-pretrained"
    model.doc_string = doc
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)


def write_folder(
    folder: Path,
    meta: dict[str, Any],
    inputs: list[tuple[str, list[int]]],
    outputs: list[tuple[str, list[int]]],
    max_batch_size: int = 16,
) -> None:
    """config.pbtxt and sightline.json of one model folder, whose graph is saved.

    The config is the service's one writer's (``service.triton.repository``) over the graph: what an upload of
    it would get, with its name. ``inputs`` and ``outputs`` (FP32, dims without the batch dimension) are what the
    graph must take and give; a conversion that differs stops here."""
    signature = inspect_onnx(folder / "1" / "model.onnx", max_batch_size=max_batch_size)
    declared = [(n, "FP32", d) for n, d in inputs], [(n, "FP32", d) for n, d in outputs]
    saved = tuple(
        [(t.name, t.dtype, list(signature.sample_dims(t))) for t in tensors]
        for tensors in (signature.inputs, signature.outputs)
    )
    if signature.max_batch_size != max_batch_size or saved != declared:
        raise SystemExit(f"{folder.name}: the saved graph has {saved} (batch {signature.max_batch_size})")
    (folder / "config.pbtxt").write_text(config_pbtxt(signature, name=folder.name))
    (folder / "sightline.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
