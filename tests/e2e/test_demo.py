"""``make run``'s demo (``sightline serve --demo``) run from outside, on the embedded Triton: on a port the server
picked it recognises the bundled sample; with an image that is not there it says so and the server goes on, then
stops cleanly on Ctrl-C. (That demo failure used to end the process with SIGSEGV: the exception left asyncio.run
with the server running, and its teardown cancelled grpc's own tasks at once.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from grpc_health.v1 import health_pb2

from tests.e2e.external import ROOT, ExternalService


def launch(service: ExternalService, image: Path | str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--demo", str(image), "--demo-spec", "colors-v1"],
        cwd=ROOT,
        env=service.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(lines: Iterable[str], mark: str) -> str:
    """The lines read up to and including the first that holds ``mark``."""
    read = ""
    for line in lines:
        read += line
        if mark in line:
            return read
    raise AssertionError(f"the output ended without {mark!r}:\n{read[-2000:]}")


def test_the_demo_recognises_the_sample_on_a_port_the_server_picked(tmp_path: Path) -> None:
    process = launch(ExternalService(tmp_path, SIGHTLINE_PORT="0"), ROOT / "samples" / "red.png")
    assert process.stdout is not None
    printed = read_until(process.stdout, "Try: sightline recognize")  # stdout holds the demo alone
    process.send_signal(signal.SIGINT)
    _, log = process.communicate(timeout=60)
    assert process.returncode == 0, log[-2000:]
    result = json.loads(printed[printed.index("{") : printed.index("\nTry: ")])
    assert result["outputs"][0]["labels"]["predicted"][0]["label_name"] == "red"


def test_a_demo_image_that_is_not_there_is_said_and_the_server_goes_on(tmp_path: Path) -> None:
    service = ExternalService(tmp_path)
    process = launch(service, tmp_path / "absent.png")
    assert process.stderr is not None
    said = read_until(process.stderr, "demo failed")
    assert f"demo failed: cannot read {tmp_path / 'absent.png'}: No such file or directory (the server goes on)" in said
    assert process.poll() is None, f"the server ended with {process.returncode} (-11: SIGSEGV)"
    assert service.health() == health_pb2.HealthCheckResponse.SERVING
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest[-2000:]
    assert "Traceback" not in said + rest
