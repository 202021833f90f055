"""URL image sources through the service: refused for loopback by default, fetched when the allow-list says so."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc
from service.server import running
from service.settings import Settings
from tests.e2e.helpers import COLORS
from tests.helpers import TritonFixture


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory, solid_image: Callable[..., bytes]) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("site")
    (folder / "red.png").write_bytes(solid_image(COLORS["red"]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def url_request(url: str) -> inference_pb2.RecognizeRequest:
    image = inference_pb2.ImageInput(source=url)
    return inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image=image)])


async def test_loopback_is_refused_by_default(
    recognition: recognition_pb2_grpc.RecognitionServiceStub, image_site: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(url_request(f"{image_site}/red.png"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "SIGHTLINE_URL_ALLOW" in (error.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(url_request("http://169.254.169.254/latest/meta-data/"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_allowed_host_is_fetched(triton: TritonFixture, tmp_path: Path, image_site: str) -> None:
    settings = Settings(port=0, metrics_port=-1, triton_url=triton.url, data_dir=tmp_path, url_allow=["127.0.0.1"])
    async with running(settings) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        result = await stub.Recognize(url_request(f"{image_site}/red.png"))
        assert result.outputs[0].labels.predicted[0].label_name == "red"
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Recognize(url_request(f"{image_site}/missing.png"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "404" in (error.value.details() or "")


def test_allow_list_reads_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGHTLINE_URL_ALLOW", "10.0.0.0/8, minio.internal,")
    assert Settings().url_allow == ["10.0.0.0/8", "minio.internal"]
    monkeypatch.setenv("SIGHTLINE_URL_ALLOW", "")
    assert Settings().url_allow == []
