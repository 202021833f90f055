"""Networks of v0.7's frameworks and layouts, uploaded to a ``sightline serve`` in a process of its own (#17,
"Registry and frameworks"): py-faster-rcnn's rois and an ONNX Faster-RCNN export with a fixed batch of 1 and
outputs without a batch axis (v0.7's ``batched_output: false``), detection layouts checked against the network's
outputs when a version is created, NETWORK resizing refused for a fixed input size, any mean file name, and 3-D
convolutions refused as unsupported layers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from onnx import TensorProto, helper, numpy_helper

from service._proto.sightline.v1 import common_pb2, inference_pb2, networks_pb2, recognition_pb2
from service.convert.tensorflow import default_python
from tests.e2e.external import ExternalService
from tests.helpers import ROOT, Client, TritonFixture, encode
from tools.fixtures.caffe_fixtures import FASTER_RCNN_ROIS
from tools.fixtures.caffe_nets import CaffeNet

CAFFE = ROOT / "tests" / "service" / "convert" / "fixtures" / "caffe" / "faster-rcnn"
RED, GREEN = (230, 20, 25), (20, 230, 30)


@pytest.fixture(scope="module")
def service(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalService]:
    """A server of its own over the session's Triton, its uploads in Triton's writable repository."""
    external = ExternalService(
        tmp_path_factory.mktemp("frameworks"),
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_MODELS_DIR=str(triton.models),
        SIGHTLINE_MODEL_NAME_PREFIX="frameworks-",
    )
    external.env.pop("SIGHTLINE_TF_PYTHON", None)  # without TensorFlow, whatever the test run has
    with external.running():
        yield external
    assert "Traceback" not in external.log.read_text(errors="replace"), external.tail(80)


@pytest.fixture
async def client(service: ExternalService) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield Client.over(channel)


def status_of(error: grpc.aio.AioRpcError) -> tuple[list[str], list[str]]:
    """The field violations and ErrorInfo reasons of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    fields, reasons = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    return fields, reasons


def quadrants_image() -> bytes:
    """64 x 64 white; the top-right quadrant red, the bottom-left green."""
    pixels = np.full((64, 64, 3), 255, np.uint8)
    pixels[:32, 32:] = RED
    pixels[32:, :32] = GREEN
    return encode(pixels)


def expected_box(row: int, fmt: str = "xyxy") -> tuple[float, float, float, float]:
    """A proposal of FASTER_RCNN_ROIS normalised to the 32 x 32 input, read in ``fmt``."""
    _, x, y, a, b = (float(v) for v in FASTER_RCNN_ROIS[row])
    x2, y2 = (a, b) if fmt == "xyxy" else (min(x + a, 32.0), min(y + b, 32.0))
    return x / 32, y / 32, x2 / 32, y2 / 32


QUADRANT_SPEC = {
    "name": "Coloured quadrants",
    "outputs": [
        {"labels": {"labels": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}], "exclusive": True, "roi": "BBOX"}}
    ],
}


async def spec_and_version(
    c: Client, spec: dict[str, Any], network_id: str, post: list[dict[str, Any]]
) -> recognition_pb2.Version:
    created = await c.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(
            specification=json_format.ParseDict(spec, recognition_pb2.Specification())
        )
    )
    version: recognition_pb2.Version = await c.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(
                spec_id=created.id,
                network_id=network_id,
                post_processings=[json_format.ParseDict(p, recognition_pb2.PostProcessing()) for p in post],
            )
        )
    )
    return version


async def boxes(c: Client, version_id: str) -> dict[str, tuple[float, float, float, float]]:
    """The predicted boxes of the quadrants image, by label."""
    result = await c.recognition.Recognize(
        inference_pb2.RecognizeRequest(
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=quadrants_image()))],
            version_id=version_id,
        )
    )
    found = {}
    for p in result.outputs[0].labels.predicted:
        b = p.roi.bbox
        found[p.label_name] = (b.xmin, b.ymin, b.xmax, b.ymax)
    return found


def anchored(**layout: str) -> dict[str, Any]:
    return {
        "detection": {
            "anchored_output": {
                "anchors_tensor": "rois",
                "scores_tensor": "cls_prob",
                "offsets_tensor": "bbox_pred",
                **layout,
            },
            "discard_threshold": 0.025,
            "nms_threshold": 0.3,
            "normalize_wrt_tensor": "im_info",
        }
    }


def test_the_start_up_log_says_tensorflow_conversion_is_off(service: ExternalService) -> None:
    """#17 point 5: not silently off."""
    log = service.log.read_text(errors="replace")
    assert "TensorFlow conversion is off (SIGHTLINE_TF_PYTHON is unset): TensorFlow uploads are refused" in log


# ================================================================ Caffe: py-faster-rcnn's rois, a mean.proto.bin


