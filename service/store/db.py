"""Database drivers behind one small protocol: a transaction that runs SQL with ``?`` placeholders.

- SQLite (the default, one replica): the standard ``sqlite3`` module on one dedicated worker thread, so the event
  loop never waits on the disk; transactions are serialised in the process and ``BEGIN IMMEDIATE`` serialises them
  between processes (WAL journal, a busy timeout).
- PostgreSQL (several replicas): psycopg 3's asyncio driver with a connection pool.

The queries of ``service.store`` are written once, in the SQL both dialects share; the PostgreSQL driver turns
``?`` into ``%s``. Rows come back as dicts; JSON and timestamps come back as text from SQLite and as Python
values from PostgreSQL (the store normalises both).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from service.errors import ConfigurationError

__all__ = ["Database", "PostgresDatabase", "Row", "SqliteDatabase", "Transaction", "open_database"]

log = logging.getLogger(__name__)

Row = dict[str, Any]


class Transaction(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Database(Protocol):
    dialect: str
    """``sqlite`` or ``postgres``: names the folder of migrations to apply."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        ...

    async def lock_for_migrations(self, tx: Transaction) -> None:
        """Keep other processes from migrating at the same time (until ``tx`` ends)."""
        ...

    async def close(self) -> None: ...


class _SqliteTransaction:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        count: int = await self._db._call(_execute, sql, tuple(params))
        return count

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._db._call(_fetch, sql, tuple(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self._db._call(_fetch, sql, tuple(params))
        return rows


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Row]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SqliteDatabase:
    """SQLite on one worker thread; one transaction at a time in this process."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn

        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            await self._call(_execute, "BEGIN IMMEDIATE", ())
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await asyncio.shield(self._call(_execute, "ROLLBACK", ()))
                raise
            await asyncio.shield(self._call(_execute, "COMMIT", ()))

    async def lock_for_migrations(self, tx: Transaction) -> None:
        """``BEGIN IMMEDIATE`` already holds SQLite's write lock."""

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(_pg(sql), tuple(params) or None)
        return int(cursor.rowcount)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._conn.execute(_pg(sql), tuple(params) or None)
        row: Row | None = await cursor.fetchone()
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._conn.execute(_pg(sql), tuple(params) or None)
        rows: list[Row] = await cursor.fetchall()
        return rows


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresDatabase:
    """PostgreSQL through a pool of psycopg 3 asyncio connections."""

    dialect = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 8) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self._dsn = dsn
        self._pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=pool_size, open=False, kwargs={"row_factory": dict_row}
        )

    async def open(self, timeout_s: float = 30.0) -> None:
        """Open the pool, waiting up to ``timeout_s`` for its first connection.

        Raises:
            ConfigurationError: no connection in time; the message gives PostgreSQL's reason (never the DSN,
                which may hold a password).
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            await self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            await self._pool.close()
            try:  # the pool keeps its connection errors to its log: one attempt of our own says why
                await (await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=5)).close()
                reason = "it accepts connections now: it was starting, or the pool is too large for it"
            except psycopg.Error as exc:
                text = str(exc).strip()
                reason = text.splitlines()[0] if text else type(exc).__name__
            raise ConfigurationError(
                f"SIGHTLINE_DATABASE_URL: PostgreSQL gave no connection within {timeout_s:.0f} s ({reason}); check "
                "its address, database name and credentials, and that it is up"
            ) from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.connection() as conn, conn.transaction():
            yield _PostgresTransaction(conn)

    async def lock_for_migrations(self, tx: Transaction) -> None:
        await tx.fetchone("SELECT pg_advisory_xact_lock(7315460019)")

    async def close(self) -> None:
        await self._pool.close()


async def open_database(url: str, data_dir: Path, *, pool_size: int = 8) -> Database:
    """``""`` → SQLite in ``data_dir``; ``sqlite:///path``; ``postgresql://...`` (or ``postgres://``)."""
    if url.startswith(("postgresql://", "postgres://")) or (url and "=" in url and "://" not in url):
        pg = PostgresDatabase(url, pool_size=pool_size)
        await pg.open()
        return pg
    if url and not url.startswith("sqlite:///"):
        # Only the scheme is repeated: the rest may hold a password.
        raise ConfigurationError(
            f"SIGHTLINE_DATABASE_URL ({url.partition(':')[0]}:...) is no database the service reads: give nothing "
            "(SQLite in the data folder), sqlite:///PATH (three slashes, then the path) or a postgresql:// URL"
        )
    path = Path(url.removeprefix("sqlite:///")) if url else data_dir / "sightline.db"
    lite = SqliteDatabase(path)
    await lite.open()
    log.info("registry database: SQLite at %s", path)
    return lite
