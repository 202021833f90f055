"""The sample video's frames and its ground truth sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

from zoo import video

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_frames_are_deterministic_and_keep_shapes_inside() -> None:
    a = list(video.frames(seconds=0.4, fps=25))
    b = list(video.frames(seconds=0.4, fps=25))
    assert len(a) == 10
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.image, fb.image)
        assert fa.image.shape == (video.HEIGHT, video.WIDTH, 3)
        assert all(0.0 <= v <= 1.0 for o in fa.objects for v in o.box)
    assert not np.array_equal(a[0].image, a[-1].image)


def test_sidecar_matches_the_frames() -> None:
    truth = json.loads((SAMPLES / "shapes.json").read_text())
    frames = list(video.frames(seconds=len(truth["frames"]) / truth["fps"], fps=truth["fps"]))
    assert len(frames) == len(truth["frames"])
    for scene, item in zip(frames[::10], truth["frames"][::10], strict=True):
        assert [o.shape for o in scene.objects] == [o["shape"] for o in item["objects"]]
        np.testing.assert_allclose([o.box for o in scene.objects], [o["box"] for o in item["objects"]], atol=1e-5)


def test_video_file_decodes_to_the_frames() -> None:
    with av.open(str(SAMPLES / "shapes.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frames = list(video.frames())
    assert len(decoded) == len(frames)
    error = np.mean([np.abs(d.astype(int) - f.image).mean() for d, f in zip(decoded[::20], frames[::20], strict=True)])
    assert error < 8.0  # H.264 at CRF 20
