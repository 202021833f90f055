"""The official v0.7 Python client (``deepomatic-api`` 1.0.0, unchanged, configured only by its environment
variables) against the REST facade of a real ``sightline serve`` on the session's Triton.

The flows are the client's quick-start ones: list the public models, recognise from a file, bytes, base64 and a
URL, wait on a task and on many (``batch_wait``, more than one page), ``show_discarded``; then upload a network with
its files and preprocessing, a specification and a version, recognise through them, run the network raw, update
and delete. Results are checked against the gRPC API of the same server on the same images, and the error cases
against the statuses v0.7 answered (400 empty inputs, 404 unknown spec, 401 wrong key, 403 read key).
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from deepomatic.api.client import Client
from deepomatic.api.exceptions import ClientError
from deepomatic.api.inputs import ImageInput
from google.protobuf import json_format

from service._proto.sightline.v1 import inference_pb2, networks_pb2, networks_pb2_grpc, recognition_pb2_grpc
from tests.e2e.external import ROOT, ExternalService, free_port, wait_until
from tests.helpers import COLORS_PREPROCESSING, TritonFixture, colors_files

RED = ROOT / "samples" / "red.png"
SCENE = ROOT / "samples" / "shapes-scene.png"
COLORS_SPEC = json.loads((ROOT / "model_repository" / "colors" / "sightline.json").read_text())["spec"]
PUBLIC_SPECS = sorted(
    json.loads(p.read_text())["spec"]["id"] for p in (ROOT / "model_repository").glob("*/sightline.json")
)


@dataclass
class Keys:
    admin: str
    read: str
    other: str
    """An admin key of another organisation."""


def _create_key(env: dict[str, str], org: str, kind: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", "keys", "create", "--org", org, "--kind", kind],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class Rest:
    service: ExternalService
    url: str
    keys: Keys
    images: str
    """A local HTTP server's URL with samples/ (allowed as a URL source for this server)."""


