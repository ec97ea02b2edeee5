"""The delivery worker over a fake channel (no HTTP): what the shared machinery gives every kind
of job, whatever sends it — leases, retries on the schedule, per-target caps, pacing, recording.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bitbybit.clock import system_clock
from bitbybit.config import Settings
from bitbybit.delivery.policy import SendResult
from bitbybit.delivery.worker import Worker
from bitbybit.models import AttemptResult, Job, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store import Tx
from bitbybit.store.sqlite import SQLiteStore


class SmsChannel:
    """A second channel, registered by these tests alone: it answers as ``answer`` says and
    counts attempts and how many run at once per target. Everything else — claims, leases,
    retries, caps, pacing, recording, crash safety — is the worker's and the store's."""

    kind = "test-sms"

    def __init__(
        self,
        answer: Callable[[Job], Awaitable[SendResult]],
        pace: float | None = None,
    ) -> None:
        self.answer = answer
        self.rate = pace
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.starts: dict[str, list[float]] = {}
        self.payloads: list[bytes] = []
        self.recorded_results: list[AttemptResult] = []
        self.closed = False

    def pace(self, job: Job) -> float | None:
        return self.rate

    async def send(self, job: Job) -> SendResult:
        self.attempts[job.delivery_id] += 1
        self.payloads.append(job.payload)
        self.starts.setdefault(job.target, []).append(time.monotonic())
        self.running[job.target] += 1
        self.most[job.target] = max(self.most[job.target], self.running[job.target])
        try:
            return await self.answer(job)
        finally:
            self.running[job.target] -= 1

    async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
        self.recorded_results.extend(results)

    async def close(self) -> None:
        self.closed = True


def ok() -> SendResult:
    return SendResult(started_at=system_clock(), latency_ms=1, status_code=200)


def status(code: int) -> SendResult:
    return SendResult(started_at=system_clock(), latency_ms=1, status_code=code)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    store = SQLiteStore(url)
    await store.open()
    await store.migrate()
    settings = Settings(
        database_url=url,
        secret_key="unit-test-key",
        clock=system_clock,
        retry_schedule=(0.01, 0.01, 0.01),
        delivery_timeout=5.0,
        lease_seconds=5.0,
    )
    try:
        yield Platform(store, settings)
    finally:
        await store.close()


async def tenant_of(platform: Platform) -> Tenant:
    company = await access.create_company(platform, "Unit", "ID")
    return Tenant(company.id, "live")


async def enqueue(platform: Platform, tenant: Tenant, target: str, count: int) -> list[str]:
    async def make(tx: Tx) -> list[str]:
        return [
            await tx.enqueue_job(
                tenant, SmsChannel.kind, target, f"sms {n}".encode(), platform.now()
            )
            for n in range(count)
        ]

    return await platform.run(make)


async def jobs_by_status(platform: Platform, tenant: Tenant, ids: list[str]) -> Counter[str]:
    async with platform.store.read() as tx:
        found = [await tx.get_job(tenant, job_id) for job_id in ids]
    return Counter(job.status if job else "missing" for job in found)


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_second_channel_gets_retries_on_the_schedule(platform: Platform) -> None:
    async def twice_then_ok(job: Job) -> SendResult:
        return status(503) if channel.attempts[job.delivery_id] <= 2 else ok()

    channel = SmsChannel(twice_then_ok)
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, "+6281100000001", 10)
    async with running(Worker(platform, concurrency=8, channels=[channel])):

        async def done() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"succeeded": 10})

        await until(done)
    assert channel.attempts == Counter({job_id: 3 for job_id in ids})
    assert sorted(channel.payloads)[:1] == [b"sms 0"]
    async with platform.store.read() as tx:
        job = await tx.get_job(tenant, ids[0])
        history = await tx.list_job_attempts(ids[0])
    assert job is not None
    assert (job.attempts, job.last_status_code) == (3, 200)
    assert [(a.number, a.status_code) for a in history] == [(1, 503), (2, 503), (3, 200)]
    assert channel.closed  # the worker closes its channels when it stops


async def test_a_second_channel_fails_a_job_that_exhausts_its_retries(platform: Platform) -> None:
    async def always_500(job: Job) -> SendResult:
        return status(500)

    channel = SmsChannel(always_500)
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, "+6281100000001", 2)
    async with running(Worker(platform, concurrency=8, channels=[channel])):

        async def failed() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"failed": 2})

        await until(failed)
    assert set(channel.attempts.values()) == {len(platform.settings.retry_schedule) + 1}


async def test_a_target_never_exceeds_its_cap_and_never_holds_up_another(
    platform: Platform,
) -> None:
    gate = asyncio.Event()
    slow, quick = "+6281100000001", "+6281100000002"

    async def answer(job: Job) -> SendResult:
        if job.target == slow:
            await gate.wait()
        return ok()

    channel = SmsChannel(answer)
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, slow, 30) + await enqueue(platform, tenant, quick, 30)
    async with running(Worker(platform, concurrency=8, channels=[channel])) as worker:

        async def quick_done() -> bool:
            return len(channel.starts.get(quick, [])) == 30

        await until(quick_done)  # all of the quick target's jobs went while the slow one hung
        assert 0 < channel.most[slow] <= worker.per_endpoint
        gate.set()

        async def all_done() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"succeeded": 60})

        await until(all_done)
    assert channel.most[slow] <= worker.per_endpoint


async def test_a_paced_channel_starts_attempts_no_faster_than_its_pace(platform: Platform) -> None:
    async def instant(job: Job) -> SendResult:
        return ok()

    channel = SmsChannel(instant, pace=50.0)
    tenant = await tenant_of(platform)
    target = "+6281100000001"
    ids = await enqueue(platform, tenant, target, 12)
    async with running(Worker(platform, concurrency=8, channels=[channel])):

        async def done() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"succeeded": 12})

        await until(done)
    starts = channel.starts[target]
    assert len(starts) == 12
    # Start k is scheduled no earlier than 1/pace after start k-1, so the whole run spans at
    # least 11/pace; measured starts also carry the loop's scheduling jitter (a start that ran
    # late shortens the next gap), so the span is checked, not each gap.
    assert starts[-1] - starts[0] >= 11 / 50.0 - 0.01


async def test_a_second_channels_jobs_survive_a_worker_that_died_holding_them(
    platform: Platform,
) -> None:
    """Crash safety: jobs a dead worker had leased (and never recorded) are claimed again once
    its lease runs out, and only then."""
    tenant = await tenant_of(platform)
    target = "+6281100000001"
    ids = await enqueue(platform, tenant, target, 5)
    now = platform.now()
    lease_until = now + 1_000
    dead = await platform.store.claim_due("dead-worker", now, lease_until, {target: 5})
    assert sorted(job.delivery_id for job in dead) == sorted(ids)
    assert {job.kind for job in dead} == {SmsChannel.kind}

    async def instant(job: Job) -> SendResult:
        return ok()

    channel = SmsChannel(instant)
    async with running(Worker(platform, concurrency=8, channels=[channel])):
        await asyncio.sleep(0.3)
        assert channel.attempts == Counter()  # leased to the dead worker: left alone

        async def done() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"succeeded": 5})

        await until(done)
    assert platform.now() >= lease_until
    assert channel.attempts == Counter({job_id: 1 for job_id in ids})


async def test_webhooks_and_a_second_channel_share_one_worker(platform: Platform) -> None:
    """Both kinds in one claim: each job goes to its own channel."""

    class Webhooks(SmsChannel):
        kind = "webhook"

    async def instant(job: Job) -> SendResult:
        return ok()

    sms, hooks = SmsChannel(instant), Webhooks(instant)
    tenant = await tenant_of(platform)
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/in")
    )

    async def make(tx: Tx) -> None:
        for n in range(5):
            await customers.insert(platform, tx, tenant, CustomerCreate(email=f"u{n}@example.com"))

    await platform.run(make)
    ids = await enqueue(platform, tenant, "+6281100000001", 5)
    async with running(Worker(platform, concurrency=8, channels=[sms, hooks])):

        async def done() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"succeeded": 5}) and (
                sum(hooks.attempts.values()) == 5
            )

        await until(done)
    assert set(hooks.starts) == {endpoint.id}
    async with platform.store.read() as tx:
        page = await tx.list_deliveries(tenant, endpoint_id=endpoint.id)
    assert {d.status for d in page.items} == {"succeeded"}


async def test_a_job_of_a_kind_without_a_channel_fails_as_the_platforms_own(
    platform: Platform,
) -> None:
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, "+6281100000001", 1)
    async with running(Worker(platform, concurrency=8)):  # the webhook channel only

        async def failed() -> bool:
            return await jobs_by_status(platform, tenant, ids) == Counter({"failed": 1})

        await until(failed)
    async with platform.store.read() as tx:
        job = await tx.get_job(tenant, ids[0])
    assert job is not None
    assert "no channel sends 'test-sms' jobs" in (job.last_error or "")


async def test_a_channel_writes_what_its_results_mean_in_the_recording_transaction(
    platform: Platform,
) -> None:
    """``recorded`` gets each finished attempt of its kind once, in the transaction that
    records it: what it writes there commits with the job's outcome."""

    class Noting(SmsChannel):
        async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
            await super().recorded(tx, results)
            for result in results:  # a write of the channel's own, beside the job's record
                await tx.enqueue_job(tenant, "test-note", "notes", result.delivery_id.encode(), 0)

    async def instant(job: Job) -> SendResult:
        return ok()

    channel = Noting(instant)
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, "+6281100000002", 6)
    async with running(Worker(platform, concurrency=4, channels=[channel])):

        async def done() -> bool:
            return (await jobs_by_status(platform, tenant, ids))["succeeded"] == 6

        await until(done)
    assert sorted(r.delivery_id for r in channel.recorded_results) == sorted(ids)
    assert {r.status for r in channel.recorded_results} == {"succeeded"}
    async with platform.store.read() as tx:
        rows = await tx.db.fetch("SELECT payload FROM jobs WHERE kind = 'test-note'")  # type: ignore[attr-defined]  # SqlTx
    assert sorted(bytes(row["payload"]).decode() for row in rows) == sorted(ids)


