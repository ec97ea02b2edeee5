"""Schema migrations on SQLite and PostgreSQL: applied once, in order, and a database migrated
step by step (with data in it) ends with the same schema as a fresh install."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from importlib import resources
from typing import cast

import asyncpg
import pytest

from bitbybit.errors import StorageError
from bitbybit.ids import time_prefix
from bitbybit.models import ListQuery, Tenant
from bitbybit.store import Store, migrations
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sql import Driver, SqlTx
from tests.conftest import DIALECTS, POSTGRES_URL, make_store

T0 = 1_700_000_000_000
VERSIONS = [migration.version for migration in migrations.load("sqlite")]
HEAD = VERSIONS[-1]


def names(dialect: str) -> list[str]:
    return [f"{m.version:04d}_{m.name}" for m in migrations.load(dialect)]


# -- the migration files -----------------------------------------------------------------------


def test_every_migration_exists_for_both_dialects() -> None:
    sqlite, postgres = migrations.load("sqlite"), migrations.load("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert [m.version for m in sqlite] == list(range(1, len(sqlite) + 1))  # no gaps, from 1
    for dialect in DIALECTS:
        folder = resources.files(migrations.__name__).joinpath(dialect)
        files = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
        assert files == [f"{name}.sql" for name in names(dialect)]
        assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", file) for file in files), files
        assert all(m.sql.strip() for m in migrations.load(dialect))


# -- applying ----------------------------------------------------------------------------------


async def test_an_empty_database_has_version_zero(empty_store: Store) -> None:
    assert await empty_store.schema_version() == 0


async def test_migrating_an_empty_database_applies_every_migration(empty_store: Store) -> None:
    applied = await empty_store.migrate()
    assert applied == names(empty_store.dialect)
    assert await empty_store.schema_version() == HEAD
    schema = await empty_store.describe_schema()
    assert {"companies", "customers", "products", "orders", "events", "schema_migrations"} <= set(
        schema
    )


async def test_migrating_again_applies_nothing(empty_store: Store) -> None:
    await empty_store.migrate()
    before = await empty_store.describe_schema()
    assert await empty_store.migrate() == []
    assert await empty_store.schema_version() == HEAD
    assert await empty_store.describe_schema() == before


async def test_migrating_to_a_target_stops_there(empty_store: Store) -> None:
    all_names = names(empty_store.dialect)
    assert await empty_store.migrate(target=1) == all_names[:1]
    assert await empty_store.schema_version() == 1
    assert await empty_store.migrate(target=1) == []
    assert await empty_store.migrate() == all_names[1:]
    assert await empty_store.schema_version() == HEAD


async def test_a_sqlite_migration_that_breaks_a_foreign_key_is_rolled_back(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite migrates with foreign keys off (to rebuild tables); a migration that leaves a row
    whose parent is gone fails whole, and the store enforces foreign keys again after it."""
    stores = cast(AsyncGenerator[Store, None], make_store("sqlite", tmp_path_factory))
    store = await anext(stores)
    try:
        await store.migrate()
        broken = migrations.Migration(
            HEAD + 1,
            "orphan",
            "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms, worker)"
            " VALUES ('dlv_nowhere', 1, 0, 0, 'w'); CREATE TABLE half_done (id INTEGER)",
        )
        real = migrations.load
        monkeypatch.setattr(migrations, "load", lambda dialect: [*real(dialect), broken])
        with pytest.raises(StorageError, match="0013_orphan left a row of delivery_attempts"):
            await store.migrate()
        assert await store.schema_version() == HEAD
        schema = await store.describe_schema()
        assert "half_done" not in schema
        async with store.read() as tx:
            assert await tx.list_attempts("dlv_nowhere") == []
        with pytest.raises(StorageError, match="FOREIGN KEY"):  # enforced again
            async with store.write() as tx:
                await cast(SqlTx, tx).db.execute(
                    "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
                    " worker) VALUES ('dlv_nowhere', 1, 0, 0, 'w')"
                )
    finally:
        await stores.aclose()


