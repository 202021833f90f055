"""Channels for the CLI's client commands: TLS when asked, the API key sent with every call.

TLS is chosen by environment variables, so that the container's health check (``sightline health``, run beside
a server configured by the same variables) reaches a TLS server:

- ``SIGHTLINE_CLIENT_TLS``: ``on``, ``off``, or ``auto`` (default: on when the server's own
  ``SIGHTLINE_TLS_CERT_FILE`` is set);
- ``SIGHTLINE_CLIENT_CA_FILE``: the roots to trust (default: ``SIGHTLINE_TLS_CERT_FILE``, which trusts a
  self-signed server certificate; else the system's roots);
- ``SIGHTLINE_CLIENT_CERT_FILE`` / ``SIGHTLINE_CLIENT_KEY_FILE``: a client certificate, for mutual TLS;
- ``SIGHTLINE_CLIENT_TLS_NAME``: the name to check the server's certificate against, when the address is not
  that name (``127.0.0.1`` for a certificate of ``sightline.example``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

__all__ = ["API_KEY_ENV", "channel", "credentials"]

API_KEY_ENV = "SIGHTLINE_API_KEY"


class _ApiKey(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, key: str) -> None:
        self._metadata = ("authorization", f"Bearer {key}")

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._metadata)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def credentials(env: Mapping[str, str] | None = None) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """The channel credentials the environment asks for (None: plaintext) and the channel options they need."""
    env = os.environ if env is None else env
    mode = env.get("SIGHTLINE_CLIENT_TLS", "auto").lower()
    if mode not in {"auto", "on", "off"}:
        raise ValueError(f"SIGHTLINE_CLIENT_TLS={mode!r}: expected auto, on or off")
    server_cert = env.get("SIGHTLINE_TLS_CERT_FILE", "")
    if mode == "off" or (mode == "auto" and not server_cert):
        return None, []

    def read(name: str, default: str = "") -> bytes | None:
        path = env.get(name, default)
        return Path(path).read_bytes() if path else None

    roots = read("SIGHTLINE_CLIENT_CA_FILE", server_cert)
    cert, key = read("SIGHTLINE_CLIENT_CERT_FILE"), read("SIGHTLINE_CLIENT_KEY_FILE")
    if (cert is None) != (key is None):
        raise ValueError("mutual TLS needs both SIGHTLINE_CLIENT_CERT_FILE and SIGHTLINE_CLIENT_KEY_FILE")
    options: list[tuple[str, Any]] = []
    if name := env.get("SIGHTLINE_CLIENT_TLS_NAME", ""):
        options.append(("grpc.ssl_target_name_override", name))
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=cert), options


def channel(server: str, api_key: str | None = None) -> grpc.aio.Channel:
    """A channel to ``server`` (TLS as the environment says) that sends ``api_key`` (default:
    $SIGHTLINE_API_KEY) as a bearer token."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    interceptors = [_ApiKey(key)] if key else None
    tls, tls_options = credentials()
    options = [("grpc.max_send_message_length", 64 << 20), *tls_options]
    if tls is not None:
        return grpc.aio.secure_channel(server, tls, interceptors=interceptors, options=options)
    return grpc.aio.insecure_channel(server, interceptors=interceptors, options=options)