async def test_a_channel_whose_record_step_fails_still_has_its_attempts_recorded(
    platform: Platform,
) -> None:
    """A bug in a channel's ``recorded`` never leaves its jobs leased to be sent again: the
    attempts are recorded without it."""

    class Broken(SmsChannel):
        async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
            raise RuntimeError("bug in the channel")

    async def instant(job: Job) -> SendResult:
        return ok()

    channel = Broken(instant)
    tenant = await tenant_of(platform)
    ids = await enqueue(platform, tenant, "+6281100000003", 3)
    async with running(Worker(platform, concurrency=4, channels=[channel])):

        async def done() -> bool:
            return (await jobs_by_status(platform, tenant, ids))["succeeded"] == 3

        await until(done)
    assert sum(channel.attempts.values()) == 3


async def test_a_deferred_job_is_not_an_attempt(platform: Platform) -> None:
    """A channel may put a job off (a limit of the target's says not yet): it is due again
    after the wait, with no attempt counted or kept in its history."""

    async def later_then_ok(job: Job) -> SendResult:
        if channel.attempts[job.delivery_id] == 1:
            return SendResult(
                started_at=system_clock(), latency_ms=0, error="not yet", wait_s=0.05, deferred=True
            )
        return ok()

    channel = SmsChannel(later_then_ok)
    tenant = await tenant_of(platform)
    (job_id,) = await enqueue(platform, tenant, "+6281100000004", 1)
    async with running(Worker(platform, concurrency=4, channels=[channel])):

        async def done() -> bool:
            return (await jobs_by_status(platform, tenant, [job_id]))["succeeded"] == 1

        await until(done)
    async with platform.store.read() as tx:
        job = await tx.get_job(tenant, job_id)
        history = await tx.list_job_attempts(job_id)
    assert channel.attempts[job_id] == 2
    assert job is not None
    assert job.attempts == 1
    assert [attempt.number for attempt in history] == [1]
