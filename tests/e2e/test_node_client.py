"""The Node.js example client (examples/node/client.js) against the session's server.

It needs Node.js and examples/node/node_modules, which ``examples/node/install.sh`` (npm ci) installs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.server import Application

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "examples" / "node"
RUN_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not on PATH: install Node.js 18+ (e.g. apt-get install nodejs npm)")
    if not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("examples/node/node_modules is missing: run examples/node/install.sh (npm ci) first")
    return path


async def run_client(node: str, *args: str) -> tuple[int, str, str]:
    # Asynchronous on purpose: the server under test answers on this same event loop.
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "client.js"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"the Node client ran longer than {RUN_TIMEOUT_S} s")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_node_client_recognises_a_red_image(
    node: str, app: Application, tmp_path: Path, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(solid_image((230, 20, 25)))
    code, out, err = await run_client(
        node, "--server", f"127.0.0.1:{app.port}", "--spec", "colors-v1", "--show-discarded", str(image)
    )
    assert code == 0, err
    output: dict[str, Any] = json.loads(out)
    assert "colors-v1" in [spec["id"] for spec in output["specifications"]]
    labels = output["result"]["outputs"][0]["labels"]
    best = labels["predicted"][0]
    assert best["label_name"] == "red"
    assert best["label_id"] == 0
    assert best["score"] > 0.9
    assert best["threshold"] == pytest.approx(0.025)
    assert {p["label_name"] for p in labels["discarded"]} == {"green", "blue", "yellow", "black", "white"}


async def test_node_client_lists_specifications(node: str, app: Application) -> None:
    code, out, err = await run_client(node, "--server", f"127.0.0.1:{app.port}", "--list")
    assert code == 0, err
    output = json.loads(out)
    assert "result" not in output
    assert "colors-v1" in [spec["id"] for spec in output["specifications"]]
    assert all(set(spec) == {"id", "name"} and spec["name"] for spec in output["specifications"])


async def test_node_client_reports_grpc_errors(
    node: str, app: Application, tmp_path: Path, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(solid_image((230, 20, 25)))
    code, out, err = await run_client(node, "--server", f"127.0.0.1:{app.port}", "--spec", "no-such-spec", str(image))
    assert code == 1
    assert out == ""
    error = json.loads(err.strip().splitlines()[-1])["error"]
    assert error["code"] == "NOT_FOUND"
    assert "no-such-spec" in error["message"]
