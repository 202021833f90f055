"""Caffe and TensorFlow networks uploaded through CreateNetwork, converted to ONNX, deployed and used end to end.

Each upload is compared with its ONNX original through the service itself: the same images recognised by the
uploaded network and by the original give the same labels in the same order, with scores within 1e-4. Runs on
every test database (SQLite, and PostgreSQL when SIGHTLINE_TEST_POSTGRES_DSN is set), against the session's real
Triton. The TensorFlow uploads need the TensorFlow environment: they carry the ``tf`` marker (``make test-tf``).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from service._proto.sightline.v1 import common_pb2, inference_pb2, networks_pb2, recognition_pb2, tasks_pb2
from service.convert.tensorflow import ENABLE_HINT, default_python
from service.server import Application, running
from tests.e2e.helpers import reason, violations
from tests.helpers import (
    DATABASES,
    ROOT,
    Client,
    TritonFixture,
    encode,
    fresh_database,
    registry_settings,
    upload_messages,
)
from tools.fixtures.shapes_caffe import main as write_shapes_caffe
from zoo import fixtures

FIXTURES = ROOT / "tests" / "service" / "convert" / "fixtures"
SAMPLES = ROOT / "samples"
MODELS = ROOT / "model_repository"
TOLERANCE = 1e-4


# ============================================================================================ servers and helpers


@dataclass
class Server:
    """A running Sightline and a client of it."""

    app: Application
    client: Client


async def _serve(
    request: pytest.FixtureRequest, triton: TritonFixture, folder: Path, name: str, **extra: Any
) -> AsyncIterator[Server]:
    """A Sightline on the session's Triton with its own database (``request.param``) and model-name prefix."""
    url = await fresh_database(request.param)
    settings = registry_settings(triton, folder, url, f"{name}-{request.param}-", **extra)
    async with running(settings) as application, grpc.aio.insecure_channel(f"127.0.0.1:{application.port}") as ch:
        yield Server(application, Client.over(ch))


