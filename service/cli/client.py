"""The ``sightline`` command's client side: list the public models, recognise an image, stream a video, check
health. Each command talks to a running server over ``service.client``'s channel (TLS from ``SIGHTLINE_CLIENT_*``)
and imports nothing of the server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, recognition_pb2_grpc
from service.client import channel as client

__all__ = ["DEFAULT_SERVER", "add_commands", "recognize_once", "to_json"]

DEFAULT_SERVER = "127.0.0.1:50051"
_SHOWN_LABELS = 12
"""Labels listed per output by ``sightline models`` (an ImageNet classifier has 1000)."""


def to_json(message: Any) -> dict[str, Any]:
    # Empty lists ("discarded": []) are part of the v0.7 shape, so fields without presence are printed too.
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


async def recognize_once(
    server: str, spec: str, image: Path, *, show_discarded: bool, max_predictions: int | None
) -> Any:
    """One Recognize call with an image file's bytes; the RecognitionResult."""
    content = await asyncio.to_thread(image.read_bytes)
    request = inference_pb2.RecognizeRequest(
        spec_id=spec,
        inputs=[inference_pb2.Input(image=inference_pb2.ImageInput(content=content))],
        show_discarded=show_discarded,
    )
    if max_predictions is not None:
        request.max_predictions = max_predictions
    async with client.channel(server) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        return await stub.Recognize(request, timeout=60)


def _print_result(result: inference_pb2.RecognitionResult, spec: str) -> None:
    for i, output in enumerate(result.outputs):
        print(f"{spec} output {i}:")
        if not output.labels.predicted:
            print("  (no prediction above its threshold)")
        for p in output.labels.predicted:
            where = ""
            if p.roi.HasField("bbox"):
                b = p.roi.bbox
                where = f"  box=({b.xmin:.3f}, {b.ymin:.3f}, {b.xmax:.3f}, {b.ymax:.3f})"
            print(f"  {p.label_name:<12} {p.score:.3f}  (threshold {p.threshold:.3f}){where}")
        for p in output.labels.discarded:
            print(f"  [discarded] {p.label_name:<12} {p.score:.3f}")


def cmd_recognize(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(
            recognize_once(
                args.server,
                args.spec,
                args.image,
                show_discarded=args.show_discarded,
                max_predictions=args.max_predictions,
            )
        )
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(to_json(result), indent=2))
    else:
        _print_result(result, args.spec)
    if args.draw is not None:
        from PIL import Image

        from service.client.drawing import annotate

        with Image.open(args.image) as opened:
            rgb = np.asarray(opened.convert("RGB"), dtype=np.uint8)
        Image.fromarray(annotate(rgb, result)).save(args.draw)
        print(f"drawn: {args.draw}", file=sys.stderr)
    return 0


async def _models(server: str) -> Any:
    async with client.channel(server) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        specs = await stub.ListSpecifications(common_pb2.ListRequest(limit=1000), timeout=30)
        # The listing carries no outputs (v0.7's list shape): their labels come from one Get each, all at once.
        return await asyncio.gather(
            *(
                stub.GetSpecification(recognition_pb2.GetSpecificationRequest(spec_id=s.id), timeout=30)
                for s in specs.results
            )
        )


def cmd_models(args: argparse.Namespace) -> int:
    try:
        specs = asyncio.run(_models(args.server))
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([to_json(s) for s in specs], indent=2))
        return 0
    width = max((len(spec.id) for spec in specs), default=0)
    for spec in specs:
        for output in spec.outputs:
            labels = output.labels
            kind = (
                "detection"
                if labels.roi == recognition_pb2.BBOX
                else ("classification" if labels.exclusive else "tagging")
            )
            names = ", ".join(lab.name for lab in labels.labels[:_SHOWN_LABELS])
            if len(labels.labels) > _SHOWN_LABELS:
                names += f", ... ({len(labels.labels)} labels)"
            print(f"{spec.id:<{width}}  {kind:<15} {names}")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from service.client.stream import StreamOptions, stream_video

    options = StreamOptions(
        server=args.server,
        spec_id=args.spec,
        max_in_flight=args.max_in_flight,
        drop_policy=args.drop_policy,
        ordering=args.ordering,
        max_latency_ms=args.max_latency_ms,
        tracking=not args.no_tracking,
        realtime=args.realtime,
        max_frames=args.max_frames,
        out=args.out,
        jsonl=args.jsonl,
    )
    try:
        report = asyncio.run(stream_video(args.source, options))
    except grpc.aio.AioRpcError as exc:
        print(f"\nerror: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.source}: {exc}", file=sys.stderr)
        return 1
    return 0 if report.errors == 0 else 2


async def _health(server: str, service: str) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with client.channel(server, api_key="") as channel:  # health needs no key
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


def cmd_health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2

    try:
        status = asyncio.run(_health(args.server, args.service))
    except grpc.aio.AioRpcError as exc:
        print(f"{args.service or '(server)'}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{args.service or '(server)'}: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The client commands: models, recognize, stream, health."""
    models = sub.add_parser("models", help="list the public recognition specifications")
    models.add_argument("--server", default=DEFAULT_SERVER)
    models.add_argument("--json", action="store_true", help="print the v0.7 JSON")
    models.set_defaults(func=cmd_models)

    recognize = sub.add_parser("recognize", help="recognise an image")
    recognize.add_argument("image", type=Path)
    recognize.add_argument("--spec", required=True, help="a specification id, e.g. colors-v1")
    recognize.add_argument("--server", default=DEFAULT_SERVER)
    recognize.add_argument("--json", action="store_true", help="print the v0.7 JSON")
    recognize.add_argument("--show-discarded", action="store_true")
    recognize.add_argument("--max-predictions", type=int, default=None)
    recognize.add_argument("--draw", type=Path, default=None, help="also write the image with the results drawn on it")
    recognize.set_defaults(func=cmd_recognize)

    stream = sub.add_parser("stream", help="stream a video file or a camera (/dev/videoN) and print live figures")
    stream.add_argument("source", help="a video file (anything FFmpeg reads) or a camera device such as /dev/video0")
    stream.add_argument("--spec", required=True, help="a specification id, e.g. shapes-yolo-v1")
    stream.add_argument("--server", default=DEFAULT_SERVER)
    stream.add_argument("--out", type=Path, default=None, help="write an annotated video (boxes, labels, track ids)")
    stream.add_argument("--jsonl", type=Path, default=None, help="write one JSON result per line")
    stream.add_argument("--max-in-flight", type=int, default=4)
    stream.add_argument("--drop-policy", choices=["BLOCK", "DROP_OLDEST", "DROP_NEWEST"], default="BLOCK")
    stream.add_argument("--ordering", choices=["ORDERED", "AS_COMPLETED"], default="ORDERED")
    stream.add_argument("--max-latency-ms", type=int, default=0)
    stream.add_argument("--no-tracking", action="store_true", help="do not give detections track ids")
    stream.add_argument("--realtime", action="store_true", help="send frames at the video's frame rate")
    stream.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    stream.set_defaults(func=cmd_stream)

    check = sub.add_parser("health", help="grpc.health.v1 Check; exit 0 when SERVING (container health checks)")
    check.add_argument("--server", default=DEFAULT_SERVER)
    check.add_argument(
        "--service", default="", help='"" (the process), sightline.v1.RecognitionService, model/<network-id> ...'
    )
    check.set_defaults(func=cmd_health)
