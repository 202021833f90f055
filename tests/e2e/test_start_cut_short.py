"""``sightline serve``'s start cut short from outside.

A signal while the embedded Triton is still loading (an operator's Ctrl-C, Kubernetes' SIGTERM during a slow start)
stops it then, not once the models have loaded: Triton and its backend stubs are stopped, no process of the
instance is left, and the exit is a clean one. A Triton killed while it loads (the OOM killer) ends the command with
status 1 and one message that names Triton's log, leaving no process behind either."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.external import ExternalService


def processes_naming(text: str) -> dict[int, list[str]]:
    """The live processes that hold ``text`` (the instance's data folder) in their command line: pid to argv."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # ended meanwhile
        if any(text in arg for arg in argv):
            found[int(cmdline.parent.name)] = argv
    return found


def launched_until_triton_starts(data_dir: Path) -> ExternalService:
    service = ExternalService(data_dir)
    service.launch()
    begun = time.monotonic()
    while "starting the embedded Triton" not in service.log.read_text(errors="replace"):
        service.assert_alive()
        assert time.monotonic() - begun < 60, service.tail()
        time.sleep(0.05)
    return service


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_start_stops_triton_and_exits(tmp_path: Path, signo: signal.Signals) -> None:
    service = launched_until_triton_starts(tmp_path)
    triton_log = tmp_path / "triton" / "triton.log"
    service.signal(signo)
    assert service.stop(timeout_s=60) == 0, service.tail()
    log = service.log.read_text(errors="replace")
    assert "stopping before the start finished" in log
    assert "ready:" not in log, "the signal waited for the models to load"
    assert "Traceback" not in log
    assert triton_log.exists(), "Triton was never started: the test did not test a stop during its start"
    assert processes_naming(str(tmp_path)) == {}


def test_a_triton_killed_during_the_start_ends_the_command_with_its_message(tmp_path: Path) -> None:
    service = launched_until_triton_starts(tmp_path)
    begun = time.monotonic()
    while not (
        servers := [
            pid for pid, argv in processes_naming(str(tmp_path)).items() if Path(argv[0]).name == "tritonserver"
        ]
    ):
        assert time.monotonic() - begun < 30, service.tail()
        time.sleep(0.05)
    [server] = servers
    os.kill(server, signal.SIGKILL)
    assert service.process is not None
    assert service.process.wait(60) == 1, service.tail()  # by itself: no signal to it
    log = service.log.read_text(errors="replace")
    assert "Traceback" not in log
    last = log.strip().splitlines()[-1]
    assert last.startswith("sightline serve: the embedded Triton was killed by SIGKILL (exit code ")
    assert " while it started; see " in last
    assert last.endswith(str(tmp_path / "triton" / "triton.log"))
    assert processes_naming(str(tmp_path)) == {}