@pytest.fixture(scope="module", params=DATABASES)
async def no_tf(
    request: pytest.FixtureRequest, triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A Sightline without the TensorFlow environment (``tf_python`` unset, whatever the environment says)."""
    async for server in _serve(request, triton, tmp_path_factory.mktemp("convert"), "cv", tf_python=None):
        yield server


@pytest.fixture(scope="module")
def fake_tf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the TensorFlow interpreter that records its process id and hangs."""
    folder = tmp_path_factory.mktemp("fake-tf")
    script = folder / "python"
    script.write_text(f'#!/bin/sh\necho $$ > "{folder}/pid"\nexec sleep 120\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture(scope="module", params=DATABASES)
async def hanging(
    request: pytest.FixtureRequest,
    triton: TritonFixture,
    tmp_path_factory: pytest.TempPathFactory,
    fake_tf: Path,
) -> AsyncIterator[Server]:
    """A Sightline whose TensorFlow converter never finishes: conversions end by their time limit (3 s)."""
    async for server in _serve(
        request, triton, tmp_path_factory.mktemp("hanging"), "hang", tf_python=fake_tf, tf_timeout_s=3.0
    ):
        yield server


@pytest.fixture(scope="module")
def tf_python() -> Path:
    """The TensorFlow environment's interpreter: SIGHTLINE_TF_PYTHON, or .venv-tf (missing: the tests fail)."""
    python = Path(os.environ.get("SIGHTLINE_TF_PYTHON") or default_python())
    assert python.exists(), f"{python} is missing: run `make tf-env` (these tests need TensorFlow)"
    return python


@pytest.fixture(scope="module", params=DATABASES)
async def with_tf(
    request: pytest.FixtureRequest,
    triton: TritonFixture,
    tmp_path_factory: pytest.TempPathFactory,
    tf_python: Path,
) -> AsyncIterator[Server]:
    """A Sightline with the TensorFlow environment."""
    async for server in _serve(request, triton, tmp_path_factory.mktemp("tf"), "tf", tf_python=tf_python):
        yield server


def manifest(relative: str) -> dict[str, Any]:
    """A fixture's ``network.json``: the v0.7 network (with its file list), specification and version."""
    loaded: dict[str, Any] = json.loads((FIXTURES / relative / "network.json").read_text())
    return loaded


def network_of(body: dict[str, Any], **changes: Any) -> networks_pb2.Network:
    fields = {k: v for k, v in body.items() if k != "files"} | changes
    return json_format.ParseDict(fields, networks_pb2.Network())


def files_of(relative: str, body: dict[str, Any]) -> dict[str, bytes]:
    """The files of a manifest as a v0.7 client uploads them: flat, by file name."""
    return {Path(f).name: (FIXTURES / relative / f).read_bytes() for f in body["files"]}


async def spec_and_version(
    client: Client, spec: dict[str, Any], network_id: str, post_processings: list[dict[str, Any]]
) -> tuple[recognition_pb2.Specification, recognition_pb2.Version]:
    body = {k: v for k, v in spec.items() if k != "id"}
    created = await client.recognition.CreateSpecification(
        recognition_pb2.CreateSpecificationRequest(
            specification=json_format.ParseDict(body, recognition_pb2.Specification())
        )
    )
    version = await client.recognition.CreateVersion(
        recognition_pb2.CreateVersionRequest(
            version=recognition_pb2.Version(
                spec_id=created.id,
                network_id=network_id,
                post_processings=[json_format.ParseDict(p, recognition_pb2.PostProcessing()) for p in post_processings],
            )
        )
    )
    return created, version


async def recognise(
    client: Client, image: bytes, *, spec_id: str = "", version_id: str = ""
) -> inference_pb2.RecognitionResult:
    request = inference_pb2.RecognizeRequest(
        inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))],
        show_discarded=True,
    )
    if spec_id:
        request.spec_id = spec_id
    else:
        request.version_id = version_id
    response: inference_pb2.RecognitionResult = await client.recognition.Recognize(request)
    return response


Row = tuple[str, int, float, tuple[float, float, float, float]]


def predictions(response: inference_pb2.RecognitionResult) -> list[tuple[list[Row], list[Row]]]:
    """Per output: the predicted and the discarded entries as (label name, label id, score, box)."""

    def row(p: inference_pb2.Prediction) -> Row:
        return p.label_name, p.label_id, p.score, (p.roi.bbox.xmin, p.roi.bbox.ymin, p.roi.bbox.xmax, p.roi.bbox.ymax)

    return [([row(p) for p in o.labels.predicted], [row(p) for p in o.labels.discarded]) for o in response.outputs]


def assert_same_predictions(mine: inference_pb2.RecognitionResult, theirs: inference_pb2.RecognitionResult) -> None:
    """The same predicted labels in the same order, the same discarded labels (whose order among near-equal tiny
    scores is arbitrary), scores and boxes within 1e-4."""
    got, expected = predictions(mine), predictions(theirs)
    assert len(got) == len(expected)
    for (predicted, discarded), (ref_predicted, ref_discarded) in zip(got, expected, strict=True):
        assert [r[:2] for r in predicted] == [r[:2] for r in ref_predicted]
        assert sorted(r[:2] for r in discarded) == sorted(r[:2] for r in ref_discarded)
        reference = {r[:2]: r for r in ref_discarded}
        pairs = [*zip(predicted, ref_predicted, strict=True), *((r, reference[r[:2]]) for r in discarded)]
        for (name, _, score, box), (_, _, ref_score, ref_box) in pairs:
            assert score == pytest.approx(ref_score, abs=TOLERANCE), name
            assert box == pytest.approx(ref_box, abs=TOLERANCE, rel=TOLERANCE), name


