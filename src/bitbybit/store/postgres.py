"""The PostgreSQL driver: an asyncpg pool, one pooled connection per transaction.

Several ``serve``/``worker`` processes may share one database: migrations take an advisory lock,
and everything else relies on row locks and unique constraints.

Nothing waits for the database without a limit (``timeout``, ``BITBYBIT_DATABASE_TIMEOUT``): a
pooled connection is waited for that long, a new connection too, and every statement is cancelled
by the server after it (``statement_timeout``, which also bounds waits for row locks) or given up by
the client a second later when the server does not answer at all (``command_timeout``). A
connection given up on the client's side is closed, not returned to its pool. Failures that mean
"down, restarting, overloaded or too slow" become ``StorageUnavailable`` (503 with
``Retry-After``). Migrations run on their own connection without these limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg
import structlog

from bitbybit.config import DEFAULT_DATABASE_TIMEOUT
from bitbybit.errors import IntegrityViolation, StorageError, StorageUnavailable
from bitbybit.ids import random_base62
from bitbybit.models import (
    ApiKey,
    AttemptResult,
    Event,
    Job,
    ListQuery,
    Message,
    QueueStats,
    StatusReport,
    Tenant,
)
from bitbybit.store import migrations, partitions
from bitbybit.store.base import Dropped
from bitbybit.store.sql import (
    KEY_COLUMNS,
    Row,
    SqlTx,
    api_key_from_row,
    counts,
    job_from_row,
    succeeded_endpoints,
)
from bitbybit.store.sql.driver import _Where
from bitbybit.store.sql.messaging import new_reports

log = structlog.get_logger("bitbybit.store")

MIGRATION_LOCK = 0x62697462  # "bitb": one advisory lock id for schema changes


IDLE_IN_TRANSACTION_TIMEOUT = "60s"
"""A session idle inside a transaction this long is ended by the server: a process that stopped
mid-transaction (SIGSTOP, a paused VM) then releases its row locks instead of blocking every other
process's writes to those rows for as long as it is stopped. Far above any pause of a healthy
process between two statements of one transaction."""
CLIENT_GRACE = 1.0
"""Seconds the client waits beyond the server's ``statement_timeout`` before giving a statement
up itself: long enough for the server's own cancellation to arrive (the connection then stays
usable), short enough to bound a wait on a server or network that answers nothing."""

_SERVER_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # 08: the connection failed or was closed
    asyncpg.OperatorInterventionError,  # 57: statement timeout, shutdown, starting up, crash
    asyncpg.InsufficientResourcesError,  # 53: too many connections, disk full, out of memory
    asyncpg.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03: the server ended the session
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby, during a fail-over
)
"""Errors the server reports that mean "down, restarting, overloaded or too slow": the request
may succeed if retried shortly, so they are 503, never 500."""


def _translate(error: BaseException) -> StorageError:
    if isinstance(error, asyncpg.UniqueViolationError):
        return IntegrityViolation(str(error), getattr(error, "constraint_name", None))
    if isinstance(error, _SERVER_UNAVAILABLE):
        return StorageUnavailable(f"PostgreSQL is unavailable: {type(error).__name__}: {error}")
    if isinstance(error, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL failed: {error}")
    # The client's side: a time limit, a refused or broken socket, a closed connection or pool.
    if isinstance(error, TimeoutError):
        return StorageUnavailable("PostgreSQL did not answer within the time limit")
    return StorageUnavailable(f"PostgreSQL is unreachable: {type(error).__name__}: {error}")


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. "cannot switch to state …" on a connection cut mid-use
    OSError,
)
"""Everything asyncpg raises (``TimeoutError`` is an ``OSError``)."""


def _on_client_side(error: BaseException) -> bool:
    """Whether the error arose on the client's side (a time limit, a socket), where the server
    may never answer again: the connection cannot be trusted and is closed, not reused."""
    return not isinstance(error, asyncpg.PostgresError)


class _Translated:
    """``with _Translated(driver):``: an error of asyncpg's (``_DRIVER_ERRORS``) leaving the block
    is raised as ``driver.failure`` makes it (which also notes a connection broken on the client's
    side), the original as its cause; ``with _translated:`` (no driver) as ``_translate`` makes it.
    The one place asyncpg's errors are caught and translated (a class, not ``@contextmanager``:
    it costs a fraction of a generator's set-up per statement)."""

    __slots__ = ("driver",)

    def __init__(self, driver: _Driver | None = None) -> None:
        self.driver = driver

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, _DRIVER_ERRORS):
            failure = _translate if self.driver is None else self.driver.failure
            raise failure(error) from error


