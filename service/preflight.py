"""Checks of the settings against this machine, made before the embedded Triton starts.

Triton takes seconds to minutes to load the models. A port another server holds, a host that is not this
machine's or a data folder the service cannot write would otherwise be found only after that, when the gRPC
server, the REST facade or the metrics endpoint binds, or the first upload writes; a missing model repository
would leave Triton never ready. Each check raises ``ConfigurationError`` naming the setting to change.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
from pathlib import Path

from service.errors import ConfigurationError
from service.settings import Settings

__all__ = ["DataFolderLock", "check_can_listen", "check_settings"]


def check_settings(settings: Settings) -> None:
    """Every listener's address is free and this machine's, the folders the service writes are writable, and the
    model repository is a folder."""
    host = "SIGHTLINE_HOST (--host)"
    check_can_listen(settings.host, settings.port, "SIGHTLINE_PORT (--port)", host)
    check_can_listen(settings.host, settings.rest_port, "SIGHTLINE_REST_PORT (--rest-port)", host)
    check_can_listen(settings.metrics_host, settings.metrics_port, "SIGHTLINE_METRICS_PORT", "SIGHTLINE_METRICS_HOST")
    if not settings.model_repository.is_dir():
        raise ConfigurationError(
            f"SIGHTLINE_MODEL_REPOSITORY={str(settings.model_repository)!r} is not a folder: unset it for the "
            "bundled models, or give a folder of Triton models with their sightline.json files"
        )
    writable = [("SIGHTLINE_DATA_DIR", settings.data_dir)]
    if settings.models_dir is not None:
        writable.append(("SIGHTLINE_MODELS_DIR", settings.models_dir))
    for setting, folder in writable:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise ConfigurationError(
                f"{setting}={str(folder)!r}: the service cannot write in it ({exc.strerror or exc}); give a "
                "writable folder"
            ) from None


def check_can_listen(host: str, port: int, setting: str, host_setting: str) -> None:
    """Bind a TCP socket to ``host:port`` and close it at once, as the server will bind it.

    ``host`` is a name, an IPv4 address or an IPv6 one (bracketed or not; empty: every address); ``port`` 0 (a
    free port) or below (off) is not checked. As gRPC does, it passes when any address ``host`` resolves to can be
    bound. ``setting`` and ``host_setting`` name what the operator sets (``SIGHTLINE_PORT (--port)``) in the message.

    Raises:
        ConfigurationError: ``host`` does not resolve, the port is in use or privileged, or no address is this
            machine's.
    """
    if port <= 0:
        return
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addresses = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"{host_setting} {host!r} does not resolve ({exc.strerror}): give an address of this machine"
        ) from None
    failures: list[OSError] = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As the servers bind: a port left in TIME_WAIT by a stopped server is free; a listening one is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                failures.append(exc)
                continue
        return
    codes = {failure.errno for failure in failures}
    reasons = "; ".join(sorted({failure.strerror or str(failure) for failure in failures}))
    cannot = f"cannot listen on {host}:{port} ({reasons})"
    if errno.EADDRINUSE in codes:
        raise ConfigurationError(
            f"{cannot}: the port is in use (another sightline serve?); stop that server, or give {setting} a free "
            "port (0 picks one)"
        )
    if errno.EACCES in codes:
        raise ConfigurationError(f"{cannot}: ports below 1024 need privileges; give {setting} one of 1024 or more")
    raise ConfigurationError(
        f"{cannot}: {host_setting} is not an address of this machine; give one (127.0.0.1, or 0.0.0.0 or [::] for all)"
    )


class DataFolderLock:
    """One server per data folder: an exclusive ``flock`` on ``<data>/sightline.lock``, held while the server runs.

    Two servers on one folder would each clear what they take for the other's leftovers at start (a staged upload,
    the Triton folder's backends, its log). The kernel drops the lock when its holder exits, however it exits
    (SIGKILL included), so a stale lock file never keeps a server from starting; the file holds the holder's pid, for
    the message.
    """

    def __init__(self, data_dir: Path) -> None:
        """Take the lock.

        Raises:
            ConfigurationError: another process holds it.
        """
        descriptor = os.open(data_dir / "sightline.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise ConfigurationError(
                f"SIGHTLINE_DATA_DIR={str(data_dir)!r} is in use by another sightline serve (pid {holder}): stop "
                "it, or give each server a data folder of its own"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Let the lock go (the file stays: removing it could race the next holder's open); twice is harmless."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)
