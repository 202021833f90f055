"""The v0.7 resource model's types: networks and their preprocessing, specifications, versions and their
post-processings. Values only; ``service.domain.v07`` parses and prints their v0.7 JSON."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from postprocess.decoders import AnchoredOutput, DirectOutput, YoloOutput, Yolov5Output, Yolov8Output

DEFAULT_MAX_PREDICTIONS = 100
FRAMEWORKS = ("onnx", "nv-caffe-0.x-mod", "caffe", "tensorflow-1.x", "tensorflow-2.x")
"""Accepted ``framework`` values: the v0.7 contract's three and the aliases ``caffe`` and ``tensorflow-2.x``
(Caffe and TensorFlow uploads are converted to ONNX, ``service/convert``)."""


class DimensionOrder(enum.Enum):
    NCHW = "NCHW"
    NCWH = "NCWH"
    NHWC = "NHWC"
    NWHC = "NWHC"


class ResizeType(enum.Enum):
    SQUASH = "SQUASH"
    CROP = "CROP"
    FILL = "FILL"
    NETWORK = "NETWORK"


class ColorChannels(enum.Enum):
    RGB = "RGB"
    BGR = "BGR"
    L = "L"


class DataType(enum.Enum):
    FLOAT32 = "FLOAT32"
    UINT8 = "UINT8"


class Roi(enum.Enum):
    NONE = "NONE"
    BBOX = "BBOX"


# --------------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True, slots=True)
class ImagePreprocessing:
    """How one image becomes one input tensor (v0.7 ``ImagePreprocessing``).

    ``target`` is (width, height) in pixels; with ``ResizeType.NETWORK`` it is (N, N), N being the largest side.
    """

    dimension_order: DimensionOrder
    resize_type: ResizeType
    target: tuple[int, int]
    color_channels: ColorChannels
    pixel_scaling: float = 255.0
    mean_file: str = ""
    data_type: DataType = DataType.FLOAT32

    @property
    def target_size(self) -> str:
        w, h = self.target
        return str(w) if self.resize_type is ResizeType.NETWORK else f"{w}x{h}"


@dataclass(frozen=True, slots=True)
class ConstantInput:
    """A constant tensor; a string value ``"data.1"`` is dimension 1 (batch excluded) of image input ``data``."""

    shape: tuple[int, ...]
    data: tuple[float | str, ...]


@dataclass(frozen=True, slots=True)
class InputPreprocessing:
    tensor_name: str
    image: ImagePreprocessing | None = None
    constant: ConstantInput | None = None


@dataclass(frozen=True, slots=True)
class Preprocessing:
    inputs: tuple[InputPreprocessing, ...]
    batched_output: bool = True

    @property
    def image_inputs(self) -> tuple[InputPreprocessing, ...]:
        return tuple(i for i in self.inputs if i.image is not None)

    @property
    def mean_files(self) -> tuple[str, ...]:
        return tuple(i.image.mean_file for i in self.inputs if i.image is not None and i.image.mean_file)


# ------------------------------------------------------------------------------------------ specifications


@dataclass(frozen=True, slots=True)
class LabelDef:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class SpecOutput:
    labels: tuple[LabelDef, ...]
    exclusive: bool
    roi: Roi


@dataclass(frozen=True, slots=True)
class Specification:
    id: str
    name: str
    outputs: tuple[SpecOutput, ...]
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    current_version_id: str | None = None
    update_date: datetime | None = None


def default_threshold(output: SpecOutput) -> float:
    """v0.7 defaults: 0.8 for detection (roi BBOX), 0.025 for classification, 0.5 for tagging."""
    if output.roi is Roi.BBOX:
        return 0.8
    return 0.025 if output.exclusive else 0.5


# ---------------------------------------------------------------------------------------- post-processings


DetectionOutput = AnchoredOutput | DirectOutput | YoloOutput | Yolov5Output | Yolov8Output


@dataclass(frozen=True, slots=True)
class ClassificationPostProcessing:
    output_tensor: str
    thresholds: tuple[float, ...] | None = None

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return (self.output_tensor,)


@dataclass(frozen=True, slots=True)
class DetectionPostProcessing:
    output: DetectionOutput
    thresholds: tuple[float, ...] | None = None
    nms_threshold: float = 0.3
    discard_threshold: float = 0.025
    normalize_wrt_tensor: str = ""
    class_agnostic_nms_threshold: float | None = None

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """The network outputs this post-processing reads (``normalize_wrt_tensor`` is an input)."""
        return self.output.tensor_names


PostProcessing = ClassificationPostProcessing | DetectionPostProcessing


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    framework: str
    preprocessing: Preprocessing
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    task_id: str = ""
    create_date: datetime | None = None
    update_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    spec_id: str
    network_id: str
    post_processings: tuple[PostProcessing, ...]
    spec_name: str = ""
    network_name: str = ""
    update_date: datetime | None = None
