"""The SQLite driver: one connection per process, WAL, ``BEGIN IMMEDIATE`` for writes.

Statements run synchronously on the event loop's thread: a SQLite statement takes microseconds,
less than a hop to a worker thread would (see docs/adr/0002-sqlite-on-the-loop.md). An asyncio
lock keeps transactions of concurrent requests from interleaving on the shared connection; other
processes on the same file are serialised by SQLite's own lock and ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from bitbybit.errors import (
    ConfigurationError,
    IntegrityViolation,
    StorageError,
    StorageUnavailable,
)
from bitbybit.models import ApiKey, Job
from bitbybit.store import migrations
from bitbybit.store.sql import Row, SqlTx

BUSY_TIMEOUT_MS = 5000


@lru_cache(maxsize=1024)
def _positional(sql: str) -> str:
    """``$1`` → ``?1``: SQLite's numbered parameters."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


def database_path(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    if not url.startswith("sqlite:///"):
        raise ConfigurationError(f"not a SQLite URL: {url!r} (expected sqlite:///path)")
    path = url.removeprefix("sqlite:///")
    if not path:
        raise ConfigurationError("the SQLite URL names no file")
    return path


_UNIQUENESS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def _translate(error: sqlite3.Error) -> StorageError:
    if isinstance(error, sqlite3.IntegrityError) and error.sqlite_errorname in _UNIQUENESS:
        return IntegrityViolation(str(error))
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        return StorageUnavailable(f"the database is busy: {error}")
    return StorageError(f"SQLite failed: {error}")


class _Driver:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        try:
            row: Row | None = self.connection.execute(_positional(sql), args).fetchone()
        except sqlite3.Error as error:
            raise _translate(error) from error
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            rows: list[Row] = self.connection.execute(_positional(sql), args).fetchall()
        except sqlite3.Error as error:
            raise _translate(error) from error
        return rows

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            return self.connection.execute(_positional(sql), args).rowcount
        except sqlite3.Error as error:
            raise _translate(error) from error

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.connection.executemany(_positional(sql), rows)
        except sqlite3.Error as error:
            raise _translate(error) from error

    def any_of_json_array(self, column: str, placeholder: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}) AS item"
            f" WHERE item.value IN (SELECT value FROM json_each({placeholder})))"
        )

    def text_array(self, values: Sequence[str]) -> Any:
        return orjson.dumps(list(values)).decode()


class SQLiteTx(SqlTx):
    async def _lease(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[str]:
        # Writers are serialised by BEGIN IMMEDIATE, so plain reads then an update are safe.
        ids: list[str] = []
        for endpoint_id, count in slots.items():
            rows = await self.db.fetch(
                "SELECT delivery_id FROM delivery_queue WHERE endpoint_id = $1 AND due_at <= $2"
                " AND (lease_expires_at IS NULL OR lease_expires_at < $2)"
                " ORDER BY due_at LIMIT $3",
                endpoint_id,
                now,
                count,
            )
            ids.extend(row["delivery_id"] for row in rows)
        if ids:
            await self.db.executemany(
                "UPDATE delivery_queue SET lease_owner = $1, lease_expires_at = $2"
                " WHERE delivery_id = $3",
                [(owner, lease_until, delivery_id) for delivery_id in ids],
            )
        return ids


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.path = database_path(url)
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self.on_deliveries: list[Callable[[frozenset[str] | None], None]] = []
        """Called after a commit that queued deliveries (wakes in-process workers)."""

    async def open(self) -> None:
        if self._connection is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=512
            )
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: {error}") from error
        self._connection = connection

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StorageError("the store is not open")
        return self._connection

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[SqlTx]:
        async with self._lock:
            connection = self.connection
            try:
                connection.execute(begin)
            except sqlite3.Error as error:
                raise _translate(error) from error
            tx = SQLiteTx(_Driver(connection))
            try:
                yield tx
            except BaseException:
                connection.rollback()
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                connection.rollback()
                raise _translate(error) from error
        if tx.deliveries_created:
            for wake in self.on_deliveries:
                wake(tx.woken)

    def write(self, *, durable: bool = True) -> Any:
        # WAL with synchronous=NORMAL already commits without waiting for the disk.
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._transaction("BEGIN DEFERRED")

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        async with self.write() as tx:
            jobs: list[Job] = await tx.claim_due(owner, now, lease_until, slots)
        return jobs

    async def count_key_request(
        self, key_hash: str, window_start: int
    ) -> tuple[ApiKey, int] | None:
        async with self.write() as tx:
            key = await tx.find_api_key(key_hash)
            return None if key is None else (key, await tx.count_request(key.id, window_start))

    async def schema_version(self) -> int:
        row = self.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if row is None:
            return 0
        version = self.connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(version[0] or 0)

    async def migrate(self, target: int | None = None) -> list[str]:
        async with self._lock:
            connection = self.connection
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            applied = []
            for migration in migrations.load(self.dialect):
                if target is not None and migration.version > target:
                    break
                connection.execute("BEGIN IMMEDIATE")
                try:
                    done = connection.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                    ).fetchone()
                    if done is None:
                        for statement in _statements(migration.sql):
                            connection.execute(statement)
                        connection.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
                            (migration.version, migration.name),
                        )
                        applied.append(f"{migration.version:04d}_{migration.name}")
                    connection.execute("COMMIT")
                except BaseException:
                    connection.rollback()
                    raise
            return applied

    async def describe_schema(self) -> dict[str, list[str]]:
        described: dict[str, list[str]] = {}
        tables = self.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        ).fetchall()
        for (table,) in tables:
            columns = self.connection.execute(f"PRAGMA table_info({table})").fetchall()
            described[table] = [
                f"{c['name']} {c['type']}{' NOT NULL' if c['notnull'] else ''}" for c in columns
            ]
        indexes = self.connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " ORDER BY name"
        ).fetchall()
        described["indexes"] = [" ".join(row["sql"].split()) for row in indexes]
        return described


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons inside literals)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
