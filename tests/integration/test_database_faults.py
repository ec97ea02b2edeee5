"""Database faults (issue 9): time limits everywhere, 503 with ``Retry-After``, never 500 or a hang.

PostgreSQL is put behind a loopback TCP proxy (in this process, on a thread of its own) that can
freeze (nothing passes and connections stay open: a stopped server, a silent network), restart
(every connection cut, new ones told "the database system is starting up") or shut (connections
cut, new ones refused). A real ``bitbybit serve`` reaches the database through it and must answer
every API request with 503 ``SERVICE_UNAVAILABLE`` and ``Retry-After`` while the database cannot
answer, ``/healthz`` 200 and ``/readyz`` 503, and serve again once it is back. The shared
PostgreSQL server itself is never stopped: lock waits and a killed backend are made on it with a
lock this test holds and ``pg_terminate_backend`` on this test's own connections.

On SQLite another process (a connection of this test, to the ``serve`` process) holds the write
lock: a write waits for it without stalling the event loop, so reads answer meanwhile; the write
succeeds once the lock is released, or answers 503 when the lock is held past the time limit.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from bitbybit.config import Settings
from bitbybit.errors import (
    ConfigurationError,
    IntegrityViolation,
    StorageError,
    StorageUnavailable,
)
from bitbybit.models import Company
from bitbybit.runtime import Platform
from bitbybit.store import migrations
from bitbybit.store.postgres import PostgresStore, _Driver, _translate
from bitbybit.store.sqlite import SQLiteStore
from tests.conftest import (
    CUSTOMERS,
    POSTGRES_URL,
    Account,
    client_for,
    make_account,
    require_postgres,
)
from tests.integration.servers import free_port, serve

T = TypeVar("T")

SECRET_KEY = "bitbybit-database-faults-secret-key"
HANG_GUARD = 30.0
"""Seconds a request may take before the test calls it a hang (the limits under test are 1–5 s)."""
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
STARTING_UP = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"


def customer(n: int) -> dict[str, str]:
    return {"email": f"c{n}-{secrets.token_hex(4)}@example.com", "firstName": f"C{n}"}


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": {
            "code": "SERVICE_UNAVAILABLE",
            "message": "the database is unavailable; retry shortly",
            "requestId": response.headers["x-request-id"],
        }
    }
    assert int(response.headers["retry-after"]) > 0


async def until_ok(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    """Ask until the answer is 200; meanwhile every answer must be a clean 503."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            response = await http.get(path, headers=headers)
            if response.status_code == 200:
                return
            assert_unavailable(response)
            await asyncio.sleep(0.2)


# -- the proxy -------------------------------------------------------------------------------