def colour_images() -> Iterator[bytes]:
    """Solid colours, the repository's sample photos, a gradient, a two-colour split and drawn scenes."""
    for color in [(230, 20, 25), (20, 200, 30), (30, 40, 220), (250, 250, 40), (10, 10, 10), (250, 250, 250)]:
        yield encode(np.full((60, 80, 3), color, np.uint8))
    yield (SAMPLES / "red.png").read_bytes()
    yield (SAMPLES / "blue-sky.jpg").read_bytes()
    ramp = np.linspace(0, 255, 90, dtype=np.float32)
    gradient = np.stack([np.tile(ramp, (60, 1)), np.tile(ramp[::-1], (60, 1)), np.full((60, 90), 128.0)], -1)
    yield encode(gradient.astype(np.uint8))
    split = np.zeros((64, 64, 3), np.uint8)
    split[:, :40] = (255, 255, 255)
    split[:, 40:] = (0, 0, 230)
    yield encode(split)
    for case in fixtures.CASES[:5]:
        yield case.png()


async def user_network_ids(client: Client) -> set[str]:
    listed = await client.networks.ListNetworks(common_pb2.ListRequest(limit=1000))
    return {n.id for n in listed.results if n.id.isdigit()}


async def assert_nothing_left(server: Server, before: set[str]) -> None:
    """No row, no staged file, no model folder and no loaded model beyond the networks there were before."""
    app = server.app
    repository = app.registry._repo
    assert await user_network_ids(server.client) == before
    assert not any(repository.staging.iterdir()) if repository.staging.exists() else True
    assert repository.folders().keys() == before
    ours = {m for m in await app.gateway.loaded_models() if repository.network_id(m) is not None}
    assert ours == {repository.model_name(i) for i in before}


# =================================================================================================== Caffe


async def test_caffe_colors_upload_answers_like_the_bundled_onnx_model(no_tf: Server) -> None:
    server = no_tf
    c = server.client
    body = manifest("caffe/colors")
    network = await c.deployed(network_of(body["network"]), files_of("caffe/colors", body["network"]))
    assert network.framework == "nv-caffe-0.x-mod"
    got = await c.networks.GetNetwork(networks_pb2.GetNetworkRequest(network_id=network.id))
    assert json_format.MessageToDict(got.preprocessing) == json_format.MessageToDict(
        json_format.ParseDict(body["network"]["preprocessing"], networks_pb2.Preprocessing())
    )

    folder = server.app.registry._repo.folder(network.id)
    config = (folder / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    assert "max_batch_size: 32" in config
    assert "dynamic_batching" in config
    assert (folder / "1" / "model.onnx").stat().st_size > 0
    assert sorted(p.name for p in (folder / "original").iterdir()) == ["deploy.prototxt", "snapshot.caffemodel"]
    assert (folder / "original" / "snapshot.caffemodel").read_bytes() == (
        FIXTURES / "caffe" / "colors" / "snapshot.caffemodel"
    ).read_bytes()
    assert (folder / "mean.binaryproto").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt", "mean.binaryproto", "original"]

    spec, version = await spec_and_version(c, body["spec"], network.id, body["version"]["post_processings"])
    assert version.network_id == network.id
    compared = 0
    for image in colour_images():
        mine = await recognise(c, image, spec_id=spec.id)
        public = await recognise(c, image, spec_id="colors-v1")
        assert mine.outputs[0].labels.predicted, "every image has a dominant colour"
        assert_same_predictions(mine, public)
        compared += 1
    assert compared == 15

    image = next(colour_images())
    raw = [
        await c.networks.InferNetwork(
            networks_pb2.InferNetworkRequest(
                network_id=network_id,
                inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))],
                output_tensors=["share"],
            )
        )
        for network_id in (network.id, "colors")
    ]
    assert [t.name for t in raw[0].tensors] == ["share"]
    np.testing.assert_allclose(raw[0].tensors[0].data, raw[1].tensors[0].data, atol=TOLERANCE)


