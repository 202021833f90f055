"""The embedded Triton: a real ``tritonserver`` process from the ``nvidia-pytriton`` wheel, on the CPU, supervised.

The service starts it over the bundled (read-only) model repository and a writable one in the data folder, with
a backend folder that holds the Python backend and the project's Python-based ``onnxruntime`` backend, waits until
every model is ready, restarts it on the same ports when it dies, and stops it on shutdown within a time budget.

Process model (see ``docs/operations.md``)::

    service ── reaper.py (own session, parent-death SIGUSR1, child subreaper) ── tritonserver (parent-death SIGKILL)
                                                                                  └─ triton_python_backend_stub ...

The reaper exists because a parent-death signal is not inherited across fork: without it the backend stubs of a
``tritonserver`` that died were left to init, each holding ~100 MB and its ``/dev/shm`` regions.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import signal
import site
import socket
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from service.errors import UnavailableError

__all__ = ["Callback", "EmbeddedTriton", "TritonPorts", "find_triton", "remove_stale_shm"]

log = logging.getLogger(__name__)

_BACKEND_SOURCE = Path(__file__).parent / "backends" / "onnxruntime" / "model.py"
_REAPER = Path(__file__).with_name("reaper.py")
SHM_PREFIX = "sightline_"
"""Every region of an embedded Triton's Python backends is named ``sightline_<reaper pid>_...``."""
_SHM_BACKENDS = ("python", "onnxruntime")
"""Backends served by ``libtriton_python.so``: each reads its own ``shm-region-prefix-name``."""
_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
_HEALTHY_RUN_S = 60.0
"""A server that ran this long before dying starts the backoff from its first delay again."""

Callback = Callable[[], Awaitable[None] | None]
"""An ``on_down`` / ``on_up`` callback: a plain function or a coroutine function, called with no argument."""


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mapped_shm(proc: Path) -> set[str] | None:
    """The ``/dev/shm`` names some live process maps, or ``None`` when a process's maps cannot be read."""
    names: set[str] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "maps").read_text(errors="replace")
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            return None
        for line in text.splitlines():
            at = line.find("/dev/shm/")
            if at >= 0:
                names.add(line[at + len("/dev/shm/") :].removesuffix(" (deleted)"))
    return names


def remove_stale_shm(
    shm_dir: Path = Path("/dev/shm"), proc: Path = Path("/proc"), *, min_age_s: float = 60.0
) -> list[str]:
    """Remove the shared-memory regions that embedded Tritons which died without cleaning up left behind.

    - ``sightline_<pid>_*``: removed when no process ``<pid>`` (the reaper that owned them) is alive.
    - Triton's default names (``triton_<backend>_backend_shm_region_*``, from a Triton started without a prefix of
      its own): removed when no live process maps them and they are older than ``min_age_s`` (a Triton that is
      starting maps its region a moment after creating it). Skipped entirely when some process's
      ``/proc/<pid>/maps`` cannot be read, since the region may be that process's.

    Returns the names removed. Regions of other users that cannot be removed are left alone.
    """
    try:
        entries = list(shm_dir.iterdir())
    except OSError:
        return []
    removed: list[str] = []
    mapped: set[str] | None = None
    maps_read = False
    for entry in entries:
        name = entry.name
        if name.startswith(SHM_PREFIX):
            pid = name[len(SHM_PREFIX) :].partition("_")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
        elif name.startswith("triton_") and "_backend_shm_region_" in name:
            if not maps_read:
                mapped, maps_read = _mapped_shm(proc), True
            try:
                if mapped is None or name in mapped or time.time() - entry.stat().st_mtime < min_age_s:
                    continue
            except OSError:
                continue
        else:
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(name)
    if removed:
        log.info("removed %d stale shared-memory region(s) of dead Tritons: %s", len(removed), ", ".join(removed))
    return removed


