# Generated from protos/ by scripts/gen_protos.py. Do not edit.
from service._proto.sightline.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageInput(_message.Message):
    __slots__ = ("source", "content", "bbox", "polygon", "crop_uniform_background")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    CROP_UNIFORM_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    source: str
    content: bytes
    bbox: _common_pb2.BoundingBox
    polygon: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point]
    crop_uniform_background: bool
    def __init__(self, source: _Optional[str] = ..., content: _Optional[bytes] = ..., bbox: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., polygon: _Optional[_Iterable[_Union[_common_pb2.Point, _Mapping]]] = ..., crop_uniform_background: _Optional[bool] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: ImageInput
    def __init__(self, image: _Optional[_Union[ImageInput, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("spec_id", "version_id", "inputs", "show_discarded", "max_predictions")
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SHOW_DISCARDED_FIELD_NUMBER: _ClassVar[int]
    MAX_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    spec_id: str
    version_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[Input]
    show_discarded: bool
    max_predictions: int
    def __init__(self, spec_id: _Optional[str] = ..., version_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., show_discarded: _Optional[bool] = ..., max_predictions: _Optional[int] = ...) -> None: ...

class Roi(_message.Message):
    __slots__ = ("region_id", "bbox")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    bbox: _common_pb2.BoundingBox
    def __init__(self, region_id: _Optional[int] = ..., bbox: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label_name", "label_id", "roi", "score", "threshold", "track_id")
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    label_name: str
    label_id: int
    roi: Roi
    score: float
    threshold: float
    track_id: int
    def __init__(self, label_name: _Optional[str] = ..., label_id: _Optional[int] = ..., roi: _Optional[_Union[Roi, _Mapping]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., track_id: _Optional[int] = ...) -> None: ...

class LabelsResult(_message.Message):
    __slots__ = ("predicted", "discarded")
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    predicted: _containers.RepeatedCompositeFieldContainer[Prediction]
    discarded: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predicted: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., discarded: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class OutputResult(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: LabelsResult
    def __init__(self, labels: _Optional[_Union[LabelsResult, _Mapping]] = ...) -> None: ...

class RecognitionResult(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputResult]
    def __init__(self, outputs: _Optional[_Iterable[_Union[OutputResult, _Mapping]]] = ...) -> None: ...
