"""Retention's store calls on both databases (``sweep_events``, ``sweep_jobs``,
``export_events``) and a whole run (``services.retention.run_once``): old settled events go with
their deliveries and attempts, work in flight and its event stay, batches are bounded and go on
from their cursor, settled jobs go with their attempts, the export pages oldest first; on
PostgreSQL one run at a time (the advisory lock), on SQLite no lock to take.

Rows are made the way production makes them: events queued to endpoints by
``queue_deliveries``, claimed and recorded by the worker's store calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import pytest
from prometheus_client import REGISTRY

from bitbybit.models import AttemptResult, Endpoint, Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.services.retention import DAY_MS, run_once
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sql import SqlTx
from tests.conftest import POSTGRES_URL, FakeClock, with_settings
from tests.contract.test_delivery_history import NeverSuspend, make_endpoint
from tests.contract.test_store import (
    COMPANY_A,
    COMPANY_B,
    LIVE_A,
    LIVE_B,
    T0,
    TEST_A,
    make_company,
    make_event,
)

MINUTE = 60_000
CUTOFF = T0 + 30 * DAY_MS
RECENT = CUTOFF + DAY_MS
TABLES = ("events", "deliveries", "delivery_attempts", "jobs", "job_attempts")


def result(job_id: str, target: str, status: str, at: int, kind: str = "webhook") -> AttemptResult:
    code = 200 if status == "succeeded" else 500
    error = None if status == "succeeded" else "HTTP 500"
    return AttemptResult(
        job_id, target, 1, at, 7, code, error, b"answer", status, at + MINUTE, kind=kind
    )


async def counts(store: Store) -> dict[str, int]:
    """Rows per table, every company's."""
    found = {}
    async with store.read() as tx:
        db = cast(SqlTx, tx).db
        for table in (*TABLES, "delivery_queue"):
            row = await db.fetchrow(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608  # our tables
            found[table] = int(row["n"]) if row else 0
    return found


async def send(
    store: Store, endpoints: list[Endpoint], at: int, outcome: dict[str, str]
) -> list[str]:
    """Claim what is due for ``endpoints`` at ``at`` and record one attempt each:
    ``outcome[endpoint id]`` (``succeeded``, ``failed``, or ``pending``: to be retried)."""
    claimed = await store.claim_due("w", at, at + MINUTE, {e.id: 100 for e in endpoints})
    results = [result(j.delivery_id, j.target, outcome[j.target], at) for j in claimed]
    async with store.write(durable=False) as tx:
        await tx.record_attempts("w", results, at, NeverSuspend())
    return [j.delivery_id for j in claimed]


@dataclass
class World:
    """Company A (live), events at ``T0`` + n minutes, delivered to ``ok`` (succeeds) and
    ``bad`` (fails) or ``held`` (suspended):

    - ``settled``: both deliveries settled (succeeded, failed): goes;
    - ``bare``: no delivery at all (no endpoint wanted it): goes;
    - ``retrying``: ``bad``'s delivery failed once and waits for its retry: stays;
    - ``held``: a delivery held for the suspended endpoint: stays;
    - ``retried``: settled long ago, then retried by hand after the cutoff (succeeded): stays;
    - ``young``: created after the cutoff, settled: stays.

    Company B and A's test mode get a settled old event each: another tenant's sweep leaves
    them alone."""

    ok: Endpoint
    bad: Endpoint
    held: Endpoint
    settled: Event
    bare: Event
    retrying: Event
    held_event: Event
    retried: Event
    young: Event
    others: dict[Tenant, Event]


async def _queue(store: Store, tenant: Tenant, event: Event, endpoints: list[Endpoint]) -> None:
    async with store.write() as tx:
        await tx.insert_event(tenant, event)
        await tx.queue_deliveries(tenant, event, endpoints, event.created_at)


@pytest.fixture
async def world(store: Store) -> World:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_company(make_company(COMPANY_B, "Globex"))
    ok, bad, held = make_endpoint(), make_endpoint(), make_endpoint("suspended")
    others = {}
    for tenant in (LIVE_B, TEST_A):
        other_ok = make_endpoint()
        async with store.write() as tx:
            await tx.insert_endpoint(tenant, other_ok)
        others[tenant] = make_event("order.created", T0)
        await _queue(store, tenant, others[tenant], [other_ok])
        await send(store, [other_ok], T0 + MINUTE, {other_ok.id: "succeeded"})
    async with store.write() as tx:
        for endpoint in (ok, bad, held):
            await tx.insert_endpoint(LIVE_A, endpoint)
    world = World(
        ok,
        bad,
        held,
        settled=make_event("customer.created", T0),
        bare=make_event("customer.updated", T0 + MINUTE),
        retrying=make_event("order.created", T0 + 2 * MINUTE),
        held_event=make_event("order.updated", T0 + 3 * MINUTE),
        retried=make_event("product.created", T0 + 4 * MINUTE),
        young=make_event("customer.deleted", RECENT),
        others=others,
    )
    await _queue(store, LIVE_A, world.settled, [ok, bad])
    await _queue(store, LIVE_A, world.bare, [])
    await _queue(store, LIVE_A, world.retried, [ok])
    await send(store, [ok, bad], T0 + 10 * MINUTE, {ok.id: "succeeded", bad.id: "failed"})
    await _queue(store, LIVE_A, world.retrying, [ok, bad])
    await send(store, [ok, bad], T0 + 11 * MINUTE, {ok.id: "succeeded", bad.id: "pending"})
    await _queue(store, LIVE_A, world.held_event, [held])
    # The retried event's delivery, retried by hand after the cutoff, succeeded then.
    async with store.read() as tx:
        retried = await tx.list_deliveries(LIVE_A, event_id=world.retried.id)
    async with store.write() as tx:
        await tx.requeue([d.id for d in retried.items], RECENT)
    await send(store, [ok], RECENT, {ok.id: "succeeded"})
    await _queue(store, LIVE_A, world.young, [ok])
    await send(store, [ok], RECENT + MINUTE, {ok.id: "succeeded"})
    return world


async def events_of(store: Store, tenant: Tenant = LIVE_A) -> set[str]:
    async with store.read() as tx:
        items, more = await tx.event_history(tenant, limit=1000)
    assert not more
    return {event.id for event in items}


async def sweep(store: Store, tenant: Tenant = LIVE_A, limit: int = 100) -> dict[str, int]:
    """Sweep the tenant's events to the end; the rows removed per table."""
    removed: dict[str, int] = {}
    after = None
    while True:
        async with store.write() as tx:
            swept = await tx.sweep_events(tenant, CUTOFF, after, limit)
        for table, rows in swept.removed.items():
            removed[table] = removed.get(table, 0) + rows
        if not swept.more:
            return removed
        after = swept.last


# -- events, deliveries, attempts ----------------------------------------------------------------


async def test_old_settled_events_go_with_their_deliveries_and_attempts(
    store: Store, world: World
) -> None:
    before = await counts(store)
    async with store.read() as tx:
        settled = await tx.list_deliveries(LIVE_A, event_id=world.settled.id)
    assert {d.status for d in settled.items} == {"succeeded", "failed"}

    removed = await sweep(store)

    assert removed == {"events": 2, "deliveries": 2, "delivery_attempts": 2}
    assert await events_of(store) == {
        world.retrying.id,
        world.held_event.id,
        world.retried.id,
        world.young.id,
    }
    after = await counts(store)
    assert {t: before[t] - after[t] for t in before} == {
        "events": 2,
        "deliveries": 2,
        "delivery_attempts": 2,
        "jobs": 0,
        "job_attempts": 0,
        "delivery_queue": 0,
    }
    async with store.read() as tx:
        for delivery in settled.items:
            assert await tx.get_delivery(LIVE_A, delivery.id) is None
            assert await tx.list_attempts(delivery.id) == []
        assert await tx.get_event(LIVE_A, world.settled.id) is None
        assert await tx.get_event(LIVE_A, world.bare.id) is None


async def test_work_in_flight_keeps_its_event_and_every_delivery_of_it(
    store: Store, world: World
) -> None:
    await sweep(store)
    async with store.read() as tx:
        retrying = await tx.list_deliveries(LIVE_A, event_id=world.retrying.id)
        held = await tx.list_deliveries(LIVE_A, event_id=world.held_event.id)
        retried = await tx.list_deliveries(LIVE_A, event_id=world.retried.id)
        attempts = {d.id: await tx.list_attempts(d.id) for d in retrying.items}
        stats = await tx.queue_stats(RECENT)
        due = await tx.due_targets(RECENT)
    # The one being retried, and its sibling that succeeded, with their attempts.
    assert sorted(d.status for d in retrying.items) == ["pending", "succeeded"]
    assert all(len(made) == 1 for made in attempts.values())
    assert [d.status for d in held.items] == ["held"]
    assert [(d.status, d.attempts) for d in retried.items] == [("succeeded", 1)]
    # The retry is still queued and due: nothing in flight was lost.
    assert stats.pending == 1
    assert due == [world.bad.id]


async def test_other_tenants_are_swept_on_their_own(store: Store, world: World) -> None:
    await sweep(store)
    for tenant, event in world.others.items():
        assert await events_of(store, tenant) == {event.id}
    assert await sweep(store, LIVE_B) == {"events": 1, "deliveries": 1, "delivery_attempts": 1}
    assert await events_of(store, LIVE_B) == set()
    assert await events_of(store, TEST_A) == {world.others[TEST_A].id}


async def test_once_settled_and_old_a_kept_event_goes_too(store: Store, world: World) -> None:
    await sweep(store)
    # The retry succeeds (before the cutoff, as the clock goes in this world).
    await send(store, [world.bad], CUTOFF - MINUTE, {world.bad.id: "succeeded"})
    removed = await sweep(store)
    assert removed == {"events": 1, "deliveries": 2, "delivery_attempts": 3}
    assert world.retrying.id not in await events_of(store)


async def test_a_batch_looks_at_no_more_than_its_limit_and_goes_on_from_its_cursor(
    store: Store, world: World
) -> None:
    for n in range(5):
        await _queue(store, LIVE_A, make_event("customer.created", T0 + 20 * MINUTE + n), [])
    old = [world.settled, world.bare, world.retrying, world.held_event, world.retried]
    old_times = sorted([*(e.created_at for e in old), *(T0 + 20 * MINUTE + n for n in range(5))])
    batches = []
    after = None
    while True:
        async with store.write() as tx:
            swept = await tx.sweep_events(LIVE_A, CUTOFF, after, 2)
        batches.append(swept)
        assert swept.removed.get("events", 0) <= 2
        if not swept.more:
            break
        assert swept.last is not None
        assert after is None or swept.last > after
        after = swept.last
    # Ten old events, two a batch: five full batches, then one that finds nothing.
    assert [b.more for b in batches] == [True] * 5 + [False]
    assert [b.last[0] if b.last else None for b in batches] == [*old_times[1::2], None]
    assert [b.removed.get("events", 0) for b in batches] == [2, 0, 1, 2, 2, 0]
    assert len(await events_of(store)) == 4


async def test_kept_events_at_the_head_do_not_stop_the_batches_behind_them(
    store: Store, world: World
) -> None:
    # The first two old events in (created_at, id) order are removable, the next two kept:
    # a batch of two that only finds kept ones still says there may be more.
    async with store.write() as tx:
        first = await tx.sweep_events(LIVE_A, CUTOFF, None, 2)
        second = await tx.sweep_events(LIVE_A, CUTOFF, first.last, 2)
        third = await tx.sweep_events(LIVE_A, CUTOFF, second.last, 2)
    assert (first.removed.get("events"), first.more) == (2, True)
    assert (second.removed, second.more) == ({}, True)  # retrying and held: kept
    assert (third.removed, third.more) == ({}, False)  # retried: kept; then nothing
    assert third.last == (world.retried.created_at, world.retried.id)


async def test_nothing_to_do(store: Store) -> None:
    async with store.write() as tx:
        swept = await tx.sweep_events(LIVE_A, CUTOFF, None, 100)
        jobs = await tx.sweep_jobs(CUTOFF, None, 100)
    assert (swept.removed, swept.last, swept.more) == ({}, None, False)
    assert (jobs.removed, jobs.last, jobs.more) == ({}, None, False)


async def test_nothing_older_than_the_cutoff(store: Store, world: World) -> None:
    async with store.write() as tx:
        swept = await tx.sweep_events(LIVE_A, T0, None, 100)
        jobs = await tx.sweep_jobs(T0, None, 100)
    assert (swept.removed, swept.last, swept.more) == ({}, None, False)
    assert (jobs.removed, jobs.more) == ({}, False)
    assert len(await events_of(store)) == 6


# -- jobs of other channels ----------------------------------------------------------------------

KIND = "test-sms"
TARGET = "+6281100000001"


async def test_old_settled_jobs_go_with_their_attempts(store: Store) -> None:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        old = [await tx.enqueue_job(LIVE_A, KIND, TARGET, f"m{n}".encode(), T0) for n in range(4)]
        young = await tx.enqueue_job(LIVE_A, KIND, TARGET, b"young", RECENT)
    claimed = await store.claim_due("w", T0, T0 + MINUTE, {TARGET: 10})
    assert sorted(j.delivery_id for j in claimed) == sorted(old)
    outcomes = dict(zip(old, ["succeeded", "failed", "pending", "succeeded"], strict=True))
    async with store.write(durable=False) as tx:
        await tx.record_attempts(
            "w",
            [result(j, TARGET, outcome, T0 + 1, kind=KIND) for j, outcome in outcomes.items()],
            T0 + 1,
            NeverSuspend(),
        )
    before = await counts(store)

    batches = []
    after = None
    while True:
        async with store.write() as tx:
            swept = await tx.sweep_jobs(CUTOFF, after, 2)
        batches.append(swept)
        if not swept.more:
            break
        after = swept.last

    # Four old jobs, two a batch (the young one is not looked at): two full batches and an
    # empty one; three of the four settled, each with its one attempt.
    assert [b.more for b in batches] == [True, True, False]
    assert all(b.removed.get("jobs", 0) <= 2 for b in batches)
    assert sum(b.removed.get("jobs", 0) for b in batches) == 3
    assert sum(b.removed.get("job_attempts", 0) for b in batches) == 3
    assert batches[-1].last is None
    after_counts = await counts(store)
    assert before["jobs"] - after_counts["jobs"] == 3
    assert before["job_attempts"] - after_counts["job_attempts"] == 3
    async with store.read() as tx:
        kept = {j: await tx.get_job(LIVE_A, j) for j in [*old, young]}
        attempts = await tx.list_job_attempts(old[2])
    assert {j for j, job in kept.items() if job is not None} == {old[2], young}
    assert [a.status_code for a in attempts] == [500]
    assert after_counts["delivery_queue"] == 2  # the retry and the young job: still queued


async def test_a_job_attempted_after_the_cutoff_stays(store: Store) -> None:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        job = await tx.enqueue_job(LIVE_A, KIND, TARGET, b"m", T0, due_at=RECENT)
    await store.claim_due("w", RECENT, RECENT + MINUTE, {TARGET: 1})
    async with store.write(durable=False) as tx:
        await tx.record_attempts(
            "w", [result(job, TARGET, "failed", RECENT, kind=KIND)], RECENT, NeverSuspend()
        )
    async with store.write() as tx:
        swept = await tx.sweep_jobs(CUTOFF, None, 10)
        assert swept.removed == {}
        assert await tx.get_job(LIVE_A, job) is not None


# -- the export's pages --------------------------------------------------------------------------


async def test_the_export_pages_oldest_first_within_its_window(store: Store) -> None:
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        made = [make_event("customer.created", T0 + (n // 2) * MINUTE) for n in range(7)]
        for event in made:  # pairs in the same millisecond: ties broken by id
            await tx.insert_event(LIVE_A, event)
        await tx.insert_event(TEST_A, make_event("customer.created", T0 + MINUTE))
        await tx.insert_event(LIVE_B, make_event("customer.created", T0 + MINUTE))
    expected = sorted(made, key=lambda e: (e.created_at, e.id))

    async def read_all(since: int, until: int | None, page: int) -> list[str]:
        found: list[str] = []
        after = None
        while True:
            async with store.read() as tx:
                events = await tx.export_events(LIVE_A, since, until, after, page)
            assert len(events) <= page
            found += [e.id for e in events]
            if len(events) < page:
                return found
            after = (events[-1].created_at, events[-1].id)

    assert await read_all(T0, None, 2) == [e.id for e in expected]
    assert await read_all(T0, None, 7) == [e.id for e in expected]
    assert await read_all(T0, None, 100) == [e.id for e in expected]
    # since inclusive, until exclusive.
    window = [e.id for e in expected if T0 + MINUTE <= e.created_at < T0 + 3 * MINUTE]
    assert len(window) == 4
    assert await read_all(T0 + MINUTE, T0 + 3 * MINUTE, 3) == window
    assert await read_all(T0 + 4 * MINUTE, None, 3) == []
    async with store.read() as tx:
        first = await tx.export_events(LIVE_A, T0, None, None, 1)
    assert first[0] == expected[0]  # the whole event: type, payload and time


# -- whole runs --------------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def aged(platform: Platform, days: int = 31) -> Platform:
    clock = FakeClock()
    clock.now = T0 + days * DAY_MS
    return with_settings(platform, clock=clock)


async def test_a_run_removes_what_aged_out_and_counts_it(platform: Platform) -> None:
    store = platform.store
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_company(make_company(COMPANY_B, "Globex"))
        for tenant in (LIVE_A, TEST_A, LIVE_B):
            for n in range(3):
                await tx.insert_event(tenant, make_event("customer.created", T0 + n))
        await tx.insert_event(LIVE_A, make_event("customer.created", T0 + 2 * DAY_MS))
        job = await tx.enqueue_job(LIVE_A, KIND, TARGET, b"m", T0)
    await store.claim_due("w", T0, T0 + MINUTE, {TARGET: 1})
    async with store.write(durable=False) as tx:
        await tx.record_attempts(
            "w", [result(job, TARGET, "succeeded", T0, kind=KIND)], T0, NeverSuspend()
        )
    runs = sample("bitbybit_retention_runs_total", outcome="succeeded")
    events = sample("bitbybit_retention_removed_total", table="events")
    jobs = sample("bitbybit_retention_removed_total", table="jobs")

    done = await run_once(aged(platform), batch=2, pause=0)

    assert done.outcome == "succeeded"
    assert done.cutoff == T0 + DAY_MS
    assert {t: n for t, n in done.removed.items() if n} == {
        "events": 9,
        "jobs": 1,
        "job_attempts": 1,
    }
    # Per tenant: a full batch and a last one (A live, A test, B live), then the jobs' one.
    assert done.batches == 2 + 2 + 2 + 1 + 1  # and B's test mode, with nothing
    assert sample("bitbybit_retention_runs_total", outcome="succeeded") == runs + 1
    assert sample("bitbybit_retention_removed_total", table="events") == events + 9
    assert sample("bitbybit_retention_removed_total", table="jobs") == jobs + 1
    assert sample("bitbybit_retention_last_success_timestamp_seconds") == (T0 + 31 * DAY_MS) / 1000
    assert len(await events_of(store)) == 1
    again = await run_once(aged(platform), batch=2, pause=0)
    assert (again.outcome, sum(again.removed.values())) == ("succeeded", 0)


async def test_a_run_on_an_empty_database(platform: Platform) -> None:
    done = await run_once(platform)
    assert (done.outcome, sum(done.removed.values()), done.batches) == ("succeeded", 0, 1)


async def test_zero_days_keeps_everything(platform: Platform) -> None:
    async with platform.store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_event(LIVE_A, make_event("customer.created", T0))
    runs = sample("bitbybit_retention_runs_total", outcome="succeeded")
    done = await run_once(with_settings(aged(platform, 3650), retention_days=0))
    assert done.outcome == "off"
    assert len(await events_of(platform.store)) == 1
    assert sample("bitbybit_retention_runs_total", outcome="succeeded") == runs


async def test_a_failed_run_is_counted_and_raised(platform: Platform) -> None:
    failed = sample("bitbybit_retention_runs_total", outcome="failed")
    await platform.store.close()
    try:
        with pytest.raises(Exception, match="not open"):
            await run_once(platform)
    finally:
        await platform.store.open()
    assert sample("bitbybit_retention_runs_total", outcome="failed") == failed + 1


# -- one run at a time -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite"])
async def test_sqlite_has_no_lock_to_take(platform: Platform) -> None:
    store = platform.store
    async with store.exclusively("retention") as first, store.exclusively("retention") as second:
        assert (first, second) == (True, True)


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_on_postgres_a_second_concurrent_run_is_skipped(platform: Platform) -> None:
    store = platform.store
    assert isinstance(store, PostgresStore)
    other = PostgresStore(POSTGRES_URL, schema=store.schema, pool_size=2)
    await other.open()
    try:
        async with store.write() as tx:
            await tx.insert_company(make_company(COMPANY_A, "Acme"))
            for n in range(3):
                await tx.insert_event(LIVE_A, make_event("customer.created", T0 + n))
        first = aged(platform)
        second = Platform(other, first.settings)
        skipped = sample("bitbybit_retention_runs_total", outcome="skipped")
        removed = sample("bitbybit_retention_removed_total", table="events")

        # A slow run (a batch of one, a pause after each) and, while it runs, a second one.
        running = asyncio.create_task(run_once(first, batch=1, pause=0.2))
        while sample("bitbybit_retention_removed_total", table="events") == removed:  # noqa: ASYNC110  # a metric, not an event to wait on
            await asyncio.sleep(0.01)
        assert not running.done()
        assert (await run_once(second)).outcome == "skipped"
        assert (await running).outcome == "succeeded"
        assert sample("bitbybit_retention_runs_total", outcome="skipped") == skipped + 1
        assert sample("bitbybit_retention_removed_total", table="events") == removed + 3

        # The lock went with the run: the next one goes ahead, from either store.
        assert (await run_once(second)).outcome == "succeeded"
        async with other.exclusively("retention") as mine:
            assert mine
            async with store.exclusively("retention") as theirs:
                assert not theirs
            async with store.exclusively("something-else") as unrelated:
                assert unrelated
    finally:
        await other.close()


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_on_postgres_rows_another_transaction_holds_are_left_whole_for_later(
    store: Store, world: World
) -> None:
    """A delivery another transaction is changing (a retry by hand) keeps its event and the
    event's other deliveries; an event another transaction is adding a delivery to (a replay)
    is left alone; neither is waited for. The next batch, once they are free, removes them."""
    assert isinstance(store, PostgresStore)
    async with store.read() as tx:
        settled = await tx.list_deliveries(LIVE_A, event_id=world.settled.id)
    held_delivery = settled.items[0].id
    other = PostgresStore(POSTGRES_URL, schema=store.schema, pool_size=2)
    await other.open()
    try:
        async with other.write() as busy:
            db = cast(SqlTx, busy).db
            await db.fetch("SELECT id FROM deliveries WHERE id = $1 FOR UPDATE", held_delivery)
            await db.fetch("SELECT id FROM events WHERE id = $1 FOR KEY SHARE", world.bare.id)
            async with store.write() as tx:
                swept = await tx.sweep_events(LIVE_A, CUTOFF, None, 100)
            assert swept.removed == {}
            async with store.read() as tx:
                kept = await tx.list_deliveries(LIVE_A, event_id=world.settled.id)
            assert {d.id for d in kept.items} == {d.id for d in settled.items}
        removed = await sweep(store)
    finally:
        await other.close()
    assert removed == {"events": 2, "deliveries": 2, "delivery_attempts": 2}
    assert world.settled.id not in await events_of(store)


@pytest.mark.parametrize("dialect", ["postgres"])
async def test_on_postgres_a_replay_racing_the_batch_that_removes_its_event_is_not_found(
    platform: Platform, store: Store, world: World
) -> None:
    """The batch removing an event holds it; a replay of that event waits for the batch and
    then finds no event (404), instead of failing on the foreign key of its new deliveries."""
    from bitbybit.errors import NotFound
    from bitbybit.services import webhooks

    assert isinstance(store, PostgresStore)
    other = PostgresStore(POSTGRES_URL, schema=store.schema, pool_size=2)
    await other.open()
    try:
        async with other.write() as sweeping:
            swept = await sweeping.sweep_events(LIVE_A, CUTOFF, None, 100)
            assert swept.removed.get("events") == 2  # not committed yet
            replay = asyncio.create_task(
                webhooks.replay_event(platform, LIVE_A, world.settled.id, None)
            )
            await asyncio.sleep(0.3)
            assert not replay.done()  # waiting for the batch's row lock
        with pytest.raises(NotFound):
            await replay
    finally:
        await other.close()
    assert world.settled.id not in await events_of(store)


async def test_a_run_cut_short_inside_a_batch_removes_nothing_of_that_batch(
    platform: Platform, store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stopped (its task cancelled) while a batch's transaction is open: the batch
    rolls back whole, nothing half-removed; the next run removes it."""
    from bitbybit.store.sql.retention import RetentionSql

    before = await counts(store)
    reached = asyncio.Event()
    original = RetentionSql.sweep_events

    async def stalled(self: RetentionSql, *args: object, **kwargs: object) -> object:
        swept = await original(self, *args, **kwargs)  # type: ignore[arg-type]  # passed through
        reached.set()
        await asyncio.sleep(30)  # the rows are deleted, the transaction not yet committed
        return swept

    monkeypatch.setattr(RetentionSql, "sweep_events", stalled)
    run = asyncio.create_task(run_once(aged(platform), pause=0))
    await asyncio.wait_for(reached.wait(), 10)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await counts(store) == before
    monkeypatch.setattr(RetentionSql, "sweep_events", original)
    await run_once(aged(platform), pause=0)
    assert world.settled.id not in await events_of(store)
