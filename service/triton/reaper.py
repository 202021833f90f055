"""The reaper: a tiny process between the service and ``tritonserver`` that takes the whole Triton tree down with it.

Usage (the service runs it; it imports a few standard modules and never the ``service`` package, so
that it starts in milliseconds in isolated mode)::

    python -I reaper.py --parent PID --grace SECONDS --shm-prefix PREFIX -- tritonserver [ARG ...]

Every ``{reaper_pid}`` in ``PREFIX`` and in the command is replaced by this process's pid, so that the command can
give Triton's Python backend a shared-memory prefix of this instance's own (``sightline_{reaper_pid}_``).

Contract:

- It must be started in a session of its own (the service's ``start_new_session``). It arms a parent-death signal
  of ``SIGUSR1`` for itself first thing (not in the service's ``preexec_fn``: running Python between fork and exec
  in a service that has threads can deadlock), then checks that its parent is still ``--parent``; if not, the
  parent died before the signal was armed, and it exits 125 without starting anything. (The signal fires when the
  *thread* that forked the reaper exits: the service's event-loop thread.)
- It is a child subreaper: the Python backend stubs that ``tritonserver`` forks are re-parented to it, not to
  init, when ``tritonserver`` dies (a parent-death signal is not inherited across fork, so nothing else kills them).
- ``tritonserver`` runs as its child, in its process group, with a parent-death signal of ``SIGKILL``.
- ``SIGTERM`` (or ``SIGINT``, ``SIGHUP``): forwarded to ``tritonserver``; ``SIGKILL`` after ``--grace`` seconds.
- ``SIGUSR1`` (the parent died, or the service wants it over now): ``SIGKILL`` at once.
- Whenever ``tritonserver`` exits, for any reason: every remaining process of the tree (children of the reaper,
  members of its process group) gets ``SIGKILL`` until none is left, the reaper reaps them, removes the
  ``/dev/shm`` regions whose name starts with ``PREFIX``, and exits with ``tritonserver``'s status (``128 + n``
  for a signal ``n``), which says why Triton ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PID_TOKEN = "{reaper_pid}"
_SHM_DIR = "/dev/shm"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_HANDLED = (*_STOP_SIGNALS, signal.SIGUSR1, signal.SIGCHLD)
_EXIT_PARENT_GONE = 125
_EXIT_USAGE = 124
_EXIT_EXEC_FAILED = 127


def _say(message: str) -> None:
    # Straight to the inherited stderr (the Triton log): no buffering that a SIGKILL could lose.
    os.write(2, f"sightline-reaper[{os.getpid()}]: {message}\n".encode())


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _parse(argv: list[str]) -> tuple[int, float, str, list[str]]:
    """``(parent, grace_s, shm_prefix, command)`` from the command line; ``ValueError`` when it is malformed."""
    if "--" not in argv:
        raise ValueError("missing -- before the command")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if len(options) % 2 or not command:
        raise ValueError("expected --parent PID --grace SECONDS --shm-prefix PREFIX -- COMMAND ...")
    values = dict(zip(options[::2], options[1::2], strict=True))
    unknown = set(values) - {"--parent", "--grace", "--shm-prefix"}
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    me = str(os.getpid())
    prefix = values.get("--shm-prefix", "").replace(_PID_TOKEN, me)
    if "/" in prefix:
        raise ValueError("the shm prefix is a file name, not a path")
    return (
        int(values["--parent"]),
        float(values.get("--grace", "5")),
        prefix,
        [arg.replace(_PID_TOKEN, me) for arg in command],
    )


def _spawn(command: list[str]) -> int:
    me = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The reaper may have died between the fork and the prctl: then nobody would kill this server.
        if os.getppid() != me:
            os._exit(_EXIT_PARENT_GONE)
        os.execv(command[0], command)
    except BaseException as error:
        _say(f"cannot run {command[0]}: {error}")
    os._exit(_EXIT_EXEC_FAILED)


def _processes() -> list[tuple[int, str, int, int]]:
    """``(pid, state, ppid, pgrp)`` of every process whose ``/proc/<pid>/stat`` is readable."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces or parentheses itself.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3:
            found.append((int(name), fields[0], int(fields[1]), int(fields[2])))
    return found


def _reap(watched: int) -> int | None:
    """Reap every exited child without blocking; the wait status of ``watched`` if it was among them."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == watched:
            status = code


def _kill_tree() -> list[int]:
    """SIGKILL, all at once and without waiting, every other process of the tree: the reaper's children and the
    members of its process group (the server's stubs while the server still lives); the pids signalled."""
    me = os.getpid()
    # Only a group of our own: started by hand in someone's group, the reaper must not kill its shell.
    group = os.getpgrp() if os.getpgrp() == me else -1
    victims = [
        pid for pid, state, ppid, pgrp in _processes() if pid != me and (ppid == me or (pgrp == group and state != "Z"))
    ]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims


def _kill_the_rest() -> int:
    """SIGKILL every other process of the tree and reap them until none is left; how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + 10.0
    while True:
        victims = _kill_tree()
        if not victims:
            return len(killed)
        killed.update(victims)
        _reap(-1)
        if time.monotonic() > deadline:
            _say(f"processes {victims} survive SIGKILL; giving up on them")
            return len(killed)
        time.sleep(0.01)


def _remove_shm(prefix: str) -> int:
    if not prefix:
        return 0
    removed = 0
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(_SHM_DIR, name))
                removed += 1
            except OSError:
                pass
    return removed


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    # Blocked first: the signals then wait for sigtimedwait below instead of killing the reaper mid-way.
    signal.pthread_sigmask(signal.SIG_BLOCK, set(_HANDLED))
    try:
        parent, grace_s, prefix, command = _parse(argv)
    except (ValueError, KeyError) as error:
        _say(f"usage: {error}")
        return _EXIT_USAGE
    _prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:
        _say("the service is gone already; not starting Triton")
        return _EXIT_PARENT_GONE
    server = _spawn(command)
    deadline: float | None = None
    status: int | None = None
    asked_at = 0.0
    while status is None:
        timeout = 0.5 if deadline is None else max(0.01, min(0.5, deadline - time.monotonic()))
        info = signal.sigtimedwait(set(_HANDLED), timeout)
        signo = info.si_signo if info is not None else 0
        if signo in _STOP_SIGNALS and deadline is None:
            _say(f"stopping Triton (SIGTERM, {grace_s:g} s before SIGKILL)")
            os.kill(server, signal.SIGTERM)
            asked_at = time.monotonic()
            deadline = asked_at + grace_s
        elif signo == signal.SIGUSR1 or os.getppid() != parent:
            _say("the service is gone or wants Triton down now: SIGKILL")
            asked_at = asked_at or time.monotonic()
            _kill_tree()
        elif deadline is not None and time.monotonic() >= deadline:
            _say(f"Triton did not stop within {grace_s:g} s: SIGKILL")
            _kill_tree()
            deadline = float("inf")
        status = _reap(server)
    killed = _kill_the_rest()
    removed = _remove_shm(prefix)
    code = _exit_code(status)
    took = f" {time.monotonic() - asked_at:.2f} s after the first signal" if asked_at else ""
    _say(f"tritonserver exited ({code}){took}; killed {killed} leftover process(es), removed {removed} shm region(s)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