class PostgresProxy:
    """A loopback TCP proxy to PostgreSQL whose faults a test switches on and off."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream_url = upstream_url
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.starting_up = False
        self.server: asyncio.Server | None = None
        self.transports: set[asyncio.WriteTransport] = set()
        self.flowing = asyncio.Event()

    def url(self, schema: str) -> str:
        """The database URL through the proxy, with ``schema`` on the search path."""
        parts = urlsplit(self.upstream_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return f"{parts.scheme}://{netloc}{parts.path}?options=-csearch_path%3D{schema}"

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(10)

    def __enter__(self) -> PostgresProxy:
        self.thread.start()
        self._call(self._open())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._call(self._shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def freeze(self) -> None:
        """Stop passing bytes either way; new connections are accepted and left waiting."""
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def thaw(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.set)

    def restart(self) -> None:
        """Cut every connection and answer new ones as a server that is starting up."""
        self._call(self._restart())

    def shut(self) -> None:
        """Cut every connection and refuse new ones (nothing listens on the port)."""
        self._call(self._shut())

    def back(self) -> None:
        """Forward again, as a database that is up."""
        self._call(self._open())

    async def _open(self) -> None:
        self.starting_up = False
        self.flowing.set()
        if self.server is None:
            self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _restart(self) -> None:
        self.starting_up = True
        self._cut()

    async def _shut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self._cut()

    def _cut(self) -> None:
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.transports.add(writer.transport)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self.flowing.wait()
            if self.starting_up:
                await self._answer_starting_up(reader, writer)
                return
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
            self.transports.add(upstream.transport)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass  # a cut connection
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.transport.abort()
                    self.transports.discard(end.transport)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    @staticmethod
    async def _answer_starting_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """What PostgreSQL says while it starts up: no to TLS, then FATAL 57P03 to the startup."""
        while True:
            length = int.from_bytes(await reader.readexactly(4), "big")
            body = await reader.readexactly(length - 4)
            if int.from_bytes(body[:4], "big") not in (SSL_REQUEST, GSSENC_REQUEST):
                break
            writer.write(b"N")
            await writer.drain()
        writer.write(b"E" + (len(STARTING_UP) + 4).to_bytes(4, "big") + STARTING_UP)
        await writer.drain()


# -- PostgreSQL -------------------------------------------------------------------------------


@asynccontextmanager
async def postgres_account(
    url: str = POSTGRES_URL, **store_options: Any
) -> AsyncIterator[tuple[str, PostgresStore, Account]]:
    """A fresh migrated schema with an account in it, and the store that made them."""
    await require_postgres()
    schema = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        store = PostgresStore(url, schema=schema, pool_size=2, **store_options)
        try:
            await store.open()
            await store.migrate()
            platform = Platform(store, Settings(rate_limit=10_000, secret_key=SECRET_KEY))
            yield schema, store, await make_account(platform)
        finally:
            await store.close()
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


@contextmanager
def served_through_proxy(tmp_path: Path, schema: str, timeout: str) -> Iterator[Any]:
    with (
        PostgresProxy(POSTGRES_URL) as proxy,
        serve(
            proxy.url(schema),
            tmp_path / "serve.log",
            BITBYBIT_DATABASE_TIMEOUT=timeout,
            BITBYBIT_SECRET_KEY=SECRET_KEY,
            BITBYBIT_RATE_LIMIT="10000",
        ) as server,
    ):
        yield proxy, server


async def test_frozen_postgres_gets_503_with_retry_after_and_serves_again_once_thawed(
    tmp_path: Path,
) -> None:
    async with postgres_account() as (schema, _, account):
        with served_through_proxy(tmp_path, schema, timeout="1") as (proxy, server):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
                assert (await http.get(CUSTOMERS, headers=account.headers)).status_code == 200

                proxy.freeze()
                # A pooled connection times out on its statement, the next can't connect: both
                # are 503 within the limits, the process itself stays alive (liveness 200) but
                # not ready.
                for _ in range(2):
                    assert_unavailable(await http.get(CUSTOMERS, headers=account.headers))
                    assert_unavailable(
                        await http.post(CUSTOMERS, json=customer(1), headers=account.headers)
                    )
                assert (await http.get("/healthz")).status_code == 200
                assert_unavailable(await http.get("/readyz"))

                proxy.thaw()
                await until_ok(http, CUSTOMERS, account.headers)
                assert (await http.get("/readyz")).json() == {"status": "ready"}
                created = await http.post(CUSTOMERS, json=customer(2), headers=account.headers)
                assert created.status_code == 201, created.text


async def test_restarting_or_refusing_postgres_gets_503_never_500(tmp_path: Path) -> None:
    async with postgres_account() as (schema, _, account):
        with served_through_proxy(tmp_path, schema, timeout="2") as (proxy, server):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
                assert (await http.get(CUSTOMERS, headers=account.headers)).status_code == 200

                # Every connection cut; reconnecting gets FATAL 57P03 (CannotConnectNow).
                proxy.restart()
                for _ in range(2):
                    assert_unavailable(await http.get(CUSTOMERS, headers=account.headers))
                assert_unavailable(await http.get("/readyz"))

                # Nothing listens: connection refused.
                proxy.shut()
                assert_unavailable(await http.get(CUSTOMERS, headers=account.headers))
                assert_unavailable(await http.get("/readyz"))

                proxy.back()
                await until_ok(http, CUSTOMERS, account.headers)
                assert (await http.get("/readyz")).status_code == 200


@asynccontextmanager
async def customers_locked(schema: str) -> AsyncIterator[asyncpg.Connection]:
    """This test holds ACCESS EXCLUSIVE on the schema's customers table until the block ends."""
    holder = await asyncpg.connect(POSTGRES_URL)
    try:
        async with holder.transaction():
            await holder.execute(f"LOCK TABLE {schema}.customers IN ACCESS EXCLUSIVE MODE")
            yield holder
    finally:
        await holder.close()