async def test_a_py_faster_rcnn_caffe_net_gives_its_rois_boxes(client: Client) -> None:
    """#17 points 0, 2 and 7: the seed's Caffe Faster-RCNN example, as py-faster-rcnn writes its outputs."""
    body = json.loads((CAFFE / "network.json").read_text())
    assert body["network"]["preprocessing"]["inputs"][0]["image"]["mean_file"] == "mean.proto.bin"
    network = await client.deployed(
        json_format.ParseDict({k: v for k, v in body["network"].items() if k != "files"}, networks_pb2.Network()),
        {name: (CAFFE / name).read_bytes() for name in body["network"]["files"]},
    )
    post = body["version"]["post_processings"]
    assert "anchor_format" not in post[0]["detection"]["anchored_output"], "the seed's example, as v0.7 wrote it"
    version = await spec_and_version(client, body["spec"], network.id, post)
    xyxy = recognition_pb2.AnchoredOutput.XYXY
    assert version.post_processings[0].detection.anchored_output.anchor_format == xyxy

    found = await boxes(client, version.id)
    assert sorted(found) == ["green", "red"]
    assert found["red"] == pytest.approx(expected_box(1), abs=1e-5), "the top-right proposal, read x1, y1, x2, y2"
    assert found["green"] == pytest.approx(expected_box(2), abs=1e-5)


# =================================================== ONNX: a fixed batch of 1, outputs without a batch axis


def onnx_faster_rcnn(size: int = 32) -> bytes:
    """The classic Faster-RCNN export: inputs data (1, 3, 32, 32) and im_info (1, 3); rois (4, 5), cls_prob (4, 3)
    and bbox_pred (4, 12) without a batch axis. Same answers as the Caffe fixture (BGR pixels, no mean needed:
    the logits compare channels)."""
    k, c = 0.05, 2.0
    consts: dict[str, npt.NDArray[Any]] = {
        "kernel_shape": np.array([4, 3], np.int64),
        "weight": np.array([[0, 0, 0], [0, -k, k], [0, k, -k]], np.float32),
        "bias": np.array([0, -c, -c], np.float32),
        "proposals": FASTER_RCNN_ROIS,
        "deltas": np.zeros((4, 12), np.float32),
        "zero": np.zeros((), np.float32),
    }
    n = helper.make_node
    nodes = [
        n("AveragePool", ["data"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        n("Transpose", ["pooled"], ["pooled_hwc"], perm=[0, 2, 3, 1]),
        n("Reshape", ["pooled_hwc", "kernel_shape"], ["regions"]),
        n("Gemm", ["regions", "weight", "bias"], ["cls_score"], transB=1),
        n("Softmax", ["cls_score"], ["cls_prob"], axis=1),
        # The proposals depend on im_info only in form (0 times its sum), as py-faster-rcnn's depend on it.
        n("ReduceSum", ["im_info"], ["info_sum"], keepdims=0),
        n("Mul", ["info_sum", "zero"], ["nothing"]),
        n("Add", ["proposals", "nothing"], ["rois"]),
        n("Add", ["deltas", "nothing"], ["bbox_pred"]),
    ]
    graph = helper.make_graph(
        nodes,
        "faster-rcnn",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size]),
            helper.make_tensor_value_info("im_info", TensorProto.FLOAT, [1, 3]),
        ],
        [
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [4, 5]),
            helper.make_tensor_value_info("cls_prob", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("bbox_pred", TensorProto.FLOAT, [4, 12]),
        ],
        initializer=[numpy_helper.from_array(v, name) for name, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


def faster_rcnn_network(resize: str = "SQUASH", target: str = "32x32") -> networks_pb2.Network:
    body = json.loads((CAFFE / "network.json").read_text())["network"]
    body = {**body, "name": "quadrants (ONNX export)", "framework": "onnx"}
    body.pop("files")
    body["preprocessing"]["inputs"][0]["image"] |= {"mean_file": "", "resize_type": resize, "target_size": target}
    return json_format.ParseDict(body, networks_pb2.Network())


@pytest.fixture(scope="module")
async def onnx_network(service: ExternalService) -> networks_pb2.Network:
    async with grpc.aio.insecure_channel(service.address) as channel:
        network: networks_pb2.Network = await Client.over(channel).deployed(
            faster_rcnn_network(), {"faster-rcnn.onnx": onnx_faster_rcnn()}
        )
        return network


async def test_an_onnx_export_with_a_fixed_batch_of_1_and_unbatched_outputs(
    client: Client, onnx_network: networks_pb2.Network
) -> None:
    """#17 point 2 (uploaded at all: max_batch_size 0, the batch axis in the preprocessing) and point 0 (an onnx
    network says its anchors' layout; left out, it is v0.7's x, y, width, height)."""
    explicit = await spec_and_version(client, QUADRANT_SPEC, onnx_network.id, [anchored(anchor_format="XYXY")])
    found = await boxes(client, explicit.id)
    assert found["red"] == pytest.approx(expected_box(1), abs=1e-5)
    assert found["green"] == pytest.approx(expected_box(2), abs=1e-5)

    default = await spec_and_version(client, QUADRANT_SPEC, onnx_network.id, [anchored()])
    assert default.post_processings[0].detection.anchored_output.anchor_format == 0, "v0.7 JSON, nothing added"
    found = await boxes(client, default.id)
    assert found["red"] == pytest.approx(expected_box(1, "xywh"), abs=1e-5)

    raw = await client.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id=onnx_network.id,
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=quadrants_image()))],
            output_tensors=["rois", "cls_prob"],
        )
    )
    assert [list(t.shape) for t in raw.tensors] == [[4, 5], [4, 3]], "no batch axis, as the graph gives them"
    assert np.asarray(raw.tensors[0].data).reshape(4, 5).tolist() == FASTER_RCNN_ROIS.tolist()


