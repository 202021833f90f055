"""The Node.js example client (examples/node/client.js) against the session's server: unary calls and --stream.

It needs Node.js and examples/node/node_modules, which ``examples/node/install.sh`` (npm ci) installs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.server import Application
from tests.e2e.helpers import COLORS, StreamOutput, node_executable, run_client, sightline, stream_output

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node() -> str:
    return node_executable()


def rgb(name: str) -> str:
    return ",".join(str(c) for c in COLORS[name])


def assert_consistent(output: StreamOutput, sent: int) -> None:
    """Every frame answered once, and the summary agrees with the lines."""
    summary = output.summary
    statuses = [r["status"] for r in output.results]
    assert sorted(r["frame_id"] for r in output.results) == list(range(sent))
    assert summary["sent"] == summary["frames"] == len(output.results) == sent
    assert summary["ok"] == statuses.count("OK")
    assert summary["skipped"] == statuses.count("SKIPPED")
    assert summary["errors"] == statuses.count("ERROR")
    assert summary["ok"] + summary["skipped"] + summary["errors"] == sent
    assert summary["elapsed_s"] > 0
    assert summary["fps"] == pytest.approx(sent / summary["elapsed_s"], rel=0.02)


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


def keys_of(value: Any) -> set[str]:
    """Every key of every object in a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def photo(tmp_path: Path, name: str) -> Path:
    """One of scikit-image's bundled photographs (public domain or CC0), as a JPEG file."""
    from PIL import Image
    from skimage import data

    path = tmp_path / f"{name}.jpg"
    Image.fromarray(getattr(data, name)()).save(path, quality=92)
    return path


@pytest.mark.parametrize(
    ("spec", "image"),
    [
        ("colors-v1", "samples/red.png"),
        ("shapes-yolo-v1", "samples/shapes-scene.png"),
        ("faces-v1", "astronaut"),
        ("imagenet-efficientnet-lite0-v1", "chelsea"),
    ],
)
async def test_node_client_prints_the_python_clients_json(
    node: str, app: Application, tmp_path: Path, spec: str, image: str
) -> None:
    path = ROOT / image if "/" in image else photo(tmp_path, image)
    server = f"127.0.0.1:{app.port}"
    code, out, err = await run_client(node, "--server", server, "--spec", spec, "--show-discarded", str(path))
    assert code == 0, err
    from_node = json.loads(out)["result"]
    code, out, err = await sightline(
        "recognize", "--spec", spec, "--server", server, "--json", "--show-discarded", str(path)
    )
    assert code == 0, err
    from_python = json.loads(out)
    # proto-loader's oneofs: true once added "_label_id": "label_id", "_score": "score" ... to every prediction.
    assert not {k for k in keys_of(from_node) if k.startswith("_")}
    assert from_node == from_python
    assert from_python["outputs"][0]["labels"]["predicted"], "a test that compares empty results shows nothing"


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


async def test_node_client_streams_raw_frames_in_order(node: str, app: Application) -> None:
    names = ["red", "green", "blue"]
    n = 30
    colors = [arg for name in names for arg in ("--color", rgb(name))]
    code, out, err = await run_client(
        node,
        *("--server", f"127.0.0.1:{app.port}", "--stream", "--spec", "colors-v1"),
        *("--max-in-flight", "4", "--ordering", "ordered", "--drop-policy", "block"),
        *("--raw", "48x32", *colors, "--count", str(n)),
    )
    assert code == 0, err
    output = stream_output(out)
    # ORDERED: the lines come in frame order, each frame once, with the colour it was sent in.
    assert [r["frame_id"] for r in output.results] == list(range(n))
    assert [r["status"] for r in output.results] == ["OK"] * n
    assert [r["label"] for r in output.results] == [names[i % len(names)] for i in range(n)]
    assert all(r["score"] > 0.9 for r in output.results)
    for r in output.results:
        timing = r["timing"]
        assert timing["total_ms"] >= timing["triton_ms"] > 0
        # Measured by the client from write() to the result: it covers the server's own time.
        assert r["latency_ms"] >= timing["total_ms"] * 0.9
    assert_consistent(output, n)
    summary = output.summary
    assert (summary["ok"], summary["skipped"], summary["errors"]) == (n, 0, 0)
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    latencies = sorted(r["latency_ms"] for r in output.results)
    assert latencies[0] <= summary["latency_p50_ms"] <= latencies[-1]
    assert summary["latency_p99_ms"] <= latencies[-1]


