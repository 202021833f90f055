"""``service.preflight``, before Triton's slow start: a port another server holds, a privileged port, a host that is
not this machine's, a missing model repository or a folder the service cannot write is refused with a message
naming the setting; a free address passes and stays free. One server per data folder (``DataFolderLock``)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.errors import ConfigurationError
from service.preflight import DataFolderLock, check_can_listen, check_settings
from service.settings import Settings

PORT, HOST = "SIGHTLINE_PORT (--port)", "SIGHTLINE_HOST (--host)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_port_another_server_listens_on_is_refused(held_port: int) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_can_listen("127.0.0.1", held_port, PORT, HOST)
    message = str(refused.value)
    assert f"127.0.0.1:{held_port}" in message
    assert "in use" in message
    assert PORT in message
    # Every address includes loopback: taken too.
    with pytest.raises(ConfigurationError, match="in use"):
        check_can_listen("0.0.0.0", held_port, PORT, HOST)


def test_a_free_port_passes_and_stays_free() -> None:
    port = free_port()
    check_can_listen("127.0.0.1", port, PORT, HOST)
    check_can_listen("localhost", port, PORT, HOST)
    with socket.socket() as server:  # the check let it go: the server can bind it
        server.bind(("127.0.0.1", port))
        server.listen()


def test_a_port_that_served_and_closed_is_free() -> None:
    # A stopped server's accepted connection leaves the port in TIME_WAIT; servers bind with SO_REUSEADDR.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side waits in TIME_WAIT
        client.close()
    check_can_listen("127.0.0.1", port, PORT, HOST)


@pytest.mark.parametrize("port", [0, -1])
def test_a_free_choice_or_an_off_listener_is_not_checked(port: int) -> None:
    check_can_listen("192.0.2.1", port, PORT, HOST)  # not this machine's, and not looked at


def test_a_host_that_is_not_this_machines_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_can_listen("192.0.2.1", free_port(), PORT, HOST)  # TEST-NET-1: never a local address
    assert "is not an address of this machine" in str(refused.value)
    assert HOST in str(refused.value)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"SIGHTLINE_HOST \(--host\) 'no-such-host\.invalid' does not resolve"):
        check_can_listen("no-such-host.invalid", free_port(), PORT, HOST)


def test_a_bracketed_ipv6_address_is_read_as_the_server_reads_it() -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine's Python has no IPv6: the check of [::1] cannot be made here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        # No IPv6 loopback configured: the server could not bind it either, and the check says so.
        with pytest.raises(ConfigurationError, match="not an address of this machine"):
            check_can_listen("[::1]", free_port(), PORT, HOST)
        return
    check_can_listen("[::1]", free_port(), PORT, HOST)


def test_a_privileged_port_is_refused_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, where every port binds: the kernel's refusal is stood in for.
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    with pytest.raises(ConfigurationError, match=r"ports below 1024 need privileges; give SIGHTLINE_PORT \(--port\)"):
        check_can_listen("127.0.0.1", 80, PORT, HOST)


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(**{"port": 0, "metrics_port": -1, "data_dir": tmp_path / "data", **values})


def test_settings_that_fit_this_machine_pass_and_the_data_folder_is_made(tmp_path: Path) -> None:
    check_settings(settings_for(tmp_path))
    assert (tmp_path / "data").is_dir()
    assert list((tmp_path / "data").iterdir()) == [], "the write probe left nothing behind"


def test_a_model_repository_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^SIGHTLINE_MODEL_REPOSITORY='.*absent' is not a folder: unset it"):
        check_settings(settings_for(tmp_path, model_repository=tmp_path / "absent"))


@pytest.mark.parametrize("field", ["data_dir", "models_dir"])
def test_a_folder_the_service_cannot_write_is_refused(tmp_path: Path, field: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    variable = f"SIGHTLINE_{field.upper()}"
    with pytest.raises(ConfigurationError, match=rf"^{variable}='.*a-file/inside': the service cannot write in it"):
        check_settings(settings_for(tmp_path, **{field: blocker / "inside"}))


def test_every_listener_is_checked(tmp_path: Path, held_port: int) -> None:
    for field, variable in [
        ("port", "SIGHTLINE_PORT"),
        ("rest_port", "SIGHTLINE_REST_PORT"),
        ("metrics_port", "SIGHTLINE_METRICS_PORT"),
    ]:
        with pytest.raises(ConfigurationError, match=f"give {variable}"):
            check_settings(settings_for(tmp_path, **{field: held_port}))


HOLD = """
import sys, time
from pathlib import Path
from service.preflight import DataFolderLock
DataFolderLock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def holder(data_dir: Path) -> subprocess.Popen[str]:
    """Another process that takes ``data_dir``'s lock and keeps it until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(data_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    return process


def test_a_data_folder_another_process_holds_is_refused_until_that_process_is_gone(tmp_path: Path) -> None:
    other = holder(tmp_path)
    try:
        with pytest.raises(ConfigurationError) as refused:
            DataFolderLock(tmp_path)
        assert f"is in use by another sightline serve (pid {other.pid})" in str(refused.value)
    finally:
        other.kill()  # SIGKILL: no clean-up of its own; the kernel lets the lock go
        other.communicate()
    assert (tmp_path / "sightline.lock").exists(), "the stale file stays"
    taken = DataFolderLock(tmp_path)
    assert (tmp_path / "sightline.lock").read_text() == f"{os.getpid()}\n"
    taken.release()
    taken.release()
    DataFolderLock(tmp_path).release()  # released: free again


def test_one_process_cannot_serve_one_data_folder_twice(tmp_path: Path) -> None:
    first = DataFolderLock(tmp_path)
    try:
        with pytest.raises(ConfigurationError, match="is in use"):
            DataFolderLock(tmp_path)
    finally:
        first.release()
