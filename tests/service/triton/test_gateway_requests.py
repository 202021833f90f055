"""The gateway's own ModelInferRequest bytes and its reading of ModelInferResponse, against messages built field by
field with protobuf (the KServe v2 definitions tritonclient ships) and tritonclient's own result reader."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.grpc import InferResult, service_pb2
from tritonclient.utils import serialize_byte_tensor

from service.triton.gateway import _arrays, _in_band, _Request, _varint

ARRAYS: dict[str, npt.NDArray[Any]] = {
    "image": np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32),
    "sizes": np.array([[480, 640]], dtype=np.int32),
    "strided": np.arange(24, dtype=np.int64).reshape(4, 6)[:, ::2],  # not contiguous
    "empty": np.zeros((0, 4), dtype=np.float32),
    "flags": np.array([[True, False]]),
    "words": np.array([[b"cat", b""]], dtype=np.object_),
}


def expected(model: str, inputs: dict[str, npt.NDArray[Any]], outputs: list[str]) -> service_pb2.ModelInferRequest:
    datatypes = {"f": "FP32", "i": "INT32", "l": "INT64", "?": "BOOL", "O": "BYTES"}
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in inputs.items():
        datatype = datatypes[array.dtype.char]
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        content = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
        request.raw_input_contents.append(content)
    for name in outputs:
        request.outputs.add(name=name)
    return request


@pytest.mark.parametrize("names", [["image"], ["image", "sizes"], list(ARRAYS), ["empty"], ["words", "image"]])
def test_in_band_requests_are_the_messages_protobuf_builds(names: list[str]) -> None:
    inputs = {name: ARRAYS[name] for name in names}
    request = _in_band("detector", inputs, ["boxes", "scores"])
    parsed = service_pb2.ModelInferRequest.FromString(request.payload)
    assert parsed == expected("detector", inputs, ["boxes", "scores"])


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 196608, 2**31, 2**63 - 1])
def test_varints_are_protobufs(value: int) -> None:
    # An InferParameter whose int64_param (field 2, in a oneof: written even when 0) is set is the tag 0x10, then
    # the value's varint.
    message = service_pb2.InferParameter(int64_param=value).SerializeToString()
    assert message == b"\x10" + _varint(value)


def response(outputs: dict[str, npt.NDArray[Any]]) -> service_pb2.ModelInferResponse:
    answer = service_pb2.ModelInferResponse(model_name="m")
    for name, array in outputs.items():
        datatype = "BYTES" if array.dtype.hasobject else "FP32"
        answer.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        answer.raw_output_contents.append(
            serialize_byte_tensor(array).item() if array.dtype.hasobject else array.tobytes()
        )
    return answer


def test_answers_are_read_as_tritonclient_reads_them() -> None:
    outputs = {
        "scores": np.random.default_rng(1).random((1, 10), dtype=np.float32),
        "labels": np.array([[b"a", b"bc"]], dtype=np.object_),
        "none": np.zeros((1, 0), dtype=np.float32),
    }
    answer = response(outputs)
    names = ["labels", "none", "scores"]
    arrays = _arrays(answer, _Request(b"", names), "m")
    reference = InferResult(answer)
    for name in names:
        np.testing.assert_array_equal(arrays[name], reference.as_numpy(name))
        assert arrays[name].shape == outputs[name].shape


def test_an_output_the_answer_lacks_is_reported() -> None:
    with pytest.raises(Exception, match="no output 'missing'"):
        _arrays(response({"scores": np.zeros((1, 2), np.float32)}), _Request(b"", ["missing"]), "m")
