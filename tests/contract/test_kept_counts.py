"""The exact ``total`` of the numbered event and delivery lists, whatever changed the rows.

On PostgreSQL the totals come from the counts that triggers keep as rows change
(``store.sql.counts``, migration 0010): every kind of change is checked against the rows
themselves (inserts of one row and of many, status changes, deletes, an endpoint's deletion and
its cascade, a week's partitions dropped), time filters that start and end at and between day
boundaries, folding, and writers, folds and readers at once (each snapshot's total is the count
of its rows). On SQLite, which counts from an index, the same totals hold.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from bitbybit.delivery.worker import Worker
from bitbybit.errors import StorageUnavailable
from bitbybit.ids import time_prefix
from bitbybit.models import Endpoint, ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.store import Store
from bitbybit.store.partitions import WEEK_MS
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sql import SqlTx, counts
from tests.contract.test_delivery_history import make_endpoint
from tests.contract.test_partitions import NOW, OLD, THIS, endpoint, past_weeks, put
from tests.contract.test_store import COMPANY_A, LIVE_A, make_company, make_event
from tests.integration.test_delivery import until

DAY = counts.DAY_MS
D0 = (NOW // DAY - 6) * DAY
"""Midnight (UTC) six days ago: the rows of these tests are made over the week from there."""
TYPES = ("customer.created", "order.created", "order.updated")
STATUSES = ("succeeded", "pending", "failed", "held")
TEST_A = Tenant(COMPANY_A, "test")
_serial = itertools.count(1)

__all__ = ["endpoint", "past_weeks"]  # fixtures, used by name


def ident(prefix: str, at: int) -> str:
    return f"{prefix}_{time_prefix(at)}{next(_serial):011d}"


async def sql(store: Store, statement: str, *args: Any) -> list[dict[str, Any]]:
    async with store.write() as tx:
        return [dict(row) for row in await cast(SqlTx, tx).db.fetch(statement, *args)]


async def add_events(store: Store, rows: list[tuple[str, str, str, int]]) -> None:
    """Events ``(id, mode, type, created_at)`` of company A, in one statement."""
    values = ", ".join(
        f"(${4 * n + 1}, '{COMPANY_A}', ${4 * n + 2}, ${4 * n + 3}, $0, ${4 * n + 4})"
        for n in range(len(rows))
    )
    await sql(
        store,
        "INSERT INTO events (id, company_id, mode, type, payload, created_at)"  # noqa: S608
        f" VALUES {values}".replace("$0", f"${4 * len(rows) + 1}"),
        *[value for row in rows for value in row],
        b"{}",
    )


async def add_deliveries(store: Store, rows: list[tuple[str, str, str, str, str, int]]) -> None:
    """Deliveries ``(id, event_id, endpoint_id, mode, status, created_at)`` of company A."""
    values = ", ".join(
        f"(${6 * n + 1}, ${6 * n + 2}, ${6 * n + 3}, '{COMPANY_A}', ${6 * n + 4}, ${6 * n + 5},"  # noqa: S608
        f" (SELECT type FROM events WHERE id = ${6 * n + 2}),"
        f" 1, ${6 * n + 6}, ${6 * n + 6}, ${6 * n + 6})"
        for n in range(len(rows))
    )
    await sql(
        store,
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"  # noqa: S608
        f" event_type, attempts, next_attempt_at, created_at, updated_at) VALUES {values}",
        *[value for row in rows for value in row],
    )


def windows() -> list[tuple[int | None, int | None]]:
    """``since``/``until`` pairs (ms, both inclusive) at, around and between day boundaries."""
    edges = [D0 + day * DAY + offset for day in (0, 1, 3, 6) for offset in (-1, 0, 1, DAY // 2)]
    found: list[tuple[int | None, int | None]] = [(None, None)]
    found += [(edge, None) for edge in edges] + [(None, edge) for edge in edges]
    found += [(low, high) for low in edges for high in edges if low <= high]
    return found


async def assert_exact(store: Store, endpoints: list[Endpoint]) -> None:
    """Every list total of company A's two modes against its rows, read in one snapshot."""
    async with store.read(snapshot=True) as tx:
        db = cast(SqlTx, tx).db
        events = await db.fetch(
            "SELECT mode, type, created_at FROM events WHERE company_id = $1", COMPANY_A
        )
        deliveries = await db.fetch(
            "SELECT mode, endpoint_id, status FROM deliveries WHERE company_id = $1", COMPANY_A
        )
        for tenant in (LIVE_A, TEST_A):
            mine = [row for row in events if row["mode"] == tenant.mode]
            kinds: tuple[str, ...]
            for kinds in ((), TYPES[:1], TYPES[1:]):
                for low, high in windows():
                    filters: dict[str, tuple[str, ...]] = {"type": kinds} if kinds else {}
                    if low is not None:
                        filters["since"] = (str(low),)
                    if high is not None:
                        filters["until"] = (str(high),)
                    page = await tx.list_events(tenant, ListQuery(limit=1, filters=filters))
                    expected = sum(
                        (not kinds or row["type"] in kinds)
                        and (low is None or row["created_at"] >= low)
                        and (high is None or row["created_at"] <= high)
                        for row in mine
                    )
                    assert page.total == expected, (tenant, kinds, low, high)
            sent = [row for row in deliveries if row["mode"] == tenant.mode]
            for endpoint in [None, *(e.id for e in endpoints)]:
                for statuses in ((), ("succeeded",), ("failed", "held"), ("pending", "lost")):
                    page = await tx.list_deliveries(
                        tenant, endpoint_id=endpoint, statuses=statuses, limit=1
                    )
                    expected = sum(
                        (endpoint is None or row["endpoint_id"] == endpoint)
                        and (not statuses or row["status"] in statuses)
                        for row in sent
                    )
                    assert page.total == expected, (tenant, endpoint, statuses)


