"""A short sample video of moving shapes, for the streaming demos, with per-frame ground truth.

    python -m zoo.video [--out samples/shapes.mp4] [--seconds 4] [--fps 25]

:func:`frames` (numpy + Pillow only) yields each frame and its ground truth, so tests can stream the same
frames without decoding a file; :func:`write` encodes them to H.264 with PyAV (dev-only) and writes the ground
truth beside the video as JSON (``<name>.json``: per frame, the shapes with normalised boxes). The first frame is
also saved, losslessly, as ``<name>-scene.png``: a still for the single-image demos.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from zoo import scenes

__all__ = ["frames", "write"]

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 320, 240

# shape, colour, centre (x, y), velocity (px / s), circumradius, angle, angular speed (deg / s)
_ACTORS = (
    ("circle", "red", (70.0, 70.0), (95.0, 40.0), 30.0, 0.0, 0.0),
    ("star", "yellow", (240.0, 80.0), (-70.0, 60.0), 34.0, 0.0, 90.0),
    ("square", "blue", (160.0, 180.0), (55.0, -45.0), 32.0, 10.0, -60.0),
    ("heart", "purple", (60.0, 180.0), (40.0, -25.0), 34.0, 0.0, 30.0),
)


def frames(seconds: float = 4.0, fps: int = 25, seed: int = 42) -> Iterator[scenes.Scene]:
    """The video's frames as scenes (``(240, 320, 3)`` uint8 and ground truth), deterministic."""
    rng = np.random.default_rng(seed)
    background = scenes.make_background(rng, WIDTH, HEIGHT)
    state = [[*a[2], *a[3], a[5]] for a in _ACTORS]  # x, y, vx, vy, angle
    dt = 1.0 / fps
    for _ in range(round(seconds * fps)):
        placements = [scenes.Placement(a[0], a[1], s[0], s[1], a[4], s[4]) for a, s in zip(_ACTORS, state, strict=True)]
        yield scenes.compose(WIDTH, HEIGHT, placements, background)
        for a, s in zip(_ACTORS, state, strict=True):
            r = a[4]
            s[0] += s[2] * dt
            s[1] += s[3] * dt
            s[4] = math.fmod(s[4] + a[6] * dt, 360.0)
            if not r <= s[0] <= WIDTH - r:
                s[2] = -s[2]
                s[0] = min(max(s[0], r), WIDTH - r)
            if not r <= s[1] <= HEIGHT - r:
                s[3] = -s[3]
                s[1] = min(max(s[1], r), HEIGHT - r)


def write(path: Path, seconds: float = 4.0, fps: int = 25) -> None:
    """Encode :func:`frames` as H.264 (yuv420p, CRF 20) to ``path`` and the ground truth to ``path.json``."""
    import av

    truth = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "20", "preset": "medium", "threads": "1"}
        stream.codec_context.thread_count = 1
        for index, scene in enumerate(frames(seconds, fps)):
            frame = av.VideoFrame.from_ndarray(scene.image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            truth.append(
                {
                    "frame": index,
                    "objects": [
                        {"shape": o.shape, "colour": o.colour, "box": [round(v, 5) for v in o.box]}
                        for o in scene.objects
                    ],
                }
            )
        for packet in stream.encode():
            container.mux(packet)
    sidecar = {"width": WIDTH, "height": HEIGHT, "fps": fps, "frames": truth}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "samples" / "shapes.mp4")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, args.seconds, args.fps)
    still = args.out.with_name(args.out.stem + "-scene.png")
    still.write_bytes(next(frames(args.seconds, args.fps)).png())
    size = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size:.0f} kB), {args.out.with_suffix('.json').name}, {still.name}")


if __name__ == "__main__":
    main()
