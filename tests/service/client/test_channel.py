"""The CLI's channels (``service.client.channel``): the credentials and options the environment asks for, and the
API key on every call, checked against an in-process gRPC server on 127.0.0.1 (plaintext, and TLS with
certificates made by trustme)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from service.client.channel import API_KEY_ENV, channel, credentials

METHOD = "/test.Echo/Metadata"


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("sightline.example")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return files


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SIGHTLINE_CLIENT_TLS": "auto"},
        {"SIGHTLINE_CLIENT_TLS": "off", "SIGHTLINE_TLS_CERT_FILE": "server.pem"},
        {"SIGHTLINE_CLIENT_TLS": "OFF", "SIGHTLINE_CLIENT_CA_FILE": "ca.pem"},
    ],
)
def test_plaintext_unless_tls_is_asked_for_or_the_server_has_a_certificate(env: dict[str, str]) -> None:
    assert credentials(env) == (None, [])


def test_auto_turns_tls_on_beside_a_tls_server_and_trusts_its_certificate(pems: dict[str, Path]) -> None:
    tls, options = credentials({"SIGHTLINE_TLS_CERT_FILE": str(pems["cert"])})
    assert isinstance(tls, grpc.ChannelCredentials)
    assert options == []


def test_on_without_any_file_trusts_the_system_roots() -> None:
    tls, options = credentials({"SIGHTLINE_CLIENT_TLS": "on"})
    assert isinstance(tls, grpc.ChannelCredentials)
    assert options == []


def test_the_tls_name_becomes_the_target_name_override(pems: dict[str, Path]) -> None:
    env = {"SIGHTLINE_CLIENT_TLS": "on", "SIGHTLINE_CLIENT_CA_FILE": str(pems["ca"])}
    _, options = credentials({**env, "SIGHTLINE_CLIENT_TLS_NAME": "sightline.example"})
    assert options == [("grpc.ssl_target_name_override", "sightline.example")]


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="SIGHTLINE_CLIENT_TLS='maybe': expected auto, on or off"):
        credentials({"SIGHTLINE_CLIENT_TLS": "maybe"})


@pytest.mark.parametrize("given", ["SIGHTLINE_CLIENT_CERT_FILE", "SIGHTLINE_CLIENT_KEY_FILE"])
def test_mutual_tls_needs_both_its_files(pems: dict[str, Path], given: str) -> None:
    env = {"SIGHTLINE_CLIENT_TLS": "on", given: str(pems["cert"])}
    with pytest.raises(ValueError, match="needs both SIGHTLINE_CLIENT_CERT_FILE and SIGHTLINE_CLIENT_KEY_FILE"):
        credentials(env)


def test_the_files_named_are_read(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        credentials({"SIGHTLINE_CLIENT_TLS": "on", "SIGHTLINE_CLIENT_CA_FILE": str(tmp_path / "absent.pem")})


# ---------------------------------------------------------------------------------------------- over a server


@dataclass
class Echo:
    """A server answering METHOD with the metadata it received (``key=value`` lines)."""

    port: int
    server: grpc.aio.Server


def _handler() -> grpc.GenericRpcHandler:
    async def metadata(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        pairs = context.invocation_metadata() or ()
        return "\n".join(f"{k}={v!s}" for k, v in pairs).encode()

    def identity(data: bytes) -> bytes:
        return data

    method = grpc.unary_unary_rpc_method_handler(metadata, request_deserializer=identity, response_serializer=identity)
    return grpc.method_handlers_generic_handler("test.Echo", {"Metadata": method})


async def start(credentials: grpc.ServerCredentials | None = None) -> Echo:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(),))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return Echo(port, server)


@pytest.fixture
async def plain() -> AsyncIterator[Echo]:
    echo = await start()
    yield echo
    await echo.server.stop(None)


async def call(ch: grpc.aio.Channel) -> list[str]:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    echo: Any = ch.unary_unary(METHOD, request_serializer=identity, response_deserializer=identity)
    answer: bytes = await echo(b"", timeout=5)
    return answer.decode().splitlines()


@pytest.fixture
def no_tls_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SIGHTLINE_CLIENT_TLS", "SIGHTLINE_TLS_CERT_FILE", "SIGHTLINE_CLIENT_CA_FILE", API_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_the_api_key_goes_as_a_bearer_token_on_every_call(plain: Echo, no_tls_env: pytest.MonkeyPatch) -> None:
    async with channel(f"127.0.0.1:{plain.port}", "sl_key") as ch:
        assert "authorization=Bearer sl_key" in await call(ch)
        assert "authorization=Bearer sl_key" in await call(ch)


async def test_the_api_key_defaults_to_the_environment_and_none_sends_nothing(
    plain: Echo, no_tls_env: pytest.MonkeyPatch
) -> None:
    no_tls_env.setenv(API_KEY_ENV, "sl_from_env")
    async with channel(f"127.0.0.1:{plain.port}") as ch:
        assert "authorization=Bearer sl_from_env" in await call(ch)
    async with channel(f"127.0.0.1:{plain.port}", "") as ch:
        assert not any(line.startswith("authorization=") for line in await call(ch))


async def test_a_tls_channel_reaches_a_tls_server_under_the_name_given(
    pems: dict[str, Path], no_tls_env: pytest.MonkeyPatch
) -> None:
    server_credentials = grpc.ssl_server_credentials([(pems["key"].read_bytes(), pems["cert"].read_bytes())])
    echo = await start(server_credentials)
    try:
        no_tls_env.setenv("SIGHTLINE_CLIENT_TLS", "on")
        no_tls_env.setenv("SIGHTLINE_CLIENT_CA_FILE", str(pems["ca"]))
        no_tls_env.setenv("SIGHTLINE_CLIENT_TLS_NAME", "sightline.example")
        async with channel(f"127.0.0.1:{echo.port}", "sl_key") as ch:
            assert "authorization=Bearer sl_key" in await call(ch)
        # Without the name, the certificate (of sightline.example) does not match 127.0.0.1.
        no_tls_env.delenv("SIGHTLINE_CLIENT_TLS_NAME")
        async with channel(f"127.0.0.1:{echo.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(ch)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A plaintext channel is refused by the TLS server.
        no_tls_env.setenv("SIGHTLINE_CLIENT_TLS", "off")
        async with channel(f"127.0.0.1:{echo.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await call(ch)
    finally:
        await echo.server.stop(None)
