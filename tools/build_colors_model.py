"""Build the ``colors`` public model in closed form (no training): the dominant colour of an image.

Each pixel votes for its nearest prototype colour through a sharp softmax over negative squared distances; the
network outputs the share of the image each colour wins, which sums to 1 like a softmax. With x the pixel in
[0, 1] minus the 0.5 mean and c_k the prototypes (minus the same mean), the logits are
T * (2 c_k·x - |c_k|^2) (the |x|^2 term is shared by every class, so it drops out of the softmax): a 1x1
convolution, a softmax over channels and a spatial mean.

Usage: python tools/build_colors_model.py [MODEL_DIR]   (needs the ``onnx`` package; the output is committed)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.triton.repository import config_pbtxt, inspect_onnx

LABELS = ["red", "green", "blue", "yellow", "black", "white"]
PROTOTYPES = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]],
    dtype=np.float32,
)
MEAN = 0.5
TEMPERATURE = 20.0
SIZE = 64


def build_graph() -> onnx.ModelProto:
    centred = PROTOTYPES - MEAN
    weight = (2 * TEMPERATURE * centred).reshape(len(LABELS), 3, 1, 1).astype(np.float32)
    bias = (-TEMPERATURE * (centred**2).sum(axis=1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["data", "w", "b"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["votes"], axis=1),
        helper.make_node("ReduceMean", ["votes"], ["share"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "colors",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("share", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sightline")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


MAX_BATCH_SIZE = 32
MAX_QUEUE_DELAY_MICROSECONDS = 500
"""Its batching in Triton: larger batches than the trained models' 16, gathered for at most half a millisecond."""

METADATA = {
    "network": {
        "id": "colors",
        "name": "Dominant colour",
        "description": "Closed-form network: the share of the image nearest to each of six prototype colours.",
        "framework": "onnx",
        "preprocessing": {
            "inputs": [
                {
                    "tensor_name": "data",
                    "image": {
                        "dimension_order": "NCHW",
                        "resize_type": "SQUASH",
                        "target_size": f"{SIZE}x{SIZE}",
                        "color_channels": "RGB",
                        "pixel_scaling": 1.0,
                        "mean_file": "mean.npy",
                        "data_type": "FLOAT32",
                    },
                }
            ],
            "batched_output": True,
        },
    },
    "spec": {
        "id": "colors-v1",
        "name": "Dominant colour",
        "description": "Classifies an image by its dominant colour.",
        "metadata": {},
        "outputs": [
            {
                "labels": {
                    "labels": [{"id": i, "name": n} for i, n in enumerate(LABELS)],
                    "exclusive": True,
                    "roi": "NONE",
                }
            }
        ],
    },
    "version": {"id": "colors-v1.1", "post_processings": [{"classification": {"output_tensor": "share"}}]},
}


def main(folder: Path) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(), str(folder / "1" / "model.onnx"))
    np.save(folder / "mean.npy", np.full((1, 1, 3), MEAN, dtype=np.float32))
    # The service's own writer, over the graph just written: what an upload of this graph would get.
    signature = inspect_onnx(folder / "1" / "model.onnx", max_batch_size=MAX_BATCH_SIZE)
    config = config_pbtxt(signature, name=folder.name, max_queue_delay_microseconds=MAX_QUEUE_DELAY_MICROSECONDS)
    (folder / "config.pbtxt").write_text(config)
    (folder / "sightline.json").write_text(json.dumps(METADATA, indent=2) + "\n")


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parent.parent / "model_repository" / "colors"
    )
