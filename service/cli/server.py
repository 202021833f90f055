"""The ``sightline`` command's server side: run the service, manage API keys in its database.

``serve --demo`` recognises an image once the service is ready, as a client would (``service.cli.client``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from service.cli.client import recognize_once, to_json

__all__ = ["add_keys", "add_serve"]


def cmd_serve(args: argparse.Namespace) -> int:
    from service.logs import configure_logging
    from service.server import serve
    from service.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    if args.rest_port is not None:
        overrides["rest_port"] = args.rest_port
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, json_lines=settings.log_json)

    async def main() -> None:
        ready = asyncio.Event()
        ports: list[int] = []
        started = time.monotonic()

        def on_ready(port: int) -> None:
            ports.append(port)
            ready.set()

        server = asyncio.create_task(serve(settings, on_ready=on_ready))
        ready_wait = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
            if ready.is_set() and args.demo is not None:
                await _demo(
                    _local_address(settings.host, ports[0]), args.demo, args.demo_spec, time.monotonic() - started
                )
        except BaseException:
            # Stopped here, in order: raised on with the server still running, asyncio.run would cancel every task
            # at once, grpc's own among them, and grpcio dies with SIGSEGV in that teardown.
            server.cancel()
            with contextlib.suppress(BaseException):
                await server
            raise
        finally:
            ready_wait.cancel()
        await server

    from service.errors import SightlineError

    try:
        asyncio.run(main())
    except SightlineError as exc:
        # A start that failed for a known cause (the embedded Triton exited, or was not ready in time): its
        # message says why and where to look; a traceback would only bury it.
        print(f"sightline serve: {exc}", file=sys.stderr)
        return 1
    finally:
        # The drain is over and asyncio has put the default handlers back: a repeated SIGTERM (a supervisor
        # insisting) must not turn a clean exit into death by signal in the last milliseconds of teardown.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


def _local_address(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to ``host:port``: loopback for every address."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return f"127.0.0.1:{port}"
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def _demo(address: str, image: Path, spec: str, after_s: float) -> None:
    """Recognise ``image`` once on the ready server, as a client would, and print the result; a failure (a
    missing image, an unknown specification) is said on stderr and the server goes on."""
    import grpc

    try:
        result = await recognize_once(address, spec, image, show_discarded=False, max_predictions=5)
    except grpc.aio.AioRpcError as exc:
        print(f"\ndemo failed: {exc.code().name}: {exc.details()} (the server goes on)", file=sys.stderr, flush=True)
        return
    except OSError as exc:
        print(f"\ndemo failed: cannot read {image}: {exc.strerror or exc} (the server goes on)", file=sys.stderr)
        return
    print(f"\ndemo at {after_s:.1f} s: {image} on {spec}:", flush=True)
    print(json.dumps(to_json(result), indent=2), flush=True)
    print(f"\nTry: sightline recognize --spec {spec} {image} --json   (Ctrl-C stops the server)", flush=True)


async def _keys(args: argparse.Namespace) -> int:
    from service.auth import KeyKind, create_key, revoke_key
    from service.errors import SightlineError
    from service.settings import load_settings
    from service.store import open_store

    settings = load_settings()
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


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``serve`` command."""
    serve = sub.add_parser("serve", help="run the gRPC service (with the embedded Triton unless SIGHTLINE_TRITON_URL)")
    serve.add_argument("--port", type=int, default=None, help="gRPC port (default: SIGHTLINE_PORT or 50051)")
    serve.add_argument("--host", default=None, help="bind address (default: SIGHTLINE_HOST or 127.0.0.1)")
    serve.add_argument(
        "--rest-port",
        type=int,
        default=None,
        help="also serve the v0.7 REST API on this port (default: SIGHTLINE_REST_PORT, or off)",
    )
    serve.add_argument("--demo", type=Path, default=None, help="recognise this image once the service is ready")
    serve.add_argument("--demo-spec", default="colors-v1", help="the specification for --demo")
    serve.set_defaults(func=cmd_serve)


def add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``keys`` command and its subcommands."""
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
