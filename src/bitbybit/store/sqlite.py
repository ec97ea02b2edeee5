"""The SQLite driver: one connection per process, WAL, ``BEGIN IMMEDIATE`` for writes, and
the writes of concurrent requests committed together (``_Group``).

Statements run synchronously on the event loop's thread: a SQLite statement takes microseconds,
less than a hop to a worker thread would (see docs/adr/0002-sqlite-on-the-loop.md). An asyncio
lock keeps transactions of concurrent requests from interleaving on the shared connection; other
processes on the same file are serialised by SQLite's write lock, which a writer waits for off
the loop: ``BEGIN IMMEDIATE`` is tried with a ``busy_timeout`` of a few milliseconds and, while
another process holds the lock, tried again after short sleeps, up to the store's ``timeout``
(docs/adr/0006-sqlite-lock-waits-off-the-loop.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
import structlog

from bitbybit.config import DEFAULT_DATABASE_TIMEOUT
from bitbybit.errors import (
    ConfigurationError,
    IntegrityViolation,
    StorageError,
    StorageUnavailable,
)
from bitbybit.models import ApiKey, Job, QueueStats
from bitbybit.store import migrations
from bitbybit.store.base import Dropped
from bitbybit.store.sql import Row, SqlTx
from bitbybit.store.sql.queue import TARGET_COLUMN, job_from_row

BUSY_TIMEOUT_MS = 2
"""SQLite's own wait for a lock, asleep on the loop's thread (so every request waits it out): only
the brief contention of another process's short transactions. Longer waits for the write lock
happen in ``SQLiteStore._begin_write``, between tries, with the loop free."""
FIRST_PAUSE = 0.002
LAST_PAUSE = 0.05
"""Seconds between tries of ``BEGIN IMMEDIATE`` while another process holds the write lock:
doubling from the first to the last, so a short hold costs little and a long one few tries."""

GROUP_LIMIT = 64
"""Writes one commit takes at most (``_Group``): past it the group commits at once, so that a
burst neither holds SQLite's write lock, which other processes wait for, nor keeps the first
write's answer waiting, for long."""

KNOWN_HASHES = 10_000
"""API key hashes ``SQLiteStore.count_key_request`` remembers as having matched a key."""

log = structlog.get_logger("bitbybit.store")

T = TypeVar("T")


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


def _create_private(path: Path) -> None:
    """Create the database file readable and writable by its owner alone (0600, whatever the
    umask) before SQLite opens it: it holds customer data, and SQLite gives the ``-wal`` and
    ``-shm`` files it makes beside it the database file's mode. An existing file keeps its mode
    (the operator may have chosen it); one that others may read or write gets a warning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "database_file_not_private",
                path=str(path),
                mode=f"{mode:04o}",
                hint=f"chmod 600 {path} {path}-wal {path}-shm",
            )
        return
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


_UNIQUENESS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNAVAILABLE = _BUSY | {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
"""Result codes (primary, without the extended part) that mean the file cannot be used right now:
locked, the disk full or failing. A retry may succeed, so they are 503, never 500."""


def _code(error: sqlite3.Error) -> int:
    return int(getattr(error, "sqlite_errorcode", -1)) & 0xFF


def _busy(error: sqlite3.Error) -> bool:
    return _code(error) in _BUSY


def _translate(error: sqlite3.Error) -> StorageError:
    if isinstance(error, sqlite3.IntegrityError) and error.sqlite_errorname in _UNIQUENESS:
        return IntegrityViolation(str(error))
    if _busy(error):
        return StorageUnavailable(f"the database is busy: {error}")
    if _code(error) in _UNAVAILABLE:
        return StorageUnavailable(f"the database cannot be used: {error}")
    return StorageError(f"SQLite failed: {error}")


class _Translated:
    """``with _translated:``: a SQLite error leaving the block is raised as ``_translate`` makes
    it, the original as its cause. The one place the driver's statements catch SQLite's errors
    (a class, not ``@contextmanager``: it costs a fraction of a generator's set-up per statement).
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, sqlite3.Error):
            raise _translate(error) from error