# -- fresh install equals migrated schema ------------------------------------------------------

# Data for each version, written in that version's own SQL (not the current store code, which
# follows the newest schema). Add one when a migration adds tables worth carrying data through.
LIVE = Tenant("co_seed", "live")


async def _seed_v1(db: Driver, version: int) -> None:
    await db.execute(
        "INSERT INTO companies (id, name, country, created_at) VALUES ($1, $2, $3, $4)",
        "co_seed",
        "Seed Co",
        "ID",
        T0,
    )
    await db.execute(
        "INSERT INTO api_keys (id, company_id, mode, key_hash, prefix, scopes, ip_allowlist,"
        " name, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        "key_seed",
        "co_seed",
        "live",
        "hash_seed",
        "bb_live_x",
        "customers:read",
        "[]",
        None,
        T0,
    )
    await db.execute(
        "INSERT INTO customers (id, company_id, mode, email, email_key, phone_number,"
        " first_name, last_name, image_url, tags, addresses, source, search_text, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        "cust_seed",
        "co_seed",
        "live",
        "Seed@Example.com",
        "seed@example.com",
        "+628111",
        "Seed",
        None,
        None,
        '["vip"]',
        "[]",
        "api",
        "seed seed@example.com +628111",
        T0,
        T0,
    )
    await db.execute(
        "INSERT INTO products (id, company_id, mode, product_id, name, options, tags, types,"
        " search_text, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        "prod_seed",
        "co_seed",
        "live",
        "ext_seed",
        "Kopi",
        "[]",
        "[]",
        "[]",
        "kopi ext_seed",
        T0,
        T0,
    )
    await db.execute(
        "INSERT INTO variants (id, product_id, company_id, mode, position, key, price_cents)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        "var_seed",
        "prod_seed",
        "co_seed",
        "live",
        0,
        "default",
        10_000,
    )
    await db.execute(
        "INSERT INTO orders (id, company_id, mode, order_id, order_number, status,"
        " fulfillment_status, financial_status, total_cents, line_items, tags, search_text,"
        " created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        "ord_seed",
        "co_seed",
        "live",
        "ORD-1",
        1,
        "active",
        "unfulfilled",
        "paid",
        10_000,
        "[]",
        "[]",
        "ord-1",
        T0,
        T0,
    )
    await db.execute(
        "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        "evt_seed",
        "co_seed",
        "live",
        "customer.created",
        b'{"id":"cust_seed"}',
        T0,
    )


async def _seed_v2(db: Driver, version: int) -> None:
    await db.execute(
        "INSERT INTO webhook_endpoints (id, company_id, mode, url, events, status, secret,"
        " multi_signature, exhausted_in_row, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        "we_seed",
        "co_seed",
        "live",
        "https://hooks.example.com/in",
        '["customer.created"]',
        "active",
        "encrypted-secret",
        0,
        0,
        T0,
        T0,
    )
    await _insert_delivery(db, version, ("del_seed", "evt_seed", "customer.created"), "pending", 0)


async def _insert_delivery(
    db: Driver,
    version: int,
    ids: tuple[str, str, str],
    status: str,
    attempts: int,
    at: int = T0,
) -> None:
    """A delivery to ``we_seed`` made at ``at`` (``ids``: its own, its event's and that event's
    type), in version ``version``'s columns: from version 11 it carries its event's type."""
    delivery_id, event_id, event_type = ids
    typed = ("", "") if version < 11 else (", event_type", ", $7")
    await db.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status, attempts,"  # noqa: S608  # columns of our own
        f" next_attempt_at, created_at, updated_at{typed[0]})"
        f" VALUES ($1, $2, 'we_seed', 'co_seed', 'live', $3, $4, $5, $6, $6{typed[1]})",
        delivery_id,
        event_id,
        status,
        attempts,
        T0,
        at,
        *([event_type] if typed[0] else []),
    )


