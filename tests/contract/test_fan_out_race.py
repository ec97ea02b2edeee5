"""An event queued to an endpoint that is being deleted at that moment (both databases).

The event's transaction reads the company's endpoints, then inserts a delivery for each. A
delete committed in between used to make that insert fail on the delivery's foreign key: the
API write that caused the event answered 500 (seen on PostgreSQL under load). The endpoints read
for fan-out are now kept from being deleted until the event's transaction ends.
"""

from __future__ import annotations

import asyncio

from bitbybit.ids import new_id
from bitbybit.models import Event, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
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
