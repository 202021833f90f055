# Generated from protos/ by scripts/gen_protos.py. Do not edit.
import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from service._proto.sightline.v1 import common_pb2 as _common_pb2
from service._proto.sightline.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DimensionOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_ORDER_UNSPECIFIED: _ClassVar[DimensionOrder]
    NCHW: _ClassVar[DimensionOrder]
    NCWH: _ClassVar[DimensionOrder]
    NHWC: _ClassVar[DimensionOrder]
    NWHC: _ClassVar[DimensionOrder]

class ResizeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIZE_TYPE_UNSPECIFIED: _ClassVar[ResizeType]
    SQUASH: _ClassVar[ResizeType]
    CROP: _ClassVar[ResizeType]
    FILL: _ClassVar[ResizeType]
    NETWORK: _ClassVar[ResizeType]

class ColorChannels(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_CHANNELS_UNSPECIFIED: _ClassVar[ColorChannels]
    RGB: _ClassVar[ColorChannels]
    BGR: _ClassVar[ColorChannels]
    L: _ClassVar[ColorChannels]
    GRAY: _ClassVar[ColorChannels]

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FLOAT32: _ClassVar[DataType]
    UINT8: _ClassVar[DataType]
DIMENSION_ORDER_UNSPECIFIED: DimensionOrder
NCHW: DimensionOrder
NCWH: DimensionOrder
NHWC: DimensionOrder
NWHC: DimensionOrder
RESIZE_TYPE_UNSPECIFIED: ResizeType
SQUASH: ResizeType
CROP: ResizeType
FILL: ResizeType
NETWORK: ResizeType
COLOR_CHANNELS_UNSPECIFIED: ColorChannels
RGB: ColorChannels
BGR: ColorChannels
L: ColorChannels
GRAY: ColorChannels
DATA_TYPE_UNSPECIFIED: DataType
FLOAT32: DataType
UINT8: DataType

class ImagePreprocessing(_message.Message):
    __slots__ = ("dimension_order", "resize_type", "target_size", "color_channels", "pixel_scaling", "mean_file", "data_type")
    DIMENSION_ORDER_FIELD_NUMBER: _ClassVar[int]
    RESIZE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SIZE_FIELD_NUMBER: _ClassVar[int]
    COLOR_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SCALING_FIELD_NUMBER: _ClassVar[int]
    MEAN_FILE_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    dimension_order: DimensionOrder
    resize_type: ResizeType
    target_size: str
    color_channels: ColorChannels
    pixel_scaling: float
    mean_file: str
    data_type: DataType
    def __init__(self, dimension_order: _Optional[_Union[DimensionOrder, str]] = ..., resize_type: _Optional[_Union[ResizeType, str]] = ..., target_size: _Optional[str] = ..., color_channels: _Optional[_Union[ColorChannels, str]] = ..., pixel_scaling: _Optional[float] = ..., mean_file: _Optional[str] = ..., data_type: _Optional[_Union[DataType, str]] = ...) -> None: ...

class ConstantInput(_message.Message):
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class InputPreprocessing(_message.Message):
    __slots__ = ("tensor_name", "image", "constant")
    TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_FIELD_NUMBER: _ClassVar[int]
    tensor_name: str
    image: ImagePreprocessing
    constant: ConstantInput
    def __init__(self, tensor_name: _Optional[str] = ..., image: _Optional[_Union[ImagePreprocessing, _Mapping]] = ..., constant: _Optional[_Union[ConstantInput, _Mapping]] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("inputs", "batched_output")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    BATCHED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[InputPreprocessing]
    batched_output: bool
    def __init__(self, inputs: _Optional[_Iterable[_Union[InputPreprocessing, _Mapping]]] = ..., batched_output: _Optional[bool] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "framework", "preprocessing", "task_id", "create_date", "update_date")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_DATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_DATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _struct_pb2.Struct
    framework: str
    preprocessing: Preprocessing
    task_id: str
    create_date: _timestamp_pb2.Timestamp
    update_date: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., framework: _Optional[str] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., task_id: _Optional[str] = ..., create_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetNetworkRequest(_message.Message):
    __slots__ = ("network_id",)
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    def __init__(self, network_id: _Optional[str] = ...) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("count", "results")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    results: _containers.RepeatedCompositeFieldContainer[Network]
    def __init__(self, count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Network, _Mapping]]] = ...) -> None: ...

class NetworkFile(_message.Message):
    __slots__ = ("name", "size", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class NetworkUpload(_message.Message):
    __slots__ = ("network", "files")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    network: Network
    files: _containers.RepeatedCompositeFieldContainer[NetworkFile]
    def __init__(self, network: _Optional[_Union[Network, _Mapping]] = ..., files: _Optional[_Iterable[_Union[NetworkFile, _Mapping]]] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("file_name", "data")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    data: bytes
    def __init__(self, file_name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("upload", "chunk")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    upload: NetworkUpload
    chunk: FileChunk
    def __init__(self, upload: _Optional[_Union[NetworkUpload, _Mapping]] = ..., chunk: _Optional[_Union[FileChunk, _Mapping]] = ...) -> None: ...

class UpdateNetworkRequest(_message.Message):
    __slots__ = ("network", "update_mask")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    network: Network
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, network: _Optional[_Union[Network, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteNetworkRequest(_message.Message):
    __slots__ = ("network_id",)
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    def __init__(self, network_id: _Optional[str] = ...) -> None: ...

class DeleteNetworkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InferNetworkRequest(_message.Message):
    __slots__ = ("network_id", "inputs", "output_tensors")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TENSORS_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[_inference_pb2.Input]
    output_tensors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, network_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_inference_pb2.Input, _Mapping]]] = ..., output_tensors: _Optional[_Iterable[str]] = ...) -> None: ...

class InferNetworkResponse(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    def __init__(self, tensors: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ...) -> None: ...
