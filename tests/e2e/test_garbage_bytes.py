"""Bytes that are not the protocol, sent from outside to each port a real ``sightline serve`` listens on: the
gRPC port, the REST facade's and the metrics page's. Whatever arrives, the server stays up, keeps answering real
clients, and logs no traceback; a client that opens a connection and sends nothing holds no request slot.
"""

from __future__ import annotations

import random
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc
from tests.e2e.external import ROOT, ExternalService, free_port
from tests.helpers import TritonFixture

RED = (ROOT / "samples" / "red.png").read_bytes()
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def tls_client_hello() -> bytes:
    """The first bytes a TLS client sends (a real ClientHello, made by Python's ssl module)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def payloads() -> dict[str, bytes]:
    rng = random.Random(20261201)
    return {
        "random bytes": bytes(rng.getrandbits(8) for _ in range(64 * 1024)),
        "NUL bytes": bytes(4096),
        "an HTTP/1.1 request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "a TLS ClientHello": tls_client_hello(),
        "the HTTP/2 preface, then garbage frames": HTTP2_PREFACE + bytes(rng.getrandbits(8) for _ in range(4096)),
        "a frame header that announces 16 MB": HTTP2_PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
        "a header line of 1 MB": b"POST /v0.7/networks HTTP/1.1\r\nX: " + b"a" * (1024 * 1024) + b"\r\n\r\n",
        "a body shorter than its Content-Length": b"POST /v0.7/recognition/public/colors-v1/inference HTTP/1.1\r\n"
        b'Host: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs": [',
    }


@pytest.fixture
def service(triton: TritonFixture, tmp_path: Path) -> Iterator[ExternalService]:
    rest_port = free_port()
    with ExternalService(
        tmp_path, SIGHTLINE_TRITON_URL=triton.url, SIGHTLINE_REST_PORT=str(rest_port)
    ).running() as running:
        running.env["REST_PORT"] = str(rest_port)
        yield running


def send(port: int, data: bytes) -> None:
    """Send ``data`` and read what comes back until the server closes or 2 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            conn.sendall(data)
            conn.settimeout(2)
            while conn.recv(65536):
                pass
        except (ConnectionError, TimeoutError, OSError):
            pass  # the server may reset a connection it cannot read: that is its right


def still_serving(service: ExternalService, rest_port: int) -> None:
    with grpc.insecure_channel(service.address) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        request = inference_pb2.RecognizeRequest(
            spec_id="colors-v1", inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=RED))]
        )
        result = stub.Recognize(request, timeout=30)
    assert result.outputs[0].labels.predicted[0].label_name == "red"
    listed = requests.get(f"http://127.0.0.1:{rest_port}/v0.7/recognition/public/", timeout=10)
    assert listed.status_code == 200
    assert any(spec["id"] == "colors-v1" for spec in listed.json()["results"])
    assert service.metrics()  # the metrics page still answers


def test_garbage_on_every_port_leaves_the_server_serving(service: ExternalService) -> None:
    rest_port = int(service.env["REST_PORT"])
    ports = {"grpc": service.port, "rest": rest_port, "metrics": service.metrics_port}
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for port in ports.values() for _ in range(20)]
    try:
        for _name, port in ports.items():
            for _what, data in payloads().items():
                send(port, data)
                service.assert_alive()
        # 60 connections open and silent (a slow or dead client) do not stop real clients.
        still_serving(service, rest_port)
    finally:
        for conn in idle:
            conn.close()
    still_serving(service, rest_port)
    log = service.log.read_text(errors="replace")
    assert "Traceback" not in log, service.tail(80)
    # What the REST port could not parse is one INFO line each, without the bytes; a body cut short is the
    # client's going away (499), not a server error.
    assert "INFO sightline.rest.protocol [-]: Error handling request from 127.0.0.1: LineTooLong 400" in log
    assert "/inference 499 " in log
    assert " 500 " not in log