async def test_node_client_streams_image_files(
    node: str, app: Application, tmp_path: Path, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    names = ["yellow", "black", "white"]
    files = []
    for name in names:
        path = tmp_path / f"{name}.png"
        path.write_bytes(solid_image(COLORS[name]))
        files.append(str(path))
    code, out, err = await run_client(
        node, "--server", f"127.0.0.1:{app.port}", "--stream", "--spec", "colors-v1", "--count", "7", *files
    )
    assert code == 0, err
    output = stream_output(out)
    assert [r["frame_id"] for r in output.results] == list(range(7))
    assert [r["label"] for r in output.results] == [names[i % 3] for i in range(7)]
    assert_consistent(output, 7)


async def test_node_client_stream_goes_on_after_a_bad_frame(
    node: str, app: Application, tmp_path: Path, solid_image: Callable[[tuple[int, int, int]], bytes]
) -> None:
    red, junk, blue = tmp_path / "red.png", tmp_path / "junk.png", tmp_path / "blue.png"
    red.write_bytes(solid_image(COLORS["red"]))
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    blue.write_bytes(solid_image(COLORS["blue"]))
    code, out, err = await run_client(
        node, "--server", f"127.0.0.1:{app.port}", "--stream", "--spec", "colors-v1", str(red), str(junk), str(blue)
    )
    # A frame that fails is answered ERROR and counted; the stream, and the exit status, stay OK.
    assert code == 0, err
    output = stream_output(out)
    assert [(r["frame_id"], r["status"], r["label"]) for r in output.results] == [
        (0, "OK", "red"),
        (1, "ERROR", None),
        (2, "OK", "blue"),
    ]
    assert output.results[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "could not be decoded" in output.results[1]["error"]["message"]
    assert "error" not in output.results[0]
    assert_consistent(output, 3)
    assert output.summary["errors"] == 1


async def test_node_client_stream_waits_for_drain_under_backpressure(node: str, slow_app: Application) -> None:
    # slow-colors-v1 takes 60 ms a frame; with BLOCK and one frame in flight the server stops reading, so 6 MB
    # (1080p) frames fill the HTTP/2 windows and grpc-js's buffer (16 messages): write() returns false, and the
    # client must wait for 'drain' rather than hand every frame to grpc-js at once. No frame may be lost.
    n = 30
    code, out, err = await run_client(
        node,
        *("--server", f"127.0.0.1:{slow_app.port}", "--stream", "--spec", "slow-colors-v1"),
        *("--max-in-flight", "1", "--drop-policy", "block"),
        *("--raw", "1920x1080", "--color", rgb("yellow"), "--count", str(n)),
    )
    assert code == 0, err
    output = stream_output(out)
    assert [r["frame_id"] for r in output.results] == list(range(n))
    assert [r["label"] for r in output.results] == ["yellow"] * n
    assert_consistent(output, n)
    summary = output.summary
    assert summary["drain_waits"] >= 1
    assert summary["elapsed_s"] >= n * 0.06 * 0.9
    # Held back by the drain, the last frame was written long after the start: its latency (from write() to its
    # result) is well under the whole run's. A client that wrote every frame at once would wait about all of it.
    assert output.results[-1]["latency_ms"] < 0.85 * summary["elapsed_s"] * 1000


async def test_node_client_stream_sends_the_drop_policy(node: str, slow_app: Application) -> None:
    # A producer far faster than the slow model, DROP_OLDEST and one frame in flight: most frames are skipped, the
    # first and the last (the freshest) are recognised, and ORDERED still answers every frame in order.
    n = 20
    code, out, err = await run_client(
        node,
        *("--server", f"127.0.0.1:{slow_app.port}", "--stream", "--spec", "slow-colors-v1"),
        *("--max-in-flight", "1", "--drop-policy", "drop-oldest"),
        *("--raw", "48x32", "--color", rgb("red"), "--count", str(n)),
    )
    assert code == 0, err
    output = stream_output(out)
    assert [r["frame_id"] for r in output.results] == list(range(n))
    assert_consistent(output, n)
    skipped = [r for r in output.results if r["status"] == "SKIPPED"]
    assert len(skipped) >= n // 2
    assert all("dropped" in r["skip_reason"] and r["label"] is None for r in skipped)
    ok = [r["frame_id"] for r in output.results if r["status"] == "OK"]
    assert ok[0] == 0
    assert ok[-1] == n - 1
    assert output.summary["skipped"] == len(skipped)


async def test_node_client_stream_reports_a_failed_stream(node: str, app: Application) -> None:
    code, out, err = await run_client(
        node, "--server", f"127.0.0.1:{app.port}", "--stream", "--spec", "no-such-spec", "--raw", "8x8"
    )
    assert code == 1
    assert "summary" not in out
    error = json.loads(err.strip().splitlines()[-1])["error"]
    assert error["code"] == "NOT_FOUND"
    assert "no-such-spec" in error["message"]
