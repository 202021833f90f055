"""The REST facade's body reader on bodies encoded exactly as the official v0.7 client encodes them: its own
flattening (``HTTPHelper.dump_json_for_multipart``) and ``requests``' multipart encoder, served by aiohttp."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from deepomatic.api.http_helper import HTTPHelper

from service.api.rest.converters import INFERENCE_SCHEMA, NETWORK_SCHEMA
from service.api.rest.errors import UnsupportedMediaType, error_response
from service.api.rest.forms import Spool, read_body
from service.errors import InvalidArgumentError, ResourceExhaustedError

PREPROCESSING = {
    "inputs": [
        {
            "tensor_name": "data",
            "image": {
                "resize_type": "NETWORK",
                "data_type": "FLOAT32",
                "dimension_order": "NCHW",
                "pixel_scaling": 255.0,
                "mean_file": "imagenet_mean.binaryproto",
                "target_size": "800",
                "color_channels": "BGR",
            },
        },
        {"tensor_name": "im_info", "constant": {"shape": [3], "data": ["data.1", "data.2", 1.0]}},
    ],
    "batched_output": False,
}
"""The seed's Caffe Faster-RCNN preprocessing: strings, floats, booleans and a mixed constant."""

Reader = Callable[..., Any]


def client_encoding(data: dict[str, Any], files: dict[str, Any]) -> tuple[bytes, str]:
    """The body and Content-Type the official client sends for ``data`` and ``files`` (its multipart path)."""
    helper = HTTPHelper(api_key="k", host="http://x")
    fields = helper.dump_json_for_multipart(data)
    parts = {}
    for key, value in helper.dump_json_for_multipart(files).items():
        parts[key] = value if isinstance(value, (bytes, tuple)) else (None, value, "application/json")
    prepared = requests.Request("POST", "http://x/", data=fields, files=parts).prepare()
    content_type = prepared.headers["Content-Type"]
    assert isinstance(prepared.body, bytes)
    assert isinstance(content_type, str)
    return prepared.body, content_type