def _queue_columns(version: int) -> tuple[str, str]:
    """A webhook delivery's queue row in version ``version``'s schema: the columns before the
    lease and the values of those past ``$1..$3`` (from version 5 the queue names a target and
    a kind)."""
    return ("endpoint_id, due_at", "") if version < 5 else ("target, due_at, kind", ", 'webhook'")


async def _seed_v3(db: Driver, version: int) -> None:
    # From version 3 a pending delivery is one with a queue row.
    columns, kind = _queue_columns(version)
    await db.execute(
        f"INSERT INTO delivery_queue (delivery_id, {columns}) VALUES ($1, $2, $3{kind})",  # noqa: S608  # columns of our own
        "del_seed",
        "we_seed",
        T0,
    )
    await db.execute(
        "INSERT INTO idempotency_keys (company_id, mode, key, request_hash, status_code, body,"
        " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        "co_seed",
        "live",
        "idem_seed",
        "hash_seed",
        201,
        b'{"data":{}}',
        T0,
    )


async def _seed_v4(db: Driver, version: int) -> None:
    # A delivery leased by a worker when the queue learns kinds and targets (version 5).
    ids = ("del_seed_leased", "evt_seed", "customer.created")
    await _insert_delivery(db, version, ids, "pending", 1)
    columns, kind = _queue_columns(version)
    await db.execute(
        f"INSERT INTO delivery_queue (delivery_id, {columns}, lease_owner, lease_expires_at)"  # noqa: S608  # columns of our own
        f" VALUES ($1, $2, $3{kind}, $4, $5)",
        "del_seed_leased",
        "we_seed",
        T0,
        "worker-seed",
        T0 + 60_000,
    )


async def _seed_v5(db: Driver, version: int) -> None:
    # A job of another kind queued when messaging arrives (version 6).
    await db.execute(
        "INSERT INTO jobs (id, kind, target, company_id, mode, payload, status, attempts,"
        " next_attempt_at, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        "job_seed",
        "whatsapp",
        "sandbox:co_seed:live",
        "co_seed",
        "live",
        b"{}",
        "pending",
        0,
        T0,
        T0,
        T0,
    )
    await db.execute(
        "INSERT INTO delivery_queue (delivery_id, target, due_at, kind) VALUES ($1, $2, $3, $4)",
        "job_seed",
        "sandbox:co_seed:live",
        T0,
        "whatsapp",
    )


async def _seed_v6(db: Driver, version: int) -> None:
    # A template when the dashboard arrives (version 7); the key of v1 gets empty labels.
    await db.execute(
        "INSERT INTO templates (company_id, mode, name, source, language, body, param_count,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        "co_seed",
        "live",
        "welcome",
        "sandbox",
        "en",
        "Hello {{1}}",
        1,
        T0,
        T0,
    )


async def _seed_v7(db: Driver, version: int) -> None:
    # A settled job with its attempt when retention arrives (version 8, jobs_created): old
    # enough to be removed, as the pending job of v5 is not.
    await db.execute(
        "INSERT INTO jobs (id, kind, target, company_id, mode, payload, status, attempts,"
        " next_attempt_at, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        "job_seed_done",
        "whatsapp",
        "sandbox:co_seed:live",
        "co_seed",
        "live",
        b"{}",
        "succeeded",
        1,
        T0,
        T0,
        T0,
    )
    await db.execute(
        "INSERT INTO job_attempts (job_id, number, started_at, latency_ms, status_code, worker)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        "job_seed_done",
        1,
        T0,
        5,
        200,
        "worker-seed",
    )