def shapes_caffe_files(folder: Path) -> dict[str, bytes]:
    """The bundled shapes-classifier rewritten as a Caffe network (tools/fixtures/shapes_caffe.py), and its mean."""
    write_shapes_caffe(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def test_caffe_shapes_classifier_answers_like_shapes_v1(no_tf: Server, tmp_path: Path) -> None:
    server = no_tf
    c = server.client
    meta = json.loads((MODELS / "shapes-classifier" / "sightline.json").read_text())
    network_body = {
        "name": "shapes (Caffe)",
        "framework": "nv-caffe-0.x-mod",
        "preprocessing": meta["network"]["preprocessing"],
    }
    files = shapes_caffe_files(tmp_path)
    assert sorted(files) == ["deploy.prototxt", "mean.binaryproto", "snapshot.caffemodel"]
    network = await c.deployed(network_of(network_body), files)
    spec, _ = await spec_and_version(c, meta["spec"], network.id, meta["version"]["post_processings"])
    single = [case for case in fixtures.CASES if len(case.placements) == 1]
    assert len(single) >= 4
    for case in single:
        mine = await recognise(c, case.png(), spec_id=spec.id)
        public = await recognise(c, case.png(), spec_id="shapes-v1")
        assert_same_predictions(mine, public)
        as_json = json_format.MessageToDict(mine, preserving_proto_field_name=True)
        assert fixtures.check_classification(as_json, case) == [], case.name


def with_unknown_layer(prototxt: bytes) -> bytes:
    layer = b'layer {\n  name: "calibrate"\n  type: "Calibrate"\n  bottom: "share"\n  top: "calibrated"\n}\n'
    return prototxt + layer


async def test_a_caffe_layer_without_translation_is_refused_by_name_and_leaves_nothing(
    no_tf: Server,
) -> None:
    server = no_tf
    c = server.client
    body = manifest("caffe/colors")
    files = files_of("caffe/colors", body["network"])
    files["deploy.prototxt"] = with_unknown_layer(files["deploy.prototxt"])
    before = await user_network_ids(c)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.upload(network_of(body["network"]), files)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "layer 'calibrate' of type 'Calibrate' is not supported" in (error.value.details() or "")
    assert reason(error.value) == "UNSUPPORTED_LAYER"
    await assert_nothing_left(server, before)


FRAMEWORK_FILES: list[tuple[str, list[str], str]] = [
    ("nv-caffe-0.x-mod", ["deploy.prototxt"], "files"),
    ("caffe", ["deploy.prototxt", "snapshot.caffemodel", "extra.caffemodel"], "files"),
    ("caffe", ["deploy.prototxt", "snapshot.caffemodel", "notes.txt"], "files[2].name"),
    ("caffe", ["model.onnx"], "framework"),
    ("onnx", ["deploy.prototxt", "snapshot.caffemodel"], "framework"),
]


@pytest.mark.parametrize(("framework", "names", "field"), FRAMEWORK_FILES)
async def test_each_framework_takes_its_own_files(no_tf: Server, framework: str, names: list[str], field: str) -> None:
    server = no_tf
    c = server.client
    source = files_of("caffe/colors", manifest("caffe/colors")["network"])
    files = {name: source.get(name, b"unused") for name in names} | {"mean.npy": b"mean"}
    preprocessing = manifest("caffe/colors")["network"]["preprocessing"]
    preprocessing["inputs"][0]["image"]["mean_file"] = "mean.npy"
    before = await user_network_ids(c)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.upload(network_of({"name": "files", "framework": framework, "preprocessing": preprocessing}), files)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert violations(error.value) == [field], error.value.details()
    await assert_nothing_left(server, before)


# ========================================================================================= TensorFlow, no TF


async def test_tensorflow_without_its_environment_is_a_failed_precondition_that_says_how_to_enable_it(
    no_tf: Server,
) -> None:
    server = no_tf
    c = server.client
    body = manifest("tensorflow/colors")
    before = await user_network_ids(c)
    for framework in ("tensorflow-1.x", "tensorflow-2.x"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await c.upload(
                network_of(body["network"], framework=framework), files_of("tensorflow/colors", body["network"])
            )
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.value.details() == ENABLE_HINT
        assert "make tf-env" in ENABLE_HINT
        assert "SIGHTLINE_TF_PYTHON" in ENABLE_HINT
        assert reason(error.value) == "CONVERTER_UNAVAILABLE"
    await assert_nothing_left(server, before)


TF_FILES: list[tuple[list[str], str]] = [
    (["variables.index", "variables.data-00000-of-00001"], "files"),
    (["saved_model.pb", "variables.index"], "files"),
    (["saved_model.pb", "variables.data-00000-of-00001"], "files"),
    (["saved_model.pb", "saved_model.pbtxt"], "files"),
    (["frozen.pb"], "files"),
]


@pytest.mark.parametrize(("names", "field"), TF_FILES)
async def test_tensorflow_uploads_take_a_saved_model_or_a_frozen_graph(
    hanging: Server, names: list[str], field: str
) -> None:
    server = hanging
    c = server.client
    body = manifest("tensorflow/colors")
    files = {name: b"unused" for name in names} | {"unitary_mean.npy": b"mean"}
    before = await user_network_ids(c)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.upload(network_of(body["network"]), files)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert violations(error.value) == [field], error.value.details()
    await assert_nothing_left(server, before)


def converter_pid(fake_tf: Path) -> int:
    return int((fake_tf.parent / "pid").read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_conversion_past_its_time_limit_is_stopped_and_leaves_nothing(hanging: Server, fake_tf: Path) -> None:
    server = hanging
    c = server.client
    body = manifest("tensorflow/colors")
    (fake_tf.parent / "pid").unlink(missing_ok=True)
    before = await user_network_ids(c)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.upload(network_of(body["network"]), files_of("tensorflow/colors", body["network"]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "took more than 3 s" in (error.value.details() or "")
    assert gone(converter_pid(fake_tf))
    await assert_nothing_left(server, before)


async def test_a_cancelled_upload_stops_its_conversion_and_leaves_nothing(hanging: Server, fake_tf: Path) -> None:
    server = hanging
    c = server.client
    body = manifest("tensorflow/colors")
    pid_file = fake_tf.parent / "pid"
    pid_file.unlink(missing_ok=True)
    before = await user_network_ids(c)
    messages = upload_messages(network_of(body["network"]), files_of("tensorflow/colors", body["network"]))

    async def stream() -> AsyncIterator[networks_pb2.CreateNetworkRequest]:
        for message in messages:
            yield message

    call = c.networks.CreateNetwork(stream())
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = converter_pid(fake_tf)
    assert not gone(pid), "the conversion is under way"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(200):
        if gone(pid) and not any(server.app.registry._repo.staging.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert gone(pid)
    await assert_nothing_left(server, before)


# ============================================================================================ TensorFlow


@pytest.mark.tf
async def test_tensorflow_colors_upload_answers_like_the_bundled_onnx_model(with_tf: Server) -> None:
    server = with_tf
    c = server.client
    body = manifest("tensorflow/colors")
    network = await c.deployed(network_of(body["network"]), files_of("tensorflow/colors", body["network"]))
    folder = server.app.registry._repo.folder(network.id)
    assert sorted(p.name for p in (folder / "original").iterdir()) == [
        "saved_model.pb",
        "variables.data-00000-of-00001",
        "variables.index",
    ]
    assert (folder / "unitary_mean.npy").is_file()
    assert not (folder / ".convert").exists()
    config = (folder / "config.pbtxt").read_text()
    assert 'name: "input"' in config
    assert 'name: "share"' in config

    post = body["version"]["post_processings"]
    assert post[0]["classification"]["output_tensor"] == "share:0"
    spec, version = await spec_and_version(c, body["spec"], network.id, post)
    stored = json_format.MessageToDict(version.post_processings[0], preserving_proto_field_name=True)
    assert stored["classification"]["output_tensor"] == "share:0", "versions keep the names they were given"
    for image in colour_images():
        mine = await recognise(c, image, spec_id=spec.id)
        public = await recognise(c, image, spec_id="colors-v1")
        assert mine.outputs[0].labels.predicted
        assert_same_predictions(mine, public)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await spec_and_version(c, body["spec"], network.id, [{"classification": {"output_tensor": "nope:0"}}])
    assert violations(error.value) == ["post_processings[0].classification.output_tensor"]

    image = next(colour_images())
    raw = await c.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id=network.id,
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))],
            output_tensors=["share:0"],
        )
    )
    public_raw = await c.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id="colors",
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=image))],
            output_tensors=["share"],
        )
    )
    assert [t.name for t in raw.tensors] == ["share:0"]
    np.testing.assert_allclose(raw.tensors[0].data, public_raw.tensors[0].data, atol=TOLERANCE)


