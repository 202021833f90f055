"""Every ``config.pbtxt`` the service writes parses as Triton's own ``ModelConfig`` (tritonclient ships Triton's
model_config.proto), for every data type ONNX Runtime gives us, with and without a batch dimension; and the
gateway reads each data type back as the numpy dtype Triton serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype

from service.errors import InvalidArgumentError
from service.triton.repository import config_pbtxt, inspect_onnx
from service.triton.tensors import DATA_TYPES, Signature, TensorSignature, signature_from_config

TRITON_DTYPES = [t.name for t in DATA_TYPES]


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
    # The JSON that get_model_config(as_json=True) gives.
    served = signature_from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
    assert served.inputs == signature.inputs
    # A scalar a sample travels as [1] (the model sees it reshaped to []): what a client sends and receives.
    assert served.outputs == (TensorSignature("y", dtype, (-1, 1)),)
    assert served.inputs[0].numpy_dtype == np.dtype(NUMPY[dtype])
    assert served.sample_dims(served.inputs[0]) == (2,)


def test_a_file_onnx_runtime_cannot_load_is_the_uploaders_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidArgumentError, match=r"model\.onnx is not an ONNX model ONNX Runtime can load"):
        inspect_onnx(tmp_path / "model.onnx", max_batch_size=8)
