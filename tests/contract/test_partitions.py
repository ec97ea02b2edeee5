"""PostgreSQL's week partitions of the history tables (``store.partitions``, migration 0009).

Weeks ahead are made once; rows go to the week their id's time names (the default partition for
ids that name none); an old week goes whole (its events, deliveries and attempts together) when
nothing in it must stay, and is kept, with the reason, when something does: a delivery pending,
held, queued, changed since the cutoff, an event created since the cutoff, or a later week's
delivery of one of its events (a replay). A week whose tables are busy is left for the next run
without holding anyone up for long. The batched sweep thins the kept weeks and leaves the week of
the cutoff to be dropped whole.

Ids carry the machine's time, so these tests place rows by id around today's real date. A fresh
database keeps everything before next week in its (empty) legacy partition: ``past_weeks`` drops
it so that weeks in the past can be made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bitbybit.clock import system_clock
from bitbybit.ids import time_prefix
from bitbybit.models import Endpoint
from bitbybit.runtime import Platform
from bitbybit.services.retention import DAY_MS, retaining, run_once
from bitbybit.store import Store
from bitbybit.store.partitions import WEEK_MS, week_of, week_start
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sql import SqlTx
from tests.conftest import POSTGRES_URL, FakeClock, with_settings
from tests.contract.test_delivery_history import make_endpoint
from tests.contract.test_store import COMPANY_A, LIVE_A, make_company
from tests.integration.test_delivery import until

pytestmark = pytest.mark.parametrize("dialect", ["postgres"])

NOW = system_clock()
THIS = week_start(NOW)
OLD = THIS - 8 * WEEK_MS
"""The first of the weeks under test: it and the next two are well past a 30-day period."""
CUTOFF = NOW - 30 * DAY_MS
_serial = itertools.count(1)


def ident(prefix: str, at: int) -> str:
    """An id made at ``at`` (ms), as ``ids.new_id`` makes them."""
    return f"{prefix}_{time_prefix(at)}{next(_serial):011d}"


def suffix(at: int) -> str:
    return week_of(at).suffix


async def sql(store: Store, statement: str, *args: Any) -> list[dict[str, Any]]:
    async with store.write() as tx:
        return [dict(row) for row in await cast(SqlTx, tx).db.fetch(statement, *args)]


async def exists(store: Store, table: str) -> bool:
    rows = await sql(store, "SELECT to_regclass($1)::text AS name", table)
    return rows[0]["name"] is not None


async def partition_of(store: Store, table: str, row_id: str) -> str:
    key = "delivery_id" if table == "delivery_attempts" else "id"
    rows = await sql(
        store,
        f"SELECT tableoid::regclass::text AS p FROM {table} WHERE {key} = $1",  # noqa: S608
        row_id,
    )
    return str(rows[0]["p"])


@pytest.fixture
async def endpoint(store: Store) -> Endpoint:
    made = make_endpoint()
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_endpoint(LIVE_A, made)
    return made


@pytest.fixture
async def past_weeks(store: Store, endpoint: Endpoint) -> None:
    """The empty legacy partition dropped, and the weeks ``OLD`` to ``OLD + 2`` and this week
    and the next made."""
    assert (await store.drop_partitions(THIS + 2 * WEEK_MS)).weeks == ["legacy"]
    assert await store.make_partitions(OLD, 2) == [suffix(OLD + n * WEEK_MS) for n in range(3)]
    assert await store.make_partitions(NOW, 1) == [suffix(THIS), suffix(THIS + WEEK_MS)]


async def put(
    store: Store,
    endpoint: Endpoint,
    at: int,
    *,
    status: str = "succeeded",
    updated_at: int | None = None,
    event_id: str | None = None,
) -> tuple[str, str]:
    """An event made at ``at`` (or the existing ``event_id``), a delivery of it made at ``at``
    with ``status``, and two attempts; their ids."""
    if event_id is None:
        event_id = ident("evt", at)
        await sql(
            store,
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " VALUES ($1, $2, 'live', 'customer.created', '\\x7b7d', $3)",
            event_id,
            COMPANY_A,
            at,
        )
    delivery_id = ident("dlv", at)
    await sql(
        store,
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status, event_type,"
        " attempts, next_attempt_at, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, 'live', $5, (SELECT type FROM events WHERE id = $2), 2, $6,"
        " $6, $7)",
        delivery_id,
        event_id,
        endpoint.id,
        COMPANY_A,
        status,
        at,
        at if updated_at is None else updated_at,
    )
    for number in (1, 2):
        await sql(
            store,
            "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
            " status_code, worker) VALUES ($1, $2, $3, 5, 200, 'w')",
            delivery_id,
            number,
            at + number,
        )
    return event_id, delivery_id


async def count(store: Store, table: str) -> int:
    rows = await sql(store, f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608  # our tables
    return int(rows[0]["n"])


# -- making ------------------------------------------------------------------------------------


async def test_the_weeks_ahead_are_made_once_and_rows_go_to_their_week(
    store: Store, endpoint: Endpoint
) -> None:
    made = await store.make_partitions(NOW, 2)
    # This week is the legacy partition's (a fresh database's holds everything before next week).
    assert made == [suffix(THIS + n * WEEK_MS) for n in (1, 2)]
    assert await store.make_partitions(NOW, 2) == []
    for table in ("events", "deliveries", "delivery_attempts"):
        assert await exists(store, f"{table}_{suffix(THIS + 2 * WEEK_MS)}")

    tomorrow = THIS + WEEK_MS + 3_600_000
    event_id, delivery_id = await put(store, endpoint, tomorrow)
    today_event, _ = await put(store, endpoint, NOW)
    assert await partition_of(store, "events", event_id) == f"events_{suffix(tomorrow)}"
    assert await partition_of(store, "deliveries", delivery_id) == f"deliveries_{suffix(tomorrow)}"
    assert (
        await partition_of(store, "delivery_attempts", delivery_id)
        == f"delivery_attempts_{suffix(tomorrow)}"
    )
    assert await partition_of(store, "events", today_event) == "events_legacy"
    # An id that names no time (made before ids did) goes to the default partition.
    await sql(
        store,
        "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
        " VALUES ('evt_Z3aQ', $1, 'live', 'customer.created', '\\x7b7d', 1)",
        COMPANY_A,
    )
    assert await partition_of(store, "events", "evt_Z3aQ") == "events_default"
    assert await store.default_partition_rows(10) == {
        "events": 1,
        "deliveries": 0,
        "delivery_attempts": 0,
    }


async def test_a_week_the_default_partition_holds_rows_of_is_not_made(
    store: Store, endpoint: Endpoint, past_weeks: None
) -> None:
    later = THIS + 3 * WEEK_MS + 3_600_000
    event_id, _ = await put(store, endpoint, later)  # no partition for that week yet
    assert await partition_of(store, "events", event_id) == "events_default"
    made = await store.make_partitions(NOW, 4)
    assert suffix(later) not in made
    assert made == [suffix(THIS + n * WEEK_MS) for n in (2, 4)]
    assert await partition_of(store, "events", event_id) == "events_default"


async def test_a_lookup_by_id_reads_one_partition(
    store: Store, endpoint: Endpoint, past_weeks: None
) -> None:
    _, delivery_id = await put(store, endpoint, OLD + 60_000)
    plan = await sql(
        store, "EXPLAIN (FORMAT JSON) SELECT * FROM deliveries WHERE id = $1", delivery_id
    )
    assert relations(json.loads(plan[0]["QUERY PLAN"])[0]["Plan"]) == [f"deliveries_{suffix(OLD)}"]


def relations(node: dict[str, Any]) -> list[str]:
    """The tables a plan reads."""
    found = [node["Relation Name"]] if "Relation Name" in node else []
    for child in node.get("Plans", ()):
        found += relations(child)
    return found


# -- dropping ----------------------------------------------------------------------------------


async def test_an_old_week_goes_whole_and_a_week_with_work_in_flight_stays(
    store: Store, endpoint: Endpoint, past_weeks: None
) -> None:
    await put(store, endpoint, OLD + 60_000)
    await put(store, endpoint, OLD + 120_000)
    _, pending = await put(store, endpoint, OLD + WEEK_MS + 60_000, status="pending")
    young_event, _ = await put(store, endpoint, NOW)

    dropped = await store.drop_partitions(CUTOFF)

    # The week with nothing in flight and the empty one go; the one with a pending delivery stays.
    assert dropped.weeks == [suffix(OLD), suffix(OLD + 2 * WEEK_MS)]
    assert dropped.kept == {
        suffix(OLD + WEEK_MS): "a delivery pending, held, or attempted or changed since the cutoff"
    }
    for table in ("events", "deliveries", "delivery_attempts"):
        assert not await exists(store, f"{table}_{suffix(OLD)}")
        assert await exists(store, f"{table}_{suffix(OLD + WEEK_MS)}")
    assert await count(store, "events") == 2
    assert await count(store, "deliveries") == 2
    assert await count(store, "delivery_attempts") == 4
    assert await partition_of(store, "deliveries", pending) == f"deliveries_{suffix(OLD + WEEK_MS)}"
    assert await partition_of(store, "events", young_event) == f"events_{suffix(THIS)}"

    await sql(store, "UPDATE deliveries SET status = 'failed' WHERE id = $1", pending)
    assert (await store.drop_partitions(CUTOFF)).weeks == [suffix(OLD + WEEK_MS)]


@pytest.mark.parametrize(
    ("situation", "reason"),
    [
        ("held", "a delivery pending, held, or attempted or changed since the cutoff"),
        ("retried by hand", "a delivery pending, held, or attempted or changed since the cutoff"),
        ("queued", "a delivery in the queue"),
        ("replayed", "a later delivery of one of its events (a replay)"),
        ("event since the cutoff", "an event created since the cutoff"),
    ],
)
async def test_what_keeps_an_old_week(
    store: Store, endpoint: Endpoint, past_weeks: None, situation: str, reason: str
) -> None:
    at = OLD + 60_000
    if situation == "held":
        await put(store, endpoint, at, status="held")
    elif situation == "retried by hand":
        await put(store, endpoint, at, updated_at=CUTOFF + 1)
    elif situation == "queued":
        _, delivery_id = await put(store, endpoint, at, status="failed")
        await sql(
            store,
            "INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
            " VALUES ($1, $2, $3, 'webhook')",
            delivery_id,
            endpoint.id,
            NOW,
        )
    elif situation == "replayed":
        event_id, _ = await put(store, endpoint, at)
        await put(store, endpoint, NOW, event_id=event_id)
    else:
        await sql(
            store,
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " VALUES ($1, $2, 'live', 'customer.created', '\\x7b7d', $3)",
            ident("evt", at),
            COMPANY_A,
            CUTOFF,
        )

    dropped = await store.drop_partitions(CUTOFF)

    assert dropped.kept == {suffix(OLD): reason}
    assert suffix(OLD) not in dropped.weeks
    assert await exists(store, f"events_{suffix(OLD)}")
    assert await count(store, f"events_{suffix(OLD)}") == 1


@pytest.mark.parametrize("holding", ["a retry by hand", "a replay of one of its events"])
async def test_a_busy_week_is_left_for_the_next_run_and_holds_nobody_up(
    store: Store, endpoint: Endpoint, past_weeks: None, holding: str
) -> None:
    event_id, delivery_id = await put(store, endpoint, OLD + 60_000)
    schema = cast(PostgresStore, store).schema
    other = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": str(schema)})
    try:
        # Another transaction is using that week and has not ended.
        busy = other.transaction()
        await busy.start()
        if holding == "a retry by hand":
            await other.execute("UPDATE deliveries SET attempts = 3 WHERE id = $1", delivery_id)
        else:  # as services.webhooks.replay locks the event before it queues it again
            await other.execute("SELECT id FROM events WHERE id = $1 FOR KEY SHARE", event_id)

        dropped = await store.drop_partitions(CUTOFF)

        assert dropped.weeks == []
        assert dropped.kept[suffix(OLD)] == "its tables were busy: left for the next run"
        # That transaction was not made to fail, and goes on.
        await other.execute("UPDATE deliveries SET attempts = 4 WHERE id = $1", delivery_id)
        await busy.commit()
    finally:
        await other.close()
    assert (await store.drop_partitions(CUTOFF)).weeks == [
        suffix(OLD),
        suffix(OLD + WEEK_MS),
        suffix(OLD + 2 * WEEK_MS),
    ]


async def test_removing_a_delivery_removes_its_attempts_in_its_week(
    store: Store, endpoint: Endpoint, past_weeks: None
) -> None:
    await put(store, endpoint, OLD + 60_000)
    await put(store, endpoint, NOW)
    assert await count(store, "delivery_attempts") == 4
    async with store.write() as tx:
        assert await tx.delete_endpoint(LIVE_A, endpoint.id)
    assert await count(store, "deliveries") == 0
    assert await count(store, "delivery_attempts") == 0


# -- a whole run -------------------------------------------------------------------------------


async def test_a_run_drops_the_old_weeks_and_counts_them(
    platform: Platform, endpoint: Endpoint, past_weeks: None
) -> None:
    store = platform.store
    await put(store, endpoint, OLD + 60_000)
    await put(store, endpoint, OLD + WEEK_MS + 60_000, status="held")
    clock = FakeClock()
    clock.now = NOW
    before = REGISTRY.get_sample_value("bitbybit_retention_partitions_dropped_total") or 0.0

    done = await run_once(with_settings(platform, clock=clock, retention_days=30), pause=0)

    assert done.outcome == "succeeded"
    assert done.dropped.weeks == [suffix(OLD), suffix(OLD + 2 * WEEK_MS)]
    assert list(done.dropped.kept) == [suffix(OLD + WEEK_MS)]
    assert REGISTRY.get_sample_value("bitbybit_retention_partitions_dropped_total") == before + 2
    assert REGISTRY.get_sample_value("bitbybit_retention_partitions_kept") == 1
    # The weeks ahead were made too (by the machine's clock), and nothing is in the defaults.
    assert await exists(store, f"events_{suffix(THIS + 2 * WEEK_MS)}")
    assert REGISTRY.get_sample_value("bitbybit_partition_default_rows", {"table": "events"}) == 0
    # What the kept week holds is the batched sweep's to judge: its delivery is held, so it stays.
    assert await count(store, "deliveries") == 1


async def test_runs_of_two_processes_at_once_make_each_week_once(platform: Platform) -> None:
    other = PostgresStore(POSTGRES_URL, schema=cast(PostgresStore, platform.store).schema)
    await other.open()
    try:
        made = await asyncio.gather(
            run_once(platform, pause=0), run_once(Platform(other, platform.settings), pause=0)
        )
    finally:
        await other.close()
    assert sorted(run.outcome for run in made) == ["skipped", "succeeded"]
    assert await exists(platform.store, f"events_{suffix(THIS + 2 * WEEK_MS)}")


async def test_weeks_the_database_refuses_to_make_at_start_are_made_by_the_next_run(
    platform: Platform,
) -> None:
    """As ``serve`` and ``worker`` start (``retaining``), the weeks ahead are made; a database
    that refuses (here: another session holds ``events`` locked, so making a week gives up at
    its lock timeout) is logged, the process goes on, and the next run makes them."""
    schema = cast(PostgresStore, platform.store).schema
    ahead = f"events_{suffix(THIS + 2 * WEEK_MS)}"
    other = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": str(schema)})
    try:
        locked = other.transaction()
        await locked.start()
        await other.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        with capture_logs() as logs:
            async with retaining(platform):
                started = True  # the block runs: the process goes on
        await locked.rollback()
    finally:
        await other.close()
    assert started
    refused = [log for log in logs if log["event"] == "partitions_not_made"]
    assert len(refused) == 1, logs
    assert "due to lock timeout" in refused[0]["error"]
    assert not await exists(platform.store, ahead)

    assert (await run_once(platform, pause=0)).outcome == "succeeded"
    assert await exists(platform.store, ahead)


async def test_the_sweep_leaves_the_week_of_the_cutoff_to_be_dropped_whole(
    platform: Platform, endpoint: Endpoint, past_weeks: None
) -> None:
    store = platform.store
    cutoff_week = week_of(CUTOFF)
    assert cutoff_week.start is not None
    await store.make_partitions(CUTOFF, 0)
    # Older than the cutoff, in its week: deleted row by row now, the week would be empty by
    # the time it could be dropped.
    waiting, _ = await put(store, endpoint, min(cutoff_week.start + 60_000, CUTOFF - 1))
    # In an older week that a held delivery keeps: the sweep removes what it can there.
    swept, _ = await put(store, endpoint, OLD + WEEK_MS + 60_000)
    await put(store, endpoint, OLD + WEEK_MS + 120_000, status="held")

    def at(now: int) -> Platform:
        clock = FakeClock()
        clock.now = now
        return with_settings(platform, clock=clock, retention_days=30)

    done = await run_once(at(NOW), pause=0)

    assert suffix(OLD + WEEK_MS) in done.dropped.kept
    assert done.removed["events"] == 1
    events = {row["id"] for row in await sql(store, "SELECT id FROM events")}
    assert swept not in events
    assert waiting in events
    later = await run_once(at(cutoff_week.end + 30 * DAY_MS), pause=0)
    assert cutoff_week.suffix in later.dropped.weeks
    assert not await exists(store, f"events_{cutoff_week.suffix}")


KILLED_WITHIN = 30.0


async def test_a_process_killed_in_the_middle_of_a_drop_leaves_the_week_whole(
    store: Store, endpoint: Endpoint, past_weeks: None, tmp_path: Path
) -> None:
    """A real process begins to drop an old week and is killed with SIGKILL while its drop
    transaction holds some of the week's locks and waits for the rest (another transaction is
    reading the week's event FOR KEY SHARE): nothing of the week is gone, and the next run
    drops it whole."""
    event_id, delivery_id = await put(store, endpoint, OLD + 60_000)
    schema = cast(PostgresStore, store).schema
    other = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": str(schema)})
    watcher = await asyncpg.connect(POSTGRES_URL)
    program = (
        "import asyncio, sys\n"
        "from bitbybit.store.postgres import PostgresStore\n"
        "async def main():\n"
        "    store = PostgresStore(sys.argv[1], schema=sys.argv[2], pool_size=1)\n"
        "    await store.open()\n"
        "    await store.drop_partitions(int(sys.argv[3]))\n"
        "asyncio.run(main())\n"
    )
    log = tmp_path / "dropper.log"
    try:
        busy = other.transaction()
        await busy.start()
        await other.execute("SELECT id FROM events WHERE id = $1 FOR KEY SHARE", event_id)
        with log.open("wb") as out:
            dropper = await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", program, POSTGRES_URL, str(schema), str(CUTOFF)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        dropping = f"LOCK TABLE %{suffix(OLD)}%"

        async def waiting_for_the_lock() -> bool:
            assert dropper.returncode is None, log.read_text()
            # Watched from outside that transaction: within one, pg_stat_activity stays as it
            # was first read.
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE $1",
                    dropping,
                )
            )

        async def gone() -> bool:
            return not await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1", dropping
            )

        try:
            await until(waiting_for_the_lock, KILLED_WITHIN)
        finally:
            dropper.send_signal(signal.SIGKILL)
            await asyncio.wait_for(dropper.wait(), KILLED_WITHIN)
        await busy.commit()
        # Its backend learns of the kill when it next writes to the dead client, and ends,
        # rolling its transaction back.
        await until(gone, KILLED_WITHIN)
    finally:
        await other.close()
        await watcher.close()

    for table in ("events", "deliveries", "delivery_attempts"):
        assert await exists(store, f"{table}_{suffix(OLD)}")
    assert await partition_of(store, "events", event_id) == f"events_{suffix(OLD)}"
    assert await partition_of(store, "deliveries", delivery_id) == f"deliveries_{suffix(OLD)}"
    assert await count(store, f"delivery_attempts_{suffix(OLD)}") == 2
    # The killed process's transaction is gone with it (PostgreSQL rolled it back, its locks
    # with it): the next run drops the week whole.
    assert (await store.drop_partitions(CUTOFF)).weeks == [
        suffix(OLD),
        suffix(OLD + WEEK_MS),
        suffix(OLD + 2 * WEEK_MS),
    ]
    assert await count(store, "deliveries") == 0
