"""``sightline serve`` run as an operator runs it, with a setting it cannot start with: it exits with status 2 and
one message naming the setting, before the embedded Triton starts (no Triton log is written), and without a
traceback. The address checks are real: another process holds the port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.e2e.external import ROOT, ExternalService, free_port
from tests.helpers import TritonFixture


def serve(data_dir: Path, max_file_bytes: int | None = None, /, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m service serve`` with these settings, to its end; ``max_file_bytes`` limits the size of every
    file it writes (``RLIMIT_FSIZE``: the kernel refuses to grow one further, as a full disk refuses)."""
    command = [sys.executable, "-m", "service", "serve"]
    if max_file_bytes is not None:
        limit = f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_bytes}, {max_file_bytes}))"
        command = [sys.executable, "-c", f"import os, resource, sys; {limit}; os.execv(sys.executable, {command!r})"]
    env = {
        **os.environ,
        "SIGHTLINE_DATA_DIR": str(data_dir),
        "SIGHTLINE_PORT": str(free_port()),
        "SIGHTLINE_METRICS_PORT": str(free_port()),
        **settings,
    }
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def refused(done: subprocess.CompletedProcess[str], data_dir: Path) -> str:
    """The one message of a refused start; Triton was never started."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (data_dir / "triton" / "triton.log").exists(), "the embedded Triton started before the refusal"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sightline serve: ")
    return last


def test_a_grpc_port_in_use(tmp_path: Path, held_port: int) -> None:
    message = refused(serve(tmp_path, SIGHTLINE_PORT=str(held_port)), tmp_path)
    assert f"127.0.0.1:{held_port}" in message
    assert "in use" in message
    assert "SIGHTLINE_PORT" in message


@pytest.mark.parametrize("setting", ["SIGHTLINE_METRICS_PORT", "SIGHTLINE_REST_PORT"])
def test_a_metrics_or_rest_port_in_use(tmp_path: Path, held_port: int, setting: str) -> None:
    message = refused(serve(tmp_path, **{setting: str(held_port)}), tmp_path)
    assert f"127.0.0.1:{held_port}" in message
    assert "in use" in message
    assert setting in message


def test_a_host_that_is_not_this_machines(tmp_path: Path) -> None:
    message = refused(serve(tmp_path, SIGHTLINE_HOST="192.0.2.1"), tmp_path)
    assert "SIGHTLINE_HOST (--host) is not an address of this machine" in message


def test_tls_files_that_are_not_pem(tmp_path: Path) -> None:
    garbage = tmp_path / "cert.pem"
    garbage.write_bytes(os.urandom(512))
    message = refused(
        serve(tmp_path, SIGHTLINE_TLS_CERT_FILE=str(garbage), SIGHTLINE_TLS_KEY_FILE=str(garbage)), tmp_path
    )
    assert "SIGHTLINE_TLS_CERT_FILE=" in message
    assert "not a PEM certificate chain" in message


def test_a_tls_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    message = refused(
        serve(tmp_path, SIGHTLINE_TLS_CERT_FILE=str(missing), SIGHTLINE_TLS_KEY_FILE=str(missing)), tmp_path
    )
    assert "cannot read it (No such file or directory)" in message


def test_values_out_of_their_range(tmp_path: Path) -> None:
    done = serve(tmp_path, SIGHTLINE_TRITON_CPU_THREADS="0", SIGHTLINE_OTEL_EXPORTER="jaeger")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()[-2:]
    assert lines[0].startswith("sightline serve: ")
    assert "SIGHTLINE_TRITON_CPU_THREADS='0'" in lines[0]
    assert lines[1].startswith("SIGHTLINE_OTEL_EXPORTER='jaeger'")


def test_a_data_folder_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = serve(tmp_path, SIGHTLINE_DATA_DIR=str(blocker / "data"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"sightline serve: SIGHTLINE_DATA_DIR='{blocker / 'data'}': the service cannot write in it")
    )


def test_a_model_repository_that_is_not_there(tmp_path: Path) -> None:
    message = refused(serve(tmp_path, SIGHTLINE_MODEL_REPOSITORY=str(tmp_path / "absent")), tmp_path)
    assert "SIGHTLINE_MODEL_REPOSITORY=" in message
    assert "is not a folder" in message


def test_a_database_url_of_another_database(tmp_path: Path) -> None:
    message = refused(serve(tmp_path, SIGHTLINE_DATABASE_URL="mysql://root:pw@db/sightline"), tmp_path)
    assert "SIGHTLINE_DATABASE_URL (mysql:...) is no database the service reads" in message
    assert "pw@db" not in message


def test_no_room_for_what_the_start_writes(tmp_path: Path) -> None:
    # Room for the database, none for the copy of Triton's backend stub (megabytes) the start makes.
    done = serve(tmp_path, 400_000)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"sightline serve: no room to start (File too large): make room where SIGHTLINE_DATA_DIR='{tmp_path}'"
        )
    )


def test_a_data_folder_a_running_server_uses(triton: TritonFixture, tmp_path: Path) -> None:
    with ExternalService(tmp_path, SIGHTLINE_TRITON_URL=triton.url).running() as first:
        assert first.process is not None
        message = refused(serve(tmp_path, SIGHTLINE_TRITON_URL=triton.url), tmp_path)
        assert f"SIGHTLINE_DATA_DIR='{tmp_path}' is in use by another sightline serve (pid {first.process.pid})" in (
            message
        )
        assert first.health() == health_pb2.HealthCheckResponse.SERVING, "the refused start disturbed the first"
