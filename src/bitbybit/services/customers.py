"""Customers: create, read, update, delete, list — each change with its event."""

from __future__ import annotations

from dataclasses import replace

from bitbybit.errors import Conflict, IntegrityViolation, NotFound, ValidationFailed
from bitbybit.ids import new_id
from bitbybit.models import JSON, Customer, ListQuery, Page, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import AddressIn, CustomerCreate, CustomerUpdate
from bitbybit.services import events, payloads
from bitbybit.services.phones import normalise
from bitbybit.store import Tx

SOURCES = ("api", "dashboard", "whatsapp", "order")


def _addresses(items: list[AddressIn], country: str, existing: list[JSON]) -> list[JSON]:
    known = {address["id"] for address in existing}
    result = []
    for index, item in enumerate(items):
        result.append(
            {
                "id": item.id if item.id in known else new_id("addr"),
                "firstName": item.firstName,
                "lastName": item.lastName,
                "phone": (
                    normalise(item.phone, country, f"addresses[{index}].phone")
                    if item.phone
                    else None
                ),
                "address1": item.address1,
                "address2": item.address2,
                "city": item.city,
                "province": item.province,
                "country": item.country,
                "zip": item.zip,
                "mainAddress": item.mainAddress,
            }
        )
    return result


async def _ensure_unique(tx: Tx, tenant: Tenant, customer: Customer) -> None:
    if customer.email:
        other = await tx.find_customer(tenant, email=customer.email)
        if other is not None and other.id != customer.id:
            raise Conflict(f"a customer with email {customer.email} already exists")
    if customer.phone_number:
        other = await tx.find_customer(tenant, phone_number=customer.phone_number)
        if other is not None and other.id != customer.id:
            raise Conflict(f"a customer with phone number {customer.phone_number} already exists")


async def insert(
    platform: Platform, tx: Tx, tenant: Tenant, data: CustomerCreate, source: str = "api"
) -> Customer:
    """Create a customer inside the caller's transaction and record ``customer.created``."""
    country = await platform.country_of(tx, tenant.company_id)
    now = platform.now()
    customer = Customer(
        id=new_id("cust"),
        email=data.email or None,
        phone_number=normalise(data.phoneNumber, country) if data.phoneNumber else None,
        first_name=data.firstName,
        last_name=data.lastName,
        image_url=data.imageUrl,
        tags=list(data.tags),
        addresses=_addresses(data.addresses, country, []),
        source=source,
        created_at=now,
        updated_at=now,
    )
    try:
        await tx.insert_customer(tenant, customer)
    except IntegrityViolation:
        # Looked up only now, when the insert was refused: a create costs no lookup before it.
        await _ensure_unique(tx, tenant, customer)
        raise Conflict("a customer with this email or phone number already exists") from None
    await events.record(tx, tenant, "customer.created", payloads.customer(customer), now)
    return customer


async def update(
    platform: Platform, tx: Tx, tenant: Tenant, customer_id: str, data: CustomerUpdate
) -> Customer:
    """Change the fields ``data`` sent, in the caller's transaction; ``customer.updated``."""
    customer = await tx.get_customer(tenant, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    before = replace(customer)
    country = await platform.country_of(tx, tenant.company_id)
    sent = data.model_fields_set
    if "email" in sent:
        customer.email = data.email or None
    if "phoneNumber" in sent:
        customer.phone_number = normalise(data.phoneNumber, country) if data.phoneNumber else None
    if not customer.email and not customer.phone_number:
        raise ValidationFailed.field("email", "a customer keeps an email or a phoneNumber")
    if "firstName" in sent:
        customer.first_name = data.firstName
    if "lastName" in sent:
        customer.last_name = data.lastName
    if "imageUrl" in sent:
        customer.image_url = data.imageUrl
    if "tags" in sent:
        customer.tags = list(data.tags or [])
    if "addresses" in sent:
        customer.addresses = _addresses(data.addresses or [], country, customer.addresses)
    if customer == before:  # nothing changed: nothing written, no event
        return customer
    customer.updated_at = max(platform.now(), customer.updated_at + 1)
    await _ensure_unique(tx, tenant, customer)
    try:
        await tx.update_customer(tenant, customer)
    except IntegrityViolation:
        raise Conflict("a customer with this email or phone number already exists") from None
    await events.record(
        tx, tenant, "customer.updated", payloads.customer(customer), customer.updated_at
    )
    return customer


async def delete(platform: Platform, tx: Tx, tenant: Tenant, customer_id: str) -> str:
    """Delete the customer in the caller's transaction and record ``customer.deleted``."""
    if not await tx.delete_customer(tenant, customer_id):
        raise NotFound(f"no customer {customer_id}")
    await events.record(
        tx, tenant, "customer.deleted", payloads.deleted(customer_id), platform.now()
    )
    return customer_id


async def get(platform: Platform, tenant: Tenant, customer_id: str) -> Customer:
    async with platform.store.read() as tx:
        customer = await tx.get_customer(tenant, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    return customer


async def search(platform: Platform, tenant: Tenant, query: ListQuery) -> Page:
    for source in query.filters.get("source", ()):
        if source not in SOURCES:
            raise ValidationFailed.field("source", f"unknown source {source!r}")
    async with platform.store.read(snapshot=True) as tx:
        return await tx.list_customers(tenant, query)
