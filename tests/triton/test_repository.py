"""Every ``config.pbtxt`` the service writes parses as Triton's own ``ModelConfig`` (tritonclient ships Triton's
model_config.proto), for every data type ONNX Runtime gives us, with and without a batch dimension; and the
gateway reads each data type back as the numpy dtype Triton serves."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype

from service.triton.gateway import _model_info
from service.triton.repository import _ONNX_TYPES, Signature, TensorSignature, config_pbtxt

TRITON_DTYPES = sorted(set(_ONNX_TYPES.values()))


@pytest.mark.parametrize("batch", [0, 1, 8])
@pytest.mark.parametrize("dtype", TRITON_DTYPES)
def test_written_configs_parse_as_triton_model_configs(dtype: str, batch: int) -> None:
    first = -1 if batch else 3
    signature = Signature(
        inputs=(TensorSignature("data", dtype, (first, 3, 8, 8)), TensorSignature("scalar", dtype, (first,))),
        outputs=(TensorSignature("out", dtype, (first, 5)),),
        max_batch_size=batch,
    )
    config = text_format.Parse(config_pbtxt(signature), model_config_pb2.ModelConfig())
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == batch
    names = {model_config_pb2.DataType.Name(t.data_type) for t in (*config.input, *config.output)}
    assert names == {"TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}"}
    dims = [list(t.dims) for t in config.input]
    assert dims == ([[3, 8, 8], [1]] if batch else [[3, 3, 8, 8], [3]])
    assert config.HasField("dynamic_batching") is (batch > 1)


NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": triton_to_np_dtype("BF16"),  # ml_dtypes' bfloat16, as tritonclient decodes it
    "BYTES": np.object_,  # strings: once read back as float64, from the config's TYPE_STRING
}


@pytest.mark.parametrize("dtype", TRITON_DTYPES)
def test_the_gateway_reads_every_data_type_back(dtype: str) -> None:
    signature = Signature((TensorSignature("x", dtype, (-1, 2)),), (TensorSignature("y", dtype, (-1,)),), 4)
    config = text_format.Parse(config_pbtxt(signature), model_config_pb2.ModelConfig())
    info = _model_info(
        "m", json_format.MessageToDict(config, preserving_proto_field_name=True)
    )  # the JSON get_model_config(as_json=True) gives
    assert info.inputs[0].dtype == np.dtype(NUMPY[dtype])
    assert info.inputs[0].shape == (2,)
