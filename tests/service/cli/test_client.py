"""The ``sightline`` command's two sides: the client commands import nothing of the server, the parser offers every
command of both with its flags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.cli import build_parser


def test_the_client_commands_import_nothing_of_the_server() -> None:
    code = (
        "import sys, service.cli.client\n"
        "server = ('service.server', 'service.registry', 'service.store', 'service.triton', 'service.api',"
        " 'service.recognition', 'service.streams', 'service.settings')\n"
        "print(sorted(m for m in sys.modules if m.startswith(server)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_command_is_offered_in_its_place() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == ["serve", "models", "recognize", "stream", "health", "keys"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--port", "0", "--demo-spec", "shapes-v1"], {"port": 0, "demo_spec": "shapes-v1", "host": None}),
        (["models", "--server", "h:1", "--json"], {"server": "h:1", "json": True}),
        (
            ["recognize", "a.png", "--spec", "colors-v1", "--max-predictions", "3", "--show-discarded"],
            {"spec": "colors-v1", "max_predictions": 3, "show_discarded": True, "draw": None},
        ),
        (
            ["stream", "v.mp4", "--spec", "s", "--drop-policy", "DROP_OLDEST", "--no-tracking"],
            {"drop_policy": "DROP_OLDEST", "no_tracking": True, "max_in_flight": 4, "ordering": "ORDERED"},
        ),
        (["health", "--service", "model/7"], {"service": "model/7", "server": "127.0.0.1:50051"}),
        (["keys", "create", "--org", "acme", "--kind", "read"], {"keys_command": "create", "org": "acme"}),
        (["keys", "revoke", "k1"], {"keys_command": "revoke", "key_id": "k1"}),
    ],
)
def test_flags_parse_as_before(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected
    assert callable(args["func"])


def test_a_command_is_required() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