@pytest.fixture
async def endpoints(store: Store) -> list[Endpoint]:
    """Two live endpoints of company A and a test one (last)."""
    made = [make_endpoint(), make_endpoint(), make_endpoint()]
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        for endpoint, tenant in zip(made, (LIVE_A, LIVE_A, TEST_A), strict=True):
            await tx.insert_endpoint(tenant, endpoint)
    return made


async def test_totals_match_the_rows_after_every_kind_of_change(
    store: Store, endpoints: list[Endpoint]
) -> None:
    rng = random.Random(7)
    events = []
    for n in range(60):  # over the week, around midnights too
        at = D0 + rng.choice([0, 1, 3, 6]) * DAY + rng.choice([-1, 0, 1, 5, DAY // 2, DAY - 1])
        events.append((ident("evt", at), rng.choice(["live", "live", "test"]), TYPES[n % 3], at))
    await add_events(store, events[:50])  # many rows in a statement
    for event in events[50:]:  # and one a statement
        await add_events(store, [event])
    deliveries = [
        (ident("dlv", at), event_id, endpoint.id, mode, rng.choice(STATUSES), at)
        for event_id, mode, _, at in events
        for endpoint in (endpoints[:2] if mode == "live" else endpoints[2:])
        if rng.random() < 0.7
    ]
    await add_deliveries(store, deliveries)
    await assert_exact(store, endpoints)

    # Status changes, many in a statement and one alone; an update that changes no status.
    await sql(
        store,
        "UPDATE deliveries SET status = 'succeeded', attempts = attempts + 1"
        " WHERE status = 'pending' AND endpoint_id = $1",
        endpoints[0].id,
    )
    await sql(store, "UPDATE deliveries SET status = 'held' WHERE id = $1", deliveries[3][0])
    await sql(store, "UPDATE deliveries SET attempts = attempts + 1, last_error = 'x'")
    await assert_exact(store, endpoints)

    # Deletes: some deliveries, the events no delivery names, then one endpoint (cascading).
    await sql(store, "DELETE FROM deliveries WHERE status = 'failed' AND mode = 'test'")
    await sql(
        store,
        "DELETE FROM events WHERE company_id = $1 AND created_at < $2"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
        COMPANY_A,
        D0 + 2 * DAY,
    )
    await assert_exact(store, endpoints)
    async with store.write() as tx:
        assert await tx.delete_endpoint(LIVE_A, endpoints[0].id)
    await assert_exact(store, endpoints)
    await store.fold_counts()
    await assert_exact(store, endpoints)


async def test_the_store_writes_are_counted(store: Store, endpoints: list[Endpoint]) -> None:
    """The store's own statements (batched inserts, the worker's results) keep the counts."""
    events = [
        make_event(TYPES[n % 3], D0 + n * DAY - n, id=ident("evt", D0 + n * DAY - n))
        for n in range(4)
    ]
    async with store.write() as tx:
        await tx.insert_events(LIVE_A, events)
        for event in events:
            await tx.queue_deliveries(LIVE_A, event, endpoints[:2], D0)
    await assert_exact(store, endpoints)


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_folding_leaves_a_row_a_key_and_the_same_totals(
    store: Store, endpoints: list[Endpoint]
) -> None:
    made = [ident("evt", D0 + n) for n in range(30)]
    for n, made_id in enumerate(made):  # thirty statements: thirty changes of one key
        await add_events(store, [(made_id, "live", TYPES[0], D0 + n)])
    event = made[0]
    await add_deliveries(store, [(ident("dlv", D0), event, endpoints[1].id, "live", "pending", D0)])
    await sql(store, "UPDATE deliveries SET status = 'succeeded'")  # two changes
    await sql(store, "DELETE FROM deliveries")  # the changes of each key sum to nothing
    await assert_exact(store, endpoints)

    assert await store.fold_counts() == 30 + 4
    assert await sql(store, "SELECT * FROM event_counts") == [
        {"company_id": COMPANY_A, "mode": "live", "type": TYPES[0], "day": D0 // DAY, "n": 30}
    ]
    assert await sql(store, "SELECT * FROM event_count_changes") == []
    assert await sql(store, "SELECT * FROM delivery_counts") == []  # nothing came of them
    await assert_exact(store, endpoints)
    assert await store.fold_counts() == 0  # nothing left to fold

    # A count that comes to nothing goes: a delivery folded, then deleted and folded again.
    await add_deliveries(store, [(ident("dlv", D0), event, endpoints[1].id, "live", "held", D0)])
    assert await store.fold_counts() == 1
    assert len(await sql(store, "SELECT * FROM delivery_counts")) == 1
    async with store.write() as tx:
        assert await tx.delete_endpoint(LIVE_A, endpoints[1].id)  # the cascade deletes it
    assert await store.fold_counts() == 1
    assert await sql(store, "SELECT * FROM delivery_counts") == []
    await assert_exact(store, endpoints)


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_a_fold_while_another_runs_skips_at_once(
    store: Store, endpoints: list[Endpoint]
) -> None:
    await add_events(store, [(ident("evt", D0), "live", TYPES[0], D0)])
    async with store.write() as tx:
        assert await counts.fold(cast(SqlTx, tx).db) == 1  # holds the fold's lock until commit
        await add_events(store, [(ident("evt", D0), "live", TYPES[0], D0)])
        assert await asyncio.wait_for(store.fold_counts(), 5) == 0
    assert await store.fold_counts() == 1
    await assert_exact(store, endpoints)


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_every_snapshot_is_exact_while_writers_and_folds_run(
    store: Store, endpoints: list[Endpoint]
) -> None:
    assert isinstance(store, PostgresStore)
    done = asyncio.Event()
    snapshots = 0

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            at = D0 + rng.randrange(7 * DAY)
            event_id = ident("evt", at)
            async with store.write() as tx:
                db = cast(SqlTx, tx).db
                await db.execute(
                    "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
                    " VALUES ($1, $2, 'live', $3, $5, $4)",
                    event_id,
                    COMPANY_A,
                    rng.choice(TYPES),
                    at,
                    b"{}",
                )
                await db.execute(
                    "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
                    " event_type, attempts, next_attempt_at, created_at, updated_at)"
                    " SELECT $1 || e.n, $2, e.id, $3, 'live', 'pending',"
                    " (SELECT type FROM events WHERE id = $2), 0, $4, $4, $4"
                    " FROM unnest($5::text[]) WITH ORDINALITY AS e(id, n)",
                    ident("dlv", at),
                    event_id,
                    COMPANY_A,
                    at,
                    [endpoint.id for endpoint in endpoints[:2]],
                )
            async with store.write() as tx:
                await cast(SqlTx, tx).db.execute(
                    "UPDATE deliveries SET status = $1 WHERE id IN (SELECT id FROM deliveries"
                    " WHERE status = 'pending' ORDER BY random() LIMIT 2)",
                    rng.choice(STATUSES),
                )
            await asyncio.sleep(0)

    async def folder() -> None:
        while not done.is_set():
            await store.fold_counts()
            await asyncio.sleep(0.005)

    async def reader() -> None:
        nonlocal snapshots
        while not done.is_set():
            async with store.read(snapshot=True) as tx:
                db = cast(SqlTx, tx).db
                page = await tx.list_events(LIVE_A, ListQuery(limit=1))
                rows = await db.fetchrow("SELECT COUNT(*) AS n FROM events")
                assert rows is not None
                assert page.total == rows["n"]
                for status in STATUSES:
                    listed = await tx.list_deliveries(
                        LIVE_A, endpoint_id=endpoints[0].id, statuses=(status,), limit=1
                    )
                    found = await db.fetchrow(
                        "SELECT COUNT(*) AS n FROM deliveries WHERE endpoint_id = $1"
                        " AND status = $2",
                        endpoints[0].id,
                        status,
                    )
                    assert found is not None
                    assert listed.total == found["n"], status
            snapshots += 1

    checks = [asyncio.create_task(folder()), asyncio.create_task(reader())]
    try:
        await asyncio.gather(*(writer(seed) for seed in range(6)))
    finally:
        done.set()
        await asyncio.gather(*checks)
    assert snapshots > 10
    await store.fold_counts()
    await assert_exact(store, endpoints)


@pytest.mark.parametrize("dialect", ["postgres"])
@pytest.mark.usefixtures("past_weeks")
async def test_a_dropped_week_leaves_the_counts_with_it(store: Store, endpoint: Endpoint) -> None:
    for at in (OLD + 1, OLD + 3 * DAY, OLD + WEEK_MS + 5):  # two old weeks
        await put(store, endpoint, at)
    await put(store, endpoint, THIS + 1)
    await put(store, endpoint, NOW, status="failed")
    await assert_exact(store, [endpoint])
    dropped = await store.drop_partitions(THIS - WEEK_MS)
    assert len(dropped.weeks) == 3  # the two with rows, and the empty third of past_weeks
    await assert_exact(store, [endpoint])
    async with store.read() as tx:
        assert (await tx.list_events(LIVE_A, ListQuery())).total == 2
    await store.fold_counts()
    await assert_exact(store, [endpoint])


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_a_worker_folds_the_counts_and_a_failed_fold_stops_nothing(
    store: Store, platform: Platform, endpoints: list[Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        await add_events(store, [(ident("evt", D0 + n), "live", TYPES[0], D0 + n)])
    worker = Worker(platform, concurrency=1)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker._stats_loop(stop))

    async def folded() -> bool:
        return not await sql(store, "SELECT 1 FROM event_count_changes")

    try:
        await until(folded)
    finally:
        stop.set()
        await loop
    assert await sql(store, "SELECT n FROM event_counts") == [{"n": 3}]

    async def refused() -> int:
        raise StorageUnavailable("the database is away")

    monkeypatch.setattr(store, "fold_counts", refused)
    with capture_logs() as logs:
        await worker.fold_counts()
    assert [(log["event"], log["error"]) for log in logs] == [
        ("counts_not_folded", "the database is away")
    ]
    await assert_exact(store, endpoints)