_translated = _Translated()


class _Driver:
    def __init__(self, connection: Any) -> None:
        """``connection`` is an asyncpg connection or the pool's proxy of one."""
        self.connection = connection
        self.broken = False
        """A statement failed on the client's side: close the connection, never reuse it."""

    def failure(self, error: BaseException) -> StorageError:
        """The error to raise for ``error``; notes whether the connection is now broken."""
        self.broken = self.broken or _on_client_side(error)
        return _translate(error)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _Translated(self):
            row: Row | None = await self.connection.fetchrow(sql, *args)
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _Translated(self):
            rows: list[Row] = await self.connection.fetch(sql, *args)
        return rows

    async def execute(self, sql: str, *args: Any) -> int:
        with _Translated(self):
            status: str = await self.connection.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _Translated(self):
            await self.connection.executemany(sql, rows)

    def any_of_json_array(self, column: str, placeholder: str) -> str:
        return f"(({column})::jsonb ?| {placeholder}::text[])"

    def text_array(self, values: Sequence[str]) -> Any:
        return list(values)

    def in_texts(self, column: str, placeholder: str) -> str:
        return f"{column} = ANY({placeholder}::text[])"

    key_share = " FOR KEY SHARE"
    for_update = " FOR UPDATE"

    async def serialise(self, keys: Sequence[str]) -> None:
        # One round trip for the whole batch, the locks taken in sorted order.
        await self.fetch(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
            " FROM (SELECT DISTINCT unnest($1::text[]) AS k ORDER BY 1) AS keys",
            list(keys),
        )


WAKE_CHANNEL = "bitbybit_deliveries"
LISTEN_RETRY_FIRST = 0.1
LISTEN_RETRY_MOST = 5.0
"""Seconds between attempts to listen again after the listening connection was lost."""
BEGIN = "BEGIN"
BEGIN_NOT_DURABLE = "BEGIN; SET LOCAL synchronous_commit TO OFF"
BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
# Data-modifying CTEs always run; the DELETE forgets the key's past windows.
_COUNT_KEY_REQUEST = f"""
WITH key AS (SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1),
counted AS (
    INSERT INTO rate_limits (key_id, window_start, count) SELECT key.id, $2, 1 FROM key
    ON CONFLICT (key_id, window_start) DO UPDATE SET count = rate_limits.count + 1
    RETURNING count
),
forgotten AS (
    DELETE FROM rate_limits WHERE key_id IN (SELECT id FROM key) AND window_start < $2
)
SELECT key.*, (SELECT count FROM counted) AS request_count FROM key
"""
_PLAIN_IDS = re.compile(r"[A-Za-z0-9_ ]{0,4000}")


def _commit_and_notify(origin: str, endpoint_ids: frozenset[str] | None) -> str:
    """COMMIT with a NOTIFY from ``origin`` naming the endpoints that have new work (when they
    are known and the ids are plain enough to go into the literal), in one round trip."""
    names = " ".join(sorted(endpoint_ids or ()))
    if not _PLAIN_IDS.fullmatch(names):
        names = ""
    return f"NOTIFY {WAKE_CHANNEL}, '{origin} {names}'; COMMIT"