_translated = _Translated()


class _Driver:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _translated:
            row: Row | None = self.connection.execute(_positional(sql), args).fetchone()
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translated:
            rows: list[Row] = self.connection.execute(_positional(sql), args).fetchall()
        return rows

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated:
            return self.connection.execute(_positional(sql), args).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _translated:
            self.connection.executemany(_positional(sql), rows)

    def any_of_json_array(self, column: str, placeholder: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}) AS item"
            f" WHERE item.value IN (SELECT value FROM json_each({placeholder})))"
        )

    def text_array(self, values: Sequence[str]) -> Any:
        return orjson.dumps(list(values)).decode()

    def in_texts(self, column: str, placeholder: str) -> str:
        return f"{column} IN (SELECT value FROM json_each({placeholder}))"

    key_share = ""  # writers are serialised: nothing can delete a row this transaction read
    for_update = ""  # nor change one

    async def serialise(self, keys: Sequence[str]) -> None:
        return None  # writers take turns already


class SQLiteTx(SqlTx):
    queue_key = "target, delivery_id"  # the queue's primary key (migration 0012)

    # A target's due jobs in due order, each with its content from its own storage (ADR 0008):
    # one pass over the target's range of the due index, the queue row first, then the rest by
    # key (the left joins fix that order, whatever the planner knows of the tables' sizes).
    _CLAIM = (
        "SELECT q.delivery_id AS id, q.kind, q.target, q.due_at,"
        " COALESCE(d.attempts, j.attempts) AS attempts, COALESCE(ev.payload, j.payload) AS payload,"
        " d.event_id, ev.type, e.url, e.secret, e.next_secret, e.next_secret_at, e.multi_signature"
        " FROM delivery_queue q"
        " LEFT JOIN deliveries d ON q.kind = 'webhook' AND d.endpoint_id = q.target"
        " AND d.id = q.delivery_id"
        " LEFT JOIN events ev ON ev.id = d.event_id"
        " LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " LEFT JOIN jobs j ON q.kind <> 'webhook' AND j.id = q.delivery_id"
        " WHERE q.target = $1 AND q.due_at <= $2"
        " AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $2)"
        " AND (d.id IS NOT NULL OR j.id IS NOT NULL) ORDER BY q.due_at LIMIT $3"
    )

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        # Writers are serialised by BEGIN IMMEDIATE, so plain reads then an update are safe.
        rows: list[Row] = []
        for target, count in slots.items():
            rows += await self.db.fetch(self._CLAIM, target, now, count)
        await self.db.executemany(
            "UPDATE delivery_queue SET lease_owner = $1, lease_expires_at = $2"
            " WHERE target = $3 AND delivery_id = $4",
            [(owner, lease_until, row["target"], row["id"]) for row in rows],
        )
        rows.sort(key=lambda row: row["due_at"])
        return [job_from_row(row) for row in rows]

    async def _queued(self, table: str, ids: list[str]) -> set[str]:
        # The queue is keyed by target first: each job is found through its own row.
        if not ids:
            return set()
        rows = await self.db.fetch(
            f"SELECT t.id FROM {table} t JOIN delivery_queue q"
            f" ON q.target = t.{TARGET_COLUMN[table]} AND q.delivery_id = t.id"
            f" WHERE {self.db.in_texts('t.id', '$1')}",
            self.db.text_array(ids),
        )
        return {row["id"] for row in rows}


class _Read:
    """``async with store.read()``: ``BEGIN DEFERRED`` on the connection once no other
    transaction holds it, then ``COMMIT`` (or roll back when the block raised). A class rather
    than ``@asynccontextmanager``: it costs a fraction of a generator's set-up, and every
    request runs one or two transactions."""

    __slots__ = ("store",)

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def __aenter__(self) -> SQLiteTx:
        store = self.store
        await store._begin_read()
        return SQLiteTx(_Driver(store.connection))

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self.store.connection
        try:
            if error is not None:
                connection.rollback()
            else:
                connection.execute("COMMIT")
        except sqlite3.Error as failure:
            connection.rollback()
            raise _translate(failure) from failure
        finally:
            self.store._lock.release()