def served_names(post: dict[str, Any]) -> dict[str, Any]:
    """A post-processing with the ONNX original's names (``detection_boxes:0`` → ``detection_boxes``)."""
    text = json.dumps(post)
    for name in ("detection_boxes", "detection_scores", "detection_classes", "image_tensor"):
        text = text.replace(f"{name}:0", name)
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.mark.tf
async def test_tensorflow_detector_upload_answers_like_its_onnx_original(with_tf: Server) -> None:
    server = with_tf
    c = server.client
    body = manifest("tensorflow/detector")
    converted = await c.deployed(network_of(body["network"]), files_of("tensorflow/detector", body["network"]))
    original_body = served_names({**body["network"], "name": "detector (ONNX original)", "framework": "onnx"})
    original_body["files"] = ["original.onnx"]
    assert original_body["preprocessing"]["inputs"][0]["tensor_name"] == "image_tensor"
    original = await c.deployed(network_of(original_body), files_of("tensorflow/detector", original_body))

    post = body["version"]["post_processings"]
    assert post[0]["detection"]["direct_output"]["boxes_tensor"] == "detection_boxes:0"
    assert "box_format" not in post[0]["detection"]["direct_output"], "the seed's example, as v0.7 wrote it"
    _, mine = await spec_and_version(c, body["spec"], converted.id, post)
    # The ONNX original has the same ymin-first boxes, which an onnx network must say.
    theirs_post = [served_names(p) for p in post]
    theirs_post[0]["detection"]["direct_output"]["box_format"] = "YXYX"
    _, theirs = await spec_and_version(c, body["spec"], original.id, theirs_post)
    yxyx = recognition_pb2.DirectOutput.YXYX
    assert mine.post_processings[0].detection.direct_output.box_format == yxyx, "the framework's layout, shown"

    # A red bar where x and y differ: its box is where the bar is, x not swapped with y (#17 point 0).
    picture = np.full((90, 120, 3), 255, np.uint8)
    picture[10:30, 5:50] = (230, 20, 10)
    bar = await recognise(c, encode(picture), version_id=mine.id)
    (red,) = [p for p in bar.outputs[0].labels.predicted if p.label_name == "red"]
    box = red.roi.bbox
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == pytest.approx((5 / 120, 10 / 90, 50 / 120, 30 / 90), abs=0.01)

    images = [case.png() for case in fixtures.CASES] + list(colour_images())[:6]
    found = 0
    for image in images:
        got = await recognise(c, image, version_id=mine.id)
        expected = await recognise(c, image, version_id=theirs.id)
        assert_same_predictions(got, expected)
        found += len(got.outputs[0].labels.predicted)
    assert found >= len(fixtures.CASES), "the detector finds the coloured shapes"

    raw = await c.networks.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id=converted.id,
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=images[0]))],
            output_tensors=["detection_boxes:0", "detection_scores"],
        )
    )
    assert [t.name for t in raw.tensors] == ["detection_boxes:0", "detection_scores"]
    task = await c.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=converted.task_id))
    assert task.status == tasks_pb2.success