def exit_reason(code: int) -> str:
    """How the reaper (and so Triton) ended, from its exit status: the reaper exits with ``128 + n`` when
    ``tritonserver`` died of signal ``n`` (``reaper.py``), and asyncio gives ``-n`` for a reaper killed itself."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        name = signal.Signals(number).name if number else ""
    except ValueError:
        name = ""
    return f"was killed by {name} (exit code {code})" if name else f"exited with code {code}"


class EmbeddedTriton:
    """A supervised ``tritonserver`` child process, behind a reaper (``reaper.py``).

    ``start()`` returns its gRPC address once it accepts calls. From then on a supervisor task watches it: when it
    exits while not stopping, it logs one ERROR, calls ``on_down``, restarts it on the same ports (so the gateway's
    address stays valid) with an exponential backoff (0.5 s, 1, 2, 4, 8, then 10 s; back to 0.5 s once a server
    has run for 60 s), waits until it has loaded every model again, and calls ``on_up``. ``stop()`` ends it
    within its grace, whatever Triton does.

    ``on_down`` and ``on_up`` are plain or coroutine functions without arguments, called on the event loop of
    ``start()``; an exception they raise is logged and otherwise ignored. Set them here or with ``supervise()``.

    ``stop_grace_s`` is the budget of a ``stop()`` without argument. It is also fixed on the command lines at
    start: Triton's ``--exit-timeout-secs`` (for in-flight requests) is about half of it, and the reaper kills
    Triton after 60 % of it; a ``stop(grace_s)`` with a shorter grace escalates on its own.
    """

    def __init__(
        self,
        repositories: list[Path],
        work_dir: Path,
        *,
        log_verbose: int = 0,
        cpu_threads: int = 1,
        stop_grace_s: float = 5.0,
        on_down: Callback | None = None,
        on_up: Callback | None = None,
    ) -> None:
        if stop_grace_s <= 0:
            raise ValueError("stop_grace_s must be positive")
        if cpu_threads < 1:
            raise ValueError("cpu_threads must be 1 or more")
        self._repositories = repositories
        self._work_dir = work_dir.resolve()
        self._log_verbose = log_verbose
        self._cpu_threads = cpu_threads
        self._stop_grace_s = stop_grace_s
        self._on_down = on_down
        self._on_up = on_up
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._is_up = False
        self._install: TritonInstall | None = None
        self._log_file: Path = self._work_dir / "triton.log"
        self.ports: TritonPorts | None = None
        self.restarts = 0
        """How many times the supervisor has brought a dead server back."""

    def supervise(self, on_down: Callback | None, on_up: Callback | None) -> None:
        """Set the callbacks called when the server dies (``on_down``) and once a restart is ready (``on_up``)."""
        self._on_down = on_down
        self._on_up = on_up

    @property
    def url(self) -> str:
        if self.ports is None:
            raise RuntimeError("the embedded Triton is not started")
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def log_file(self) -> Path:
        return self._log_file

    @property
    def is_up(self) -> bool:
        """True from a successful ``start()`` (or restart) until the server is seen to exit or is stopped."""
        return self._is_up

    @property
    def reaper_pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def shm_prefix(self) -> str | None:
        """The prefix of the current server's ``/dev/shm`` regions (``sightline_<reaper pid>_``)."""
        reaper = self.reaper_pid
        return None if reaper is None else f"{SHM_PREFIX}{reaper}_"

    @property
    def pid(self) -> int | None:
        """The current ``tritonserver``'s pid (a child of the reaper), or ``None`` while there is none."""
        reaper = self.reaper_pid
        if reaper is None or self._install is None:
            return None
        binary = str(self._install.binary)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
            except (OSError, UnicodeDecodeError):
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == reaper and argv0 == binary:
                return int(entry.name)
        return None

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
        # ONNX Runtime's threads per run for models whose config does not say (the backend's session_options).
        env["SIGHTLINE_BACKEND_THREADS"] = str(self._cpu_threads)
        # numpy's BLAS in each stub would otherwise start a thread per core (ONNX Runtime ignores this).
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _command(self, install: TritonInstall, backends: Path, ports: TritonPorts) -> list[str]:
        grace = self._stop_grace_s
        # The reaper substitutes its own pid for {reaper_pid}: the prefix then names the instance that owns a region.
        prefix = SHM_PREFIX + "{reaper_pid}_"
        triton = [
            str(install.binary),
            *(f"--model-repository={r}" for r in self._repositories),
            f"--backend-directory={backends}",
            *(f"--backend-config={b},shm-region-prefix-name={prefix}" for b in _SHM_BACKENDS),
            f"--grpc-port={ports.grpc}",
            f"--http-port={ports.http}",
            f"--metrics-port={ports.metrics}",
            "--grpc-address=127.0.0.1",
            "--http-address=127.0.0.1",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--exit-on-error=false",
            f"--exit-timeout-secs={max(1, int(grace * 0.5))}",
            f"--log-verbose={self._log_verbose}",
        ]
        reaper = [sys.executable, "-I", str(_REAPER), "--parent", str(os.getpid()), "--grace", f"{grace * 0.6:.3f}"]
        return [*reaper, "--shm-prefix", prefix, "--", *triton]

    async def start(self, *, timeout_s: float) -> str:
        """Start the server and wait (up to ``timeout_s``) until it has loaded every model; its gRPC address.

        Raises ``UnavailableError`` (with the server stopped) when it exits or is not ready in time. Restarts by
        the supervisor get the same ``timeout_s``."""
        if self._process is not None:
            raise RuntimeError("the embedded Triton is started already")
        install = self._install = find_triton()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_shm()
        backends = self._prepare_backends(install)
        self.ports = TritonPorts(_free_port(), _free_port(), _free_port())
        command = self._command(install, backends, self.ports)
        self._stopping = False
        await self._launch(command, install, timeout_s)
        self._is_up = True
        self._supervisor = asyncio.create_task(self._supervise(command, install, timeout_s), name="triton-supervisor")
        return self.url

    async def _launch(self, command: list[str], install: TritonInstall, timeout_s: float) -> None:
        assert self.ports is not None
        log.info("starting the embedded Triton on 127.0.0.1:%d (log: %s)", self.ports.grpc, self._log_file)
        with self._log_file.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(install),
                # Its own session: a terminal's Ctrl-C reaches the service, which stops Triton in order, and one
                # killpg of the reaper's group reaches the server and its stubs. No preexec_fn (unsafe once the
                # service has threads): the reaper arms its own parent-death signal and checks its parent after.
                start_new_session=True,
            )
        try:
            await self._wait_ready(self._process, timeout_s)
        except asyncio.CancelledError:
            raise  # by stop(), which terminates the server within its own budget
        except BaseException:
            await self._terminate(self._stop_grace_s)
            raise

    async def _wait_ready(self, process: asyncio.subprocess.Process, timeout_s: float) -> None:
        import tritonclient.grpc.aio as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                if process.returncode is not None:
                    raise UnavailableError(
                        f"the embedded Triton {exit_reason(process.returncode)} while it started; see {self._log_file}"
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
                    raise UnavailableError(
                        f"the embedded Triton was not ready after {timeout_s:.0f} s; see {self._log_file}"
                    )
                await asyncio.sleep(0.25)
        finally:
            await client.close()

    async def _supervise(self, command: list[str], install: TritonInstall, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            process = self._process
            assert process is not None
            began = loop.time()
            code = await process.wait()
            if self._stopping:
                return
            self._is_up = False
            ran_s = loop.time() - began
            if ran_s >= _HEALTHY_RUN_S:
                failures = 0
            log.error(
                "the embedded Triton %s after %.0f s; restarting it on 127.0.0.1:%s (log: %s)",
                exit_reason(code),
                ran_s,
                self.ports.grpc if self.ports else "?",
                self._log_file,
            )
            await self._notify("on_down", self._on_down)
            while True:
                await asyncio.sleep(_RESTART_DELAYS_S[min(failures, len(_RESTART_DELAYS_S) - 1)])
                failures += 1
                remove_stale_shm()
                try:
                    await self._launch(command, install, timeout_s)
                    break
                except Exception as error:
                    # Not an ERROR again: the outage was reported once, when the server went down.
                    log.warning("restarting the embedded Triton failed: %s", error)
            self.restarts += 1
            self._is_up = True
            log.info("the embedded Triton is back on 127.0.0.1:%s", self.ports.grpc if self.ports else "?")
            await self._notify("on_up", self._on_up)

    async def _notify(self, name: str, callback: Callback | None) -> None:
        if callback is None:
            return
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the embedded Triton's %s callback failed", name)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop the supervisor and the server; returns within ``grace_s`` (default ``stop_grace_s``), always.

        SIGTERM to the reaper, which forwards it to Triton (in-flight requests get ``--exit-timeout-secs``);
        SIGUSR1 to the reaper (kill the whole tree now) a little before the deadline; SIGKILL to the reaper's
        process group just before it. Stopping a stopped server does nothing."""
        grace = self._stop_grace_s if grace_s is None else grace_s
        began = time.monotonic()
        self._stopping = True
        self._is_up = False
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._terminate(max(0.0, grace - (time.monotonic() - began)))

    async def _terminate(self, grace_s: float) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        # The last two phases need time of their own: SIGKILLed stubs take a while to free ~100 MB each.
        steps = (
            (signal.SIGTERM, deadline - min(1.5, grace_s * 0.5)),
            (signal.SIGUSR1, deadline - min(0.25, grace_s * 0.1)),
        )
        for number, (signo, until) in enumerate(steps):
            if number:
                log.warning("the embedded Triton did not stop in time; killing it (%s)", signo.name)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signo)
            if await _exited(process, until - loop.time()):
                log.info("the embedded Triton stopped")
                return
        log.warning("the embedded Triton's reaper did not finish in time; killing its process group")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        # SIGKILL takes effect at once; the wait only collects the exit status.
        await _exited(process, deadline - loop.time())
        # The reaper had no time to remove its regions: they are this instance's, and nobody maps them any more.
        _remove_regions(f"{SHM_PREFIX}{process.pid}_")


def _remove_regions(prefix: str) -> None:
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


async def _exited(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), max(0.0, timeout_s))
    except TimeoutError:
        return False
    return True
