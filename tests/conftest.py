"""The session's one real embedded Triton, shared by the end-to-end tests (tests/e2e/conftest.py builds Sightline
servers over it) and the fuzz tests. Helpers that are not fixtures are in tests/helpers.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from service.triton.embedded import EmbeddedTriton
from tests.helpers import ROOT, TritonFixture, write_slow_model

__all__ = ["TritonFixture", "triton"]


@pytest.fixture(scope="session")
async def triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonFixture]:
    """A real embedded Triton over the bundled repository (plus test models), started once for the session."""
    work = tmp_path_factory.mktemp("triton")
    models = work / "models"
    models.mkdir()
    write_slow_model(models)
    embedded = EmbeddedTriton([ROOT / "model_repository", models], work)
    url = await embedded.start(timeout_s=300)
    assert embedded.ports is not None
    yield TritonFixture(url, models, f"http://127.0.0.1:{embedded.ports.metrics}/metrics")
    await embedded.stop()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another server listens on, and still answers on when the test is over."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        yield port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
