"""The reaper (``service/triton/reaper.py``) over a stand-in for ``tritonserver`` (a shell that leaves orphans that
ignore SIGTERM), and the stale shared-memory cleanup over a fake ``/dev/shm`` and ``/proc``. No Triton needed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.triton.embedded import exit_reason, remove_stale_shm

REAPER = Path(__file__).resolve().parents[3] / "service" / "triton" / "reaper.py"

# Prints the pid of an orphan that ignores SIGTERM (its parent subshell exits at once, so the reaper inherits it),
# creates a region under the instance's prefix, then waits.
STAND_IN = """
(trap '' TERM; exec sleep 300) &
echo $! ; touch /dev/shm/"$1"region ; trap '' TERM ; exec sleep 300
"""


def marker() -> str:
    return f"reaper-test-{uuid.uuid4().hex[:8]}_"


@contextlib.contextmanager
def reaper(
    prefix: str, command: list[str], *, parent: int | None = None, grace: float = 0.5
) -> Iterator[subprocess.Popen[str]]:
    """A reaper in a session of its own; its whole group is killed at the end if a test left it running."""
    options = ["--parent", str(parent or os.getpid()), "--grace", str(grace), "--shm-prefix", prefix]
    with subprocess.Popen(
        [sys.executable, "-I", str(REAPER), *options, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def started(process: subprocess.Popen[str]) -> int:
    """The orphan's pid, once the stand-in has made its region."""
    assert process.stdout is not None
    orphan = int(process.stdout.readline())
    time.sleep(0.3)
    return orphan


def test_sigterm_takes_down_the_tree_within_the_grace() -> None:
    prefix = marker()
    with reaper(prefix, ["/bin/sh", "-c", STAND_IN, "sh", prefix]) as process:
        orphan = started(process)
        assert alive(orphan)
        assert list(Path("/dev/shm").glob(f"{prefix}*"))
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(5)
        assert code == 128 + signal.SIGKILL, "the stand-in ignores SIGTERM: killed after the grace"
        assert exit_reason(code) == "was killed by SIGKILL (exit code 137)"
        assert 0.4 < time.monotonic() - began < 3
        assert not alive(orphan)
        assert not list(Path("/dev/shm").glob(f"{prefix}*"))


def test_sigusr1_kills_at_once() -> None:
    prefix = marker()
    with reaper(prefix, ["/bin/sh", "-c", STAND_IN, "sh", prefix], grace=30) as process:
        orphan = started(process)
        began = time.monotonic()
        process.send_signal(signal.SIGUSR1)
        assert process.wait(5) == 128 + signal.SIGKILL
        assert time.monotonic() - began < 2
        assert not alive(orphan)
        assert not list(Path("/dev/shm").glob(f"{prefix}*"))


def test_server_exit_ends_the_orphans_and_gives_its_status() -> None:
    prefix = marker()
    command = ["/bin/sh", "-c", "(trap '' TERM; exec sleep 300) & echo $!; sleep 0.5; exit 3"]
    with reaper(prefix, command) as process:
        assert process.stdout is not None
        orphan = int(process.stdout.readline())
        assert process.wait(5) == 3
        assert not alive(orphan)


def test_pid_placeholder_is_replaced() -> None:
    with reaper("x_{reaper_pid}_", ["/bin/echo", "pid={reaper_pid}"]) as process:
        out, _ = process.communicate(timeout=5)
        assert process.returncode == 0
        assert out.strip() == f"pid={process.pid}"


def test_a_reaper_whose_parent_is_gone_starts_nothing(tmp_path: Path) -> None:
    flag = tmp_path / "ran"
    with reaper("x_", ["/bin/touch", str(flag)], parent=1) as process:
        assert process.wait(5) == 125
        assert not flag.exists()


def test_usage_errors() -> None:
    with reaper("x_", []) as process:
        assert process.wait(5) == 124


def dead_pid() -> int:
    child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(child.stdout)


def fake_proc(root: Path, maps: dict[str, str]) -> Path:
    for pid, text in maps.items():
        (root / pid).mkdir(parents=True)
        (root / pid / "maps").write_text(text)
    return root


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def shm(tmp_path: Path) -> Path:
    folder = tmp_path / "shm"
    folder.mkdir()
    return folder


def test_stale_regions_are_removed(shm: Path, tmp_path: Path) -> None:
    dead, mine = dead_pid(), os.getpid()
    for name in (
        f"sightline_{dead}_a",
        f"sightline_{mine}_b",
        "triton_python_backend_shm_region_old",
        "triton_onnxruntime_backend_shm_region_mapped",
        "triton_python_backend_shm_region_young",
        "someone_elses",
    ):
        (shm / name).write_bytes(b"x")
    for name in ("triton_python_backend_shm_region_old", "triton_onnxruntime_backend_shm_region_mapped"):
        age(shm / name, 3600)
    proc = fake_proc(
        tmp_path / "proc", {"42": "7f00-7f10 rw-s 0 00:01 7 /dev/shm/triton_onnxruntime_backend_shm_region_mapped\n"}
    )
    removed = remove_stale_shm(shm, proc, min_age_s=60)
    assert sorted(removed) == [f"sightline_{dead}_a", "triton_python_backend_shm_region_old"]
    assert sorted(p.name for p in shm.iterdir()) == [
        f"sightline_{mine}_b",
        "someone_elses",
        "triton_onnxruntime_backend_shm_region_mapped",
        "triton_python_backend_shm_region_young",
    ]


def test_default_regions_stay_when_some_maps_cannot_be_read(shm: Path, tmp_path: Path) -> None:
    region = shm / "triton_python_backend_shm_region_old"
    region.write_bytes(b"x")
    age(region, 3600)
    proc = tmp_path / "proc"
    (proc / "7" / "maps").mkdir(parents=True)  # reading it fails like a process of another user's would
    assert remove_stale_shm(shm, proc) == []
    assert region.exists()


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (128 + signal.SIGSEGV, "was killed by SIGSEGV (exit code 139)"),  # tritonserver's death, told by the reaper
        (-signal.SIGKILL, "was killed by SIGKILL (exit code -9)"),  # the reaper's own
        (1, "exited with code 1"),
        (125, "exited with code 125"),  # the reaper's parent had gone: nothing started
        (128 + 99, "exited with code 227"),  # no such signal
    ],
)
def test_an_exit_status_is_told_as_the_signal_it_stands_for(code: int, said: str) -> None:
    assert exit_reason(code) == said