# ============================================================== layouts checked when a version is created


@pytest.mark.parametrize(
    ("network", "labels", "output", "field"),
    [
        ("shapes-yolo", 5, {"yolov8_output": {"output_tensor": "output"}}, "yolov8_output"),
        ("shapes-yolo", 18, {"yolov5_output": {"output_tensor": "output"}}, "yolov5_output"),
        ("shapes-yolo", 6, {"yolo_output": {"output_tensor": "output", "anchors": [1, 1, 2, 2]}}, "yolo_output"),
        ("onnx", 3, anchored()["detection"], "anchored_output"),  # 3 labels need 4 score columns, not 3
    ],
)
async def test_a_layout_that_cannot_fit_the_network_is_refused_at_create_version(
    client: Client, onnx_network: networks_pb2.Network, network: str, labels: int, output: dict[str, Any], field: str
) -> None:
    """#17 point 1: INVALID_ARGUMENT naming the output, not "expected 9 features" at every recognition."""
    spec = {
        "name": "layout check",
        "outputs": [
            {
                "labels": {
                    "labels": [{"id": i, "name": f"l{i}"} for i in range(labels)],
                    "exclusive": True,
                    "roi": "BBOX",
                }
            }
        ],
    }
    network_id = onnx_network.id if network == "onnx" else network
    body = {k: v for k, v in output.items() if k.endswith("_output")}
    post = [{"detection": {**body, "normalize_wrt_tensor": output.get("normalize_wrt_tensor", "")}}]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await spec_and_version(client, spec, network_id, post)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields, _ = status_of(error.value)
    assert fields == [f"post_processings[0].detection.{field}"]
    assert "do not fit" in (error.value.details() or "")


async def test_a_layout_that_fits_is_accepted(client: Client) -> None:
    labels = [{"id": i, "name": f"l{i}"} for i in range(6)]
    spec = {"name": "six shapes", "outputs": [{"labels": {"labels": labels, "exclusive": True, "roi": "BBOX"}}]}
    anchors = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]  # 4 anchors x (5 + 6) = 44 channels
    version = await spec_and_version(
        client, spec, "shapes-yolo", [{"detection": {"yolo_output": {"output_tensor": "output", "anchors": anchors}}}]
    )
    assert version.id


# ================================================================================== refused at upload


