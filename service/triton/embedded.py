"""The embedded Triton: a real ``tritonserver`` process from the ``nvidia-pytriton`` wheel, on the CPU.

The service starts it over the bundled (read-only) model repository and a writable one in the data folder, with
a backend folder that holds the Python backend and the project's Python-based ``onnxruntime`` backend, waits until
every model is ready, and stops it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import site
import socket
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from service.errors import UnavailableError

__all__ = ["EmbeddedTriton", "TritonPorts", "find_triton"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_BACKEND_SOURCE = Path(__file__).parent / "backends" / "onnxruntime" / "model.py"


@dataclass(frozen=True, slots=True)
class TritonInstall:
    """Where the wheel keeps the server binary, its shared libraries, the Python backend and its stub."""

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path


@dataclass(frozen=True, slots=True)
class TritonPorts:
    grpc: int
    http: int
    metrics: int


def find_triton() -> TritonInstall:
    """Locate the ``tritonserver`` shipped by the ``nvidia-pytriton`` wheel in this environment."""
    try:
        import pytriton
    except ImportError:
        raise UnavailableError(
            "the embedded Triton needs the nvidia-pytriton package; install it or set SIGHTLINE_TRITON_URL"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        libs=root.parent.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    for path in (install.binary, install.python_backend, install.stub):
        if not path.exists():
            raise UnavailableError(f"the nvidia-pytriton install is incomplete: {path} is missing")
    return install


def _install(source: Path, target: Path) -> None:
    """Copy through a temporary file and a rename: a binary still run by an earlier server cannot be overwritten."""
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, temporary)
    os.replace(temporary, target)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to kill it if the service dies without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedTriton:
    """A ``tritonserver`` child process. ``start()`` returns its gRPC address once it accepts calls."""

    def __init__(self, repositories: list[Path], work_dir: Path, *, log_verbose: int = 0) -> None:
        self._repositories = repositories
        self._work_dir = work_dir.resolve()
        self._log_verbose = log_verbose
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: Path = self._work_dir / "triton.log"
        self.ports: TritonPorts | None = None

    @property
    def url(self) -> str:
        if self.ports is None:
            raise RuntimeError("the embedded Triton is not started")
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def log_file(self) -> Path:
        return self._log_file

    def _prepare_backends(self, install: TritonInstall) -> Path:
        backends = self._work_dir / "backends"
        python_dir = backends / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for item in install.python_backend.iterdir():
            if item.is_file():
                _install(item, python_dir / item.name)
        _install(install.stub, python_dir / install.stub.name)
        ort_dir = backends / "onnxruntime"
        ort_dir.mkdir(parents=True, exist_ok=True)
        _install(_BACKEND_SOURCE, ort_dir / "model.py")
        return backends

    def _environment(self, install: TritonInstall) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p
            for p in (str(install.libs), sysconfig.get_config_var("LIBDIR") or "", env.get("LD_LIBRARY_PATH", ""))
            if p
        )
        # The backend stub embeds its own interpreter, which ignores PYTHONPATH: our backend reads this instead to
        # find this environment's packages (numpy, onnxruntime).
        env["SIGHTLINE_BACKEND_PATH"] = os.pathsep.join(site.getsitepackages())
        # Each stub's ONNX Runtime would otherwise start a thread per core per model.
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    async def start(self, *, timeout_s: float) -> str:
        install = find_triton()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        backends = self._prepare_backends(install)
        self.ports = TritonPorts(_free_port(), _free_port(), _free_port())
        args = [
            str(install.binary),
            *(f"--model-repository={r}" for r in self._repositories),
            f"--backend-directory={backends}",
            f"--grpc-port={self.ports.grpc}",
            f"--http-port={self.ports.http}",
            f"--metrics-port={self.ports.metrics}",
            "--grpc-address=127.0.0.1",
            "--http-address=127.0.0.1",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--exit-on-error=false",
            f"--log-verbose={self._log_verbose}",
        ]
        log.info("starting the embedded Triton on 127.0.0.1:%d (log: %s)", self.ports.grpc, self._log_file)
        with self._log_file.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *args,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(install),
                # Its own session: a terminal's Ctrl-C reaches the service, which stops Triton in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        await self._wait_ready(timeout_s)
        return self.url

    async def _wait_ready(self, timeout_s: float) -> None:
        import tritonclient.grpc.aio as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                if self._process is not None and self._process.returncode is not None:
                    raise UnavailableError(
                        f"the embedded Triton exited with code {self._process.returncode}; see {self._log_file}"
                    )
                # Explicit mode loads every model before the endpoints open: once live, loading is over.
                with contextlib.suppress(Exception):
                    if await client.is_server_live():
                        index = await client.get_model_repository_index(as_json=True)
                        for model in index.get("models", []):
                            if model.get("state") != "READY":
                                log.error("model %s is not ready: %s", model.get("name"), model.get("reason", ""))
                        log.info("the embedded Triton is live with %d model(s)", len(index.get("models", [])))
                        return
                if loop.time() > deadline:
                    await self.stop()
                    raise UnavailableError(
                        f"the embedded Triton was not ready after {timeout_s:.0f} s; see {self._log_file}"
                    )
                await asyncio.sleep(0.25)
        finally:
            await client.close()

    async def stop(self, grace_s: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            log.warning("the embedded Triton did not stop within %.0f s; killing it", grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        log.info("the embedded Triton stopped")
