"""An event queued to an endpoint that is being deleted at that moment (both databases).

The event's transaction reads the company's endpoints, then inserts a delivery for each. A
delete committed in between used to make that insert fail on the delivery's foreign key: the
API write that caused the event answered 500 (seen on PostgreSQL under load). The endpoints read
for fan-out are now kept from being deleted until the event's transaction ends.

A suspension (by hand, by the API's `disabled`, or by the worker when an endpoint keeps failing)
holds the endpoint's pending deliveries. A fan-out that read the endpoint active before the
suspension committed used to queue a pending delivery after the others were held: it stayed in
the queue of a suspended endpoint until a reactivation (seen in the chaos test). A suspension
now waits for such fan-outs, and those that start meanwhile wait for it and read the new status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bitbybit.delivery.policy import SUSPENSION
from bitbybit.ids import new_id
from bitbybit.models import AttemptResult, Endpoint, Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate, EndpointUpdate
from bitbybit.services import access, webhooks


async def test_a_delete_waits_for_the_fan_out_that_read_its_endpoint(
    platform: Platform,
) -> None:
    company = await access.create_company(platform, "Race", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://example.com/hook")
    )
    now = platform.now()
    async with platform.store.write() as tx:
        targets = await tx.fan_out_targets(tenant)
        deleting = asyncio.create_task(webhooks.delete_endpoint(platform, tenant, endpoint.id))
        await asyncio.sleep(0.3)  # the delete runs now, or waits for this transaction
        assert not deleting.done()
        event = Event(new_id("evt"), "customer.deleted", b'{"id":"cust_1"}', now)
        await tx.insert_event(tenant, event)
        await tx.queue_deliveries(tenant, event, targets, now)
    await asyncio.wait_for(deleting, 10)  # then it deletes the endpoint and that delivery
    async with platform.store.read() as tx:
        assert await tx.get_endpoint(tenant, endpoint.id) is None
        assert (await tx.list_deliveries(tenant, event_id=event.id)).total == 0
        assert await tx.get_event(tenant, event.id) is not None


async def _by_hand(platform: Platform, tenant: Tenant, endpoint: Endpoint) -> None:
    await webhooks.suspend_endpoint(platform, tenant, endpoint.id, "by hand")


async def _disabled(platform: Platform, tenant: Tenant, endpoint: Endpoint) -> None:
    await webhooks.update_endpoint(platform, tenant, endpoint.id, EndpointUpdate(status="disabled"))


async def _by_the_worker(platform: Platform, tenant: Tenant, endpoint: Endpoint) -> None:
    """The worker records an attempt the endpoint answered 410 Gone: that suspends it."""
    now = platform.now()
    (job,) = await platform.store.claim_due("w1", now, now + 60_000, {endpoint.id: 1})
    gone = AttemptResult(
        job.delivery_id, endpoint.id, 1, now, 5, 410, None, b"", "failed", now, gone=True
    )
    async with platform.store.write(durable=False) as tx:
        recorded = await tx.record_attempts("w1", [gone], now, SUSPENSION)
    assert recorded.suspended == [endpoint.id]


Suspend = Callable[[Platform, Tenant, Endpoint], Awaitable[None]]


@pytest.mark.parametrize("suspend", [_by_hand, _disabled, _by_the_worker])
async def test_a_suspension_holds_what_a_fan_out_in_flight_queued(
    platform: Platform, suspend: Suspend
) -> None:
    company = await access.create_company(platform, "Race", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://example.com/hook")
    )
    first = Event(new_id("evt"), "customer.deleted", b'{"id":"cust_0"}', platform.now())
    async with platform.store.write() as tx:  # a delivery pending before all this
        await tx.insert_event(tenant, first)
        await tx.queue_deliveries(tenant, first, await tx.fan_out_targets(tenant), first.created_at)
    now = platform.now()
    async with platform.store.write() as tx:
        targets = await tx.fan_out_targets(tenant)
        assert [target.status for target in targets] == ["active"]
        suspending = asyncio.create_task(suspend(platform, tenant, endpoint))
        await asyncio.sleep(0.3)  # the suspension runs now, or waits for this transaction
        event = Event(new_id("evt"), "customer.deleted", b'{"id":"cust_1"}', now)
        await tx.insert_event(tenant, event)
        await tx.queue_deliveries(tenant, event, targets, now)
    await asyncio.wait_for(suspending, 10)
    async with platform.store.read() as tx:
        (delivery,) = (await tx.list_deliveries(tenant, event_id=event.id)).items
        assert delivery.status == "held"  # not pending in the queue of a suspended endpoint
    assert await platform.store.claim_due("w2", now, now + 60_000, {endpoint.id: 10}) == []


async def _described(platform: Platform, tenant: Tenant, endpoint: Endpoint) -> None:
    await webhooks.update_endpoint(
        platform, tenant, endpoint.id, EndpointUpdate(description="orders")
    )


async def _rotated(platform: Platform, tenant: Tenant, endpoint: Endpoint) -> None:
    await webhooks.rotate_secret(platform, tenant, endpoint.id, 0)


@pytest.mark.parametrize("change", [_described, _rotated])
async def test_a_change_made_while_the_worker_suspends_keeps_the_suspension(
    platform: Platform, change: Suspend
) -> None:
    """A change to an endpoint writes the whole row from what it read: it reads it locked, so
    a suspension committed meanwhile is not written over (the endpoint would have been active
    again with its deliveries held)."""
    company = await access.create_company(platform, "Race", "ID")
    tenant = Tenant(company.id, "live")
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url="https://example.com/hook")
    )
    event = Event(new_id("evt"), "customer.deleted", b'{"id":"cust_0"}', platform.now())
    async with platform.store.write() as tx:
        await tx.insert_event(tenant, event)
        await tx.queue_deliveries(tenant, event, await tx.fan_out_targets(tenant), event.created_at)
    now = platform.now()
    (job,) = await platform.store.claim_due("w1", now, now + 60_000, {endpoint.id: 1})
    gone = AttemptResult(
        job.delivery_id, endpoint.id, 1, now, 5, 410, None, b"", "failed", now, gone=True
    )
    async with platform.store.write(durable=False) as tx:
        assert (await tx.record_attempts("w1", [gone], now, SUSPENSION)).suspended
        changing = asyncio.create_task(change(platform, tenant, endpoint))
        await asyncio.sleep(0.3)  # the change reads the endpoint now, or waits for this one
    await asyncio.wait_for(changing, 10)
    async with platform.store.read() as tx:
        after = await tx.get_endpoint(tenant, endpoint.id)
    assert after is not None
    assert (after.status, after.status_reason) == ("suspended", "the endpoint answered 410 Gone")
