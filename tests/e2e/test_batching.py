"""Client-side batching on the real embedded Triton: frames of concurrent streams that share Triton requests get
the answers each would get alone, and do share them."""

from __future__ import annotations

import asyncio
import io
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.server import Application
from tests.helpers import ROOT

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
SPEC = "shapes-yolo-v1"


def scenes(count: int) -> list[npt.NDArray[np.uint8]]:
    """320x240 crops of the shapes scene and the sample photographs, each its own picture."""
    pictures = [
        np.asarray(Image.open(io.BytesIO((ROOT / "samples" / name).read_bytes())).convert("RGB"))
        for name in ("shapes-scene.png", "chelsea.jpg", "astronaut.jpg")
    ]
    rng = np.random.default_rng(7)
    crops = []
    for i in range(count):
        picture = pictures[i % len(pictures)]
        top, left = (int(rng.integers(0, n - m + 1)) for n, m in zip(picture.shape[:2], (240, 320), strict=True))
        crops.append(np.ascontiguousarray(picture[top : top + 240, left : left + 320]))
    return crops


def frame(i: int, pixels: npt.NDArray[np.uint8]) -> streams_pb2.StreamRecognizeRequest:
    raw = streams_pb2.RawImage(width=320, height=240, format=streams_pb2.RGB24, data=pixels.tobytes())
    return streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw))


Answers: TypeAlias = dict[int, list[tuple[float, ...]]]
"""Frame id → (label id, score, xmin, ymin, xmax, ymax) of each prediction."""


async def stream(stub: Stub, frames: list[tuple[int, npt.NDArray[np.uint8]]], in_flight: int) -> Answers:
    config = streams_pb2.StreamConfig(spec_id=SPEC, max_in_flight=in_flight, drop_policy=streams_pb2.BLOCK)
    messages = [streams_pb2.StreamRecognizeRequest(config=config)] + [frame(i, p) for i, p in frames]
    answers: Answers = {}
    async for response in stub.StreamRecognize(iter(messages)):
        assert response.status == streams_pb2.OK, response
        answers[response.frame_id] = [
            (p.label_id, p.score, p.roi.bbox.xmin, p.roi.bbox.ymin, p.roi.bbox.xmax, p.roi.bbox.ymax)
            for p in response.result.outputs[0].labels.predicted
        ]
    return answers


def batches(app: Application) -> tuple[float, float]:
    """Requests sent and images in them, for the spec's model, so far."""
    sample = app.metrics.registry.get_sample_value
    labels = {"model": "shapes-yolo"}
    return (
        sample("sightline_triton_batch_images_count", labels) or 0.0,
        sample("sightline_triton_batch_images_sum", labels) or 0.0,
    )


async def test_frames_batched_across_streams_get_the_answers_they_get_alone(
    app: Application, recognition: Stub
) -> None:
    pictures = scenes(32)
    alone = await stream(recognition, list(enumerate(pictures)), 1)  # one frame in flight: every request alone
    assert sum(len(v) for v in alone.values()) > 0, "the scenes should hold shapes the detector finds"
    requests_before, images_before = batches(app)
    together = await asyncio.gather(
        *(stream(recognition, [(i, pictures[i]) for i in range(s, 32, 8)], 4) for s in range(8))
    )
    requests, images = (a - b for a, b in zip(batches(app), (requests_before, images_before), strict=True))
    assert images == 32
    assert requests < images, "frames of concurrent streams should have shared Triton requests"
    answers = {i: predictions for each in together for i, predictions in each.items()}
    assert sorted(answers) == list(range(32))
    for i in range(32):
        assert [p[0] for p in answers[i]] == [p[0] for p in alone[i]], f"frame {i}"
        # ONNX Runtime may sum in another order for a batch: the same answer up to float rounding.
        np.testing.assert_allclose(
            np.array([p[1:] for p in answers[i]]).reshape(-1, 5),
            np.array([p[1:] for p in alone[i]]).reshape(-1, 5),
            atol=1e-4,
            err_msg=f"frame {i}",
        )