async def _event_and_delivery(
    db: Driver,
    version: int,
    ids: tuple[str, str],
    event_type: str,
    payload: bytes,
    status: str,
    attempts: int,
    at: int,
) -> None:
    """An event of company ``co_seed`` made at ``at`` and its delivery to ``we_seed``, in
    version ``version``'s columns (``ids``: the event's and the delivery's)."""
    event_id, delivery_id = ids
    await db.execute(
        "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
        " VALUES ($1, 'co_seed', 'live', $2, $3, $4)",
        event_id,
        event_type,
        payload,
        at,
    )
    await _insert_delivery(db, version, (delivery_id, event_id, event_type), status, attempts, at)


EVENT_V8 = f"evt_{time_prefix(T0)}SeedEventV8"
DELIVERY_V8 = f"dlv_{time_prefix(T0)}SeedDelivV8"


async def _seed_v8(db: Driver, version: int) -> None:
    # An event, its delivery (settled) and two attempts with ids that begin with their time, as
    # ids have for a long time: on PostgreSQL version 9 leaves them in the legacy partitions,
    # and moves the older ids that do not begin with a time (``evt_seed`` …) to the defaults.
    ids = (EVENT_V8, DELIVERY_V8)
    await _event_and_delivery(
        db, version, ids, "customer.created", b'{"id":"cust_seed"}', "succeeded", 2, T0
    )
    for number, status in ((1, 500), (2, 200)):
        await db.execute(
            "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
            " status_code, worker) VALUES ($1, $2, $3, $4, $5, $6)",
            DELIVERY_V8,
            number,
            T0 + number,
            5,
            status,
            "worker-seed",
        )


EVENT_V9 = f"evt_{time_prefix(T0 + 86_400_000)}SeedEventV9"
DELIVERY_V9 = f"dlv_{time_prefix(T0 + 86_400_000)}SeedDelivV9"


async def _seed_v9(db: Driver, version: int) -> None:
    # Another event, a day later, and its delivery (failed) when the counts arrive (version 10,
    # which counts what the tables hold on PostgreSQL): the totals of the lists stay exact.
    ids = (EVENT_V9, DELIVERY_V9)
    await _event_and_delivery(
        db, version, ids, "order.created", b'{"id":"ord_seed"}', "failed", 5, T0 + 86_400_000
    )


EVENT_V10 = f"evt_{time_prefix(T0 + 2 * 86_400_000)}SeedEventV10"
DELIVERY_V10 = f"dlv_{time_prefix(T0 + 2 * 86_400_000)}SeedDelivV10"


async def _seed_v10(db: Driver, version: int) -> None:
    # An event of a type of its own and its delivery, before deliveries carry their event's
    # type (version 11): the migration gives every delivery its event's.
    ids = (EVENT_V10, DELIVERY_V10)
    await _event_and_delivery(
        db,
        version,
        ids,
        "product.deleted",
        b'{"id":"prod_gone"}',
        "succeeded",
        1,
        T0 + 2 * 86_400_000,
    )


EVENT_V11 = f"evt_{time_prefix(T0 + 3 * 86_400_000)}SeedEventV11"
DELIVERY_V11 = f"dlv_{time_prefix(T0 + 3 * 86_400_000)}SeedDelivV11"
RETRY_AT = T0 + 4 * 86_400_000


async def _seed_v11(db: Driver, version: int) -> None:
    # A delivery with an attempt behind it, waiting for its retry, when SQLite rebuilds the
    # deliveries and the queue keyed by endpoint (version 12): its attempt stays (the attempts
    # reference the deliveries), and it is claimed at its time with its history.
    ids = (EVENT_V11, DELIVERY_V11)
    at = T0 + 3 * 86_400_000
    await _event_and_delivery(
        db, version, ids, "order.paid", b'{"id":"ord_seed"}', "pending", 1, at
    )
    await db.execute(
        "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
        " status_code, worker) VALUES ($1, 1, $2, 5, 503, 'worker-seed')",
        DELIVERY_V11,
        at,
    )
    await db.execute(
        "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
        " VALUES ($1, 'we_seed', $2, 'webhook')",
        DELIVERY_V11,
        RETRY_AT,
    )


