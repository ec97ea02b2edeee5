"""``bitbybit trigger``: make a real change so the real event flows to the endpoints.

Each trigger goes through the same services as the API, in one transaction, so what receivers get
is exactly what a real change produces. Changes that need an object first (an update, a delete,
an order) create it in the same transaction, which also emits that object's events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bitbybit.errors import ValidationFailed
from bitbybit.ids import random_base62
from bitbybit.models import Event, ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import (
    CustomerCreate,
    CustomerUpdate,
    LineItemIn,
    OrderCreate,
    OrderCustomerIn,
    OrderUpdate,
    ProductCreate,
    ProductUpdate,
    ShippingAddressIn,
    VariantIn,
)
from bitbybit.services import customers, orders, products
from bitbybit.store import Tx

Change = Callable[[Platform, Tx, Tenant], Awaitable[object]]


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


CHANGES: dict[str, Change] = {
    "customer.created": _new_customer,
    "customer.updated": _updated_customer,
    "customer.deleted": _deleted_customer,
    "product.created": _new_product,
    "product.updated": _updated_product,
    "product.deleted": _deleted_product,
    "order.created": _new_order,
    "order.updated": _updated_order,
}
NOT_YET = {
    "message.received": "inbound messages need the messaging channel, which is not built yet",
    "message.status.updated": "message statuses need the messaging channel, not built yet",
}


async def trigger(platform: Platform, tenant: Tenant, event_type: str) -> Event:
    """Make the change and return the event of ``event_type`` it wrote."""
    change = CHANGES.get(event_type)
    if change is None:
        reason = NOT_YET.get(event_type, f"unknown event type {event_type!r}")
        raise ValidationFailed.field("event", reason)

    async def run(tx: Tx) -> Event:
        if await tx.get_company(tenant.company_id) is None:
            raise ValidationFailed.field("company", f"no company {tenant.company_id}")
        await change(platform, tx, tenant)
        page = await tx.list_events(tenant, ListQuery(limit=1, filters={"type": (event_type,)}))
        event: Event = page.items[0]
        return event

    return await platform.run(run)
