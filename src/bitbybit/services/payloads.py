"""The public shapes of resources, keys in the seed document's order (SPEC §4).

The same dicts are the API's ``data`` and the webhook bodies, so what a client reads and what a
receiver is sent never drift apart.
"""

from __future__ import annotations

from typing import Any

import orjson

from bitbybit.clock import iso
from bitbybit.models import (
    JSON,
    Attempt,
    Customer,
    Delivery,
    Endpoint,
    Event,
    Order,
    Product,
    Variant,
)


def money(cents: int | None) -> int | float | None:
    """Hundredths to the JSON number: whole amounts without a fraction (``150000``, ``19.99``)."""
    if cents is None:
        return None
    whole, rest = divmod(cents, 100)
    return whole if rest == 0 else cents / 100


def customer(record: Customer) -> JSON:
    return {
        "id": record.id,
        "email": record.email,
        "phoneNumber": record.phone_number,
        "firstName": record.first_name,
        "lastName": record.last_name,
        "imageUrl": record.image_url,
        "tags": record.tags,
        "addresses": record.addresses,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def customer_resource(record: Customer) -> JSON:
    """The API's customer: the event shape plus where the customer came from."""
    return {**customer(record), "source": record.source}


def customer_summary(record: Customer) -> JSON:
    """The ``customer`` of an order."""
    return {
        "id": record.id,
        "firstName": record.first_name,
        "lastName": record.last_name,
        "email": record.email,
        "phoneNumber": record.phone_number,
    }


def variant(record: Variant) -> JSON:
    return {
        "id": record.id,
        "key": record.key,
        "price": money(record.price_cents),
        "compareAtPrice": money(record.compare_at_price_cents),
        "inventorySku": record.inventory_sku,
        "media": record.media,
    }


def product(record: Product) -> JSON:
    return {
        "id": record.id,
        "productId": record.product_id,
        "name": record.name,
        "description": record.description,
        "media": record.media,
        "status": record.status,
        "variants": [variant(v) for v in record.variants],
        "options": record.options,
        "tags": record.tags,
        "types": record.types,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def order(record: Order) -> JSON:
    return {
        "id": record.id,
        "orderId": record.order_id,
        "orderNumber": str(record.order_number),
        "status": record.status,
        "fulfillmentStatus": record.fulfillment_status,
        "financialStatus": record.financial_status,
        "total": money(record.total_cents),
        "currency": record.currency,
        "customer": record.customer,
        "lineItems": [
            {
                "id": item["id"],
                "quantity": item["quantity"],
                "price": money(item["priceCents"]),
                "title": item["title"],
            }
            for item in record.line_items
        ],
        "shippingAddress": record.shipping_address,
        "tags": record.tags,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def order_resource(record: Order) -> JSON:
    """The API's order: the event shape plus notes and each line's variant, as the public
    reference nests it (``productVariant``: the variant as it was sold; ``null`` for orders made
    before variants were kept with their lines)."""
    data = order(record)
    for shown, item in zip(data["lineItems"], record.line_items, strict=True):
        shown["productVariantId"] = item.get("productVariantId")
        shown["productVariant"] = item.get("productVariant")
    data["notes"] = record.notes
    return data


def deleted(object_id: str) -> dict[str, Any]:
    return {"id": object_id}


def endpoint(record: Endpoint, now: int) -> JSON:
    rotation = None
    if record.next_secret_at is not None and record.next_secret_at > now:
        rotation = {"newSecretEffectiveAt": iso(record.next_secret_at)}
    return {
        "id": record.id,
        "url": record.url,
        "description": record.description,
        "events": record.events or ["*"],
        "status": record.status,
        "statusReason": record.status_reason,
        "multiSignature": record.multi_signature,
        "secretRotation": rotation,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def delivery(record: Delivery) -> JSON:
    return {
        "id": record.id,
        "eventId": record.event_id,
        "eventType": record.event_type,
        "endpointId": record.endpoint_id,
        "status": record.status,
        "attemptCount": record.attempts,
        "nextAttemptAt": iso(record.next_attempt_at) if record.status == "pending" else None,
        "lastStatusCode": record.last_status_code,
        "lastError": record.last_error,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def response_text(body: bytes | None) -> str | None:
    return None if body is None else body.decode("utf-8", "replace")


def attempt(record: Attempt) -> JSON:
    return {
        "number": record.number,
        "startedAt": iso(record.started_at),
        "statusCode": record.status_code,
        "latencyMs": record.latency_ms,
        "error": record.error,
        "responseBody": response_text(record.response_body),
    }


def event(record: Event) -> JSON:
    return {
        "id": record.id,
        "type": record.type,
        "createdAt": iso(record.created_at),
        "payload": orjson.loads(record.payload),
    }