SEEDS: dict[int, Callable[[Driver, int], Awaitable[None]]] = {
    1: _seed_v1,
    2: _seed_v2,
    3: _seed_v3,
    4: _seed_v4,
    5: _seed_v5,
    6: _seed_v6,
    7: _seed_v7,
    8: _seed_v8,
    9: _seed_v9,
    10: _seed_v10,
    11: _seed_v11,
}


async def seed(store: Store, version: int) -> None:
    """Write the data of every version up to ``version``, in that version's SQL."""
    async with store.write() as tx:
        db = cast(SqlTx, tx).db
        for seeded_version in sorted(SEEDS):
            if seeded_version <= version:
                await SEEDS[seeded_version](db, version)


async def fresh_schema(
    dialect: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """The schema of a second, freshly installed database."""
    stores = cast(AsyncGenerator[Store, None], make_store(dialect, tmp_path_factory))
    fresh = await anext(stores)
    try:
        await fresh.migrate()
        return await fresh.describe_schema()
    finally:
        await stores.aclose()  # closes the store (and drops its PostgreSQL schema)


@pytest.mark.parametrize("version", VERSIONS[:-1] or [0])
async def test_a_database_migrated_from_each_version_equals_a_fresh_install(
    empty_store: Store, tmp_path_factory: pytest.TempPathFactory, version: int
) -> None:
    await empty_store.migrate(target=version)
    assert await empty_store.schema_version() == version
    await seed(empty_store, version)

    applied = await empty_store.migrate()
    assert applied == names(empty_store.dialect)[version:]
    assert await empty_store.schema_version() == HEAD
    assert await empty_store.describe_schema() == await fresh_schema(
        empty_store.dialect, tmp_path_factory
    )
    if version >= 1:  # the data survived and the current code reads it
        async with empty_store.read() as tx:
            company = await tx.get_company("co_seed")
            customer = await tx.find_customer(LIVE, email="SEED@example.com")
            product = await tx.get_product(LIVE, "prod_seed")
            event = await tx.get_event(LIVE, "evt_seed")
        assert company is not None
        assert company.name == "Seed Co"
        assert customer is not None
        assert (customer.id, customer.tags) == ("cust_seed", ["vip"])
        assert product is not None
        assert [v.id for v in product.variants] == ["var_seed"]
        assert event is not None
        assert event.payload == b'{"id":"cust_seed"}'
    if version >= 2:  # the pending delivery is still on its way
        async with empty_store.read() as tx:
            delivery = await tx.get_delivery(LIVE, "del_seed")
            due = await tx.due_targets(T0)
            stats = await tx.queue_stats(T0)
        assert delivery is not None
        assert delivery.status == "pending"
        # (from version 5, a whatsapp job's target has work too)
        assert due == (["we_seed"] if version < 5 else ["sandbox:co_seed:live", "we_seed"])
        queued = {2: 1, 3: 1, 4: 2}.get(version, 3)  # from 4 the leased one, from 5 the job
        later = int(version >= 11)  # from 11 a retry, due later
        assert (stats.pending, stats.due, stats.oldest_due_at) == (queued + later, queued, T0)
    if version >= 3:  # the stored response is still replayed, and prunable once expired
        async with empty_store.read() as tx:
            stored = await tx.get_stored_response(LIVE, "idem_seed")
        assert stored is not None
        assert (stored.status_code, stored.created_at) == (201, T0)
        async with empty_store.write() as tx:
            assert await tx.prune_stored_responses(T0 + 1, 10) == 1
    if version >= 4:  # the queue rows are webhook jobs for their endpoint, leases kept
        async with empty_store.read() as tx:
            rows = await cast(SqlTx, tx).db.fetch(
                "SELECT delivery_id, kind, target, lease_owner FROM delivery_queue"
                " ORDER BY delivery_id"
            )
        assert [tuple(row.values()) for row in map(dict, rows)][:2] == [
            ("del_seed", "webhook", "we_seed", None),
            ("del_seed_leased", "webhook", "we_seed", "worker-seed"),
        ]
    if version >= 5:  # the queued job is still there, and messaging's tables are empty
        async with empty_store.read() as tx:
            job = await tx.get_job(LIVE, "job_seed")
            assert await tx.list_whatsapp_numbers("co_seed") == []
        assert job is not None
        assert (job.kind, job.status) == ("whatsapp", "pending")
    if version >= 7:  # retention removes the settled job and its attempt, not the pending one
        async with empty_store.write() as tx:
            swept = await tx.sweep_jobs(T0 + 1, None, 10)
            assert await tx.get_job(LIVE, "job_seed") is not None
            assert await tx.get_job(LIVE, "job_seed_done") is None
        assert dict(swept.removed) == {"jobs": 1, "job_attempts": 1}
    if version >= 8:  # the history is read back, and on PostgreSQL it sits in the partitions
        async with empty_store.read() as tx:
            event = await tx.get_event(LIVE, EVENT_V8)
            delivery = await tx.get_delivery(LIVE, DELIVERY_V8)
            attempts = await tx.list_attempts(DELIVERY_V8)
        assert event is not None
        assert delivery is not None
        assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 200)]
        if empty_store.dialect == "postgres":
            assert await _partitions_of(empty_store) == {
                EVENT_V8: "events_legacy",
                **(
                    {EVENT_V9: "events_legacy", DELIVERY_V9: "deliveries_legacy"}
                    if version >= 9
                    else {}
                ),
                **(
                    {EVENT_V10: "events_legacy", DELIVERY_V10: "deliveries_legacy"}
                    if version >= 10
                    else {}
                ),
                **(
                    {
                        EVENT_V11: "events_legacy",
                        DELIVERY_V11: "deliveries_legacy",
                        f"{DELIVERY_V11}/1": "delivery_attempts_legacy",
                    }
                    if version >= 11
                    else {}
                ),
                "evt_seed": "events_default",
                DELIVERY_V8: "deliveries_legacy",
                "del_seed": "deliveries_legacy",  # "del_" sorts before every "dlv_…" id
                "del_seed_leased": "deliveries_legacy",
                f"{DELIVERY_V8}/1": "delivery_attempts_legacy",
                f"{DELIVERY_V8}/2": "delivery_attempts_legacy",
            }

    if version >= 11:  # the retry is claimed at its time (with the others), its history behind it
        claimed = await empty_store.claim_due(
            "worker-2", RETRY_AT, RETRY_AT + 60_000, {"we_seed": 5}
        )
        assert {job.delivery_id: (job.attempts, job.event_type) for job in claimed} == {
            "del_seed": (0, "customer.created"),
            "del_seed_leased": (1, "customer.created"),  # its lease ran out long ago
            DELIVERY_V11: (1, "order.paid"),
        }
        async with empty_store.read() as tx:
            attempts = await tx.list_attempts(DELIVERY_V11)
        assert [(a.number, a.status_code) for a in attempts] == [(1, 503)]

    if version >= 1:  # every list's total is exact (on PostgreSQL, from the counts)
        await _totals_are_exact(empty_store)
    if version >= 2:  # every delivery carries its event's type, and is found by it
        await _types_are_carried(empty_store)


