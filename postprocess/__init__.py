"""Post-processing: a network's raw output tensors to v0.7 predictions. Pure numpy.

- :func:`classify` / :func:`classify_batch`: classification (exclusive) and tagging (multi-label).
- :func:`detect`: detection, with a :class:`DetectionConfig` naming one decoder
  (:class:`AnchoredOutput`, :class:`DirectOutput`, :class:`YoloOutput`, :class:`Yolov5Output`,
  :class:`Yolov8Output`).
- :mod:`postprocess.boxes`, :mod:`postprocess.nms`: box maths and non-maximum suppression (imported
  from their modules: ``from postprocess.nms import nms``).
"""

from __future__ import annotations

from postprocess.classification import classify, classify_batch
from postprocess.decoders import (
    AnchoredOutput,
    Candidates,
    DirectOutput,
    OutputDecoder,
    YoloOutput,
    Yolov5Output,
    Yolov8Output,
)
from postprocess.detection import DetectionConfig, check_output_shapes, detect, reframe
from postprocess.errors import InvalidConfigError, MissingTensorError, OutputShapeError, PostprocessError
from postprocess.thresholds import CLASSIFICATION_THRESHOLD, DETECTION_THRESHOLD, TAGGING_THRESHOLD, default_threshold
from postprocess.types import BBox, Label, LabelsResult, Prediction

__all__ = [
    "CLASSIFICATION_THRESHOLD",
    "DETECTION_THRESHOLD",
    "TAGGING_THRESHOLD",
    "AnchoredOutput",
    "BBox",
    "Candidates",
    "DetectionConfig",
    "DirectOutput",
    "InvalidConfigError",
    "Label",
    "LabelsResult",
    "MissingTensorError",
    "OutputDecoder",
    "OutputShapeError",
    "PostprocessError",
    "Prediction",
    "YoloOutput",
    "Yolov5Output",
    "Yolov8Output",
    "check_output_shapes",
    "classify",
    "classify_batch",
    "default_threshold",
    "detect",
    "reframe",
]