def fixed_size_classifier() -> bytes:
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [-1, 3, 16, 16])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [-1, 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Softmax", ["flat"], ["prob"], axis=1),
    ]
    model = helper.make_model(helper.make_graph(nodes, "fixed", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


async def test_network_resize_is_refused_for_a_fixed_input_size(client: Client) -> None:
    """#17 point 3: refused at upload, not Triton's raw text on every non-square image."""
    before = await client.networks.ListNetworks(common_pb2.ListRequest())
    network = faster_rcnn_network("NETWORK", "16")
    del network.preprocessing.inputs[1:]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await client.upload(network, {"fixed.onnx": fixed_size_classifier()})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields, _ = status_of(error.value)
    assert fields == ["preprocessing.inputs[0].image.resize_type"]
    assert 'use SQUASH, CROP or FILL with target_size "16x16"' in (error.value.details() or "")
    after = await client.networks.ListNetworks(common_pb2.ListRequest())
    assert after.count == before.count, "nothing is left of a refused upload"


async def test_a_3d_convolution_is_an_unsupported_layer(client: Client) -> None:
    """#17 point 6: UNSUPPORTED_LAYER, as docs/convert.md says, not CONVERSION_FAILED."""
    net = CaffeNet("conv3d").input("data", [1, 3, 4, 16, 16])
    net.layer(
        "conv3d",
        "Convolution",
        "data",
        "out",
        [np.zeros((2, 3, 3, 3, 3), np.float32)],
        convolution_param={"num_output": 2, "kernel_size": [3, 3, 3], "bias_term": False},
    )
    body = json.loads((CAFFE / "network.json").read_text())["network"]
    body = {k: v for k, v in body.items() if k != "files"}
    body["preprocessing"]["inputs"] = body["preprocessing"]["inputs"][:1]
    body["preprocessing"]["inputs"][0]["image"]["mean_file"] = ""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await client.upload(
            json_format.ParseDict(body, networks_pb2.Network()),
            {"deploy.prototxt": net.prototxt().encode(), "snapshot.caffemodel": net.caffemodel()},
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, reasons = status_of(error.value)
    assert reasons == ["UNSUPPORTED_LAYER"]
    assert "'conv3d' of type 'Convolution' is not supported" in (error.value.details() or "")


# ============================================================================ TensorFlow 2.x SavedModels

TF2 = ROOT / "tests" / "service" / "convert" / "fixtures" / "tensorflow" / "tf2-tagger" / "saved_model"


def tensorflow_scores(python: Path, pixels: npt.NDArray[np.float32], tmp: Path) -> npt.NDArray[np.float32]:
    """TensorFlow's own answer for the SavedModel (tools/fixtures/tf_reference.py, in the TensorFlow environment)."""
    np.savez(tmp / "in.npz", pixels=pixels)
    reference = ROOT / "tools" / "fixtures" / "tf_reference.py"
    done = subprocess.run(
        [str(python), str(reference), str(TF2), str(tmp / "in.npz"), str(tmp / "out.npz"), "scores"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp / "out.npz") as data:
        scores: npt.NDArray[np.float32] = data["scores"]
    return scores


def tf_python() -> Path:
    python = Path(os.environ.get("SIGHTLINE_TF_PYTHON") or default_python())
    assert python.exists(), f"{python} is missing: run `make tf-env` (this test needs TensorFlow)"
    return python


@pytest.fixture(scope="module")
def tf_service(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalService]:
    """A server with the TensorFlow converter (SIGHTLINE_TF_PYTHON, or .venv-tf)."""
    python = tf_python()
    external = ExternalService(
        tmp_path_factory.mktemp("frameworks-tf"),
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_MODELS_DIR=str(triton.models),
        SIGHTLINE_MODEL_NAME_PREFIX="frameworks-tf-",
        SIGHTLINE_TF_PYTHON=str(python),
    )
    with external.running():
        assert f"TensorFlow conversion is on: {python.absolute()}" in external.log.read_text(errors="replace")
        yield external


@pytest.mark.tf
async def test_a_tensorflow_2_savedmodel_as_tensorflow_writes_it_is_uploaded(
    tf_service: ExternalService, triton: TritonFixture, tmp_path: Path
) -> None:
    """#17 point 4: tf.saved_model.save writes fingerprint.pb (and assets/ when the graph reads files)."""
    assert (TF2 / "fingerprint.pb").is_file(), "the fixture is what TensorFlow 2.x writes"
    files = {p.name: p.read_bytes() for p in TF2.rglob("*") if p.is_file()}
    files["assets/labels.txt"] = b"a\nb\nc\nd\n"
    assert "fingerprint.pb" in files
    image = {
        "dimension_order": "NHWC",
        "resize_type": "SQUASH",
        "target_size": "24x24",
        "color_channels": "RGB",
        "pixel_scaling": 1.0,
        "mean_file": "",
        "data_type": "FLOAT32",
    }
    body = {
        "name": "tf2 tagger",
        "framework": "tensorflow-2.x",
        "preprocessing": {"inputs": [{"tensor_name": "pixels", "image": image}]},
    }
    async with grpc.aio.insecure_channel(tf_service.address) as channel:
        c = Client.over(channel)
        network = await c.deployed(json_format.ParseDict(body, networks_pb2.Network()), files)
        original = triton.models / f"frameworks-tf-{network.id}" / "original"
        assert (original / "fingerprint.pb").is_file()
        assert (original / "assets" / "labels.txt").read_bytes() == b"a\nb\nc\nd\n"
        raw = await c.networks.InferNetwork(
            networks_pb2.InferNetworkRequest(
                network_id=network.id,
                inputs=[
                    inference_pb2.Input(
                        image=inference_pb2.ImageInput(content=encode(np.full((24, 24, 3), RED, np.uint8)))
                    )
                ],
                output_tensors=["scores"],
            )
        )
    pixels = np.broadcast_to(np.array(RED, np.float32) / 255.0, (1, 24, 24, 3)).copy()
    reference = tensorflow_scores(tf_python(), pixels, tmp_path)
    np.testing.assert_allclose(np.asarray(raw.tensors[0].data), reference.ravel(), atol=1e-4)
