"""Request bodies the registry's unit tests share."""

from __future__ import annotations

from typing import Any


def image_input(name: str, mean_file: str = "", channels: str = "RGB") -> dict[str, Any]:
    """One image input of a preprocessing body: an 8x8 NCHW float tensor named ``name``."""
    return {
        "tensor_name": name,
        "image": {
            "dimension_order": "NCHW",
            "resize_type": "SQUASH",
            "target_size": "8x8",
            "color_channels": channels,
            "pixel_scaling": 255.0,
            "mean_file": mean_file,
            "data_type": "FLOAT32",
        },
    }


def preprocessing_body(*inputs: dict[str, Any]) -> dict[str, Any]:
    """A network's preprocessing as a request gives it, with batched outputs."""
    return {"inputs": list(inputs), "batched_output": True}