class _Write:
    """``async with store.write()``: the block runs in a savepoint of the process's open write
    transaction (one is begun when none is open); on a clean exit it waits for that transaction
    to commit, so a write that returned is on disk as any other commit is. A block that raised
    is rolled back to its savepoint alone and does not wait. See ``_Group``."""

    __slots__ = ("store", "tx")

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def __aenter__(self) -> SQLiteTx:
        store = self.store
        await store._join()
        self.tx = SQLiteTx(_Driver(store.connection))
        return self.tx

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        committed = self.store._leave(self.tx, failed=error is not None)
        if committed is not None:
            await committed


class _Group:
    """Write transactions of this process committed together (group commit).

    The first write begins a transaction (``BEGIN IMMEDIATE``) and holds the connection; each
    write, that one included, runs its block in a savepoint of it (``SAVEPOINT member``), one
    after another as the store's turn passes. Writes that wait for their turn while the group is
    open join it; once none holds or awaits the turn, the group commits on the loop's next pass
    (the requests in flight reach their writes meanwhile and join it too), or at once when
    ``GROUP_LIMIT`` writes have joined. Each write's ``async with`` ends when the commit has: a
    write that returned is committed, as before. A commit costs SQLite a write of every page the
    transaction changed and, every so many pages, a checkpoint; shared by the group's writes,
    they are paid once for many (docs/adr/0010-sqlite-group-commit.md)."""

    __slots__ = ("due", "members", "scheduled", "waiters", "writing")

    def __init__(self) -> None:
        self.members: list[SQLiteTx] = []
        """The transactions of the writes that ended cleanly: told to listeners once committed."""
        self.waiters: list[asyncio.Future[None]] = []
        """One per member: done when the group's commit succeeded or failed."""
        self.writing = False
        """A write's block is running: the commit waits for it to end."""
        self.due = False
        """The commit came due while a block was running: its end commits."""
        self.scheduled = False
        """The commit on the loop's next pass is scheduled."""


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, url: str, *, timeout: float = DEFAULT_DATABASE_TIMEOUT) -> None:
        self.path = database_path(url)
        self.timeout = timeout
        """Seconds a write waits for another process's write lock before it fails as
        unavailable (the whole wait, including its turn behind this process's writers)."""
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        """Held by the one transaction running on the connection."""
        self._writer = asyncio.Lock()
        """Held by the one write transaction that runs or waits for SQLite's write lock: the
        others wait their turn here, so that only one at a time tries ``BEGIN IMMEDIATE``."""
        self._writers = 0
        """Write transactions holding or awaiting ``_writer``."""
        self._group: _Group | None = None
        """The open write transaction the next write joins (it holds ``_lock``): ``_Group``."""
        self.on_deliveries: list[Callable[[frozenset[str] | None], None]] = []
        """Called after a commit that queued deliveries (wakes in-process workers)."""
        self.on_endpoints_changed: list[Callable[[frozenset[str]], None]] = []
        """Called after a commit that changed, suspended or deleted endpoints."""
        self._known_hashes: OrderedDict[str, None] = OrderedDict()
        """Hashes that matched a key in ``count_key_request`` (at most ``KNOWN_HASHES``, the
        oldest forgotten first): they are counted without a read transaction before."""

    async def open(self) -> None:
        if self._connection is not None:
            return
        if self.path != ":memory:":
            _create_private(Path(self.path))
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
        if self._group is not None:
            self._commit(self._group)  # its writes are waiting for it
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StorageError("the store is not open")
        return self._connection

    async def _join(self) -> None:
        """Take this process's turn to write, and a savepoint in the open group's transaction,
        beginning one when none is open. On return ``_writer`` is held (``_leave`` ends the
        turn), and ``_lock`` is held on the group's behalf until it commits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        await self._take_turn(deadline)
        try:
            group = self._group
            if group is None:
                await self._begin_write(deadline)
                group = self._group = _Group()
            try:
                self.connection.execute("SAVEPOINT member")
            except sqlite3.Error as error:
                self._commit(group, _translate(error))
                raise _translate(error) from error
            group.writing = True
        except BaseException:
            self._end_turn()
            raise

    def _leave(self, tx: SQLiteTx, failed: bool) -> asyncio.Future[None] | None:
        """End a write's block: release its savepoint, or roll back to it when the block
        failed, and end its turn. Returns what to wait for (the group's commit), or ``None``
        when there is nothing to wait for: the block failed, so nothing of it stays."""
        group = self._group
        assert group is not None, "a write ended outside its group"
        connection = self.connection
        group.writing = False
        try:
            failure: StorageError | None = None
            try:
                if failed:
                    connection.execute("ROLLBACK TO member")
                connection.execute("RELEASE member")
            except sqlite3.Error as error:
                failure = _translate(error)
            if not connection.in_transaction:
                # SQLite rolled the whole transaction back (it does so on some errors: a full
                # disk, an I/O error): the group's work is lost, and every write in it fails.
                failure = StorageUnavailable(
                    "the database rolled back the transaction this write was part of"
                )
            if failure is not None:
                # The transaction is gone, or a savepoint could not be released or rolled back
                # to: the group cannot be committed whole.
                self._commit(group, failure)
                if failed:
                    return None
                raise failure
            waiter = None
            if not failed:
                waiter = asyncio.get_running_loop().create_future()
                group.waiters.append(waiter)
                group.members.append(tx)
        finally:
            self._end_turn()
        if self._group is group and (group.due or len(group.members) >= GROUP_LIMIT):
            self._commit(group)
        return waiter

    def _commit_due(self, group: _Group) -> None:
        """The loop's next pass after a group's first write ended: commit it, unless a write's
        block is running in it (that block's end commits)."""
        if self._group is not group:
            return  # committed already (full, or the store closed)
        if group.writing:
            group.due = True
            return
        group.scheduled = False
        if self._writers:
            return  # a write has the turn or waits for it: it joins, and its turn's end settles
        self._commit(group)

    def _settle(self) -> None:
        """Once no write holds or awaits the turn, schedule the open group's commit."""
        group = self._group
        if group is not None and not self._writers and not group.scheduled:
            group.scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_due, group)

    def _commit(self, group: _Group, failure: StorageError | None = None) -> None:
        """Commit the group's transaction (roll it back when ``failure`` is given), release
        the connection, and tell each member's waiter how it ended."""
        self._group = None
        connection = self.connection
        try:
            if failure is None:
                try:
                    # In WAL mode COMMIT needs no lock beyond the one BEGIN IMMEDIATE took, and
                    # the checkpoint that may follow it is passive: it never waits, never fails
                    # the commit.
                    connection.execute("COMMIT")
                except sqlite3.Error as error:
                    failure = _translate(error)
            if failure is not None and connection.in_transaction:
                connection.rollback()
        except sqlite3.Error as error:
            log.error("sqlite_rollback_failed", error=str(error))
        finally:
            self._lock.release()
        for waiter in group.waiters:
            if waiter.done():
                continue  # its write was cancelled while it waited: the group went on
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(type(failure)(*failure.args))
        if failure is None:
            for tx in group.members:
                self._ended(tx)

    async def _begin_write(self, deadline: float) -> None:
        """``BEGIN IMMEDIATE`` (this process's turn to write is held); on return ``_lock`` is
        held.

        While another process holds SQLite's write lock, each try fails after ``BUSY_TIMEOUT_MS``
        and the next comes after a short sleep with ``_lock`` released, so this process's reads
        (which WAL lets run beside a writer) and everything else on the loop go on meanwhile.
        Past ``deadline``: ``StorageUnavailable``.
        """
        loop = asyncio.get_running_loop()
        pause = FIRST_PAUSE
        while True:
            await self._lock.acquire()
            try:
                self.connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as error:
                self._lock.release()
                if not _busy(error):
                    raise _translate(error) from error
                left = deadline - loop.time()
                if left <= 0:
                    raise StorageUnavailable(
                        f"the database is busy: another process held its write lock"
                        f" for over {self.timeout} s"
                    ) from error
            except BaseException:
                self._lock.release()
                raise
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_PAUSE)

    async def _take_turn(self, deadline: float) -> None:
        """Acquire ``_writer`` by ``deadline``. The wait is bounded only when there is one: with
        no other write holding or awaiting its turn the lock is free at once, and a write (most
        of them) sets and cancels no timer."""
        self._writers += 1
        try:
            if self._writers == 1:
                await self._writer.acquire()  # nobody holds it or waits for it: at once
                return
            async with asyncio.timeout_at(deadline):
                await self._writer.acquire()
        except TimeoutError:
            self._writers -= 1
            self._settle()
            raise StorageUnavailable(
                f"the database is busy: no turn to write within {self.timeout} s"
            ) from None
        except BaseException:
            self._writers -= 1
            self._settle()
            raise

    def _end_turn(self) -> None:
        self._writers -= 1
        self._writer.release()
        self._settle()

    async def _begin_read(self) -> None:
        """``BEGIN DEFERRED`` (it takes no lock: WAL reads never wait for a writer); on return
        ``_lock`` is held."""
        await self._lock.acquire()
        try:
            self.connection.execute("BEGIN DEFERRED")
        except sqlite3.Error as error:
            self._lock.release()
            raise _translate(error) from error
        except BaseException:
            self._lock.release()
            raise

    def _ended(self, tx: SQLiteTx) -> None:
        """Tell the in-process listeners what a committed transaction did."""
        if tx.deliveries_created:
            for wake in self.on_deliveries:
                wake(tx.woken)
        if tx.endpoints_changed:
            for tell in self.on_endpoints_changed:
                tell(frozenset(tx.endpoints_changed))

    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[SQLiteTx]:
        # WAL with synchronous=NORMAL already commits without waiting for the disk.
        return _Write(self)

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[SQLiteTx]:
        return _Read(self)  # a read transaction is a snapshot in WAL mode

    async def ping(self, within: float) -> None:
        try:
            async with asyncio.timeout(within), _Read(self) as tx:
                await tx.db.fetchrow("SELECT count(*) FROM sqlite_master")
        except TimeoutError:
            raise StorageUnavailable(f"SQLite did not answer within {within} s") from None

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        async with self.write() as tx:
            jobs: list[Job] = await tx.claim_due(owner, now, lease_until, slots)
        return jobs

    async def queue_gauges(
        self, now: int, shown: int
    ) -> tuple[QueueStats, list[tuple[str, int, int | None]]]:
        if self.path == ":memory:":  # no other connection sees it
            async with self.read() as tx:
                return await tx.queue_stats(now), await tx.queue_stats_by_target(shown)
        # Counting a queue of a million jobs takes SQLite a few hundred milliseconds; on the
        # loop's thread that would stall every request meanwhile. sqlite3 lets go of the GIL
        # while SQLite computes a statement, and these return a few rows: on a thread of their
        # own they cost the loop nothing (unlike the many-row reads ADR 0002 kept on it).
        return await asyncio.to_thread(self._queue_gauges, now, shown)

    def _queue_gauges(
        self, now: int, shown: int
    ) -> tuple[QueueStats, list[tuple[str, int, int | None]]]:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=self.timeout)
        except sqlite3.Error as error:
            raise _translate(error) from error
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA query_only = ON")
            tx = SQLiteTx(_Driver(connection))
            with _translated:
                connection.execute("BEGIN DEFERRED")  # both reads see one instant
            # The statements are the transaction's own (QueueSql); they never suspend, so the
            # coroutine runs to its end here, on this thread, without a loop.
            return _finished(_both(tx, now, shown))
        finally:
            connection.close()  # ends the read transaction

    async def count_key_request(
        self, key_hash: str, window_start: int
    ) -> tuple[ApiKey, int] | None:
        # A hash that never matched a key here is looked up in a read transaction first: an
        # unknown key (a guess, a typo, a spray of them) must not take the database's one write
        # lock from the real work. One that did is looked up again and counted in a single write
        # transaction (a transaction fewer per request): the row is read afresh each time, so a
        # revoked, expired or changed key is seen at once.
        if key_hash in self._known_hashes:
            async with self.write() as tx:
                key = await tx.find_api_key(key_hash)
                if key is not None:
                    return key, await tx.count_request(key.id, window_start)
            del self._known_hashes[key_hash]
            return None
        async with self.read() as tx:
            key = await tx.find_api_key(key_hash)
        if key is None:
            return None
        async with self.write() as tx:
            counted = key, await tx.count_request(key.id, window_start)
        self._known_hashes[key_hash] = None
        while len(self._known_hashes) > KNOWN_HASHES:
            self._known_hashes.popitem(last=False)
        return counted

    async def make_partitions(self, now: int, ahead: int) -> list[str]:
        return []  # SQLite does not partition: retention removes in batches

    async def drop_partitions(self, cutoff: int) -> Dropped:
        return Dropped()

    async def default_partition_rows(self, cap: int) -> dict[str, int]:
        return {}

    async def fold_counts(self) -> int:
        return 0  # SQLite keeps no counts: a page's total is counted from an index

    @asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[bool]:
        # Nothing to take: the write lock already makes every process's batches take turns,
        # and each batch checks again what it removes.
        yield True

    async def schema_version(self) -> int:
        row = self.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if row is None:
            return 0
        version = self.connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(version[0] or 0)

    async def migrate(self, target: int | None = None) -> list[str]:
        # Foreign keys are off while migrating, as SQLite's procedure for rebuilding a table
        # asks (dropping the old table would otherwise delete what references it); each
        # migration checks them before it commits.
        self._foreign_keys(on=False)
        try:
            return await self._migrate(target)
        finally:
            self._foreign_keys(on=True)

    def _foreign_keys(self, *, on: bool) -> None:
        """Turn foreign key enforcement on or off. The pragma does nothing inside a
        transaction, so the open group's is ended first (a migration that failed leaves its
        empty transaction to the loop's next pass); migrations run before anything else
        writes, and the setting is read back to be sure."""
        group = self._group
        if group is not None and not group.writing:
            self._commit(group)
        self.connection.execute(f"PRAGMA foreign_keys = {int(on)}")
        if self.connection.execute("PRAGMA foreign_keys").fetchone()[0] != int(on):
            raise StorageError("foreign keys could not be switched: a write is in progress")

    async def _migrate(self, target: int | None) -> list[str]:
        applied = []
        for migration in migrations.load(self.dialect):
            if target is not None and migration.version > target:
                break
            # Each migration is a write transaction: another process's lock is waited for
            # (``timeout``) as any write's is, off the loop.
            async with self.write():
                connection = self.connection
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
                )
                done = connection.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                ).fetchone()
                if done is None:
                    for statement in _statements(migration.sql):
                        connection.execute(statement)
                    broken = connection.execute("PRAGMA foreign_key_check").fetchone()
                    if broken is not None:
                        raise StorageError(
                            f"migration {migration.version:04d}_{migration.name} left a row of"
                            f" {broken[0]} whose {broken[2]} is gone"
                        )
                    connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
                        (migration.version, migration.name),
                    )
                    applied.append(f"{migration.version:04d}_{migration.name}")
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


async def _both(
    tx: SQLiteTx, now: int, shown: int
) -> tuple[QueueStats, list[tuple[str, int, int | None]]]:
    return await tx.queue_stats(now), await tx.queue_stats_by_target(shown)


def _finished(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (the SQLite driver's statements run as
    they are called), run to its end on this thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite statement suspended off the loop")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons inside literals)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
