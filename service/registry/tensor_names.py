"""Tensor names as Triton serves them.

A converted network keeps, in its preprocessing and its versions, the names it was uploaded with
(``image_tensor:0``); its stored ``Signature`` maps them to the names its ONNX graph serves (``image_tensor``).
These functions rewrite a preprocessing or a post-processing into the served names, which recognition,
InferNetwork and the version checks use. A public network's names are Triton's: its signature is empty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

from service.domain import (
    ClassificationPostProcessing,
    ConstantInput,
    InputPreprocessing,
    PostProcessing,
    Preprocessing,
)
from service.triton.repository import Signature

__all__ = ["PUBLIC_SIGNATURE", "served_post_processing", "served_preprocessing"]

PUBLIC_SIGNATURE = Signature((), (), 0)
"""What the registry knows of a public network's tensors: nothing to resolve (Triton's names are the names)."""


def served_preprocessing(preprocessing: Preprocessing, signature: Signature) -> Preprocessing:
    """The preprocessing with its tensor names (and constants' references to image inputs) as served."""
    if not signature.names:
        return preprocessing

    def reference(value: float | str) -> float | str:
        if isinstance(value, str):
            name, _, dim = value.rpartition(".")
            return f"{signature.served(name)}.{dim}"
        return value

    def item(i: InputPreprocessing) -> InputPreprocessing:
        constant = i.constant
        if constant is not None:
            constant = ConstantInput(constant.shape, tuple(reference(v) for v in constant.data))
        return replace(i, tensor_name=signature.served(i.tensor_name), constant=constant)

    return replace(preprocessing, inputs=tuple(item(i) for i in preprocessing.inputs))


def served_post_processing(pp: PostProcessing, signature: Signature) -> PostProcessing:
    """A post-processing with its tensor names as served (names the network does not know stay as they are)."""
    if not signature.names:
        return pp
    if isinstance(pp, ClassificationPostProcessing):
        return replace(pp, output_tensor=signature.served(pp.output_tensor))
    output: Any = pp.output  # one of the detection output dataclasses, whose ``*_tensor`` fields name tensors
    renamed = {
        f.name: signature.served(value)
        for f in dataclasses.fields(output)
        if f.name.endswith("_tensor") and isinstance(value := getattr(output, f.name), str)
    }
    normalize = signature.served(pp.normalize_wrt_tensor) if pp.normalize_wrt_tensor else ""
    return replace(pp, output=replace(output, **renamed), normalize_wrt_tensor=normalize)
