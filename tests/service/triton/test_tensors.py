"""The Triton adapter's one tensor type and one data-type table: each spelling names one row, signatures read
from Triton's configuration put the batch dimension where an ONNX graph's do, and a stored signature comes back
as it was stored."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from service.triton.tensors import (
    DATA_TYPES,
    Signature,
    TensorSignature,
    data_type,
    signature_from_config,
    signature_from_json,
)


def test_each_spelling_of_a_data_type_names_one_row() -> None:
    assert len({t.name for t in DATA_TYPES}) == len(DATA_TYPES)
    for row in DATA_TYPES:
        assert data_type(row.name) is data_type(row.config) is data_type(row.onnx) is row
        # Every configuration spelling is one Triton's ModelConfig has.
        assert model_config_pb2.DataType.Name(model_config_pb2.DataType.Value(row.config)) == row.config
    assert data_type("BYTES").config == "TYPE_STRING"
    assert data_type("tensor(float)").numpy == np.dtype(np.float32)
    assert data_type("BYTES").numpy == np.dtype(np.object_)


@pytest.mark.parametrize("name", ["TYPE_BYTES", "FLOAT32", "tensor(complex64)", ""])
def test_an_unknown_spelling_is_a_key_error(name: str) -> None:
    with pytest.raises(KeyError):
        data_type(name)


def test_a_batching_configuration_puts_the_batch_dimension_in_front() -> None:
    config = {
        "max_batch_size": 8,
        "input": [{"name": "data", "data_type": "TYPE_UINT8", "dims": ["3", "-1", "-1"]}],
        "output": [{"name": "share", "dims": ["6"]}],  # no data_type: Triton's default, FP32
    }
    served = signature_from_config(config)
    assert served == Signature(
        (TensorSignature("data", "UINT8", (-1, 3, -1, -1)),), (TensorSignature("share", "FP32", (-1, 6)),), 8
    )
    assert served.batched
    assert served.sample_dims(served.inputs[0]) == (3, -1, -1)
    assert served.inputs[0].numpy_dtype == np.dtype(np.uint8)


def test_a_configuration_without_batching_keeps_its_dims() -> None:
    served = signature_from_config({"input": [{"name": "x", "data_type": "TYPE_FP64", "dims": [2, 3]}]})
    assert not served.batched
    assert served.max_batch_size == 0
    assert served.inputs == (TensorSignature("x", "FP64", (2, 3)),)
    assert served.sample_dims(served.inputs[0]) == (2, 3)
    assert served.outputs == ()


def test_a_stored_signature_comes_back_as_stored() -> None:
    signature = Signature(
        (TensorSignature("image_tensor", "UINT8", (-1, -1, -1, 3)),),
        (TensorSignature("detection_boxes", "FP32", (-1, 100, 4)), TensorSignature("names", "BYTES", (-1,))),
        16,
        {"image_tensor:0": "image_tensor", "inputs": "image_tensor"},
    )
    assert signature_from_json(signature.to_json()) == signature
    assert signature.served("image_tensor:0") == "image_tensor"
    assert signature.served("detection_boxes") == "detection_boxes"  # a served name means itself
    assert signature.input("image_tensor") is signature.inputs[0]
    assert signature.input("detection_boxes") is None
    assert signature.output_names == ("detection_boxes", "names")
    assert "names" not in Signature((), (), 0).to_json()