async def _keep_session(connection: Any) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own cleanup (which rolls back an
    open transaction). bitbybit keeps no session state on pooled connections (settings are
    ``SET LOCAL``, advisory locks are transaction-scoped, LISTEN has its own connection), so
    the default ``RESET ALL; UNLISTEN *; …`` would be a round trip per transaction for nothing.
    """


class PostgresTx(SqlTx):
    page_key = "id"  # events are partitioned by id (EventsSql.page_key)

    async def _events_total(self, tenant: Tenant, where: _Where, query: ListQuery) -> int:
        total = await counts.events_total(self.db, tenant, query)
        return await super()._events_total(tenant, where, query) if total is None else total

    async def _deliveries_total(
        self,
        tenant: Tenant,
        endpoint_id: str | None,
        event_id: str | None,
        wanted: Sequence[str],
    ) -> int:
        if event_id is not None:  # one event's few deliveries: counted from deliveries_event
            return await super()._deliveries_total(tenant, endpoint_id, event_id, wanted)
        return await counts.deliveries_total(self.db, tenant, endpoint_id, wanted)

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        # One statement: pick (skipping rows other workers hold), lease, and return the content.
        # The planner cannot estimate ``LIMIT u.n`` and assumes a tenth of the queue: with the
        # statistics of a large queue it joined by hashing whole tables (870 ms a claim with
        # 1,000,000 pending). A constant cap (the slots rounded up to a power of two, so few
        # distinct statements) makes it look rows up by index (4 ms).
        if not slots:
            return []
        cap = 1 << (sum(slots.values()) - 1).bit_length()
        rows = await self.db.fetch(
            "WITH picked AS (SELECT x.delivery_id FROM unnest($1::text[], $2::int[])"
            " AS u(target, n) CROSS JOIN LATERAL (SELECT delivery_id FROM delivery_queue"
            " WHERE target = u.target AND due_at <= $3"
            " AND (lease_expires_at IS NULL OR lease_expires_at < $3)"
            f" ORDER BY due_at LIMIT u.n FOR UPDATE SKIP LOCKED) x LIMIT {cap}),"
            " leased AS (UPDATE delivery_queue AS q SET lease_owner = $4, lease_expires_at = $5"
            " FROM picked WHERE q.delivery_id = picked.delivery_id"
            " RETURNING q.delivery_id, q.due_at, q.kind, q.target)"
            # What a claim returns, from both storages of jobs (ADR 0008).
            " SELECT q.delivery_id AS id, q.kind, q.target, d.attempts, ev.payload, d.event_id,"
            " ev.type, e.url, e.secret, e.next_secret, e.next_secret_at, e.multi_signature,"
            " q.due_at FROM leased q JOIN deliveries d ON d.id = q.delivery_id"
            " JOIN events ev ON ev.id = d.event_id JOIN webhook_endpoints e ON e.id = d.endpoint_id"
            " WHERE q.kind = 'webhook'"
            " UNION ALL SELECT q.delivery_id AS id, q.kind, q.target, j.attempts, j.payload, NULL,"
            " NULL, NULL, NULL, NULL, NULL, NULL, q.due_at FROM leased q"
            " JOIN jobs j ON j.id = q.delivery_id WHERE q.kind <> 'webhook'"
            " ORDER BY due_at",
            list(slots),
            list(slots.values()),
            now,
            owner,
            lease_until,
        )
        return [job_from_row(row) for row in rows]

    async def _insert_deliveries(self, rows: Sequence[tuple[Any, ...]], now: int) -> None:
        # One statement (one round trip in the API's transaction) for both tables.
        ids, event_ids, endpoint_ids, companies, modes, statuses, _, types = zip(*rows, strict=True)
        await self.db.execute(
            f"WITH d AS ({self._DELIVERY_INSERT} SELECT u.id, u.event_id, u.endpoint_id,"
            " u.company_id, u.mode, u.status, u.event_type, 0, $6, $6, $6"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
            " $7::text[], $8::text[])"
            " AS u(id, event_id, endpoint_id, company_id, mode, status, event_type)"
            " RETURNING id, endpoint_id, status)"
            " INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " SELECT id, endpoint_id, $6, 'webhook' FROM d WHERE status = 'pending'",
            list(ids),
            list(event_ids),
            list(endpoint_ids),
            list(companies),
            list(modes),
            now,
            list(statuses),
            list(types),
        )

    async def _write_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        columns = _result_columns(results)
        # One statement for the batch: the attempts, the queue rows this worker still leases
        # (dropped when the delivery is done, rescheduled when it will be retried) and the
        # deliveries whose queue row it held. Deliveries deleted meanwhile (with their endpoint)
        # get no attempt row; the ones that got one are returned. The lease is compared with
        # ``u.owner``, a column of the batch, not with the parameter: statistics taken while
        # few rows were leased put ``lease_owner = $10`` at one row, and the planner then read
        # the queue for it and compared every leased row with every result (2,000 results
        # against 2,000 leased rows: 4,000,000 comparisons, 1.6 s; more leased rows passed the
        # database timeout, again at every retry, and the results waited unrecorded).
        rows = await self.db.fetch(
            "WITH u AS (SELECT *, $10::text AS owner FROM unnest($1::text[], $2::bigint[],"
            " $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bytea[], $8::text[],"
            " $9::bigint[]) AS u(id, number, started, latency, code, error, body, status, due)),"
            f" attempts AS ({self._ATTEMPT_INSERT}"
            " SELECT id, number, started, latency, code, error, body, $10 FROM u"
            " WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = u.id) RETURNING delivery_id),"
            " done AS (DELETE FROM delivery_queue AS q USING u WHERE q.delivery_id = u.id"
            " AND q.lease_owner = u.owner AND u.status <> 'pending' RETURNING q.delivery_id),"
            " again AS (UPDATE delivery_queue AS q SET due_at = u.due, lease_owner = NULL,"
            " lease_expires_at = NULL FROM u WHERE q.delivery_id = u.id"
            " AND q.lease_owner = u.owner AND u.status = 'pending' RETURNING q.delivery_id),"
            " mine AS (SELECT delivery_id FROM done UNION ALL SELECT delivery_id FROM again),"
            " answered AS (UPDATE webhook_endpoints SET exhausted_in_row = 0"
            " WHERE id = ANY($12::text[]) AND exhausted_in_row <> 0),"
            " updated AS (UPDATE deliveries AS d SET status = u.status, attempts = u.number,"
            " next_attempt_at = u.due, last_status_code = u.code, last_error = u.error,"
            " updated_at = $11 FROM u, mine WHERE d.id = u.id AND mine.delivery_id = u.id)"
            " SELECT delivery_id FROM attempts",
            *columns,
            owner,
            now,
            succeeded_endpoints(results),
        )
        return [row["delivery_id"] for row in rows]

    async def _write_job_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        columns = [*_result_columns(results), [r.deferred for r in results]]
        # ``_write_results`` for jobs in one statement: a deferred job gets no attempt row; a job
        # deleted meanwhile (with its company) gets nothing; the outcome counts only where this
        # worker still held the queue row (compared with ``u.owner``, as there).
        rows = await self.db.fetch(
            "WITH u AS (SELECT *, $11::text AS owner FROM unnest($1::text[], $2::bigint[],"
            " $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bytea[], $8::text[],"
            " $9::bigint[], $10::boolean[]) AS u(id, number, started, latency, code, error, body,"
            " status, due, deferred)), found AS (SELECT u.* FROM u JOIN jobs j ON j.id = u.id),"
            " attempts AS (INSERT INTO job_attempts (job_id, number, started_at, latency_ms,"
            " status_code, error, response_body, worker) SELECT id, number, started, latency,"
            " code, error, body, $11 FROM found WHERE NOT deferred),"
            " done AS (DELETE FROM delivery_queue AS q USING found u WHERE q.delivery_id = u.id"
            " AND q.lease_owner = u.owner AND u.status <> 'pending' RETURNING q.delivery_id),"
            " again AS (UPDATE delivery_queue AS q SET due_at = u.due, lease_owner = NULL,"
            " lease_expires_at = NULL FROM found u WHERE q.delivery_id = u.id"
            " AND q.lease_owner = u.owner AND u.status = 'pending' RETURNING q.delivery_id),"
            " mine AS (SELECT delivery_id FROM done UNION ALL SELECT delivery_id FROM again),"
            " updated AS (UPDATE jobs AS j SET status = u.status, attempts = u.number,"
            " next_attempt_at = u.due, last_status_code = u.code, last_error = u.error,"
            " updated_at = $12 FROM found u, mine WHERE j.id = u.id AND mine.delivery_id = u.id)"
            " SELECT id FROM found",
            *columns,
            owner,
            now,
        )
        return [row["id"] for row in rows]

    async def insert_events(self, tenant: Tenant, events: Sequence[Event]) -> None:
        # One statement for the batch (in order: ``seq`` follows the list).
        if not events:
            return
        await self.db.execute(
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " SELECT u.id, $1, $2, u.type, u.payload, u.at FROM unnest($3::text[], $4::text[],"
            " $5::bytea[], $6::bigint[]) WITH ORDINALITY AS u(id, type, payload, at, n)"
            " ORDER BY u.n",
            tenant.company_id,
            tenant.mode,
            [e.id for e in events],
            [e.type for e in events],
            [e.payload for e in events],
            [e.created_at for e in events],
        )

    async def add_status_reports(
        self, reports: Sequence[tuple[str, StatusReport]], recorded_at: int
    ) -> set[tuple[str, str]]:
        # One statement: what was reported before (committed, under the caller's row locks)
        # conflicts and is not kept; the rows inserted are the ones kept.
        kept = new_reports(reports)
        if not kept:
            return set()
        rows = await self.db.fetch(
            "INSERT INTO message_statuses (message_id, status, at, error_code, error_message,"
            " applied, recorded_at) SELECT u.*, $7 FROM unnest($1::text[], $2::text[],"
            " $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])"
            " AS u(message_id, status, at, code, error, applied)"
            " ON CONFLICT DO NOTHING RETURNING message_id, status",
            [message_id for message_id, _ in kept],
            [status for _, status in kept],
            [report.at for report in kept.values()],
            [report.error_code for report in kept.values()],
            [report.error_message for report in kept.values()],
            [int(report.applied) for report in kept.values()],
            recorded_at,
        )
        return {(row["message_id"], row["status"]) for row in rows}

    async def update_messages(self, changed: Sequence[tuple[Tenant, Message]]) -> None:
        if not changed:
            return
        messages = [message for _, message in changed]
        await self.db.execute(
            "UPDATE messages AS m SET status = u.status, error_code = u.code,"
            " error_message = u.error, wa_id = u.wa_id, customer_id = u.customer,"
            " updated_at = u.at FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],"
            " $5::text[], $6::text[], $7::bigint[]) AS u(id, status, code, error, wa_id,"
            " customer, at) WHERE m.id = u.id",
            [m.id for m in messages],
            [m.status for m in messages],
            [m.error_code for m in messages],
            [m.error_message for m in messages],
            [m.wa_id for m in messages],
            [m.customer_id for m in messages],
            [m.updated_at for m in messages],
        )


def _result_columns(results: Sequence[AttemptResult]) -> list[list[Any]]:
    """The attempt results as the columns the batch-writing statements unnest: id, number,
    started, latency, code, error, body, status, due."""
    return [
        [r.delivery_id for r in results],
        [r.number for r in results],
        [r.started_at for r in results],
        [r.latency_ms for r in results],
        [r.status_code for r in results],
        [r.error for r in results],
        [r.response_body for r in results],
        [r.status for r in results],
        [r.next_attempt_at for r in results],
    ]


def normalise_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


class PostgresStore:
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        timeout: float = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        self.pool_size = pool_size
        self.timeout = timeout
        """Seconds to wait for a pooled connection, a new connection or one statement."""
        self._pool: asyncpg.Pool | None = None
        self._steps: asyncpg.Pool | None = None
        """Connections whose commits do not wait for the disk, for single statements that are
        their own transaction (no BEGIN, no COMMIT: one round trip) and may be lost in a
        database crash without harm: counting a request, leasing deliveries."""
        self.on_deliveries: list[Callable[[frozenset[str] | None], None]] = []
        """Called after a commit that queued deliveries (wakes in-process workers)."""
        self.on_endpoints_changed: list[Callable[[frozenset[str]], None]] = []
        """Called after a commit that changed, suspended or deleted endpoints."""
        self.origin = "@" + random_base62(12)
        """Heads this store's notifications: its own listeners skip them, as its
        ``on_deliveries`` callbacks have already told this process."""

    def _session_settings(self) -> dict[str, str]:
        settings = {"search_path": self.schema} if self.schema else {}
        return {
            **settings,
            "statement_timeout": str(max(1, round(self.timeout * 1000))),  # milliseconds
            "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT,
        }

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = self._session_settings()
        try:
            self._pool = await self._create_pool(self.pool_size, settings)
            self._steps = await self._create_pool(2, {**settings, "synchronous_commit": "off"})
        except _DRIVER_ERRORS as error:
            await self.close()
            raise _translate(error) from error

    async def _create_pool(self, size: int, settings: dict[str, str]) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=size,
            server_settings=settings,
            statement_cache_size=512,
            reset=_keep_session,
            timeout=self.timeout,
            command_timeout=self.timeout + CLIENT_GRACE,
        )

    async def close(self) -> None:
        pools, self._pool, self._steps = (self._pool, self._steps), None, None
        for pool in pools:
            if pool is not None:
                # A graceful close waits for the server to answer; one that does not is cut.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pool.close(), self.timeout)

    async def _acquire(self, pool: asyncpg.Pool) -> _Driver:
        with _translated:
            return _Driver(await pool.acquire(timeout=self.timeout))

    async def _release(self, pool: asyncpg.Pool, driver: _Driver) -> None:
        """Give the connection back to its pool; one that failed on the client's side is closed
        instead (waiting for its cancellation or its reset could outlast the request's limit).
        A connection the server cut (a restart) may already be back in the pool, asyncpg having
        released it as it noticed: terminating it then raises, and nothing is left to do."""
        with contextlib.suppress(*_DRIVER_ERRORS):  # asyncpg closes what it cannot reset
            if driver.broken:
                driver.connection.terminate()
            await pool.release(driver.connection, timeout=self.timeout)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("the store is not open")
        return self._pool

    @asynccontextmanager
    async def _transaction(self, readonly: bool, durable: bool = True) -> AsyncIterator[PostgresTx]:
        # BEGIN and COMMIT go as plain statements, each together with what must accompany it
        # (synchronous_commit, NOTIFY) in one round trip; every round trip saved is one fewer
        # wake-up of this process and of the server.
        pool = self.pool
        driver = await self._acquire(pool)
        try:
            if readonly:
                yield PostgresTx(driver)
                return
            await driver.execute(BEGIN if durable else BEGIN_NOT_DURABLE)
            tx = PostgresTx(driver)
            try:
                yield tx
            except BaseException:
                await self._roll_back(driver)
                raise
            try:
                # LISTENers hear the NOTIFY when (and only if) this commits.
                await driver.execute(
                    _commit_and_notify(self.origin, tx.woken) if tx.deliveries_created else "COMMIT"
                )
            except StorageError:
                await self._roll_back(driver)
                raise
        finally:
            await self._release(pool, driver)
        if tx.deliveries_created:
            for wake in self.on_deliveries:
                wake(tx.woken)
        if tx.endpoints_changed:
            for tell in self.on_endpoints_changed:
                tell(frozenset(tx.endpoints_changed))

    @staticmethod
    async def _roll_back(driver: _Driver) -> None:
        if not driver.broken:  # a broken connection is closed, which ends its transaction
            with contextlib.suppress(StorageError):
                await driver.execute("ROLLBACK")

    async def listen(
        self, wake: Callable[[frozenset[str] | None], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``wake`` whenever another process commits new deliveries (LISTEN/NOTIFY), with
        the endpoints they are for when the notification names them. (This process's own
        commits reach ``on_deliveries`` at once; hearing them again would cost a claim.)

        A listening connection that is lost (the server restarted, an operator ended it) is
        opened again, with backoff, until the returned closer is called; ``wake(None)`` then
        says that notifications may have been missed meanwhile."""

        def heard(_connection: object, _pid: int, _channel: str, payload: object) -> None:
            origin, _, names = str(payload).partition(" ")
            if origin != self.origin:
                wake(frozenset(names.split()) or None)

        settings = {"application_name": f"bitbybit-listen{self.origin}"}
        if self.schema:
            settings["search_path"] = self.schema
        current: list[asyncpg.Connection] = []
        reconnecting: set[asyncio.Task[None]] = set()
        closed = False

        async def connect() -> None:
            with _translated:
                connection = await asyncpg.connect(
                    self.url, server_settings=settings, timeout=self.timeout
                )
                await connection.add_listener(WAKE_CHANNEL, heard)
            connection.add_termination_listener(lost)
            current[:] = [connection]

        def lost(_connection: object) -> None:
            if not closed:
                task = asyncio.get_running_loop().create_task(reconnect())
                reconnecting.add(task)
                task.add_done_callback(reconnecting.discard)

        async def reconnect() -> None:
            delay = LISTEN_RETRY_FIRST
            while not closed:
                try:
                    await connect()
                except StorageError as error:
                    log.warning("listen_lost", error=str(error), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, LISTEN_RETRY_MOST)
                    continue
                log.info("listen_restored")
                wake(None)
                return

        await connect()

        async def close() -> None:
            nonlocal closed
            closed = True
            for task in list(reconnecting):
                task.cancel()
            for connection in current:
                if not connection.is_closed():
                    await connection.close()

        return close

    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[PostgresTx]:
        return self._transaction(readonly=False, durable=durable)

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[PostgresTx]:
        return self._snapshot() if snapshot else self._transaction(readonly=True)

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[PostgresTx]:
        pool = self.pool
        driver = await self._acquire(pool)
        try:
            await driver.execute(BEGIN_SNAPSHOT)
            try:
                yield PostgresTx(driver)
            finally:
                await self._roll_back(driver)  # read only: nothing to commit
        finally:
            await self._release(pool, driver)

    @asynccontextmanager
    async def _step(self) -> AsyncIterator[PostgresTx]:
        """A ``Tx`` whose statements each commit on their own, without waiting for the disk."""
        steps = self._steps
        if steps is None:
            raise StorageError("the store is not open")
        driver = await self._acquire(steps)
        try:
            yield PostgresTx(driver)
        finally:
            await self._release(steps, driver)

    async def count_key_request(
        self, key_hash: str, window_start: int
    ) -> tuple[ApiKey, int] | None:
        async with self._step() as step:
            row = await step.db.fetchrow(_COUNT_KEY_REQUEST, key_hash, window_start)
        return None if row is None else (api_key_from_row(row), row["request_count"])

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        async with self._step() as step:  # PostgresTx.claim_due is one statement
            return await step.claim_due(owner, now, lease_until, slots)

    async def queue_gauges(
        self, now: int, shown: int
    ) -> tuple[QueueStats, list[tuple[str, int, int | None]]]:
        async with self.read() as tx:
            return await tx.queue_stats(now), await tx.queue_stats_by_target(shown)

    async def ping(self, within: float) -> None:
        deadline = time.monotonic() + within
        pool = self.pool
        with _translated:
            connection = await pool.acquire(timeout=within)
        driver = _Driver(connection)
        try:
            left = max(deadline - time.monotonic(), 0.001)
            with _Translated(driver):
                await connection.fetchval("SELECT 1", timeout=left)
        finally:
            await self._release(pool, driver)

    @asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[bool]:
        # A session lock outlives the transactions of the block, so it lives on a connection of
        # its own, never a pooled one (the pool keeps session state across uses: a lock left on
        # it would be held by whatever borrowed it next). Closing the connection releases it; so
        # does the server when the process dies. The key names the schema, so databases in
        # other schemas (the tests') do not skip each other.
        async with self._own_connection() as connection:
            with _translated:
                mine = await connection.fetchval(
                    "SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(),"
                    " 0))",
                    f"bitbybit.{name}",
                )
            yield bool(mine)

    @asynccontextmanager
    async def _own_connection(self, **settings: str) -> AsyncIterator[Any]:
        """A connection of its own, outside the pools, with the session's settings (and
        ``settings`` over them); closed when the block ends."""
        with _translated:
            connection = await asyncpg.connect(
                self.url,
                timeout=self.timeout,
                server_settings={**self._session_settings(), **settings},
            )
        try:
            yield connection
        finally:
            try:
                await asyncio.wait_for(connection.close(), self.timeout)
            except _DRIVER_ERRORS:  # a time limit is an OSError too
                connection.terminate()

    async def make_partitions(self, now: int, ahead: int) -> list[str]:
        async with self._transaction(readonly=False) as tx:
            return await partitions.make(tx.db, now, ahead)

    async def drop_partitions(self, cutoff: int) -> Dropped:
        dropped = Dropped()
        # Without the pools' statement time limit: a week's checks may read it whole.
        async with self._own_connection(statement_timeout="0") as connection:
            db = _Driver(connection)
            old, dropped.leave = await partitions.old_weeks(db, cutoff)
            for week in old:
                # Looked at first without a lock, so a week that is plainly kept locks nothing;
                # then checked again under the lock, and dropped.
                reason = await partitions.keeps(db, week, cutoff)
                if reason is None:
                    await db.execute("BEGIN")
                    try:
                        reason = await partitions.drop(db, week, cutoff)
                    except BaseException as error:
                        with contextlib.suppress(StorageError):
                            await db.execute("ROLLBACK")
                        if not isinstance(error.__cause__, asyncpg.LockNotAvailableError):
                            raise
                        # Busy (lock_timeout): the later weeks are left for the next run too.
                        dropped.kept[week.suffix] = "its tables were busy: left for the next run"
                        break
                    await db.execute("COMMIT")
                if reason is None:
                    dropped.weeks.append(week.suffix)
                else:
                    dropped.kept[week.suffix] = reason
        return dropped

    async def default_partition_rows(self, cap: int) -> dict[str, int]:
        async with self._transaction(readonly=True) as tx:
            return await partitions.default_rows(tx.db, cap)

    async def fold_counts(self) -> int:
        async with self._transaction(readonly=False) as tx:
            return await counts.fold(tx.db)

    async def schema_version(self) -> int:
        async with self._transaction(readonly=True) as tx:
            exists = await tx.db.fetchrow("SELECT to_regclass('schema_migrations') AS name")
            if exists is None or exists["name"] is None:
                return 0
            version = await tx.db.fetchrow("SELECT MAX(version) AS v FROM schema_migrations")
            return int(version["v"] or 0) if version is not None else 0

    async def migrate(self, target: int | None = None) -> list[str]:
        # Its own connection, without the pools' time limits: a migration may rewrite a large
        # table, and waits on the advisory lock for as long as another process's migration runs.
        with _translated:
            connection = await asyncpg.connect(
                self.url,
                server_settings={
                    **self._session_settings(),
                    "statement_timeout": "0",
                    "idle_in_transaction_session_timeout": "0",
                },
                timeout=self.timeout,
            )
        try:
            with _translated:
                return await self._migrate(connection, target)
        finally:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await connection.close(timeout=self.timeout)

    async def _migrate(self, connection: Any, target: int | None) -> list[str]:
        applied = []
        for migration in migrations.load(self.dialect):
            if target is not None and migration.version > target:
                break
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
                )
                done = await connection.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
                )
                if done is None:
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        " VALUES ($1, $2, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)",
                        migration.version,
                        migration.name,
                    )
                    applied.append(f"{migration.version:04d}_{migration.name}")
        return applied

    async def describe_schema(self) -> dict[str, list[str]]:
        described: dict[str, list[str]] = {}
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT table_name, column_name, data_type, is_nullable"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " ORDER BY table_name, ordinal_position"
            )
            for row in rows:
                described.setdefault(row["table_name"], []).append(
                    f"{row['column_name']} {row['data_type']}"
                    f"{' NOT NULL' if row['is_nullable'] == 'NO' else ''}"
                )
            indexes = await connection.fetch(
                "SELECT replace(replace(indexdef, ' ON ' || quote_ident(schemaname) || '.',"
                " ' ON '), ' ON ONLY ' || quote_ident(schemaname) || '.', ' ON ONLY ')"
                " AS indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                " ORDER BY indexname"
            )
            described["indexes"] = [row["indexdef"] for row in indexes]
        return described
