"""Orders: priced from the variants at order time; the customer is found or created."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

from bitbybit.errors import NotFound, ValidationFailed
from bitbybit.ids import new_id
from bitbybit.limits import MAX_PAYLOAD_BYTES
from bitbybit.models import JSON, Customer, ListQuery, Order, Page, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import (
    MAX_MONEY,
    CustomerCreate,
    OrderCreate,
    OrderCustomerIn,
    OrderUpdate,
)
from bitbybit.services import customers, events, payloads
from bitbybit.services.phones import normalise
from bitbybit.store import Tx
from bitbybit.webhooks.body import encode_body

DEFAULT_VARIANT_KEYS = frozenset({"default", "default title"})


def _longest(field: str) -> str:
    """The longest value ``PUT /orders/{id}`` may set ``field`` to."""
    annotation = OrderUpdate.model_fields[field].annotation
    return max((str(value) for arg in get_args(annotation) for value in get_args(arg)), key=len)


def _updatable(order: Order) -> None:
    """Refuse an order whose later ``order.updated`` events could not be sent.

    Only the statuses of an order change after it is made, so its largest event is the one with
    the longest status words; if that fits, every update of the order can be accepted.
    """
    longest = replace(
        order,
        status=_longest("status"),
        fulfillment_status=_longest("fulfillmentStatus"),
        financial_status=_longest("financialStatus"),
    )
    payload = payloads.order(longest)
    size = len(encode_body(payload))
    if size > MAX_PAYLOAD_BYTES:
        raise events.too_large(
            "order.updated", size, payload, which="of this order after a status change"
        )


async def _customer(
    platform: Platform, tx: Tx, tenant: Tenant, data: OrderCreate, country: str
) -> Customer:
    if data.customerId is not None:
        found = await tx.get_customer(tenant, data.customerId)
        if found is None:
            raise ValidationFailed.field("customerId", f"no customer {data.customerId}")
        return found
    given: OrderCustomerIn = data.customer  # type: ignore[assignment]  # the schema checks one is set
    if given.phone:
        phone: str | None = normalise(given.phone, country, "customer.phone")
    elif given.email:
        phone = None
    else:  # names alone: the buyer is reached at the shipping address's phone
        phone = normalise(data.shippingAddress.phone, country, "shippingAddress.phone")
    found = await tx.find_customer(tenant, phone_number=phone) if phone else None
    if found is None and given.email:
        found = await tx.find_customer(tenant, email=given.email)
    if found is not None:
        return found
    created = CustomerCreate(
        email=given.email,
        phoneNumber=phone,
        firstName=given.firstName,
        lastName=given.lastName,
    )
    return await customers.insert(platform, tx, tenant, created, source="order")


def _title(product_name: str, variant_key: str) -> str:
    if variant_key.strip().casefold() in DEFAULT_VARIANT_KEYS:
        return product_name
    return f"{product_name} - {variant_key}"


async def insert(platform: Platform, tx: Tx, tenant: Tenant, data: OrderCreate) -> Order:
    """Create an order (and its customer, if new) inside the caller's transaction and record
    ``order.created`` (and ``customer.created``)."""
    country = await platform.country_of(tx, tenant.company_id)
    wanted = [item.productVariantId for item in data.lineItems]
    variants = await tx.get_variants(tenant, list(dict.fromkeys(wanted)))
    missing = [
        ValidationFailed.field(f"lineItems[{i}].productVariantId", f"no variant {vid}")
        for i, vid in enumerate(wanted)
        if vid not in variants
    ]
    if missing:
        raise ValidationFailed(
            "; ".join(error.message for error in missing),
            [detail for error in missing for detail in error.details],
        )
    line_items: list[JSON] = []
    for item in data.lineItems:
        variant, product_name = variants[item.productVariantId]
        line_items.append(
            {
                "id": new_id("li"),
                "productVariantId": variant.id,
                "quantity": item.quantity,
                "priceCents": variant.price_cents,
                "title": _title(product_name, variant.key),
                "productVariant": payloads.variant(variant),
            }
        )
    total_cents = sum(item["priceCents"] * item["quantity"] for item in line_items)
    if total_cents > MAX_MONEY * 100:  # beyond it a total is no longer an exact JSON number
        raise ValidationFailed.field("lineItems", f"the order total exceeds {MAX_MONEY}")
    customer = await _customer(platform, tx, tenant, data, country)
    shipping = data.shippingAddress
    number = await tx.next_counter(tenant, "order")
    now = platform.now()
    order = Order(
        id=new_id("order"),
        order_id=f"ORD-{number:03d}",
        order_number=1000 + number,
        status="active",
        fulfillment_status="unfulfilled",
        financial_status="pending",
        total_cents=total_cents,
        currency=None,
        customer_id=customer.id,
        customer=payloads.customer_summary(customer),
        line_items=line_items,
        shipping_address={
            "firstName": shipping.firstName,
            "lastName": shipping.lastName,
            "phone": normalise(shipping.phone, country, "shippingAddress.phone"),
            "address1": shipping.address1,
            "address2": shipping.address2,
            "city": shipping.city,
            "province": shipping.province,
            "country": shipping.country or country,
            "zip": shipping.zip,
        },
        notes=data.notes,
        tags=list(data.tags),
        created_at=now,
        updated_at=now,
    )
    await tx.insert_order(tenant, order)
    await events.record(tx, tenant, "order.created", payloads.order(order), now)
    _updatable(order)
    return order


async def update(
    platform: Platform, tx: Tx, tenant: Tenant, order_id: str, data: OrderUpdate
) -> Order:
    """Change the statuses and fields ``data`` sent, in the caller's transaction;
    ``order.updated``."""
    order = await tx.get_order(tenant, order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    before = replace(order)
    sent = data.model_fields_set
    for field, attribute in (
        ("status", "status"),
        ("fulfillmentStatus", "fulfillment_status"),
        ("financialStatus", "financial_status"),
    ):
        value = getattr(data, field)
        if field in sent:
            if value is None:
                raise ValidationFailed.field(field, "cannot be null")
            setattr(order, attribute, value)
    if "notes" in sent:
        order.notes = data.notes
    if order == before:  # nothing changed: nothing written, no event
        return order
    order.updated_at = max(platform.now(), order.updated_at + 1)
    await tx.update_order(tenant, order)
    await events.record(tx, tenant, "order.updated", payloads.order(order), order.updated_at)
    return order


async def get(platform: Platform, tenant: Tenant, order_id: str) -> Order:
    async with platform.store.read() as tx:
        order = await tx.get_order(tenant, order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    return order


async def search(platform: Platform, tenant: Tenant, query: ListQuery) -> Page:
    async with platform.store.read(snapshot=True) as tx:
        return await tx.list_orders(tenant, query)
