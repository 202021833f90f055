"""Every ``config.pbtxt`` the one writer (``service.triton.repository.config_pbtxt``) gives is accepted by the real
embedded Triton: an Identity network per data type, batched and not, is read by ``inspect_onnx``, written, loaded
through the model-control API, read back by the gateway as the signature it was written from, and answers with
its input. BF16 loads too, but the embedded Triton's Python-based ONNX Runtime backend cannot run it: Triton's
Python backend gives no numpy array for BF16 (numpy has no bfloat16), and says so; a GPU Triton's native backend
serves the same folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from onnx import TensorProto, helper, save_model
from tritonclient.utils import triton_to_np_dtype

from service.errors import InferenceFailedError, InvalidArgumentError
from service.triton.gateway import GrpcTritonGateway
from service.triton.repository import MODEL_FILE, config_pbtxt, inspect_onnx
from service.triton.tensors import DATA_TYPES, data_type
from tests.helpers import TritonFixture

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "BF16": TensorProto.BFLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def identity_model(path: Path, dtype: str, dims: list[int | str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", ONNX_TYPES[dtype], dims)],
        [helper.make_tensor_value_info("y", ONNX_TYPES[dtype], dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    save_model(model, str(path))


def sample(dtype: str, shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    values = np.arange(int(np.prod(shape))).reshape(shape) % 2
    if dtype == "BYTES":
        return np.array([f"s{v}".encode() for v in values.ravel()], dtype=np.object_).reshape(shape)
    return values.astype(triton_to_np_dtype(dtype))


def test_every_data_type_has_an_identity_model() -> None:
    assert set(ONNX_TYPES) == {t.name for t in DATA_TYPES}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", list(ONNX_TYPES))
async def test_written_configs_load_and_serve_in_triton(triton: TritonFixture, dtype: str, batched: bool) -> None:
    name = f"config-{dtype.lower()}-{'b' if batched else 'u'}"
    folder = triton.models / name
    identity_model(folder / "1" / MODEL_FILE, dtype, ["n", 2] if batched else [3, 2])
    signature = inspect_onnx(folder / "1" / MODEL_FILE, max_batch_size=8)
    assert signature.max_batch_size == (8 if batched else 0)
    (folder / "config.pbtxt").write_text(config_pbtxt(signature))
    gateway = GrpcTritonGateway(triton.url)
    try:
        await gateway.load_model(name)
        served = await gateway.model_info(name)
        assert served == signature
        assert served.inputs[0].numpy_dtype == data_type(dtype).numpy
        x = sample(dtype, (2, 2) if batched else (3, 2))
        if dtype == "BF16":
            with pytest.raises(InferenceFailedError, match="BF16 and cannot be converted to NumPy"):
                await gateway.infer(name, {"x": x}, ["y"])
            return
        y = (await gateway.infer(name, {"x": x}, ["y"]))["y"]
        assert y.shape == x.shape
        assert y.tolist() == x.tolist()
    finally:
        await gateway.unload_model(name)
        await gateway.close()


async def test_a_string_input_that_is_not_utf8_is_refused_alone(triton: TritonFixture) -> None:
    name = "config-bytes-text"
    folder = triton.models / name
    identity_model(folder / "1" / MODEL_FILE, "BYTES", ["n", 2])
    (folder / "config.pbtxt").write_text(config_pbtxt(inspect_onnx(folder / "1" / MODEL_FILE, max_batch_size=8)))
    gateway = GrpcTritonGateway(triton.url)
    try:
        await gateway.load_model(name)
        with pytest.raises(InvalidArgumentError, match="not UTF-8 text"):
            await gateway.infer(name, {"x": np.array([[b"\xff", b"ok"]], dtype=np.object_)}, ["y"])
        text = np.array([["caf\u00e9".encode(), b"ok"]], dtype=np.object_)
        assert (await gateway.infer(name, {"x": text}, ["y"]))["y"].tolist() == text.tolist()
    finally:
        await gateway.unload_model(name)
        await gateway.close()