async def test_postgres_statement_waiting_on_a_lock_is_cut_at_the_time_limit() -> None:
    async with postgres_account(timeout=1.0) as (schema, store, account):
        platform = Platform(store, Settings(rate_limit=10_000, secret_key=SECRET_KEY))
        async with client_for(platform) as http:
            async with customers_locked(schema):
                response = await asyncio.wait_for(
                    http.get(CUSTOMERS, headers=account.headers), HANG_GUARD
                )
                assert_unavailable(response)
            assert (await http.get(CUSTOMERS, headers=account.headers)).status_code == 200


async def terminate_when_waiting(holder: asyncpg.Connection, application_name: str) -> None:
    """Terminate the backends of ``application_name`` once one waits on a lock."""
    while True:
        terminated = await holder.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock'",
            application_name,
        )
        if terminated:
            return
        await asyncio.sleep(0.02)


async def test_postgres_backend_terminated_mid_statement_is_503() -> None:
    """``pg_terminate_backend`` is what a fast shutdown does to every session: FATAL 57P01."""
    name = f"faults_{secrets.token_hex(4)}"
    async with postgres_account(f"{POSTGRES_URL}?application_name={name}") as (
        schema,
        store,
        account,
    ):
        platform = Platform(store, Settings(rate_limit=10_000, secret_key=SECRET_KEY))
        async with client_for(platform) as http:
            async with customers_locked(schema) as holder:
                request = asyncio.create_task(http.get(CUSTOMERS, headers=account.headers))
                async with asyncio.timeout(HANG_GUARD):
                    await terminate_when_waiting(holder, name)
                    assert_unavailable(await request)
            assert (await http.get(CUSTOMERS, headers=account.headers)).status_code == 200


async def test_postgres_sessions_carry_the_time_limits_and_migrations_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with postgres_account(timeout=0.5) as (_, store, _account):
        async with store.read() as tx:
            row = await tx.db.fetchrow(
                "SELECT current_setting('statement_timeout') AS statement,"
                " current_setting('idle_in_transaction_session_timeout') AS idle"
            )
        assert (row["statement"], row["idle"]) == ("500ms", "1min")
        # A migration longer than the statements' limit (a large table rewritten) completes.
        slow = migrations.Migration(9999, "slow", "SELECT pg_sleep(1.5)")
        monkeypatch.setattr(migrations, "load", lambda dialect: [slow])
        assert await store.migrate() == ["9999_slow"]
        with pytest.raises(StorageUnavailable):
            async with store.read() as tx:
                await tx.db.fetchrow("SELECT pg_sleep(1.5)")


def test_database_timeout_setting_reaches_the_store(tmp_path: Path) -> None:
    assert Settings.from_env({}).database_timeout == 5.0
    settings = Settings.from_env(
        {
            "BITBYBIT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "BITBYBIT_DATABASE_TIMEOUT": "0.25",
        }
    )
    assert settings.database_timeout == 0.25
    store = Platform.from_settings(settings).store
    assert isinstance(store, SQLiteStore)
    assert store.timeout == 0.25
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigurationError, match="BITBYBIT_DATABASE_TIMEOUT"):
            Settings.from_env({"BITBYBIT_DATABASE_TIMEOUT": bad})


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another server"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.IdleInTransactionSessionTimeoutError("terminating connection due to idle"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"),
        TimeoutError(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_postgres_errors_meaning_down_restarting_or_too_slow_are_unavailable(
    error: BaseException,
) -> None:
    assert isinstance(_translate(error), StorageUnavailable)


async def test_a_connection_confused_mid_operation_is_unavailable_and_closed() -> None:
    """Seen while PostgreSQL restarted under load: asyncpg's own InternalClientError (not an
    InterfaceError) escaped the driver and the API answered 500."""

    class Confused:
        async def fetchrow(self, sql: str, *args: object) -> None:
            raise asyncpg.InternalClientError("cannot switch to state 12")

    driver = _Driver(Confused())
    with pytest.raises(StorageUnavailable):
        await driver.fetchrow("SELECT 1")
    assert driver.broken


def test_every_postgres_connection_resource_or_operator_error_is_unavailable() -> None:
    """Classes 08 (connection), 53 (resources) and 57 (operator intervention), whole: a new
    subclass in asyncpg cannot slip through as a 500."""
    classes = [
        kind
        for kind in vars(asyncpg.exceptions).values()
        if isinstance(kind, type)
        and issubclass(kind, asyncpg.PostgresError)
        and str(getattr(kind, "sqlstate", "") or "").startswith(("08", "53", "57"))
    ]
    assert len(classes) > 10
    for kind in classes:
        assert isinstance(_translate(kind("x")), StorageUnavailable), kind


def test_postgres_errors_the_request_caused_are_not_unavailable() -> None:
    unique = _translate(asyncpg.UniqueViolationError("duplicate key"))
    assert isinstance(unique, IntegrityViolation)
    for error in (
        asyncpg.UndefinedTableError('relation "customers" does not exist'),
        asyncpg.DeadlockDetectedError("deadlock detected"),
    ):
        translated = _translate(error)
        assert type(translated) is StorageError


# -- SQLite -----------------------------------------------------------------------------------


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds SQLite's write lock on the file until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield holder
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'faults.db'}")
    await store.open()
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