@pytest.fixture(scope="module")
def rest(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    data = tmp_path_factory.mktemp("rest")
    rest_port = free_port()
    service = ExternalService(
        data,
        SIGHTLINE_TRITON_URL=triton.url,
        SIGHTLINE_MODELS_DIR=str(triton.models),
        SIGHTLINE_MODEL_NAME_PREFIX="rest-",
        SIGHTLINE_REST_PORT=str(rest_port),
        SIGHTLINE_AUTH="on",
        SIGHTLINE_AUTH_CACHE_S="0",
        SIGHTLINE_URL_ALLOW="127.0.0.1",
    )
    keys = Keys(
        *(_create_key(service.env, o, k) for o, k in (("acme", "admin"), ("acme", "read"), ("globex", "admin")))
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(ROOT / "samples"))  # noqa: E731
    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    with service.running():
        yield Rest(service, f"http://127.0.0.1:{rest_port}", keys, f"http://127.0.0.1:{images.server_port}")
    images.shutdown()
    images.server_close()
    log = service.log.read_text(errors="replace")
    assert "Traceback" not in log, service.tail(80)


@pytest.fixture
def client(rest: Rest, monkeypatch: pytest.MonkeyPatch) -> Client:
    """The client as its README configures it: DEEPOMATIC_API_URL and DEEPOMATIC_API_KEY only."""
    monkeypatch.setenv("DEEPOMATIC_API_URL", rest.url)
    monkeypatch.setenv("DEEPOMATIC_API_KEY", rest.keys.admin)
    return Client()


@pytest.fixture(scope="module")
def grpc_channel(rest: Rest) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(rest.service.address) as channel:
        yield channel


def grpc_json(channel: grpc.Channel, key: str, spec_id: str, image: bytes, **options: Any) -> dict[str, Any]:
    """The v0.7 JSON of the gRPC API's answer on the same image (empty lists printed)."""
    request = inference_pb2.RecognizeRequest(spec_id=spec_id, inputs=[inference_pb2.Input(image={"content": image})])
    for name, value in options.items():
        setattr(request, name, value)
    answer = recognition_pb2_grpc.RecognitionServiceStub(channel).Recognize(request, metadata=[("x-api-key", key)])
    return json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def top(result: dict[str, Any]) -> str:
    return str(result["outputs"][0]["labels"]["predicted"][0]["label_name"])


# ------------------------------------------------------------------------------------------- public models


def test_lists_the_public_models_as_the_quick_start_does(client: Client) -> None:
    listed = list(client.RecognitionSpec.list(public=True))
    assert sorted(s.pk for s in listed) == PUBLIC_SPECS
    for spec in listed:
        assert isinstance(spec.pk, str)
        assert "current_version_id" not in spec.data()  # v0.7 hides it on public specs
    colors = client.RecognitionSpec.retrieve("colors-v1")
    assert colors["outputs"] == COLORS_SPEC["outputs"]
    assert [n.pk for n in client.Network.list(public=True)] != []
    own = client.RecognitionSpec.list()
    assert own.count() == 0 or all(isinstance(s.pk, int) for s in own)


def test_recognises_from_a_file_bytes_base64_and_a_url(client: Client, rest: Rest, grpc_channel: grpc.Channel) -> None:
    spec = client.RecognitionSpec.retrieve("colors-v1")
    data = RED.read_bytes()
    expected = grpc_json(grpc_channel, rest.keys.admin, "colors-v1", data)
    with RED.open("rb") as handle:
        inputs = [
            ImageInput(handle),
            ImageInput(data, encoding="binary"),
            ImageInput(base64.b64encode(data), encoding="base64"),
            ImageInput(f"{rest.images}/red.png"),
        ]
        for image in inputs:
            result = spec.inference(inputs=[image])
            assert result == expected
            assert top(result) == "red"
            assert result["outputs"][0]["labels"]["discarded"] == []  # always there, as in v0.7


def test_detections_show_discarded_and_max_predictions(client: Client, rest: Rest, grpc_channel: grpc.Channel) -> None:
    data = SCENE.read_bytes()
    spec = client.RecognitionSpec.retrieve("shapes-yolo-v1")
    result = spec.inference(inputs=[ImageInput(data, encoding="binary")], show_discarded=True, max_predictions=3)
    assert result == grpc_json(
        grpc_channel, rest.keys.admin, "shapes-yolo-v1", data, show_discarded=True, max_predictions=3
    )
    labels = result["outputs"][0]["labels"]
    assert 0 < len(labels["predicted"]) <= 3
    assert 0 < len(labels["discarded"]) <= 3
    box = labels["predicted"][0]["roi"]["bbox"]
    assert set(box) == {"xmin", "ymin", "xmax", "ymax"}
    assert 0 <= box["xmin"] < box["xmax"] <= 1
    assert isinstance(labels["predicted"][0]["roi"]["region_id"], int)


def test_tasks_wait_and_batch_wait_over_several_pages(client: Client) -> None:
    spec = client.RecognitionSpec.retrieve("colors-v1")
    data = RED.read_bytes()
    tasks = [
        spec.inference(inputs=[ImageInput(data, encoding="binary")], return_task=True, wait_task=False)
        for _ in range(130)
    ]
    first = tasks[0].wait()
    assert first["status"] == "success"
    assert first["error"] is None
    assert first["subtasks"] is None
    assert first["date_created"].endswith("Z")
    assert top(first["data"]) == "red"
    pending, success, errors = client.Task.batch_wait(tasks=tasks)
    assert (len(pending), len(success), len(errors)) == (0, 130, 0)
    assert [pos for pos, _ in success] == list(range(130))
    assert all(top(t["data"]) == "red" for _, t in success)
    # Thousands of ids in one query string, as batch_wait sends every pending id on each poll.
    many = [t.pk for t in tasks] * 25
    listed = client.Task.list(task_ids=many)
    assert listed.count() == len(many) == 3250
    assert len(listed["results"]) == 100
    assert listed["next"] is not None
    assert listed["prev"] is None


# ------------------------------------------------------------------------------------------------ registry


def test_upload_a_network_then_a_spec_and_a_version_and_recognise_through_them(
    client: Client, rest: Rest, grpc_channel: grpc.Channel, tmp_path: Path
) -> None:
    files = {}
    for name, content in colors_files().items():
        (tmp_path / name).write_bytes(content)
        files[name] = open(tmp_path / name, "rb")  # noqa: SIM115 (the client reads them)
    try:
        network = client.Network.create(
            name="my colours", description="uploaded", framework="onnx", preprocessing=COLORS_PREPROCESSING, files=files
        )
    finally:
        for handle in files.values():
            handle.close()
    assert isinstance(network.pk, int)
    assert network["preprocessing"] == COLORS_PREPROCESSING
    deployment = client.Task.retrieve(network["task_id"]).wait(timeout=120)
    assert deployment["status"] == "success"

    spec = client.RecognitionSpec.create(
        name="my colours", description="", metadata={"team": "a"}, outputs=COLORS_SPEC["outputs"]
    )
    assert isinstance(spec.pk, int)
    assert spec["current_version_id"] is None
    version = client.RecognitionVersion.create(
        spec_id=spec.pk, network_id=network.pk, post_processings=[{"classification": {"output_tensor": "share"}}]
    )
    assert isinstance(version.pk, int)
    assert version["spec_id"] == spec.pk
    assert version["network_id"] == network.pk
    assert client.RecognitionSpec.retrieve(spec.pk)["current_version_id"] == version.pk

    data = RED.read_bytes()
    expected = grpc_json(grpc_channel, rest.keys.admin, "colors-v1", data)
    assert spec.inference(inputs=[ImageInput(data, encoding="binary")]) == expected
    assert (
        client.RecognitionVersion.retrieve(version.pk).inference(inputs=[ImageInput(data, encoding="binary")])
        == expected
    )

    raw = network.inference(inputs=[ImageInput(data, encoding="binary")], output_tensors=["share"])
    stub = networks_pb2_grpc.NetworkServiceStub(grpc_channel)
    direct = stub.InferNetwork(
        networks_pb2.InferNetworkRequest(
            network_id=str(network.pk), inputs=[inference_pb2.Input(image={"content": data})], output_tensors=["share"]
        ),
        metadata=[("x-api-key", rest.keys.admin)],
    )
    assert raw["share"].shape == tuple(direct.tensors[0].shape)
    np.testing.assert_allclose(raw["share"].reshape(-1), direct.tensors[0].data, rtol=1e-6)

    assert [v.pk for v in spec.versions()] == [version.pk]
    assert version.pk in [v.pk for v in client.RecognitionVersion.list()]
    assert [s.pk for s in client.RecognitionSpec.list()] == [spec.pk]
    assert [n.pk for n in client.Network.list()] == [network.pk]

    spec.update(name="renamed")
    assert spec["name"] == "renamed"
    assert spec["metadata"] == {"team": "a"}
    spec.update(replace=True, name="replaced", description="put")
    assert (spec["name"], spec["description"], spec["metadata"]) == ("replaced", "put", {})
    network.update(description="changed")
    assert client.Network.retrieve(network.pk)["description"] == "changed"

    assert version.delete() is None
    with pytest.raises(ClientError) as gone:
        client.RecognitionVersion.retrieve(version.pk).data()
    assert gone.value.status_code == 404
    spec.delete()
    network.delete()
    assert client.RecognitionSpec.list().count() == 0
    assert client.Network.list().count() == 0


def test_a_curl_style_upload_with_json_text_parts(rest: Rest) -> None:
    """The v0.7 docs' curl examples send preprocessing and metadata as one JSON text part each."""
    files = colors_files()
    answer = requests.post(
        f"{rest.url}/v0.7/networks/",
        headers={"X-API-KEY": rest.keys.admin},
        data={
            "name": "curl colours",
            "framework": "onnx",
            "preprocessing": json.dumps(COLORS_PREPROCESSING),
            "metadata": json.dumps({"author": "curl", "n": 3}),
        },
        files={name: (name, content) for name, content in files.items()},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert isinstance(body["id"], int)
    assert body["metadata"] == {"author": "curl", "n": 3}
    assert (
        requests.delete(
            f"{rest.url}/v0.7/networks/{body['id']}", headers={"X-API-KEY": rest.keys.admin}, timeout=30
        ).status_code
        == 204
    )


# -------------------------------------------------------------------------------------------------- errors


def test_errors_are_the_v07_statuses_with_json_bodies(
    client: Client, rest: Rest, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = client.RecognitionSpec.retrieve("colors-v1")
    with pytest.raises(ClientError) as empty:
        spec.inference(inputs=[])
    assert empty.value.status_code == 400
    body = empty.value.json()
    assert "inputs" in body["error"]
    assert body["reason"] == "INVALID_ARGUMENT"
    assert body["request_id"]

    with pytest.raises(ClientError) as unknown:
        client.RecognitionSpec.retrieve(987654).data()
    assert unknown.value.status_code == 404
    assert unknown.value.response.headers["Content-Type"].startswith("application/json")

    monkeypatch.setenv("DEEPOMATIC_API_KEY", "sl_000000000000_not-a-key-of-this-server")
    with pytest.raises(ClientError) as wrong:
        Client().RecognitionSpec.retrieve("colors-v1").data()
    assert wrong.value.status_code == 401

    monkeypatch.setenv("DEEPOMATIC_API_KEY", rest.keys.read)
    reader = Client()
    assert (
        top(
            reader.RecognitionSpec.retrieve("colors-v1").inference(
                inputs=[ImageInput(RED.read_bytes(), encoding="binary")]
            )
        )
        == "red"
    )
    with pytest.raises(ClientError) as denied:
        reader.RecognitionSpec.create(name="x", outputs=COLORS_SPEC["outputs"])
    assert denied.value.status_code == 403


def test_another_organisations_resources_do_not_exist(
    client: Client, rest: Rest, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = client.RecognitionSpec.create(name="acme only", outputs=COLORS_SPEC["outputs"])
    monkeypatch.setenv("DEEPOMATIC_API_KEY", rest.keys.other)
    other = Client()
    with pytest.raises(ClientError) as hidden:
        other.RecognitionSpec.retrieve(spec.pk).data()
    assert hidden.value.status_code == 404
    assert other.RecognitionSpec.list().count() == 0
    spec.delete()


def test_bad_bodies_get_clear_answers(rest: Rest) -> None:
    key = {"X-API-KEY": rest.keys.admin}
    url = f"{rest.url}/v0.7/recognition/public/colors-v1/inference"
    form = requests.post(url, headers=key, data={"inputs": "x"}, timeout=10)  # url-encoded
    assert form.status_code == 415
    assert form.headers["Content-Type"].startswith("application/json")
    garbage = requests.post(url, headers={**key, "Content-Type": "application/json"}, data=b"\xff{not json", timeout=10)
    assert garbage.status_code == 400
    assert "JSON" in garbage.json()["error"]
    nan = requests.post(url, headers={**key, "Content-Type": "application/json"}, data=b'{"inputs": NaN}', timeout=10)
    assert nan.status_code == 400
    bad_bool = requests.post(
        url,
        headers=key,
        files={"inputs[0]image.source": ("a.png", RED.read_bytes()), "show_discarded": (None, b"maybe")},
        timeout=10,
    )
    assert bad_bool.status_code == 400
    assert bad_bool.json()["field_violations"][0]["field"] == "show_discarded"
    missing = requests.get(f"{rest.url}/v0.7/nothing/here/", headers=key, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["reason"] == "NOT_FOUND"
    method = requests.delete(f"{rest.url}/v0.7/recognition/public/", headers=key, timeout=10)
    assert method.status_code == 405
    garbage_image = requests.post(
        url, headers=key, files={"inputs[0]image.source": ("x.png", b"not an image")}, timeout=10
    )
    assert garbage_image.status_code == 200  # inference only enqueues; the task says why it failed
    task = requests.get(f"{rest.url}/v0.7/tasks/{garbage_image.json()['task_id']}/", headers=key, timeout=10).json()
    rest.service.assert_alive()
    assert task["status"] in ("pending", "error")


# ------------------------------------------------------------------------------------------- other clients


def test_a_node_client_with_only_fetch_gets_the_same_json(client: Client, rest: Rest) -> None:
    """Another language, no client library: Node's built-in fetch and FormData (a multipart file part, pages
    followed through ``next``), compared with the official Python client on the same image."""
    done = subprocess.run(
        [
            "node",
            str(ROOT / "tests" / "e2e" / "rest_client.mjs"),
            rest.url,
            rest.keys.admin,
            "shapes-yolo-v1",
            str(SCENE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert sorted(answer["public"]) == PUBLIC_SPECS
    spec = client.RecognitionSpec.retrieve("shapes-yolo-v1")
    assert answer["result"] == spec.inference(
        inputs=[ImageInput(SCENE.read_bytes(), encoding="binary")], show_discarded=True
    )


def test_a_service_killed_mid_upload_leaves_no_staged_file_and_no_network(
    triton: TritonFixture, tmp_path: Path
) -> None:
    """SIGKILL while a REST upload is being spooled, then a restart on the same data folder: the spool is gone and
    no network row or model folder remains."""
    rest_port = free_port()
    settings = {
        "SIGHTLINE_TRITON_URL": triton.url,
        "SIGHTLINE_MODELS_DIR": str(triton.models),
        "SIGHTLINE_MODEL_NAME_PREFIX": "rest-kill-",
        "SIGHTLINE_REST_PORT": str(rest_port),
    }
    service = ExternalService(tmp_path, **settings).start()
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nhalf\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="framework"\r\n\r\nonnx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="model.onnx"; filename="model.onnx"\r\n\r\n'
    ).encode()
    staging = tmp_path / "staging"
    with socket.create_connection(("127.0.0.1", rest_port)) as upload:
        upload.sendall(
            b"POST /v0.7/networks/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: k\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(head) + 50_000_000}\r\n\r\n".encode()
            + head
            + b"\x00" * 2_000_000
        )
        wait_until(lambda: any(staging.glob("rest-*/0")), timeout_s=20, what="the spooled file")
        assert service.process is not None
        service.process.kill()
        service.process.wait(10)
    assert any(staging.glob("rest-*"))
    with ExternalService(tmp_path, **settings).running():
        assert list(staging.iterdir()) == []
        listed = requests.get(f"http://127.0.0.1:{rest_port}/v0.7/networks/", headers={"X-API-KEY": "k"}, timeout=10)
        assert listed.json()["count"] == 0
    assert not list(triton.models.glob("rest-kill-*"))
