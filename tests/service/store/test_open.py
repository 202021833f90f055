"""Opening the database a ``SIGHTLINE_DATABASE_URL`` names: a URL of no database the service speaks, or a PostgreSQL
server that gives no connection, is one ``ConfigurationError`` saying why, with no password in it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.errors import ConfigurationError
from service.store.db import PostgresDatabase, open_database


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://relative.db", "redis"])
async def test_a_url_of_another_database_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"is no database the service reads: give nothing") as refused:
        await open_database(url, tmp_path)
    assert str(refused.value).startswith(f"SIGHTLINE_DATABASE_URL ({url.partition(':')[0]}:...) ")


async def test_a_postgresql_server_that_is_not_there_is_named_with_its_reason() -> None:
    with socket.socket() as probe:  # a loopback port with no server behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = PostgresDatabase(f"postgresql://sightline:s3cret-pw@127.0.0.1:{port}/registry")
    with pytest.raises(ConfigurationError) as refused:
        await database.open(timeout_s=1)
    message = str(refused.value)
    assert message.startswith("SIGHTLINE_DATABASE_URL: PostgreSQL gave no connection within 1 s (")
    assert "Connection refused" in message
    assert "s3cret-pw" not in message
