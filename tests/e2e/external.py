"""A real ``sightline serve`` in a process of its own, driven from outside as users drive it.

Tests that cancel, time out and kill clients run the server in another process, so that a crash of the server
(SIGSEGV in grpcio, say) is seen as the crash it is, not as a hung test, and clients are real peers on a socket.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as {'name{labels}': value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def total(metrics: dict[str, float], name: str) -> float:
    """The sum of a metric over all its label sets."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{.*\}})?$")
    return sum(v for k, v in metrics.items() if pattern.match(k))


class ExternalService:
    """``python -m service serve`` on free ports, with the given settings (environment variables)."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = data_dir / "service.log"
        self.env = {
            **os.environ,
            "SIGHTLINE_PORT": str(self.port),
            "SIGHTLINE_METRICS_PORT": str(self.metrics_port),
            "SIGHTLINE_DATA_DIR": str(data_dir),
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ExternalService:
        """Launch the server and wait until its health is SERVING."""
        self.launch()
        self.wait_health(health_pb2.HealthCheckResponse.SERVING, timeout_s=timeout_s)
        return self

    def launch(self) -> None:
        """Start the server's process, its output going to ``log``; no wait."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # a group of its own, as under a supervisor: tests may kill it whole
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def assert_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        assert code is None, f"the server exited with {code} (negative: killed by that signal); log:\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.address) as channel:
            return int(
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                .status
            )

    def wait_health(self, status: int, *, service: str = "", timeout_s: float = 60.0) -> float:
        """Seconds until ``service`` reports ``status``."""
        started = time.monotonic()
        while True:
            self.assert_alive()
            with contextlib.suppress(grpc.RpcError):
                if self.health(service) == status:
                    return time.monotonic() - started
            assert time.monotonic() - started < timeout_s, f"health of {service!r} is not {status}:\n{self.tail()}"
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    @contextlib.contextmanager
    def running(self) -> Iterator[ExternalService]:
        self.start()
        try:
            yield self
        finally:
            if self.process is not None and self.process.poll() is None:
                self.stop()


def wait_until(condition: object, *, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout_s} s"
        time.sleep(0.05)
