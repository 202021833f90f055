"""Tracking quality through the service: generated moving-shape videos with known trajectories, CLEAR-MOT metrics.

Run from the repository root (needs the ``eval`` extra: motmetrics)::

    python -m bench.tracking_eval            # --seeds 42,7,11 --seconds 4 --detectors shapes-yolo,...

Each seed gives ``zoo.video.frames(seed=...)``: four shapes that move, bounce and rotate at 25 fps, each an
identity of the ground truth. The frames go through ``StreamRecognize`` with ``tracking`` on (raw RGB24, one
stream per video), and py-motmetrics (an independent implementation) scores the tracks against the truth,
matching boxes at IoU ≥ 0.5: MOTA, IDF1, identity switches, false positives and misses.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import grpc
import motmetrics as mm
import numpy as np

from service._proto.sightline.v1 import recognition_pb2_grpc, streams_pb2
from service.server import serve_in_thread
from service.settings import Settings
from zoo import video
from zoo.evaluate_service import spec_of


def xywh(box: tuple[float, float, float, float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def track_video(stub: recognition_pb2_grpc.RecognitionServiceStub, spec_id: str, frames: list[Any]) -> list[Any]:
    def requests() -> Any:
        config = streams_pb2.StreamConfig(spec_id=spec_id, tracking=True, max_in_flight=4)
        yield streams_pb2.StreamRecognizeRequest(config=config)
        for i, frame in enumerate(frames):
            h, w = frame.image.shape[:2]
            raw = streams_pb2.RawImage(width=w, height=h, format=streams_pb2.RGB24, data=frame.image.tobytes())
            yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=i, raw=raw))

    return list(stub.StreamRecognize(requests(), timeout=600))


def score(frames: list[Any], responses: list[Any], name: str) -> mm.MOTAccumulator:
    accumulator = mm.MOTAccumulator(auto_id=True)
    for frame, response in zip(frames, responses, strict=True):
        truth_ids = list(range(len(frame.objects)))  # zoo.video keeps the actors in order: index = identity
        truth = np.array([xywh(o.box) for o in frame.objects]).reshape(-1, 4)
        predicted = [p for p in response.result.outputs[0].labels.predicted if p.HasField("track_id")]
        hyp = np.array(
            [xywh((p.roi.bbox.xmin, p.roi.bbox.ymin, p.roi.bbox.xmax, p.roi.bbox.ymax)) for p in predicted]
        ).reshape(-1, 4)
        distances = mm.distances.iou_matrix(truth, hyp, max_iou=0.5)
        accumulator.update(truth_ids, [p.track_id for p in predicted], distances)
    return accumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,7,11")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--detectors", default="shapes-yolo,shapes-anchored,shapes-direct")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    videos = {seed: list(video.frames(seconds=args.seconds, seed=seed)) for seed in seeds}
    metrics = ["num_frames", "mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"]
    with tempfile.TemporaryDirectory(prefix="sightline-track-") as data:
        stop, port = serve_in_thread(Settings(port=0, metrics_port=-1, data_dir=Path(data)))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
                host = mm.metrics.create()
                for detector in args.detectors.split(","):
                    accumulators, names = [], []
                    for seed, frames in videos.items():
                        responses = track_video(stub, spec_of(detector), frames)
                        accumulators.append(score(frames, responses, f"seed {seed}"))
                        names.append(f"seed {seed}")
                    summary = host.compute_many(accumulators, metrics=metrics, names=names, generate_overall=True)
                    print(f"\n{detector} ({len(seeds)} videos of {args.seconds:g} s at 25 fps, 4 shapes each)")
                    print(
                        mm.io.render_summary(
                            summary, formatters=host.formatters, namemap=mm.io.motchallenge_metric_names
                        )
                    )
        finally:
            stop()


if __name__ == "__main__":
    main()
