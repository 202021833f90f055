# Generated from protos/ by scripts/gen_protos.py. Do not edit.
import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from service._proto.sightline.v1 import common_pb2 as _common_pb2
from service._proto.sightline.v1 import inference_pb2 as _inference_pb2
from service._proto.sightline.v1 import streams_pb2 as _streams_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoiType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROI_TYPE_UNSPECIFIED: _ClassVar[RoiType]
    NONE: _ClassVar[RoiType]
    BBOX: _ClassVar[RoiType]
ROI_TYPE_UNSPECIFIED: RoiType
NONE: RoiType
BBOX: RoiType

class LabelsOutput(_message.Message):
    __slots__ = ("labels", "exclusive", "roi")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    exclusive: bool
    roi: RoiType
    def __init__(self, labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., exclusive: _Optional[bool] = ..., roi: _Optional[_Union[RoiType, str]] = ...) -> None: ...

class SpecificationOutput(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: LabelsOutput
    def __init__(self, labels: _Optional[_Union[LabelsOutput, _Mapping]] = ...) -> None: ...

class Specification(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "update_date", "current_version_id", "outputs")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPDATE_DATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _struct_pb2.Struct
    update_date: _timestamp_pb2.Timestamp
    current_version_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[SpecificationOutput]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_version_id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[SpecificationOutput, _Mapping]]] = ...) -> None: ...

class AnchoredOutput(_message.Message):
    __slots__ = ("anchors_tensor", "scores_tensor", "offsets_tensor", "anchor_format")
    class AnchorFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ANCHOR_FORMAT_UNSPECIFIED: _ClassVar[AnchoredOutput.AnchorFormat]
        XYWH: _ClassVar[AnchoredOutput.AnchorFormat]
        XYXY: _ClassVar[AnchoredOutput.AnchorFormat]
    ANCHOR_FORMAT_UNSPECIFIED: AnchoredOutput.AnchorFormat
    XYWH: AnchoredOutput.AnchorFormat
    XYXY: AnchoredOutput.AnchorFormat
    ANCHORS_TENSOR_FIELD_NUMBER: _ClassVar[int]
    SCORES_TENSOR_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_TENSOR_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FORMAT_FIELD_NUMBER: _ClassVar[int]
    anchors_tensor: str
    scores_tensor: str
    offsets_tensor: str
    anchor_format: AnchoredOutput.AnchorFormat
    def __init__(self, anchors_tensor: _Optional[str] = ..., scores_tensor: _Optional[str] = ..., offsets_tensor: _Optional[str] = ..., anchor_format: _Optional[_Union[AnchoredOutput.AnchorFormat, str]] = ...) -> None: ...

class DirectOutput(_message.Message):
    __slots__ = ("boxes_tensor", "scores_tensor", "classes_tensor", "box_format")
    class BoxFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BOX_FORMAT_UNSPECIFIED: _ClassVar[DirectOutput.BoxFormat]
        XYXY: _ClassVar[DirectOutput.BoxFormat]
        YXYX: _ClassVar[DirectOutput.BoxFormat]
    BOX_FORMAT_UNSPECIFIED: DirectOutput.BoxFormat
    XYXY: DirectOutput.BoxFormat
    YXYX: DirectOutput.BoxFormat
    BOXES_TENSOR_FIELD_NUMBER: _ClassVar[int]
    SCORES_TENSOR_FIELD_NUMBER: _ClassVar[int]
    CLASSES_TENSOR_FIELD_NUMBER: _ClassVar[int]
    BOX_FORMAT_FIELD_NUMBER: _ClassVar[int]
    boxes_tensor: str
    scores_tensor: str
    classes_tensor: str
    box_format: DirectOutput.BoxFormat
    def __init__(self, boxes_tensor: _Optional[str] = ..., scores_tensor: _Optional[str] = ..., classes_tensor: _Optional[str] = ..., box_format: _Optional[_Union[DirectOutput.BoxFormat, str]] = ...) -> None: ...

class YoloOutput(_message.Message):
    __slots__ = ("output_tensor", "anchors")
    OUTPUT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    output_tensor: str
    anchors: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, output_tensor: _Optional[str] = ..., anchors: _Optional[_Iterable[float]] = ...) -> None: ...

class Yolov5Output(_message.Message):
    __slots__ = ("output_tensor",)
    OUTPUT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    output_tensor: str
    def __init__(self, output_tensor: _Optional[str] = ...) -> None: ...

