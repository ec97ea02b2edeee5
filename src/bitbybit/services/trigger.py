"""``bitbybit trigger``: make a real change so the real event flows to the endpoints.

Each trigger goes through the same services as the API, in one transaction, so what receivers get
is exactly what a real change produces. Changes that need an object first (an update, a delete,
an order, a reply) create it in the same transaction, which also emits that object's events.

``message.status.updated`` is the one event the change does not write itself: the change is a
send, and its statuses are written when a delivering process (``serve`` or ``worker``) sends it.
So that trigger waits, a bounded time, for the send's first status event after the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from bitbybit.errors import ValidationFailed
from bitbybit.ids import random_base62
from bitbybit.models import Event, ListQuery, Message, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import (
    CustomerCreate,
    CustomerUpdate,
    LineItemIn,
    MessageSend,
    OrderCreate,
    OrderCustomerIn,
    OrderUpdate,
    ProductCreate,
    ProductUpdate,
    ShippingAddressIn,
    VariantIn,
)
from bitbybit.services import customers, messages, orders, products
from bitbybit.store import Tx

Change = Callable[[Platform, Tx, Tenant], Awaitable[object]]

SAMPLE_NUMBER = "+6281299990000"
"""The customer the message triggers talk with: one number, so ``customer.created`` comes only
with its first message."""
POLL_INTERVAL = 0.2
"""Seconds between looks for a status event (one short read transaction each)."""


def _sample_customer() -> CustomerCreate:
    tag = random_base62(8).lower()
    return CustomerCreate(
        email=f"sample-{tag}@example.com", firstName="Sample", lastName="Customer", tags=["sample"]
    )


def _sample_product() -> ProductCreate:
    return ProductCreate(
        name="Sample T-Shirt",
        description="Created by bitbybit trigger",
        variants=[VariantIn(title="Default", price=75000, sku=f"SMP-{random_base62(6)}")],
        tags=["sample"],
    )


async def _new_customer(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    return await customers.insert(platform, tx, tenant, _sample_customer())


async def _updated_customer(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    created = await customers.insert(platform, tx, tenant, _sample_customer())
    update = CustomerUpdate(tags=["sample", "updated"])
    return await customers.update(platform, tx, tenant, created.id, update)


async def _deleted_customer(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    created = await customers.insert(platform, tx, tenant, _sample_customer())
    return await customers.delete(platform, tx, tenant, created.id)


async def _new_product(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    return await products.insert(platform, tx, tenant, _sample_product())


async def _updated_product(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    created = await products.insert(platform, tx, tenant, _sample_product())
    update = ProductUpdate(description="Updated by bitbybit trigger")
    return await products.update(platform, tx, tenant, created.id, update)


async def _deleted_product(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    created = await products.insert(platform, tx, tenant, _sample_product())
    return await products.delete(platform, tx, tenant, created.id)


async def _new_order(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    product = await products.insert(platform, tx, tenant, _sample_product())
    tag = random_base62(8).lower()
    order = OrderCreate(
        lineItems=[LineItemIn(productVariantId=product.variants[0].id, quantity=2)],
        shippingAddress=ShippingAddressIn(
            firstName="Sample",
            lastName="Customer",
            phone="+6281234567890",
            address1="Jl. Sudirman No. 1",
            city="Jakarta",
            province="DKI Jakarta",
            zip="10110",
        ),
        customer=OrderCustomerIn(
            firstName="Sample", lastName="Customer", email=f"sample-{tag}@example.com"
        ),
    )
    return await orders.insert(platform, tx, tenant, order)


async def _updated_order(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    order = await _new_order(platform, tx, tenant)
    update = OrderUpdate(fulfillmentStatus="fulfilled", financialStatus="paid")
    return await orders.update(platform, tx, tenant, order.id, update)  # type: ignore[attr-defined]  # _new_order returns an Order


async def _inbound_message(platform: Platform, tx: Tx, tenant: Tenant) -> object:
    inbound = messages.Inbound(
        sender=SAMPLE_NUMBER, body="Hi, where is my order? (sample from bitbybit trigger)"
    )
    return await messages.receive(platform, tx, tenant, inbound)


async def _reply(platform: Platform, tx: Tx, tenant: Tenant) -> Message:
    """A customer's message (which opens the 24-hour window), then a free-text reply, routed as
    any send is. An agent's ticket on the sample customer does not hold a sample back."""
    await _inbound_message(platform, tx, tenant)
    reply = MessageSend(
        to=SAMPLE_NUMBER,
        message="It ships today. (sample reply from bitbybit trigger)",
        ignoreActiveTicket=True,
    )
    return await messages.send_text(platform, tx, tenant, reply)


CHANGES: dict[str, Change] = {
    "customer.created": _new_customer,
    "customer.updated": _updated_customer,
    "customer.deleted": _deleted_customer,
    "product.created": _new_product,
    "product.updated": _updated_product,
    "product.deleted": _deleted_product,
    "order.created": _new_order,
    "order.updated": _updated_order,
    "message.received": _inbound_message,
    "message.status.updated": _reply,
}
AFTER_SENDING = frozenset({"message.status.updated"})
"""Events written when a delivering process sends what the change queued, not by the change."""


@dataclass(frozen=True, slots=True)
class NotSentYet:
    """The change committed, but no delivering process sent its message within the wait."""

    message_id: str


async def trigger(
    platform: Platform, tenant: Tenant, event_type: str, *, wait: float = 10.0
) -> Event | NotSentYet:
    """Make the change and return the event of ``event_type`` it wrote. For an event written
    when the change's message is sent, wait up to ``wait`` seconds for the first one."""
    change = CHANGES.get(event_type)
    if change is None:
        raise ValidationFailed.field("event", f"unknown event type {event_type!r}")

    async def run(tx: Tx) -> Event | Message:
        if await tx.get_company(tenant.company_id) is None:
            raise ValidationFailed.field("company", f"no company {tenant.company_id}")
        made = await change(platform, tx, tenant)
        if event_type in AFTER_SENDING and isinstance(made, Message):
            return made
        page = await tx.list_events(tenant, ListQuery(limit=1, filters={"type": (event_type,)}))
        event: Event = page.items[0]
        return event

    made = await platform.run(run)
    if isinstance(made, Event):
        return made
    return await _first_status(platform, tenant, made, wait)


async def _first_status(
    platform: Platform, tenant: Tenant, message: Message, wait: float
) -> Event | NotSentYet:
    """The first ``message.status.updated`` of ``message``, once a delivering process has sent
    it; ``NotSentYet`` when none is written within ``wait`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        first = await _status_event(platform, tenant, message)
        if first is not None:
            return first
        if loop.time() >= deadline:
            return NotSentYet(message.id)
        await asyncio.sleep(min(POLL_INTERVAL, max(deadline - loop.time(), 0)))


async def _status_event(platform: Platform, tenant: Tenant, message: Message) -> Event | None:
    """The earliest status event of ``message``: events come newest first, so the last match
    among those written since the message was."""
    query = ListQuery(
        limit=100,
        filters={"type": ("message.status.updated",), "since": (str(message.created_at),)},
    )
    found: Event | None = None
    async with platform.store.read() as tx:
        while True:
            page = await tx.list_events(tenant, query)
            for event in page.items:
                if orjson.loads(event.payload).get("messageId") == message.id:
                    found = event
            if not page.has_next_page:
                return found
            query = ListQuery(page=query.page + 1, limit=query.limit, filters=query.filters)
