"""Run a command beside a throwaway PostgreSQL server, with ``SIGHTLINE_TEST_POSTGRES_DSN`` pointing at it.

    python -m tests.service.postgres_server COMMAND [ARGS...]

It finds Debian's (or any) ``initdb`` and ``pg_ctl``, creates a cluster in a temporary folder owned by the
``postgres`` user when run as root (initdb refuses root), listens on a free loopback port with its socket in
that folder, runs the command, then stops the server and removes the folder. ``make test-postgres`` uses it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), "")
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL (Debian: apt-get install -y postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    work = Path(tempfile.mkdtemp(prefix="sightline-pg-"))
    data = work / "data"
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(work, user.pw_uid, user.pw_gid)
    port = _free_port()
    log = work / "server.log"
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "sightline", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], check=True)
        try:
            subprocess.run(
                [*prefix, _binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "sightline", "sightline"],
                check=True,
            )
            env = dict(os.environ, SIGHTLINE_TEST_POSTGRES_DSN=f"postgresql://sightline@127.0.0.1:{port}/sightline")
            return subprocess.run(argv, env=env).returncode
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
