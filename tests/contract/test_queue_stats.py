"""``queue_stats_by_target`` on both databases: pending per target (due or not, leased or not),
the creation time of each target's oldest pending job, the busiest targets first, capped."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from bitbybit.delivery.policy import SUSPENSION
from bitbybit.models import AttemptResult, QueueStats, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store import Tx
from bitbybit.store.sqlite import SQLiteStore
from tests.conftest import FakeClock

KIND = "test-sms"
PHONE = "+6281100000009"
BIG_QUEUE = 200_000


async def stats(platform: Platform, limit: int = 100) -> list[tuple[str, int, int | None]]:
    async with platform.store.read() as tx:
        return await tx.queue_stats_by_target(limit)


async def customers_created(platform: Platform, tenant: Tenant, count: int) -> None:
    async def make(tx: Tx) -> None:
        for _ in range(count):
            email = f"{secrets.token_hex(6)}@example.com"
            await customers.insert(platform, tx, tenant, CustomerCreate(email=email))

    await platform.run(make)
    # Ids begin with the real time in ms, which orders the batches when the clock is fake.
    await asyncio.sleep(0.002)


async def test_pending_per_target_with_its_oldest(platform: Platform, clock: FakeClock) -> None:
    assert await stats(platform) == []
    company = await access.create_company(platform, "Stats", "ID")
    tenant = Tenant(company.id, "live")
    first, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/first")
    )
    t0 = clock.now
    await customers_created(platform, tenant, 2)  # one delivery each for `first`
    clock.advance(30_000)
    second, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/second")
    )
    t1 = clock.now
    await customers_created(platform, tenant, 3)  # for both endpoints
    clock.advance(5_000)

    async def enqueue(tx: Tx) -> None:
        await tx.enqueue_job(tenant, KIND, PHONE, b"m", clock.now)

    await platform.run(enqueue)
    t2 = clock.now

    assert await stats(platform) == [(first.id, 5, t0), (second.id, 3, t1), (PHONE, 1, t2)]
    # The busiest first, capped.
    assert await stats(platform, limit=2) == [(first.id, 5, t0), (second.id, 3, t1)]
    assert await stats(platform, limit=1) == [(first.id, 5, t0)]

    # Leased deliveries and those waiting for a retry are still pending; one that succeeded is
    # not, and the oldest becomes the next one.
    now = clock.now
    claimed = await platform.store.claim_due("w1", now, now + 60_000, {first.id: 3})
    assert len(claimed) == 3
    oldest_two = sorted(job.delivery_id for job in claimed)[:2]
    assert await stats(platform, limit=1) == [(first.id, 5, t0)]

    def result(delivery_id: str, status: str) -> AttemptResult:
        code = 200 if status == "succeeded" else 503
        return AttemptResult(
            delivery_id, first.id, 1, now, 5, code, None, b"", status, now + 3_600_000
        )

    retrying = next(job.delivery_id for job in claimed if job.delivery_id not in oldest_two)
    async with platform.store.write(durable=False) as tx:
        await tx.record_attempts(
            "w1",
            [
                *(result(delivery_id, "succeeded") for delivery_id in oldest_two),
                result(retrying, "pending"),
            ],
            now,
            SUSPENSION,
        )
    # `first`'s two deliveries of t0 are done; its oldest pending ones are of t1.
    assert await stats(platform) == [(first.id, 3, t1), (second.id, 3, t1), (PHONE, 1, t2)]


async def test_targets_that_emptied_or_were_suspended_are_absent(
    platform: Platform, clock: FakeClock
) -> None:
    company = await access.create_company(platform, "Stats", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/in")
    )
    await customers_created(platform, tenant, 2)
    assert [(target, pending) for target, pending, _ in await stats(platform)] == [(endpoint.id, 2)]
    # Suspending holds its deliveries: they leave the queue.
    await webhooks.suspend_endpoint(platform, tenant, endpoint.id, "by hand")
    assert await stats(platform) == []


async def test_a_limit_of_many_targets(platform: Platform, clock: FakeClock) -> None:
    company = await access.create_company(platform, "Stats", "ID")
    tenant = Tenant(company.id, "live")
    now = clock.now

    async def enqueue(tx: Tx) -> None:
        for n in range(12):
            for _ in range(n % 4 + 1):
                await tx.enqueue_job(tenant, KIND, f"+62811000000{n:02d}", b"m", now)

    await platform.run(enqueue)
    everything = await stats(platform)
    assert len(everything) == 12
    assert [pending for _, pending, _ in everything] == sorted(
        (n % 4 + 1 for n in range(12)), reverse=True
    )
    # Ties in a stable order (by target), so the same targets are shown from one scrape to next.
    assert everything == sorted(everything, key=lambda row: (-row[1], row[0]))
    assert await stats(platform, limit=5) == everything[:5]
    assert all(oldest == now for _, _, oldest in everything)


async def test_the_gauges_are_both_reads_together(platform: Platform, clock: FakeClock) -> None:
    company = await access.create_company(platform, "Stats", "ID")
    tenant = Tenant(company.id, "live")
    now = clock.now

    async def enqueue(tx: Tx) -> None:
        for n in range(3):
            await tx.enqueue_job(tenant, KIND, f"+62811000000{n:02d}", b"m", now + n * 1_000)

    await platform.run(enqueue)
    async with platform.store.read() as tx:
        expected = (await tx.queue_stats(now + 1_000), await tx.queue_stats_by_target(2))
    assert expected[0].pending == 3
    assert expected[0].due == 2
    assert await platform.store.queue_gauges(now + 1_000, 2) == expected


async def test_sqlite_reads_the_gauges_of_a_big_queue_while_the_loop_goes_on(
    tmp_path: Path,
) -> None:
    """Counting a big queue takes SQLite a while; the loop must not wait for it: other work
    runs (here, a task that counts its turns) while the gauges are read."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'gauges.db'}")
    await store.open()
    try:
        await store.migrate()
        async with store.write() as tx:
            await tx.db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)"
                " INSERT INTO delivery_queue (delivery_id, target, due_at, kind)"
                " SELECT printf('dlv_%010d', i), 'wh_' || (i % 7), i, 'webhook' FROM n",
                BIG_QUEUE,
            )
        reading = True
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while reading:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = turns
        stats, targets = await store.queue_gauges(BIG_QUEUE // 2, 3)
        during = turns - before
        reading = False
        await other
    finally:
        await store.close()
    assert stats == QueueStats(pending=BIG_QUEUE, due=BIG_QUEUE // 2, oldest_due_at=1)
    assert [(target, pending) for target, pending, _ in targets] == [
        ("wh_1", BIG_QUEUE // 7 + 1),
        ("wh_2", BIG_QUEUE // 7 + 1),
        ("wh_3", BIG_QUEUE // 7 + 1),
    ]
    # On the loop's thread the read would have run start to end with no turn for anything else.
    assert during > 100, during
