"""A signal while the embedded Triton is still loading (an operator's Ctrl-C, Kubernetes' SIGTERM during a slow
start) stops ``sightline serve`` then, not once the models have loaded: Triton and its backend stubs are stopped,
no process of the instance is left, and the exit is a clean one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.e2e.external import ExternalService


def processes_naming(text: str) -> list[str]:
    """Command lines of the live processes that hold ``text`` (the instance's data folder) in them."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if text in line:
            found.append(line)
    return found


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_start_stops_triton_and_exits(tmp_path: Path, signo: signal.Signals) -> None:
    service = ExternalService(tmp_path)
    service.launch()
    begun = time.monotonic()
    while "starting the embedded Triton" not in service.log.read_text(errors="replace"):
        service.assert_alive()
        assert time.monotonic() - begun < 60, service.tail()
        time.sleep(0.05)
    triton_log = tmp_path / "triton" / "triton.log"
    service.signal(signo)
    assert service.stop(timeout_s=60) == 0, service.tail()
    log = service.log.read_text(errors="replace")
    assert "stopping before the start finished" in log
    assert "ready:" not in log, "the signal waited for the models to load"
    assert "Traceback" not in log
    assert triton_log.exists(), "Triton was never started: the test did not test a stop during its start"
    assert processes_naming(str(tmp_path)) == []