async def _types_are_carried(store: Store) -> None:
    """Each seeded delivery's ``event_type`` is its event's, and the history filtered by a
    type lists exactly the deliveries of that type's events."""
    async with store.read() as tx:
        db = cast(SqlTx, tx).db
        rows = await db.fetch(
            "SELECT d.id, d.event_type, ev.type FROM deliveries d JOIN events ev"
            " ON ev.id = d.event_id WHERE d.company_id = 'co_seed'"
        )
        assert rows
        assert [row["event_type"] for row in rows] == [row["type"] for row in rows]
        for kind in {row["type"] for row in rows}:
            found, more = await tx.delivery_history(LIVE, event_type=kind, limit=100)
            assert not more
            assert sorted(d.id for d in found) == sorted(r["id"] for r in rows if r["type"] == kind)
            assert {d.event_type for d in found} == {kind}


async def _totals_are_exact(store: Store) -> None:
    """The numbered lists' totals of the seeded company, against the rows counted."""
    async with store.read(snapshot=True) as tx:
        db = cast(SqlTx, tx).db
        events = await db.fetch("SELECT type, created_at FROM events WHERE company_id = 'co_seed'")
        deliveries = await db.fetch(
            "SELECT endpoint_id, status FROM deliveries WHERE company_id = 'co_seed'"
        )
        assert (await tx.list_events(LIVE, ListQuery())).total == len(events)
        for kind in {row["type"] for row in events}:
            page = await tx.list_events(LIVE, ListQuery(filters={"type": (kind,)}))
            assert page.total == sum(row["type"] == kind for row in events)
        since = ListQuery(filters={"since": (str(T0 + 1),)})
        assert (await tx.list_events(LIVE, since)).total == sum(
            row["created_at"] >= T0 + 1 for row in events
        )
        for endpoint in {row["endpoint_id"] for row in deliveries}:
            for statuses in ((), ("failed",), ("pending", "succeeded")):
                page = await tx.list_deliveries(LIVE, endpoint_id=endpoint, statuses=statuses)
                assert page.total == sum(
                    row["endpoint_id"] == endpoint and (not statuses or row["status"] in statuses)
                    for row in deliveries
                ), (endpoint, statuses)