@pytest.fixture
async def post(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """POST a body to a server whose handler runs ``read_body`` with the given schema; its outcome back."""
    outcome: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        schema = INFERENCE_SCHEMA if request.path == "/inference" else NETWORK_SCHEMA
        try:
            with Spool(tmp_path, max_bytes=int(request.query.get("max", "1000000")), max_files=3) as spool:
                body = await read_body(request, schema, max_bytes=1_000_000, spool=spool)
                outcome["files"] = [(f.name, f.size, f.sha256, f.path.read_bytes()) for f in body.files]
                outcome["folder"] = spool.folder
            outcome["fields"] = body.fields
        except Exception as exc:
            outcome["error"] = exc
            return error_response(exc)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/{kind}", handler)
    server = TestServer(app)
    await server.start_server()
    async with ClientSession() as session:

        async def send(path: str, body: bytes, content_type: str, query: str = "") -> dict[str, Any]:
            outcome.clear()
            url = f"http://127.0.0.1:{server.port}{path}{query}"
            async with session.post(url, data=body, headers={"Content-Type": content_type}):
                pass
            return dict(outcome)

        yield send
    await server.close()


async def test_the_clients_nested_notation_rebuilds_the_preprocessing(post: Callable[..., Any]) -> None:
    body, content_type = client_encoding(
        {"name": "rcnn", "framework": "nv-caffe-0.x-mod", "preprocessing": PREPROCESSING, "metadata": {"a": "b"}},
        {"deploy.prototxt": b"name: 'x'", "snapshot.caffemodel": b"\x00\x01weights"},
    )
    assert b'name="preprocessing.inputs[0]image.target_size"' in body  # the notation under test
    outcome = await post("/network", body, content_type)
    assert outcome["fields"] == {
        "name": "rcnn",
        "framework": "nv-caffe-0.x-mod",
        "preprocessing": PREPROCESSING,
        "metadata": {"a": "b"},
    }
    names = [(n, size, digest) for n, size, digest, _ in outcome["files"]]
    assert names == [
        ("deploy.prototxt", 9, hashlib.sha256(b"name: 'x'").hexdigest()),
        ("snapshot.caffemodel", 9, hashlib.sha256(b"\x00\x01weights").hexdigest()),
    ]
    assert not outcome["folder"].exists()  # the spool goes with the request


async def test_json_text_parts_as_the_curl_examples_send_them(post: Callable[..., Any]) -> None:
    prepared = requests.Request(
        "POST",
        "http://x/",
        data={"name": "n", "preprocessing": json.dumps(PREPROCESSING), "metadata": json.dumps({"n": 3})},
        files={"model.onnx": ("model.onnx", b"onnx")},
    ).prepare()
    assert isinstance(prepared.body, bytes)
    outcome = await post("/network", prepared.body, prepared.headers["Content-Type"])
    assert outcome["fields"]["preprocessing"] == PREPROCESSING
    assert outcome["fields"]["metadata"] == {"n": 3}


async def test_an_inference_form_as_the_client_sends_an_image_file(post: Callable[..., Any]) -> None:
    # (The client cannot send a float in a file part: urllib3 refuses it. DRF clients send the text, as here.)
    image = {
        "source": b"\x89PNG\r\n fake",
        "crop_uniform_background": False,
        "bbox": {"xmin": "0.1", "ymin": "0.2", "xmax": "0.5", "ymax": 1},
    }
    body, content_type = client_encoding({"show_discarded": True, "max_predictions": 3}, {"inputs": [{"image": image}]})
    fields = (await post("/inference", body, content_type))["fields"]
    assert fields == {
        "inputs": [
            {
                "image": {
                    "source": b"\x89PNG\r\n fake",
                    "crop_uniform_background": False,
                    "bbox": {"xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 1.0},
                }
            }
        ],
        "show_discarded": True,
        "max_predictions": 3,
    }


async def test_a_url_source_in_a_form_stays_text(post: Callable[..., Any]) -> None:
    body, content_type = client_encoding({}, {"inputs": [{"image": {"source": "https://example.org/a.jpg"}}]})
    fields = (await post("/inference", body, content_type))["fields"]
    assert fields["inputs"][0]["image"]["source"] == "https://example.org/a.jpg"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"show_discarded": "maybe"}, "show_discarded"),
        ({"max_predictions": "3.5"}, "max_predictions"),
        ({"inputs[1]image.source": "https://a/b.png"}, "inputs[1]"),
        ({"inputs[0]image.bbox.xmin": "nan"}, "inputs[0].image.bbox.xmin"),
        ({"inputs[0]image.bbox": "{not json"}, "inputs[0].image.bbox"),
        ({"inputs[0]]x": "1"}, "inputs[0]]x"),
    ],
)
async def test_bad_form_fields_name_the_field(post: Callable[..., Any], data: dict[str, str], field: str) -> None:
    prepared = requests.Request("POST", "http://x/", data=data, files={"unused": (None, "x")}).prepare()
    assert isinstance(prepared.body, bytes)
    error = (await post("/inference", prepared.body, prepared.headers["Content-Type"]))["error"]
    assert isinstance(error, InvalidArgumentError)
    assert error.violations[0].field == field


def leftovers(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_uploads_beyond_the_limit_are_refused_and_leave_nothing(post: Callable[..., Any], tmp_path: Path) -> None:
    body, content_type = client_encoding({"name": "n"}, {"model.onnx": b"x" * 5000})
    outcome = await post("/network", body, content_type, "?max=4096")
    assert isinstance(outcome["error"], ResourceExhaustedError)
    assert "SIGHTLINE_MAX_UPLOAD_BYTES" in outcome["error"].message
    assert leftovers(tmp_path) == []


async def test_url_encoded_forms_and_bad_json_are_refused(post: Callable[..., Any]) -> None:
    assert isinstance(
        (await post("/inference", b"inputs=x", "application/x-www-form-urlencoded"))["error"], UnsupportedMediaType
    )
    for bad in (b"[1, 2]", b'{"a": NaN}', b"\xff"):
        assert isinstance((await post("/inference", bad, "application/json"))["error"], InvalidArgumentError)
    assert (await post("/inference", b"", "application/json"))["fields"] == {}
