"""The ``sightline`` command: serve, list the public models, recognise an image, manage API keys.

One parser over two modules: ``server`` (serve, keys: the service and its database) and ``client`` (models,
recognize, stream, health: calls to a running server).
"""

from __future__ import annotations

import argparse
import sys

from service.cli import client, server
from service.errors import ConfigurationError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sightline", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    server.add_serve(sub)
    client.add_commands(sub)
    server.add_keys(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status. A setting the command cannot run with (``ConfigurationError``) is one
    message on stderr and status 2, as a bad flag is, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        print(f"sightline {args.command}: {exc}", file=sys.stderr)
        return 2
    return code