def company(n: int) -> Company:
    return Company(id=f"comp_faults{n}", name=f"Faults {n}", country="ID", created_at=n)


async def test_sqlite_write_waits_for_a_lock_held_elsewhere_while_reads_go_on(
    sqlite_store: SQLiteStore,
) -> None:
    async def insert() -> None:
        async with sqlite_store.write() as tx:
            await tx.insert_company(company(1))

    async def read() -> Company | None:
        async with sqlite_store.read() as tx:
            found: Company | None = await tx.get_company("comp_faults1")
        return found

    with write_lock_held(Path(sqlite_store.path)):
        write = asyncio.create_task(insert())
        for _ in range(20):  # reads while the write waits (WAL lets them run beside a writer)
            assert await asyncio.wait_for(read(), HANG_GUARD) is None
            await asyncio.sleep(0.01)
        assert not write.done()
        await sqlite_store.ping(within=HANG_GUARD)  # ready: reads work
    await asyncio.wait_for(write, HANG_GUARD)
    assert await read() is not None


async def test_sqlite_lock_held_past_the_time_limit_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'faults.db'}", timeout=0.3)
    await store.open()
    try:
        await store.migrate()
        with write_lock_held(Path(store.path)):
            for n in (1, 2):  # the second waits its turn behind the first, within the limit
                with pytest.raises(StorageUnavailable, match="busy"):
                    async with store.write() as tx:
                        await tx.insert_company(company(n))
            async with store.read() as tx:
                assert await tx.get_company("comp_faults1") is None
        async with store.write() as tx:
            await tx.insert_company(company(3))
    finally:
        await store.close()


async def test_serve_on_sqlite_waits_for_a_lock_held_elsewhere_off_the_loop(
    tmp_path: Path,
) -> None:
    """With the default limit (5 s): a write that the lock is released for in time succeeds,
    one held past it answers 503 with ``Retry-After``, and reads answer throughout."""
    path = tmp_path / "serve.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        await store.migrate()
        platform = Platform(store, Settings(rate_limit=10_000, secret_key=SECRET_KEY))
        account = await make_account(platform)
    finally:
        await store.close()

    async def reads_meanwhile(http: httpx.AsyncClient, pending: asyncio.Task[Any]) -> None:
        for _ in range(10):
            assert (await http.get("/healthz")).status_code == 200
            assert not pending.done()  # the loop was not stalled behind the waiting write
            await asyncio.sleep(0.02)
        for _ in range(3):  # and the database answers reads
            assert (await http.get("/readyz")).json() == {"status": "ready"}
        assert not pending.done()

    with serve(
        f"sqlite:///{path}",
        tmp_path / "serve.log",
        BITBYBIT_SECRET_KEY=SECRET_KEY,
        BITBYBIT_RATE_LIMIT="10000",
    ) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
            headers = account.headers
            assert (await http.get(CUSTOMERS, headers=headers)).status_code == 200
            with write_lock_held(path):
                held_too_long = asyncio.create_task(
                    http.post(CUSTOMERS, json=customer(1), headers=headers)
                )
                await reads_meanwhile(http, held_too_long)
                assert_unavailable(await held_too_long)

                in_time = asyncio.create_task(
                    http.post(CUSTOMERS, json=customer(2), headers=headers)
                )
                await reads_meanwhile(http, in_time)
            created = await in_time
            assert created.status_code == 201, created.text
            listed = await http.get(CUSTOMERS, headers=headers)
            assert listed.json()["meta"]["total"] == 1
