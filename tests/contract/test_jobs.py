"""The queue with a second kind of job beside webhook deliveries (both databases, ADR 0008):
enqueued, found due, claimed in the same claim as deliveries, recorded in their own storage."""

from __future__ import annotations

from bitbybit.delivery.policy import SUSPENSION
from bitbybit.models import AttemptResult, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import access, customers, webhooks
from bitbybit.store import Tx

KIND = "test-sms"
TARGET = "+6281100000001"


def result(
    job_id: str, status: str, code: int, due: int, kind: str = KIND, target: str = TARGET
) -> AttemptResult:
    return AttemptResult(job_id, target, 1, due, 5, code, None, b"ok", status, due, kind=kind)


async def test_jobs_of_another_kind_share_the_queue_with_deliveries(platform: Platform) -> None:
    company = await access.create_company(platform, "Jobs", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://hooks.example.com/in")
    )
    now = platform.now()

    async def make(tx: Tx) -> list[str]:
        await customers.insert(platform, tx, tenant, CustomerCreate(email="a@example.com"))
        return [await tx.enqueue_job(tenant, KIND, TARGET, f"m{n}".encode(), now) for n in range(3)]

    ids = await platform.run(make)
    async with platform.store.read() as tx:
        assert sorted(await tx.due_targets(now)) == sorted([endpoint.id, TARGET])

    claimed = await platform.store.claim_due("w1", now, now + 60_000, {endpoint.id: 5, TARGET: 5})
    by_kind: dict[str, list[str]] = {job.kind: [] for job in claimed}
    for job in claimed:
        by_kind[job.kind].append(job.delivery_id)
    assert sorted(by_kind[KIND]) == sorted(ids)
    assert len(by_kind["webhook"]) == 1
    sms = next(job for job in claimed if job.delivery_id == ids[0])
    assert (sms.target, sms.attempts, sms.payload, sms.url) == (TARGET, 0, b"m0", "")
    hook = next(job for job in claimed if job.kind == "webhook")
    assert (hook.target, hook.url, hook.event_type) == (
        endpoint.id,
        "https://hooks.example.com/in",
        "customer.created",
    )
    # Leased: a second claim gets nothing.
    assert await platform.store.claim_due("w2", now, now + 60_000, {TARGET: 5}) == []

    later = now + 10
    async with platform.store.write(durable=False) as tx:
        recorded = await tx.record_attempts(
            "w1",
            [
                result(ids[0], "succeeded", 200, later),
                result(ids[1], "pending", 503, later + 1_000),
                result(ids[2], "failed", 400, later),
                result(hook.delivery_id, "succeeded", 200, later, "webhook", endpoint.id),
            ],
            later,
            SUSPENSION,
        )
    assert (recorded.suspended, recorded.vanished) == ([], [])
    async with platform.store.read() as tx:
        jobs = {job_id: await tx.get_job(tenant, job_id) for job_id in ids}
        history = await tx.list_job_attempts(ids[1])
        delivery = await tx.get_delivery(tenant, hook.delivery_id)
        stats = await tx.queue_stats(later + 1_000)
        other = await tx.get_job(Tenant(company.id, "test"), ids[0])
    assert {job_id: (j.status, j.attempts) for job_id, j in jobs.items() if j} == {
        ids[0]: ("succeeded", 1),
        ids[1]: ("pending", 1),
        ids[2]: ("failed", 1),
    }
    assert [(a.number, a.status_code) for a in history] == [(1, 503)]
    assert delivery is not None
    assert delivery.status == "succeeded"
    assert (stats.pending, stats.due) == (1, 1)  # the retry, due again at its time
    assert other is None  # another mode sees nothing
    again = await platform.store.claim_due("w2", later + 1_000, later + 61_000, {TARGET: 5})
    assert [(job.delivery_id, job.attempts) for job in again] == [(ids[1], 1)]
