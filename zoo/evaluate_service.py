"""The zoo's evaluation through the service: real gRPC, the real embedded Triton, Sightline's own preprocessing.

    python -m zoo.evaluate_service [--n 300] [--json figures-service.json]     (make zoo-eval-service)

It starts Sightline (and its embedded Triton) in this process, then runs ``zoo.evaluate``'s functions with a
``predict`` that calls ``Recognize`` on each model's public specification (``show_discarded``, 100 predictions) and
turns the answer into the v0.7 JSON. The figures must equal the offline run's (``python -m zoo.evaluate``, in
docs/zoo.md). Needs pycocotools for the detectors' mAP (the ``eval`` extra).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc
from service.server import serve_in_thread
from service.settings import BUNDLED_REPOSITORY, Settings
from zoo.evaluate import EVALUATIONS, SETS, Predictor, evaluate_all

__all__ = ["service_predictor", "spec_of"]


def spec_of(network_id: str, repository: Path = BUNDLED_REPOSITORY) -> str:
    """The public specification id of a bundled network (from its ``sightline.json``)."""
    spec: str = json.loads((repository / network_id / "sightline.json").read_text())["spec"]["id"]
    return spec


def service_predictor(stub: recognition_pb2_grpc.RecognitionServiceStub, spec_id: str) -> Predictor:
    """``predict(png) -> v0.7 result JSON`` through a (synchronous) Recognize call."""

    def predict(png: bytes) -> dict[str, Any]:
        request = inference_pb2.RecognizeRequest(
            spec_id=spec_id,
            inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=png))],
            show_discarded=True,
            max_predictions=100,
        )
        result: dict[str, Any] = json_format.MessageToDict(
            stub.Recognize(request, timeout=60), preserving_proto_field_name=True
        )
        return result

    return predict


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="images per evaluation set")
    parser.add_argument("--models", default=",".join(EVALUATIONS))
    parser.add_argument("--sets", default=",".join(SETS), help="independent and/or held-out")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sightline-eval-") as data:
        stop, port = serve_in_thread(Settings(port=0, metrics_port=-1, data_dir=Path(data)))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
                figures = evaluate_all(
                    lambda model_id: service_predictor(stub, spec_of(model_id)),
                    args.models.split(","),
                    args.n,
                    args.sets.split(","),
                )
        finally:
            stop()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
