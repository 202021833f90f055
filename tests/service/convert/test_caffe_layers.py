"""Each supported Caffe layer, converted to ONNX and run with ONNX Runtime, against OpenCV's Caffe importer.

Where OpenCV 4.10 departs from Caffe (it ignores InnerProduct's ``transpose``, LRN's ``k``, Deconvolution's
dilation and round_mode; it lacks Bias and NVIDIA Caffe's 5-blob BatchNorm), OpenCV runs an equivalent network
written with the layers it gets right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service.convert.caffe import SUPPORTED_LAYERS
from service.convert.errors import ConversionError, UnsupportedLayerError
from service.errors import InvalidArgumentError
from tests.service.convert.helpers import Array, compare_with_opencv, convert_net, run_onnx
from tools.fixtures.caffe_nets import CaffeNet

SHAPE = (2, 4, 7, 9)


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> Array:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def net_on(shape: tuple[int, ...] = SHAPE) -> CaffeNet:
    return CaffeNet("t").input("data", list(shape))


def feeds(shape: tuple[int, ...] = SHAPE, seed: int = 1) -> dict[str, Array]:
    return {"data": rand(*shape, seed=seed)}


def conv(**params: Any) -> CaffeNet:
    k = params.pop("k", 3)
    kh, kw = params.pop("khw", (k, k))
    groups = params.get("group", 1)
    n = params.pop("n", 6)
    p = {"num_output": n, **params}
    if "kernel_h" not in params:
        p["kernel_size"] = [k]
    blobs = [rand(n, SHAPE[1] // groups, kh, kw, seed=2)]
    if params.get("bias_term", True):
        blobs.append(rand(n, seed=3))
    return net_on().layer("conv", "Convolution", "data", "out", blobs, convolution_param=p)


CONVOLUTIONS: dict[str, Callable[[], CaffeNet]] = {
    "plain": lambda: conv(),
    "pad-stride": lambda: conv(pad=[1], stride=[2]),
    "groups": lambda: conv(group=2, pad=[1]),
    "depthwise": lambda: conv(group=4, n=4, pad=[1]),
    "dilation": lambda: conv(dilation=[2], pad=[2]),
    "rectangular": lambda: conv(khw=(3, 1), kernel_h=3, kernel_w=1, pad_h=1, pad_w=0, stride_h=1, stride_w=2),
    "two-values": lambda: conv(pad=[1, 0], stride=[2, 1], dilation=[1, 2]),
    "no-bias": lambda: conv(bias_term=False, k=1),
}


@pytest.mark.parametrize("case", sorted(CONVOLUTIONS))
def test_convolution(case: str) -> None:
    compare_with_opencv(CONVOLUTIONS[case](), feeds())


def test_convolution_with_two_bottoms_shares_its_weights() -> None:
    net = net_on().input("other", list(SHAPE))
    net.layer(
        "conv",
        "Convolution",
        ["data", "other"],
        ["a", "b"],
        [rand(6, 4, 3, 3), rand(6)],
        convolution_param={"num_output": 6, "kernel_size": [3]},
    )
    converted = convert_net(net)
    x, y = rand(*SHAPE, seed=5), rand(*SHAPE, seed=6)
    a, b = run_onnx(converted.model.SerializeToString(), {"data": x, "other": y}, ["a", "b"])
    a2, b2 = run_onnx(converted.model.SerializeToString(), {"data": y, "other": x}, ["a", "b"])
    np.testing.assert_allclose(a, b2, rtol=1e-6)
    np.testing.assert_allclose(b, a2, rtol=1e-6)


@pytest.mark.parametrize(("groups", "stride", "pad"), [(1, 1, 0), (1, 2, 1), (2, 2, 0), (4, 3, 1)])
def test_deconvolution(groups: int, stride: int, pad: int) -> None:
    n = 8
    net = net_on().layer(
        "up",
        "Deconvolution",
        "data",
        "out",
        [rand(4, n // groups, 3, 3), rand(n)],
        convolution_param={"num_output": n, "kernel_size": [3], "stride": [stride], "pad": [pad], "group": groups},
    )
    compare_with_opencv(net, feeds())


def test_deconvolution_dilation_against_a_dilated_kernel() -> None:
    weight = rand(4, 6, 3, 3)
    dilated = np.zeros((4, 6, 5, 5), np.float32)
    dilated[:, :, ::2, ::2] = weight
    p = {"num_output": 6, "stride": [2], "pad": [1]}
    net = net_on().layer(
        "up",
        "Deconvolution",
        "data",
        "out",
        [weight, rand(6)],
        convolution_param={**p, "kernel_size": [3], "dilation": [2]},
    )
    ref = net_on().layer(
        "up", "Deconvolution", "data", "out", [dilated, rand(6)], convolution_param={**p, "kernel_size": [5]}
    )
    converted = compare_with_opencv(net, feeds(), reference=ref)
    assert converted.outputs[0][2] == (6, 2 * 6 + 5 - 2, 2 * 8 + 5 - 2)


POOLINGS = [
    # (kernel, stride, pad): ceil rounding, with and without overhang past the padding
    (3, 2, 0),
    (2, 2, 0),
    (3, 2, 1),
    (2, 2, 1),
    (3, 3, 1),
    (3, 1, 1),
    (4, 3, 2),
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("kernel", "stride", "pad"), POOLINGS)
def test_pooling_rounds_up_like_caffe(method: str, kernel: int, stride: int, pad: int) -> None:
    net = net_on().layer(
        "pool",
        "Pooling",
        "data",
        "out",
        pooling_param={"pool": method, "kernel_size": kernel, "stride": stride, "pad": pad},
    )
    converted = compare_with_opencv(net, feeds())
    h, w = SHAPE[2], SHAPE[3]

    def caffe_size(size: int) -> int:
        out = -(-(size + 2 * pad - kernel) // stride) + 1
        return out - 1 if pad and (out - 1) * stride >= size + pad else out

    assert converted.outputs[0][2] == (SHAPE[1], caffe_size(h), caffe_size(w))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_rectangular(method: str) -> None:
    p = {"pool": method, "kernel_h": 3, "kernel_w": 2, "stride_h": 2, "stride_w": 3, "pad_h": 1, "pad_w": 1}
    compare_with_opencv(net_on().layer("pool", "Pooling", "data", "out", pooling_param=p), feeds())


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method: str) -> None:
    net = net_on().layer("pool", "Pooling", "data", "out", pooling_param={"pool": method, "global_pooling": True})
    assert compare_with_opencv(net, feeds()).outputs[0][2] == (SHAPE[1], 1, 1)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_floor_rounding_is_ceil_rounding_cut(method: str) -> None:
    p = {"pool": method, "kernel_size": 3, "stride": 2, "pad": 1}
    net = net_on().layer("pool", "Pooling", "data", "out", pooling_param={**p, "round_mode": "FLOOR"})
    ref = net_on().layer("pool", "Pooling", "data", "out", pooling_param=p)
    converted = compare_with_opencv(
        net, feeds(), reference=ref, crop={"out": (slice(None), slice(None), slice(0, 4), slice(0, 5))}
    )
    assert converted.outputs[0][2] == (4, 4, 5)


def test_stochastic_pooling_is_refused() -> None:
    net = net_on().layer("pool", "Pooling", "data", "out", pooling_param={"pool": "STOCHASTIC", "kernel_size": 2})
    with pytest.raises(UnsupportedLayerError, match=r"'pool'.*STOCHASTIC"):
        convert_net(net)


@pytest.mark.parametrize("shape", [(2, 4, 7, 9), (2, 12)])
@pytest.mark.parametrize("bias", [True, False])
def test_inner_product(shape: tuple[int, ...], bias: bool) -> None:
    k = int(np.prod(shape[1:]))
    blobs = [rand(5, k)] + ([rand(5)] if bias else [])
    net = net_on(shape).layer(
        "fc", "InnerProduct", "data", "out", blobs, inner_product_param={"num_output": 5, "bias_term": bias}
    )
    assert compare_with_opencv(net, feeds(shape)).outputs[0][2] == (5,)


def test_inner_product_keeps_axes_before_its_axis() -> None:
    net = net_on().layer(
        "fc", "InnerProduct", "data", "out", [rand(5, 63), rand(5)], inner_product_param={"num_output": 5, "axis": 2}
    )
    assert compare_with_opencv(net, feeds()).outputs[0][2] == (4, 5)


def test_inner_product_transpose_stores_k_by_n() -> None:
    weight = rand(4 * 7 * 9, 5)
    net = net_on().layer(
        "fc", "InnerProduct", "data", "out", [weight, rand(5)], inner_product_param={"num_output": 5, "transpose": True}
    )
    ref = net_on().layer(
        "fc", "InnerProduct", "data", "out", [weight.T.copy(), rand(5)], inner_product_param={"num_output": 5}
    )
    compare_with_opencv(net, feeds(), reference=ref)


def test_inner_product_reads_legacy_4d_blobs() -> None:
    net = net_on().layer(
        "fc",
        "InnerProduct",
        "data",
        "out",
        [rand(5, 252), rand(5)],
        legacy_blobs=True,
        inner_product_param={"num_output": 5},
    )
    compare_with_opencv(net, feeds())


ACTIVATIONS: dict[str, tuple[str, list[Array], dict[str, Any]]] = {
    "ReLU": ("ReLU", [], {}),
    "leaky ReLU": ("ReLU", [], {"relu_param": {"negative_slope": 0.2}}),
    "PReLU": ("PReLU", [rand(4, seed=7)], {}),
    "PReLU shared": ("PReLU", [rand(1, seed=7)], {"prelu_param": {"channel_shared": True}}),
    "Sigmoid": ("Sigmoid", [], {}),
    "TanH": ("TanH", [], {}),
    "ELU": ("ELU", [], {"elu_param": {"alpha": 0.7}}),
    "AbsVal": ("AbsVal", [], {}),
    "BNLL": ("BNLL", [], {}),
    "Power": ("Power", [], {"power_param": {"power": 2.0, "scale": 0.5, "shift": 3.0}}),
    "Power identity": ("Power", [], {}),
    "Dropout": ("Dropout", [], {"dropout_param": {"dropout_ratio": 0.3}}),
}


@pytest.mark.parametrize("case", sorted(ACTIVATIONS))
def test_element_wise(case: str) -> None:
    kind, blobs, params = ACTIVATIONS[case]
    compare_with_opencv(net_on().layer("act", kind, "data", "out", blobs, **params), feeds())


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_axis(axis: int) -> None:
    net = net_on().layer("prob", "Softmax", "data", "out", softmax_param={"axis": axis})
    out = compare_with_opencv(net, feeds())
    x = feeds()["data"].astype(np.float64)
    got = run_onnx(out.model.SerializeToString(), {"data": feeds()["data"]}, ["out"])[0]
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)
    assert x.shape == got.shape


def test_batch_norm_uses_the_moving_average_factor() -> None:
    mean, var = rand(4, seed=8) * 3, np.abs(rand(4, seed=9)) * 3 + 0.1
    net = net_on().layer(
        "bn", "BatchNorm", "data", "out", [mean, var, np.array([3.0], np.float32)], batch_norm_param={"eps": 1e-3}
    )
    converted = compare_with_opencv(net, feeds())
    x = feeds()["data"]
    expected = (x - (mean / 3)[None, :, None, None]) / np.sqrt((var / 3)[None, :, None, None] + 1e-3)
    np.testing.assert_allclose(
        run_onnx(converted.model.SerializeToString(), {"data": x}, ["out"])[0], expected, rtol=1e-4, atol=1e-5
    )


def test_batch_norm_with_a_zero_factor_uses_zero_statistics() -> None:
    net = net_on().layer("bn", "BatchNorm", "data", "out", [rand(4), np.abs(rand(4)), np.array([0.0], np.float32)])
    converted = convert_net(net)
    x = feeds()["data"]
    got = run_onnx(converted.model.SerializeToString(), {"data": x}, ["out"])[0]
    np.testing.assert_allclose(got, x / np.sqrt(1e-5), rtol=1e-5)


def test_nvcaffe_batch_norm_with_scale_and_bias() -> None:
    mean, var, scale, bias = rand(4, seed=1), np.abs(rand(4, seed=2)) + 0.1, rand(4, seed=3), rand(4, seed=4)
    factor = np.array([1.0], np.float32)
    net = net_on().layer("bn", "BatchNorm", "data", "out", [mean, var, factor, scale, bias])
    ref = net_on().layer("bn", "BatchNorm", "data", "norm", [mean, var, factor])
    ref.layer("bn_scale", "Scale", "norm", "out", [scale, bias], scale_param={"bias_term": True})
    compare_with_opencv(net, feeds(), reference=ref)


def test_batch_norm_on_inner_product_outputs() -> None:
    net = net_on((3, 6)).layer(
        "bn", "BatchNorm", "data", "out", [rand(6), np.abs(rand(6)) + 0.1, np.array([2.0], np.float32)]
    )
    compare_with_opencv(net, feeds((3, 6)))


@pytest.mark.parametrize(
    ("params", "blobs"),
    [
        ({}, [rand(4)]),
        ({"bias_term": True}, [rand(4), rand(4, seed=2)]),
        ({"num_axes": 2, "bias_term": True}, [rand(4, 7), rand(4, 7, seed=2)]),
        ({"axis": 2, "num_axes": -1}, [rand(7, 9)]),
    ],
)
def test_scale(params: dict[str, Any], blobs: list[Array]) -> None:
    compare_with_opencv(net_on().layer("scale", "Scale", "data", "out", blobs, scale_param=params), feeds())


def test_scale_by_a_scalar() -> None:
    """num_axes 0: Caffe stores 0-d blobs, which OpenCV cannot load; it runs the same values as 1-element blobs."""
    scale, bias = rand(1), rand(1, seed=2)
    p = {"num_axes": 0, "bias_term": True}
    net = net_on().layer("scale", "Scale", "data", "out", [scale.reshape(()), bias.reshape(())], scale_param=p)
    ref = net_on().layer("scale", "Scale", "data", "out", [scale, bias], scale_param=p)
    compare_with_opencv(net, feeds(), reference=ref)


def test_scale_by_a_second_bottom() -> None:
    net = net_on().input("factor", [2, 4]).layer("scale", "Scale", ["data", "factor"], "out", scale_param={"axis": 0})
    converted = convert_net(net)
    x, f = feeds()["data"], rand(2, 4, seed=4)
    got = run_onnx(converted.model.SerializeToString(), {"data": x, "factor": f}, ["out"])[0]
    np.testing.assert_allclose(got, x * f[:, :, None, None], rtol=1e-6)


def test_bias_layer_is_a_scale_by_one_with_bias() -> None:
    bias = rand(4, 7)
    net = net_on().layer("bias", "Bias", "data", "out", [bias], bias_param={"num_axes": 2})
    ref = net_on().layer(
        "bias",
        "Scale",
        "data",
        "out",
        [np.ones((4, 7), np.float32), bias],
        scale_param={"num_axes": 2, "bias_term": True},
    )
    compare_with_opencv(net, feeds(), reference=ref)


def branches(net: CaffeNet) -> CaffeNet:
    return net.layer("a", "ReLU", "data", "a").layer("b", "TanH", "data", "b")


@pytest.mark.parametrize(
    "params",
    [{}, {"coeff": [0.5, -2.0, 1.0]}, {"operation": "PROD"}, {"operation": "MAX"}],
)
def test_eltwise(params: dict[str, Any]) -> None:
    net = branches(net_on()).layer("sum", "Eltwise", ["a", "b", "data"], "out", eltwise_param=params)
    compare_with_opencv(net, feeds())


@pytest.mark.parametrize("params", [{}, {"axis": 2}, {"axis": -1}])
def test_concat(params: dict[str, Any]) -> None:
    compare_with_opencv(
        branches(net_on()).layer("cat", "Concat", ["a", "b", "data"], "out", concat_param=params), feeds()
    )


def test_concat_dim_is_the_legacy_axis() -> None:
    """OpenCV ignores concat_dim."""
    net = branches(net_on()).layer("cat", "Concat", ["a", "b", "data"], "out", concat_param={"concat_dim": 3})
    ref = branches(net_on()).layer("cat", "Concat", ["a", "b", "data"], "out", concat_param={"axis": 3})
    assert compare_with_opencv(net, feeds(), reference=ref).outputs[0][2] == (4, 7, 27)


@pytest.mark.parametrize(("axis", "end_axis", "dims"), [(1, -1, (252,)), (1, 2, (28, 9)), (2, 3, (4, 63))])
def test_flatten(axis: int, end_axis: int, dims: tuple[int, ...]) -> None:
    net = net_on().layer("flat", "Flatten", "data", "out", flatten_param={"axis": axis, "end_axis": end_axis})
    assert compare_with_opencv(net, feeds()).outputs[0][2] == dims


@pytest.mark.parametrize(
    ("params", "dims", "same"),
    [
        ({"shape": {"dim": [0, -1, 9]}}, (28, 9), None),
        ({"shape": {"dim": [0, 2, 2, -1]}}, (2, 2, 63), None),
        ({"shape": {"dim": [7, 3, 3]}, "axis": 2, "num_axes": -1}, (4, 7, 3, 3), None),
        # OpenCV rejects num_axes 0 and negative axes: it runs the same reshape spelled out.
        ({"shape": {"dim": [1]}, "axis": 1, "num_axes": 0}, (1, 4, 7, 9), [0, 1, 4, 7, 9]),
        ({"shape": {"dim": [-1]}, "axis": -3}, (4, 63), [0, 0, -1]),
    ],
)
def test_reshape(params: dict[str, Any], dims: tuple[int, ...], same: list[int] | None) -> None:
    net = net_on().layer("reshape", "Reshape", "data", "out", reshape_param=params)
    ref = net_on().layer("reshape", "Reshape", "data", "out", reshape_param={"shape": {"dim": same}}) if same else None
    assert compare_with_opencv(net, feeds(), reference=ref).outputs[0][2] == dims


@pytest.mark.parametrize("order", [[0, 2, 3, 1], [0, 3, 1, 2]])
def test_permute(order: list[int]) -> None:
    compare_with_opencv(net_on().layer("perm", "Permute", "data", "out", permute_param={"order": order}), feeds())


def test_permute_appends_the_axes_left_out() -> None:
    """Caffe completes a partial order with the remaining axes; OpenCV wants them all."""
    net = net_on().layer("perm", "Permute", "data", "out", permute_param={"order": [0, 1, 3]})
    ref = net_on().layer("perm", "Permute", "data", "out", permute_param={"order": [0, 1, 3, 2]})
    assert compare_with_opencv(net, feeds(), reference=ref).outputs[0][2] == (4, 9, 7)


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_across_channels(size: int) -> None:
    p = {"local_size": size, "alpha": 0.5, "beta": 0.75}
    compare_with_opencv(net_on().layer("norm", "LRN", "data", "out", lrn_param=p), feeds())


def test_lrn_k_against_a_rescaled_lrn() -> None:
    k, alpha, beta = 2.0, 0.5, 0.75
    net = net_on().layer(
        "norm", "LRN", "data", "out", lrn_param={"local_size": 3, "alpha": alpha, "beta": beta, "k": k}
    )
    ref = net_on().layer("norm", "LRN", "data", "lrn", lrn_param={"local_size": 3, "alpha": alpha / k, "beta": beta})
    ref.layer("out", "Power", "lrn", "out", power_param={"scale": k**-beta})
    compare_with_opencv(net, feeds(), reference=ref)


def test_lrn_within_channel() -> None:
    p = {"local_size": 3, "alpha": 0.5, "beta": 0.75, "norm_region": "WITHIN_CHANNEL"}
    compare_with_opencv(net_on().layer("norm", "LRN", "data", "out", lrn_param=p), feeds())


def test_slice_and_split() -> None:
    net = net_on().layer("slice", "Slice", "data", ["s0", "s1", "s2"], slice_param={"axis": 1, "slice_point": [1, 3]})
    net.layer("split", "Split", "s1", ["t0", "t1"])
    for i, blob in enumerate(["s0", "t0", "t1", "s2"]):
        net.layer(f"out{i}", "Power", blob, f"out{i}", power_param={"scale": float(i + 1)})
    converted = compare_with_opencv(net, feeds())
    assert [dims for _, _, dims in converted.outputs] == [(1, 7, 9), (2, 7, 9), (2, 7, 9), (1, 7, 9)]


def test_in_place_layers_keep_the_blob_name_for_the_last_write() -> None:
    net = net_on().layer(
        "conv",
        "Convolution",
        "data",
        "conv",
        [rand(5, 4, 3, 3), rand(5)],
        convolution_param={"num_output": 5, "kernel_size": [3], "pad": [1]},
    )
    net.layer("relu", "ReLU", "conv", "conv")
    net.layer("bn", "BatchNorm", "conv", "conv", [rand(5), np.abs(rand(5)) + 0.1, np.array([2.0], np.float32)])
    net.layer("scale", "Scale", "conv", "conv", [rand(5), rand(5)], scale_param={"bias_term": True})
    converted = compare_with_opencv(net, feeds())
    assert [(name, blob) for name, blob, _ in converted.outputs] == [("conv", "conv")]
    producers = [n for n in converted.model.graph.node if "conv" in n.output]
    assert [n.op_type for n in producers] == ["Add"]


def test_every_supported_layer_is_exercised() -> None:
    exercised = {
        "AbsVal", "BNLL", "BatchNorm", "Bias", "Concat", "Convolution", "Deconvolution", "Dropout", "ELU",
        "Eltwise", "Flatten", "InnerProduct", "Input", "LRN", "MemoryData", "PReLU", "Permute", "Pooling", "Power",
        "ReLU", "Reshape", "Scale", "Sigmoid", "Silence", "Slice", "Softmax", "Split", "TanH",
    }  # fmt: skip
    assert set(SUPPORTED_LAYERS) == exercised


def test_memory_data_and_silence() -> None:
    net = CaffeNet("t")
    layer = net.deploy.layer.add(name="data", type="MemoryData", top=["data", "label"])
    layer.memory_data_param.batch_size, layer.memory_data_param.channels = 2, 4
    layer.memory_data_param.height, layer.memory_data_param.width = 7, 9
    net.layer("silence", "Silence", "label", [])
    net.layer("out", "Sigmoid", "data", "out")
    with pytest.raises(ConversionError, match="'label' is not produced"):
        convert_net(net)
    del net.deploy.layer[1]
    converted = convert_net(net)
    assert [(blob, dims) for _, blob, dims in converted.inputs] == [("data", (4, 7, 9))]
    x = feeds()["data"]
    got = run_onnx(converted.model.SerializeToString(), {"data": x}, ["out"])[0]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-x)), rtol=1e-5)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("ROIPooling", r"layer 'odd' of type 'ROIPooling' is not supported: supported types: AbsVal"),
        ("Data", r"'Data' is not supported: it reads training data"),
        ("SoftmaxWithLoss", r"'SoftmaxWithLoss' is not supported: training-only"),
    ],
)
def test_unknown_layers_are_refused_by_name_and_type(kind: str, message: str) -> None:
    net = net_on().layer("odd", kind, "data", "out")
    with pytest.raises(UnsupportedLayerError, match=message) as caught:
        convert_net(net)
    assert isinstance(caught.value, InvalidArgumentError)
    assert (caught.value.layer, caught.value.layer_type, caught.value.reason) == ("odd", kind, "UNSUPPORTED_LAYER")


def test_python_layers_name_their_module() -> None:
    net = net_on().layer(
        "proposal", "Python", "data", "rois", python_param={"module": "rpn.proposal_layer", "layer": "ProposalLayer"}
    )
    with pytest.raises(UnsupportedLayerError, match=r"'proposal' of type 'Python'.*rpn\.proposal_layer\.ProposalLayer"):
        convert_net(net)


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (
            lambda: (
                CaffeNet("t")
                .input("data", [1, 2, 4, 6, 6])
                .layer(
                    "conv3d",
                    "Convolution",
                    "data",
                    "out",
                    [rand(3, 2, 3, 3, 3)],
                    convolution_param={"num_output": 3, "kernel_size": [3, 3, 3], "bias_term": False},
                )
            ),
            r"'conv3d' of type 'Convolution' is not supported: only 2-D convolutions convert; .* 3 spatial axes",
        ),
        (
            lambda: (
                CaffeNet("t")
                .input("data", [1, 2, 4, 6, 6])
                .layer(
                    "conv3d",
                    "Convolution",
                    "data",
                    "out",
                    [rand(3, 2, 3, 3, 3)],
                    convolution_param={"num_output": 3, "kernel_size": [3], "bias_term": False},
                )
            ),
            r"'conv3d' of type 'Convolution' is not supported: .*5 axes \(3-D\)",
        ),
        (
            lambda: conv(axis=2),
            r"'conv' of type 'Convolution' is not supported: only convolutions over axis 1 .* not axis 2",
        ),
    ],
)
def test_convolutions_other_than_2d_nchw_are_unsupported_layers(net: Callable[[], CaffeNet], message: str) -> None:
    """3-D convolutions and `axis` other than 1 are UNSUPPORTED_LAYER, as docs/convert.md says (#17 point 6)."""
    with pytest.raises(UnsupportedLayerError, match=message) as caught:
        convert_net(net())
    assert caught.value.reason == "UNSUPPORTED_LAYER"