class Yolov8Output(_message.Message):
    __slots__ = ("output_tensor",)
    OUTPUT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    output_tensor: str
    def __init__(self, output_tensor: _Optional[str] = ...) -> None: ...

class ClassificationPostProcessing(_message.Message):
    __slots__ = ("output_tensor", "thresholds")
    OUTPUT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    output_tensor: str
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, output_tensor: _Optional[str] = ..., thresholds: _Optional[_Iterable[float]] = ...) -> None: ...

class DetectionPostProcessing(_message.Message):
    __slots__ = ("anchored_output", "direct_output", "yolo_output", "yolov5_output", "yolov8_output", "thresholds", "nms_threshold", "discard_threshold", "normalize_wrt_tensor", "class_agnostic_nms_threshold")
    ANCHORED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DIRECT_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    YOLO_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    YOLOV5_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    YOLOV8_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    NMS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DISCARD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_WRT_TENSOR_FIELD_NUMBER: _ClassVar[int]
    CLASS_AGNOSTIC_NMS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    anchored_output: AnchoredOutput
    direct_output: DirectOutput
    yolo_output: YoloOutput
    yolov5_output: Yolov5Output
    yolov8_output: Yolov8Output
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    nms_threshold: float
    discard_threshold: float
    normalize_wrt_tensor: str
    class_agnostic_nms_threshold: float
    def __init__(self, anchored_output: _Optional[_Union[AnchoredOutput, _Mapping]] = ..., direct_output: _Optional[_Union[DirectOutput, _Mapping]] = ..., yolo_output: _Optional[_Union[YoloOutput, _Mapping]] = ..., yolov5_output: _Optional[_Union[Yolov5Output, _Mapping]] = ..., yolov8_output: _Optional[_Union[Yolov8Output, _Mapping]] = ..., thresholds: _Optional[_Iterable[float]] = ..., nms_threshold: _Optional[float] = ..., discard_threshold: _Optional[float] = ..., normalize_wrt_tensor: _Optional[str] = ..., class_agnostic_nms_threshold: _Optional[float] = ...) -> None: ...

class PostProcessing(_message.Message):
    __slots__ = ("classification", "detection")
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    classification: ClassificationPostProcessing
    detection: DetectionPostProcessing
    def __init__(self, classification: _Optional[_Union[ClassificationPostProcessing, _Mapping]] = ..., detection: _Optional[_Union[DetectionPostProcessing, _Mapping]] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("id", "spec_id", "network_id", "post_processings", "spec_name", "network_name", "update_date")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    POST_PROCESSINGS_FIELD_NUMBER: _ClassVar[int]
    SPEC_NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_DATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec_id: str
    network_id: str
    post_processings: _containers.RepeatedCompositeFieldContainer[PostProcessing]
    spec_name: str
    network_name: str
    update_date: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., spec_id: _Optional[str] = ..., network_id: _Optional[str] = ..., post_processings: _Optional[_Iterable[_Union[PostProcessing, _Mapping]]] = ..., spec_name: _Optional[str] = ..., network_name: _Optional[str] = ..., update_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSpecificationRequest(_message.Message):
    __slots__ = ("spec_id",)
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    spec_id: str
    def __init__(self, spec_id: _Optional[str] = ...) -> None: ...

class ListSpecificationsResponse(_message.Message):
    __slots__ = ("count", "results")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    results: _containers.RepeatedCompositeFieldContainer[Specification]
    def __init__(self, count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Specification, _Mapping]]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("spec_id", "offset", "limit")
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    spec_id: str
    offset: int
    limit: int
    def __init__(self, spec_id: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("count", "results")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    results: _containers.RepeatedCompositeFieldContainer[Version]
    def __init__(self, count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Version, _Mapping]]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("version_id",)
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    def __init__(self, version_id: _Optional[str] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CreateSpecificationRequest(_message.Message):
    __slots__ = ("specification",)
    SPECIFICATION_FIELD_NUMBER: _ClassVar[int]
    specification: Specification
    def __init__(self, specification: _Optional[_Union[Specification, _Mapping]] = ...) -> None: ...

class UpdateSpecificationRequest(_message.Message):
    __slots__ = ("specification", "update_mask")
    SPECIFICATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    specification: Specification
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, specification: _Optional[_Union[Specification, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSpecificationRequest(_message.Message):
    __slots__ = ("spec_id",)
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    spec_id: str
    def __init__(self, spec_id: _Optional[str] = ...) -> None: ...

class DeleteSpecificationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateVersionRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: Version
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("version_id",)
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    def __init__(self, version_id: _Optional[str] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
