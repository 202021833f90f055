"""Persistence of the registry (networks, specifications, versions), the tasks and the API keys.

``Store`` holds every query the service makes, written once in the SQL that SQLite and PostgreSQL share, over a
``Database`` driver (``service.store.db``): one module of queries per aggregate (``networks``, ``specs`` with
their versions, ``tasks``, ``keys``), the records they return in ``records``, the schema in ``migrations``.
Schema changes are numbered migration files per dialect
(``migrations/<dialect>/NNNN_name.sql``), applied in order at start-up and recorded in ``schema_migrations``.

Every query on user resources takes the caller's organisation: a row of another organisation is not found.
"""

from __future__ import annotations

from pathlib import Path

from service.store.db import Database, open_database
from service.store.keys import KeyQueries
from service.store.migrations import Migrations
from service.store.networks import NetworkQueries
from service.store.records import ApiKeyRecord, NetworkRecord, SpecRecord, TaskRecord, VersionRecord, now
from service.store.specs import SpecQueries
from service.store.tasks import TaskQueries

__all__ = [
    "ApiKeyRecord",
    "Database",
    "NetworkRecord",
    "SpecRecord",
    "Store",
    "TaskRecord",
    "VersionRecord",
    "now",
    "open_store",
]


class Store(Migrations, NetworkQueries, SpecQueries, TaskQueries, KeyQueries):
    """The service's queries over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def close(self) -> None:
        await self.db.close()


async def open_store(url: str, data_dir: Path, *, pool_size: int = 8) -> Store:
    """Open the database named by ``url`` (see ``open_database``) and bring its schema up to date."""
    store = Store(await open_database(url, data_dir, pool_size=pool_size))
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store
