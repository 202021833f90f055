"""The ``sightline`` command: serve, list the public models, recognise an image, manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, recognition_pb2_grpc
from service.client import channel as client

__all__ = ["main"]

DEFAULT_SERVER = "127.0.0.1:50051"
_SHOWN_LABELS = 12
"""Labels listed per output by ``sightline models`` (an ImageNet classifier has 1000)."""


def _to_json(message: Any) -> dict[str, Any]:
    # Empty lists ("discarded": []) are part of the v0.7 shape, so fields without presence are printed too.
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


async def _recognize(server: str, spec: str, image: Path, *, show_discarded: bool, max_predictions: int | None) -> Any:
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
            _recognize(
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
        print(json.dumps(_to_json(result), indent=2))
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
        print(json.dumps([_to_json(s) for s in specs], indent=2))
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


def cmd_serve(args: argparse.Namespace) -> int:
    from service.logs import configure_logging
    from service.server import serve
    from service.settings import Settings

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    settings = Settings(**overrides)
    configure_logging(settings.log_level, json_lines=settings.log_json)

    async def main() -> None:
        ready = asyncio.Event()
        started = time.monotonic()
        server = asyncio.create_task(serve(settings, on_ready=ready))
        ready_wait = asyncio.create_task(ready.wait())
        await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set() and args.demo is not None:
            address = f"127.0.0.1:{settings.port}"
            result = await _recognize(address, args.demo_spec, args.demo, show_discarded=False, max_predictions=5)
            print(f"\nready in {time.monotonic() - started:.1f} s; demo: {args.demo} on {args.demo_spec}:", flush=True)
            print(json.dumps(_to_json(result), indent=2), flush=True)
            print(
                f"\nTry: sightline recognize --spec {args.demo_spec} {args.demo} --json   (Ctrl-C stops the server)",
                flush=True,
            )
        ready_wait.cancel()
        await server

    try:
        asyncio.run(main())
    finally:
        # The drain is over and asyncio has put the default handlers back: a repeated SIGTERM (a supervisor
        # insisting) must not turn a clean exit into death by signal in the last milliseconds of teardown.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
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


async def _keys(args: argparse.Namespace) -> int:
    from service.auth import KeyKind, create_key, revoke_key
    from service.errors import SightlineError
    from service.settings import Settings
    from service.store import open_store

    settings = Settings()
    store = await open_store(settings.database_url, settings.data_dir, pool_size=1)
    try:
        if args.keys_command == "create":
            record, key = await create_key(store, args.org, KeyKind(args.kind), args.description)
            print(f"created {record.kind} key {record.id} for organisation {record.organisation}", file=sys.stderr)
            print("it is shown only now (the server keeps its hash):", file=sys.stderr)
            print(key)
        elif args.keys_command == "list":
            for k in await store.list_keys():
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                created = f"{k.created_at:%Y-%m-%d %H:%M}"
                print(f"{k.id}  {k.organisation:<20} {k.kind:<6} {created}  {state}  {k.description}")
        else:
            await revoke_key(store, args.key_id)
            print(f"revoked key {args.key_id}", file=sys.stderr)
    except SightlineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    return asyncio.run(_keys(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sightline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service (with the embedded Triton unless SIGHTLINE_TRITON_URL)")
    serve.add_argument("--port", type=int, default=None, help="gRPC port (default: SIGHTLINE_PORT or 50051)")
    serve.add_argument("--host", default=None, help="bind address (default: SIGHTLINE_HOST or 127.0.0.1)")
    serve.add_argument("--demo", type=Path, default=None, help="recognise this image once the service is ready")
    serve.add_argument("--demo-spec", default="colors-v1", help="the specification for --demo")
    serve.set_defaults(func=cmd_serve)

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

    keys = sub.add_parser(
        "keys",
        help="create, list and revoke API keys (in the database of SIGHTLINE_DATA_DIR or SIGHTLINE_DATABASE_URL)",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--org", required=True, help="the organisation the key belongs to")
    create.add_argument("--kind", choices=["admin", "read"], required=True, help="read: inference only; admin: all")
    create.add_argument("--description", default="", help="a note for `keys list`")
    keys_sub.add_parser("list", help="list the keys (never the keys themselves)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
