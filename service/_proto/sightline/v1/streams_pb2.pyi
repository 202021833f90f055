# Generated from protos/ by scripts/gen_protos.py. Do not edit.
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from service._proto.sightline.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ordering(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDERING_UNSPECIFIED: _ClassVar[Ordering]
    ORDERED: _ClassVar[Ordering]
    AS_COMPLETED: _ClassVar[Ordering]

class DropPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_POLICY_UNSPECIFIED: _ClassVar[DropPolicy]
    BLOCK: _ClassVar[DropPolicy]
    DROP_OLDEST: _ClassVar[DropPolicy]
    DROP_NEWEST: _ClassVar[DropPolicy]

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    RGB24: _ClassVar[PixelFormat]
    BGR24: _ClassVar[PixelFormat]
    GRAY8: _ClassVar[PixelFormat]

class FrameStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_STATUS_UNSPECIFIED: _ClassVar[FrameStatus]
    OK: _ClassVar[FrameStatus]
    SKIPPED: _ClassVar[FrameStatus]
    ERROR: _ClassVar[FrameStatus]
ORDERING_UNSPECIFIED: Ordering
ORDERED: Ordering
AS_COMPLETED: Ordering
DROP_POLICY_UNSPECIFIED: DropPolicy
BLOCK: DropPolicy
DROP_OLDEST: DropPolicy
DROP_NEWEST: DropPolicy
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
RGB24: PixelFormat
BGR24: PixelFormat
GRAY8: PixelFormat
FRAME_STATUS_UNSPECIFIED: FrameStatus
OK: FrameStatus
SKIPPED: FrameStatus
ERROR: FrameStatus

class OutputThresholds(_message.Message):
    __slots__ = ("thresholds",)
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, thresholds: _Optional[_Iterable[float]] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("spec_id", "version_id", "show_discarded", "max_predictions", "max_in_flight", "ordering", "drop_policy", "max_latency_ms", "tracking", "output_thresholds")
    SPEC_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SHOW_DISCARDED_FIELD_NUMBER: _ClassVar[int]
    MAX_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    DROP_POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    spec_id: str
    version_id: str
    show_discarded: bool
    max_predictions: int
    max_in_flight: int
    ordering: Ordering
    drop_policy: DropPolicy
    max_latency_ms: int
    tracking: bool
    output_thresholds: _containers.RepeatedCompositeFieldContainer[OutputThresholds]
    def __init__(self, spec_id: _Optional[str] = ..., version_id: _Optional[str] = ..., show_discarded: _Optional[bool] = ..., max_predictions: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., ordering: _Optional[_Union[Ordering, str]] = ..., drop_policy: _Optional[_Union[DropPolicy, str]] = ..., max_latency_ms: _Optional[int] = ..., tracking: _Optional[bool] = ..., output_thresholds: _Optional[_Iterable[_Union[OutputThresholds, _Mapping]]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("width", "height", "format", "data")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    format: PixelFormat
    data: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("frame_id", "timestamp", "encoded", "raw")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    timestamp: _timestamp_pb2.Timestamp
    encoded: bytes
    raw: RawImage
    def __init__(self, frame_id: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class StreamRecognizeRequest(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    frame: Frame
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class FrameTiming(_message.Message):
    __slots__ = ("queue_ms", "preprocess_ms", "triton_ms", "postprocess_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TRITON_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    preprocess_ms: float
    triton_ms: float
    postprocess_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., triton_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class StreamRecognizeResponse(_message.Message):
    __slots__ = ("frame_id", "timestamp", "status", "skip_reason", "error", "result", "timing")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    timestamp: _timestamp_pb2.Timestamp
    status: FrameStatus
    skip_reason: str
    error: _status_pb2.Status
    result: _inference_pb2.RecognitionResult
    timing: FrameTiming
    def __init__(self, frame_id: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[FrameStatus, str]] = ..., skip_reason: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., result: _Optional[_Union[_inference_pb2.RecognitionResult, _Mapping]] = ..., timing: _Optional[_Union[FrameTiming, _Mapping]] = ...) -> None: ...
