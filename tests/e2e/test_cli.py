"""The ``sightline`` command against a live server, as a user runs it (a separate process)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

from service.server import Application
from tests.e2e.helpers import COLORS, sightline
from tests.helpers import ROOT


async def test_recognize_json_is_the_v07_shape(app: Application) -> None:
    code, out, _ = await sightline(
        "recognize", "--spec", "colors-v1", "--server", f"127.0.0.1:{app.port}", "--json", "samples/red.png"
    )
    assert code == 0
    data = json.loads(out)
    labels = data["outputs"][0]["labels"]
    assert labels["predicted"][0]["label_name"] == "red"
    assert labels["discarded"] == []


async def test_recognize_draw_and_models(app: Application, tmp_path: Path) -> None:
    drawn = tmp_path / "drawn.png"
    code, out, _ = await sightline(
        "recognize",
        "--spec",
        "colors-v1",
        "--server",
        f"127.0.0.1:{app.port}",
        "--draw",
        str(drawn),
        "samples/blue-sky.jpg",
    )
    assert code == 0
    assert "blue" in out.splitlines()[1]
    with Image.open(drawn) as image, Image.open(ROOT / "samples" / "blue-sky.jpg") as source:
        assert image.size == source.size
        assert np.asarray(image).tobytes() != np.asarray(source).tobytes(), "labels were drawn"
    code, out, _ = await sightline("models", "--server", f"127.0.0.1:{app.port}")
    assert code == 0
    assert "colors-v1" in out
    imagenet = next(line for line in out.splitlines() if line.startswith("imagenet-efficientnet-lite0-v1 "))
    assert imagenet.endswith("... (1000 labels)"), imagenet  # one readable line, not a thousand names


async def test_unknown_spec_exits_non_zero_with_the_status(app: Application) -> None:
    code, _, err = await sightline(
        "recognize", "--spec", "nope", "--server", f"127.0.0.1:{app.port}", "samples/red.png"
    )
    assert code == 1
    assert "NOT_FOUND" in err


def write_video(path: Path, names: list[str]) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for name in names:
            pixels = np.zeros((48, 64, 3), dtype=np.uint8)
            pixels[:] = COLORS[name]
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


async def test_stream_a_video_to_jsonl_and_an_annotated_video(app: Application, tmp_path: Path) -> None:
    names = ["red"] * 5 + ["blue"] * 5 + ["green"] * 5
    video, out, jsonl = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "r.jsonl"
    write_video(video, names)
    code, _, err = await sightline(
        "stream",
        str(video),
        "--spec",
        "colors-v1",
        "--server",
        f"127.0.0.1:{app.port}",
        "--out",
        str(out),
        "--jsonl",
        str(jsonl),
    )
    assert code == 0, err
    assert "15 frames" in err
    assert "skipped 0" in err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [int(r.get("frame_id", 0)) for r in lines] == list(range(15))
    assert [r["result"]["outputs"][0]["labels"]["predicted"][0]["label_name"] for r in lines] == names
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 15


async def test_health_command(app: Application) -> None:
    code, out, _ = await sightline("health", "--server", f"127.0.0.1:{app.port}")
    assert (code, out.strip()) == (0, "(server): SERVING")
    code, out, _ = await sightline("health", "--server", f"127.0.0.1:{app.port}", "--service", "model/colors")
    assert (code, out.strip()) == (0, "model/colors: SERVING")
    code, _, err = await sightline("health", "--server", f"127.0.0.1:{app.port}", "--service", "model/nope")
    assert code == 1
    assert "NOT_FOUND" in err


async def test_ctrl_c_ends_a_stream_in_order(app: Application, tmp_path: Path) -> None:
    # A camera has no end: Ctrl-C is how a stream stops. It sends no more frames, waits for the answers of those in
    # flight, and leaves the results and the annotated video whole; a second Ctrl-C would stop at once.
    names = ["red", "blue", "green"] * 100  # 30 s at 10 fps, paced like a camera by --realtime
    video, out, jsonl = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "r.jsonl"
    write_video(video, names)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "stream", str(video), "--spec", "colors-v1", "--realtime"),
        *("--server", f"127.0.0.1:{app.port}", "--out", str(out), "--jsonl", str(jsonl)),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    while not jsonl.exists() or len(jsonl.read_text().splitlines()) < 5:  # frames are being answered
        assert process.returncode is None
        await asyncio.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    said = err.decode()
    assert process.returncode == 0, said[-2000:]
    assert "Traceback" not in said
    assert "stopped on request: no frame was sent after it, and those in flight were answered" in said
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert 5 <= len(lines) < len(names), "the stream did not stop early"
    assert [int(r.get("frame_id", 0)) for r in lines] == list(range(len(lines))), "a frame sent was not answered"
    assert [r["result"]["outputs"][0]["labels"]["predicted"][0]["label_name"] for r in lines] == names[: len(lines)]
    with av.open(str(out)) as container:  # closed whole: every answered frame is in it
        assert sum(1 for _ in container.decode(video=0)) == len(lines)