async def _partitions_of(store: Store) -> dict[str, str]:
    """Where each history row is: its id (an attempt's as ``delivery_id/number``) to the name
    of its partition."""
    async with store.read() as tx:
        db = cast(SqlTx, tx).db
        found = {}
        for table, key in (
            ("events", "id"),
            ("deliveries", "id"),
            ("delivery_attempts", "delivery_id || '/' || number"),
        ):
            rows = await db.fetch(
                f"SELECT {key} AS k, tableoid::regclass::text AS p FROM {table}"  # noqa: S608
            )
            found.update((row["k"], row["p"]) for row in rows)
    return found


def test_every_version_but_the_newest_has_seed_data() -> None:
    """A new migration makes the previous head an "earlier version": give it data to carry."""
    assert set(VERSIONS[:-1]) <= set(SEEDS)


async def test_the_schema_description_does_not_depend_on_where_the_store_lives(
    empty_store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await empty_store.migrate()
    mine = await empty_store.describe_schema()
    assert mine == await fresh_schema(empty_store.dialect, tmp_path_factory)
    assert mine["indexes"], "indexes are part of the description"
    assert any("customers_email" in index for index in mine["indexes"])


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_concurrent_migrations_on_postgres_apply_the_schema_once(
    empty_store: Store,
) -> None:
    assert isinstance(empty_store, PostgresStore)
    schema = empty_store.schema
    assert schema is not None
    others = [PostgresStore(POSTGRES_URL, schema=schema, pool_size=2) for _ in range(3)]
    try:
        for other in others:
            await other.open()
        results = await asyncio.gather(
            empty_store.migrate(), *(other.migrate() for other in others)
        )
    finally:
        for other in others:
            await other.close()

    everything = names("postgres")
    assert sorted(name for applied in results for name in applied) == everything
    assert await empty_store.schema_version() == HEAD
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await connection.fetch(
            f"SELECT version, name FROM {schema}.schema_migrations ORDER BY version"  # noqa: S608  # the schema name is ours
        )
    finally:
        await connection.close()
    assert [f"{row['version']:04d}_{row['name']}" for row in rows] == everything
