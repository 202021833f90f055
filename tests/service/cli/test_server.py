"""The ``sightline`` command's server side (``service.cli.server``) without a server: ``serve``'s flags become the
settings it hands to ``service.server.serve`` (the environment otherwise), ``--demo`` asks the ready server once;
``keys`` creates, lists and revokes keys in the database the settings name (a SQLite file in a temporary folder)."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import service.server
from service.cli import main
from service.cli import server as cli_server
from service.errors import ConfigurationError, UnavailableError
from service.settings import Settings

ENV = ("SIGHTLINE_PORT", "SIGHTLINE_HOST", "SIGHTLINE_REST_PORT", "SIGHTLINE_DATABASE_URL", "SIGHTLINE_API_KEY")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIGHTLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("service.logs.configure_logging", lambda level, *, json_lines=False: None)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)  # serve leaves SIGTERM ignored on its way out


class FakeServe:
    """Stands for ``service.server.serve``: records its settings, then is ready on ``port`` (or fails) and returns,
    or, with ``until_cancelled``, serves until its task is cancelled (which it records)."""

    def __init__(
        self,
        *,
        ready: bool = True,
        error: Exception | None = None,
        port: int | None = None,
        until_cancelled: bool = False,
    ) -> None:
        self.settings: list[Settings] = []
        self.ready = ready
        self.error = error
        self.port = port
        self.until_cancelled = until_cancelled
        self.cancelled = False
        self.cancelled_by_caller = False
        """Cancelled while the command's own task still ran, not by asyncio.run's teardown after it ended."""

    async def __call__(self, settings: Settings, *, on_ready: Callable[[int], None] | None = None) -> None:
        self.settings.append(settings)
        callers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if self.error is not None:
            raise self.error
        if self.ready and on_ready is not None:
            on_ready(settings.port if self.port is None else self.port)
        try:
            await asyncio.sleep(3600 if self.until_cancelled else 0)
        except asyncio.CancelledError:
            self.cancelled = True
            self.cancelled_by_caller = any(not task.done() for task in callers)
            raise


def serve_with(monkeypatch: pytest.MonkeyPatch, fake: FakeServe) -> FakeServe:
    monkeypatch.setattr(service.server, "serve", fake)
    return fake


def test_serve_hands_the_flags_to_the_server_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve_with(monkeypatch, FakeServe())
    assert main(["serve", "--port", "0", "--host", "0.0.0.0", "--rest-port", "8080"]) == 0
    [settings] = fake.settings
    assert (settings.port, settings.host, settings.rest_port) == (0, "0.0.0.0", 8080)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # a late SIGTERM cannot kill a clean exit


def test_serve_without_flags_keeps_the_environments_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve_with(monkeypatch, FakeServe())
    monkeypatch.setenv("SIGHTLINE_PORT", "6001")
    monkeypatch.setenv("SIGHTLINE_HOST", "10.0.0.1")
    assert main(["serve"]) == 0
    [settings] = fake.settings
    assert (settings.port, settings.host, settings.rest_port) == (6001, "10.0.0.1", Settings().rest_port)
    # A flag wins over the environment.
    assert main(["serve", "--port", "7000"]) == 0
    assert (fake.settings[1].port, fake.settings[1].host) == (7000, "10.0.0.1")


@pytest.mark.parametrize("argv", [["serve", "--port", "http"], ["serve", "--rest-port", "1.5"]])
def test_a_port_must_be_a_number(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_a_port_out_of_range_is_refused_by_the_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve_with(monkeypatch, FakeServe())
    assert main(["serve", "--port", "70000"]) == 2
    assert fake.settings == []
    err = capsys.readouterr().err
    assert err == "sightline serve: --port=70000: Input should be less than or equal to 65535\n"


def test_a_bad_variable_is_one_message_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve_with(monkeypatch, FakeServe())
    monkeypatch.setenv("SIGHTLINE_TRITON_CPU_THREADS", "0")
    assert main(["serve"]) == 2
    assert fake.settings == []
    assert capsys.readouterr().err.startswith("sightline serve: SIGHTLINE_TRITON_CPU_THREADS='0': ")
    # The key commands read the same settings.
    assert main(["keys", "list"]) == 2
    assert capsys.readouterr().err.startswith("sightline keys: SIGHTLINE_TRITON_CPU_THREADS='0': ")


def test_a_setting_the_server_refuses_at_start_is_one_message_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_with(monkeypatch, FakeServe(error=ConfigurationError("TLS needs both SIGHTLINE_TLS_CERT_FILE and ...")))
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == "sightline serve: TLS needs both SIGHTLINE_TLS_CERT_FILE and ...\n"


def test_the_demo_asks_the_ready_server_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    serve_with(monkeypatch, FakeServe())
    asked: list[tuple[Any, ...]] = []

    async def recognize_once(address: str, spec: str, path: Path, **options: Any) -> str:
        asked.append((address, spec, path, options))
        return "result"

    monkeypatch.setattr(cli_server, "recognize_once", recognize_once)
    monkeypatch.setattr(cli_server, "to_json", lambda result: {"answer": result})
    image = tmp_path / "red.png"
    assert main(["serve", "--port", "6100", "--demo", str(image), "--demo-spec", "shapes-v1"]) == 0
    assert asked == [("127.0.0.1:6100", "shapes-v1", image, {"show_discarded": False, "max_predictions": 5})]
    out = capsys.readouterr().out
    assert re.search(rf"demo at [0-9.]+ s: {re.escape(str(image))} on shapes-v1:", out)
    assert '"answer": "result"' in out
    assert "sightline recognize --spec shapes-v1" in out


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1:43210"),
        ("0.0.0.0", "127.0.0.1:43210"),
        ("[::]", "127.0.0.1:43210"),
        ("::1", "[::1]:43210"),
        ("[::1]", "[::1]:43210"),
        ("localhost", "localhost:43210"),
    ],
)
def test_the_demo_asks_the_port_the_server_picked_where_it_listens(
    monkeypatch: pytest.MonkeyPatch, host: str, address: str
) -> None:
    serve_with(monkeypatch, FakeServe(port=43210))
    asked: list[str] = []

    async def recognize_once(address: str, *args: Any, **kwargs: Any) -> str:
        asked.append(address)
        return "result"

    monkeypatch.setattr(cli_server, "recognize_once", recognize_once)
    monkeypatch.setattr(cli_server, "to_json", lambda result: {})
    assert main(["serve", "--port", "0", "--host", host, "--demo", "a.png"]) == 0
    assert asked == [address]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            FileNotFoundError(2, "No such file or directory"),
            "demo failed: cannot read a.png: No such file or directory",
        ),
        (
            grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no spec x"),
            "demo failed: NOT_FOUND: no spec x",
        ),
    ],
)
def test_a_demo_that_fails_is_said_and_the_server_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, said: str
) -> None:
    fake = serve_with(monkeypatch, FakeServe())

    async def recognize_once(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(cli_server, "recognize_once", recognize_once)
    assert main(["serve", "--demo", "a.png"]) == 0
    assert said in capsys.readouterr().err
    assert not fake.cancelled


def test_a_demo_that_breaks_stops_the_server_before_it_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # Raised on past a running server, asyncio.run would cancel every task at once and grpcio would crash.
    fake = serve_with(monkeypatch, FakeServe(until_cancelled=True))

    async def recognize_once(*args: Any, **kwargs: Any) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(cli_server, "recognize_once", recognize_once)
    with pytest.raises(TypeError, match="a bug"):
        main(["serve", "--demo", "a.png"])
    assert fake.cancelled_by_caller, "the server was left for asyncio.run's teardown"


def test_no_demo_when_the_server_ends_before_it_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_with(monkeypatch, FakeServe(ready=False))
    asked: list[str] = []

    async def recognize_once(address: str, *args: Any, **kwargs: Any) -> None:
        asked.append(address)

    monkeypatch.setattr(cli_server, "recognize_once", recognize_once)
    assert main(["serve", "--demo", "a.png"]) == 0
    assert asked == []


def test_a_server_that_fails_to_start_fails_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_with(monkeypatch, FakeServe(error=RuntimeError("Triton did not start")))
    with pytest.raises(RuntimeError, match="Triton did not start"):
        main(["serve"])  # a fault of the service's own keeps its traceback


def test_a_start_that_fails_for_a_known_cause_is_its_message_and_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_with(
        monkeypatch,
        FakeServe(
            error=UnavailableError(
                "the embedded Triton was killed by SIGKILL (exit code 137) while it started; see t.log"
            )
        ),
    )
    assert main(["serve"]) == 1
    assert (
        capsys.readouterr().err
        == "sightline serve: the embedded Triton was killed by SIGKILL (exit code 137) while it started; see t.log\n"
    )


# ---------------------------------------------------------------------------------------------- keys


def test_keys_are_created_listed_and_revoked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--org", "acme", "--kind", "read", "--description", "ci runner"]) == 0
    created = capsys.readouterr()
    key = created.out.strip()  # the key alone on stdout, for a script to capture
    match = re.fullmatch(r"sl_([0-9a-f]{12})_\S+", key)
    assert match is not None
    key_id = match.group(1)
    assert f"created read key {key_id} for organisation acme" in created.err
    assert "shown only now" in created.err

    assert main(["keys", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[:3] == [key_id, "acme", "read"]
    assert "active" in line
    assert line.endswith("ci runner")
    assert key not in line  # the key itself is never shown again

    assert main(["keys", "revoke", key_id]) == 0
    assert f"revoked key {key_id}" in capsys.readouterr().err
    assert main(["keys", "list"]) == 0
    assert re.search(r"revoked \d{4}-\d{2}-\d{2} \d{2}:\d{2}", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["keys", "revoke", "000000000000"], "error: API key"),
        (["keys", "create", "--org", "bad org", "--kind", "admin"], "error: "),
    ],
)
def test_a_refused_key_command_says_why_and_exits_1(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert words in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [["keys"], ["keys", "create", "--org", "acme"], ["keys", "create", "--org", "acme", "--kind", "owner"]],
)
def test_keys_needs_its_subcommand_and_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_keys_use_the_database_the_settings_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "elsewhere" / "keys.db"
    database.parent.mkdir()
    monkeypatch.setenv("SIGHTLINE_DATABASE_URL", f"sqlite:///{database}")
    assert main(["keys", "create", "--org", "acme", "--kind", "admin"]) == 0
    assert database.is_file()
    assert not (tmp_path / "data" / "sightline.db").exists()
