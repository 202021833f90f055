"""The types every layer shares, importing nothing of the use cases or the transports.

- ``resources``: the v0.7 resource model (networks and their preprocessing, specifications, versions and their
  post-processings);
- ``v07``: their v0.7 JSON, parsed and printed;
- ``requests``: what a client asks (``Target``, ``ImageRequest``);
- ``resolved``: a target resolved to what runs it (``ResolvedVersion``);
- ``results``: what recognition answers (``RecognitionResult``).
"""

from postprocess.decoders import AnchoredOutput, DirectOutput, YoloOutput, Yolov5Output, Yolov8Output
from service.domain.requests import ImageRequest, Target
from service.domain.resolved import ResolvedVersion
from service.domain.resources import (
    DEFAULT_MAX_PREDICTIONS,
    FRAMEWORKS,
    ClassificationPostProcessing,
    ColorChannels,
    ConstantInput,
    DataType,
    DetectionOutput,
    DetectionPostProcessing,
    DimensionOrder,
    ImagePreprocessing,
    InputPreprocessing,
    LabelDef,
    Network,
    PostProcessing,
    Preprocessing,
    ResizeType,
    Roi,
    Specification,
    SpecOutput,
    Version,
    default_threshold,
)
from service.domain.results import RecognitionResult
from service.domain.v07 import (
    DETECTION_KINDS,
    check_version_against_spec,
    default_anchor_format,
    default_box_format,
    parse_network,
    parse_post_processings,
    parse_preprocessing,
    parse_specification,
    post_processing_to_v07,
    preprocessing_to_v07,
    spec_output_to_v07,
)

__all__ = [
    "DEFAULT_MAX_PREDICTIONS",
    "DETECTION_KINDS",
    "FRAMEWORKS",
    "AnchoredOutput",
    "ClassificationPostProcessing",
    "ColorChannels",
    "ConstantInput",
    "DataType",
    "DetectionOutput",
    "DetectionPostProcessing",
    "DimensionOrder",
    "DirectOutput",
    "ImagePreprocessing",
    "ImageRequest",
    "InputPreprocessing",
    "LabelDef",
    "Network",
    "PostProcessing",
    "Preprocessing",
    "RecognitionResult",
    "ResizeType",
    "ResolvedVersion",
    "Roi",
    "SpecOutput",
    "Specification",
    "Target",
    "Version",
    "YoloOutput",
    "Yolov5Output",
    "Yolov8Output",
    "check_version_against_spec",
    "default_anchor_format",
    "default_box_format",
    "default_threshold",
    "parse_network",
    "parse_post_processings",
    "parse_preprocessing",
    "parse_specification",
    "post_processing_to_v07",
    "preprocessing_to_v07",
    "spec_output_to_v07",
]
