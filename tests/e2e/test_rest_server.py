"""The REST facade as part of the server: TLS from the gRPC's files (the official client over HTTPS, configured by
its environment and ``REQUESTS_CA_BUNDLE`` only), request ids, metrics, and its part in the drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import requests
from deepomatic.api.client import Client
from prometheus_client import generate_latest

from service.server import Application, running
from service.settings import Settings
from tests.helpers import TritonFixture


@pytest.fixture
async def tls_app(triton: TritonFixture, tmp_path: Path, certificates: dict[str, Path]) -> AsyncIterator[Application]:
    settings = Settings(
        port=0,
        rest_port=0,
        metrics_port=-1,
        triton_url=triton.url,
        data_dir=tmp_path,
        tls_cert_file=certificates["cert"],
        tls_key_file=certificates["key"],
        drain_grace_s=2,
    )
    async with running(settings) as app:
        yield app


async def test_the_official_client_over_https(
    tls_app: Application, certificates: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_app.rest is not None
    monkeypatch.setenv("DEEPOMATIC_API_URL", f"https://localhost:{tls_app.rest.port}")
    monkeypatch.setenv("DEEPOMATIC_API_KEY", "any: keys are off on a loopback address")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates["ca"]))

    def calls() -> list[str]:
        return [s.pk for s in Client().RecognitionSpec.list(public=True)]

    assert "colors-v1" in await asyncio.to_thread(calls)
    plain = f"http://localhost:{tls_app.rest.port}/v0.7/recognition/public/"
    with pytest.raises(requests.ConnectionError):
        await asyncio.to_thread(requests.get, plain, timeout=5)


async def test_request_ids_metrics_and_the_drain(tls_app: Application, certificates: dict[str, Path]) -> None:
    assert tls_app.rest is not None
    url = f"https://localhost:{tls_app.rest.port}/v0.7/recognition/public/colors-v1/"
    ca = str(certificates["ca"])

    def get(request_id: str) -> requests.Response:
        return requests.get(url, headers={"X-Request-Id": request_id}, verify=ca, timeout=5)

    answer = await asyncio.to_thread(get, "rest-1")
    assert answer.status_code == 200
    assert answer.headers["X-Request-Id"] == "rest-1"
    bad = await asyncio.to_thread(get, "x" * 500)  # unusable: a new one is made
    assert len(bad.headers["X-Request-Id"]) == 32
    page = generate_latest(tls_app.metrics.registry).decode()
    assert 'sightline_requests_total{code="200",method="/v0.7 GET /recognition/public/{spec_id}"} 2.0' in page

    tls_app.rest.refuse_new()
    refused = await asyncio.to_thread(get, "rest-2")
    assert refused.status_code == 503
    assert refused.json()["reason"] == "SERVER_SHUTTING_DOWN"
    assert refused.json()["request_id"] == "rest-2"
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Connection"] == "close"
