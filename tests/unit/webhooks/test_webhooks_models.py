"""Typed models: every seed payload parses; absence is tolerated, wrong types are not."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bitbybit.webhooks import (
    EVENT_TYPES,
    Address,
    BadPayload,
    Customer,
    Deleted,
    GenericPayload,
    LineItem,
    MessageError,
    MessageReceived,
    MessageStatusUpdated,
    Order,
    OrderCustomer,
    Product,
    Variant,
    parse_event,
    verify,
)

# The payloads of the seed document (webhook-event-types.txt), verbatim.
SEED: dict[str, dict[str, Any]] = {
    "customer.created": {
        "id": "cust_abc123",
        "email": "john@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["new-customer"],
        "addresses": [
            {
                "id": "addr_xyz",
                "firstName": "John",
                "lastName": "Doe",
                "phone": "+6281234567890",
                "address1": "Jl. Sudirman No. 1",
                "city": "Jakarta",
                "province": "DKI Jakarta",
                "country": "ID",
                "zip": "10110",
            }
        ],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "customer.updated": {
        "id": "cust_abc123",
        "email": "john.updated@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["vip"],
        "addresses": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T08:00:00.000Z",
    },
    "customer.deleted": {"id": "cust_abc123"},
    "order.created": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 150000,
        "currency": None,
        "customer": {
            "id": "cust_abc123",
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phoneNumber": "+6281234567890",
        },
        "lineItems": [{"id": "li_001", "quantity": 2, "price": 75000, "title": "Premium T-Shirt"}],
        "shippingAddress": {
            "firstName": "John",
            "lastName": "Doe",
            "address1": "Jl. Sudirman No. 1",
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10110",
        },
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "order.updated": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "status": "active",
        "fulfillmentStatus": "fulfilled",
        "financialStatus": "paid",
        "total": 150000,
        "customer": {"id": "cust_abc123", "firstName": "John", "lastName": "Doe"},
        "lineItems": [],
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T14:00:00.000Z",
    },
    "product.created": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": None,
        "status": None,
        "variants": [
            {"id": "var_001", "key": "Default", "price": 75000, "inventorySku": "TSH-001"}
        ],
        "options": [],
        "tags": ["apparel"],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "product.updated": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt (Updated)",
        "description": "Updated description",
        "variants": [],
        "options": [],
        "tags": [],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-17T09:00:00.000Z",
    },
    "product.deleted": {"id": "prod_ghi789"},
    "message.received": {
        "messageId": "msg_jkl012",
        "from": "+6281234567890",
        "body": "Hi, I have a question about my order",
        "source": "WHATSAPP_META",
        "receivedAt": "2024-01-15T10:30:00.000Z",
    },
    "message.status.updated": {
        "messageId": "msg_mno345",
        "status": "sent",
        "to": "+6281234567890",
        "templateName": "order_confirmation",
    },
}
MODEL = {
    "customer.created": Customer,
    "customer.updated": Customer,
    "customer.deleted": Deleted,
    "order.created": Order,
    "order.updated": Order,
    "product.created": Product,
    "product.updated": Product,
    "product.deleted": Deleted,
    "message.received": MessageReceived,
    "message.status.updated": MessageStatusUpdated,
}
T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def test_the_ten_types_are_modelled() -> None:
    assert frozenset(SEED) == EVENT_TYPES == frozenset(MODEL)
    assert len(EVENT_TYPES) == 10


@pytest.mark.parametrize("event_type", sorted(SEED))
def test_every_seed_payload_parses_and_keeps_raw(event_type: str) -> None:
    data = parse_event(event_type, SEED[event_type])
    assert type(data) is MODEL[event_type]
    assert data.raw == SEED[event_type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.raw = {}  # type: ignore[misc]
    assert not hasattr(data, "__dict__")  # slots


@pytest.mark.parametrize("event_type", sorted(SEED))
def test_signed_seed_payload_verifies_to_its_model(
    make_delivery: Callable[..., tuple[bytes, dict[str, str]]], secret: str, event_type: str
) -> None:
    body, headers = make_delivery(SEED[event_type], event_type=event_type, timestamp=1)
    assert type(verify(body, headers, secret, now=1).data) is MODEL[event_type]


def test_customer_fields() -> None:
    customer = parse_event("customer.created", SEED["customer.created"])
    assert customer == Customer(
        id="cust_abc123",
        email="john@example.com",
        phone_number="+6281234567890",
        first_name="John",
        last_name="Doe",
        image_url=None,
        tags=("new-customer",),
        addresses=(
            Address(
                id="addr_xyz",
                first_name="John",
                last_name="Doe",
                phone="+6281234567890",
                address1="Jl. Sudirman No. 1",
                city="Jakarta",
                province="DKI Jakarta",
                country="ID",
                zip="10110",
            ),
        ),
        created_at=T0,
        updated_at=T0,
    )
    assert customer.created_at is not None
    assert customer.created_at.tzinfo is not None


def test_order_fields_including_omitted_ones() -> None:
    created = parse_event("order.created", SEED["order.created"])
    assert isinstance(created, Order)
    assert created.order_id == "ORD-001"
    assert created.order_number == "1001"
    assert created.total == 150000
    assert created.currency is None
    assert created.customer == OrderCustomer(
        id="cust_abc123",
        first_name="John",
        last_name="Doe",
        email="john@example.com",
        phone_number="+6281234567890",
    )
    assert created.line_items == (
        LineItem(id="li_001", quantity=2, price=75000, title="Premium T-Shirt"),
    )
    assert created.shipping_address is not None
    assert created.shipping_address.id is None
    assert created.shipping_address.zip == "10110"

    updated = parse_event("order.updated", SEED["order.updated"])
    assert isinstance(updated, Order)
    assert (updated.order_number, updated.currency, updated.shipping_address) == (None, None, None)
    assert updated.customer is not None
    assert updated.customer.email is None
    assert updated.fulfillment_status == "fulfilled"
    assert updated.updated_at == datetime(2024, 1, 16, 14, tzinfo=UTC)


def test_product_fields() -> None:
    product = parse_event("product.created", SEED["product.created"])
    assert isinstance(product, Product)
    assert product.variants == (
        Variant(id="var_001", key="Default", price=75000, inventory_sku="TSH-001"),
    )
    assert product.variants[0].compare_at_price is None
    assert (product.media, product.status, product.tags, product.types) == (
        None,
        None,
        ("apparel",),
        (),
    )
    rich = parse_event(
        "product.updated",
        {
            "id": "prod_1",
            "media": ["https://cdn.example/a.png"],
            "status": "active",
            "variants": [{"id": "var_1", "price": 9.99, "compareAtPrice": 12.5, "media": None}],
            "options": [{"name": "Size", "values": ["S", "M"]}],
        },
    )
    assert isinstance(rich, Product)
    assert rich.media == ["https://cdn.example/a.png"]
    assert rich.variants[0].compare_at_price == 12.5
    assert rich.options == ({"name": "Size", "values": ["S", "M"]},)


def test_message_fields() -> None:
    received = parse_event("message.received", SEED["message.received"])
    assert received == MessageReceived(
        message_id="msg_jkl012",
        from_="+6281234567890",
        body="Hi, I have a question about my order",
        source="WHATSAPP_META",
        received_at=T0,
    )
    failed = parse_event(
        "message.status.updated",
        {
            "messageId": "msg_1",
            "status": "failed",
            "to": "+6281234567890",
            "templateName": None,
            "timestamp": "2024-01-15T10:30:00.000Z",
            "error": {"code": 131026, "message": "Message undeliverable"},
        },
    )
    assert isinstance(failed, MessageStatusUpdated)
    assert failed.template_name is None
    assert failed.timestamp == T0
    assert failed.error == MessageError(code=131026, message="Message undeliverable")


def test_deleted_is_only_the_id() -> None:
    assert parse_event("customer.deleted", {"id": "cust_1"}) == Deleted(id="cust_1")
    assert parse_event("product.deleted", {"id": "prod_1"}) == Deleted(id="prod_1")


def test_unknown_type_is_generic() -> None:
    data = parse_event("invoice.paid", {"id": "inv_1"})
    assert data == GenericPayload(type="invoice.paid", raw={"id": "inv_1"})
    assert isinstance(data, GenericPayload)
    assert data.raw == {"id": "inv_1"}


def test_extra_fields_are_kept_in_raw() -> None:
    customer = parse_event("customer.updated", {"id": "c", "source": "api", "loyalty": 3})
    assert isinstance(customer, Customer)
    assert customer.raw["loyalty"] == 3
    assert customer.tags == ()


def test_naive_and_unix_timestamps_become_aware() -> None:
    customer = parse_event(
        "customer.updated",
        {"id": "c", "createdAt": "2024-01-15T10:30:00", "updatedAt": 1705314600},
    )
    assert isinstance(customer, Customer)
    assert customer.created_at == T0
    assert customer.updated_at == T0


@pytest.mark.parametrize(
    ("event_type", "payload", "message"),
    [
        ("customer.created", {}, r"payload\.id is required"),
        ("customer.created", {"id": None}, r"payload\.id is required"),
        ("customer.created", {"id": 1}, r"payload\.id must be a string, not int"),
        ("customer.created", {"id": "c", "tags": "vip"}, r"payload\.tags must be an array"),
        ("customer.created", {"id": "c", "tags": [1]}, r"payload\.tags\[0\] must be a string"),
        ("customer.created", {"id": "c", "addresses": [1]}, r"addresses\[0\] must be an object"),
        (
            "customer.created",
            {"id": "c", "addresses": [{"zip": 10110}]},
            r"payload\.addresses\[0\]\.zip must be a string",
        ),
        ("customer.created", {"id": "c", "createdAt": "yesterday"}, "ISO-8601"),
        ("customer.created", {"id": "c", "createdAt": True}, "boolean"),
        ("order.created", {"id": "o", "total": "150000"}, r"total must be a number"),
        ("order.created", {"id": "o", "total": True}, r"total must be a number, not a boolean"),
        ("order.created", {"id": "o", "lineItems": [{"quantity": 1.5}]}, "an integer"),
        ("order.created", {"id": "o", "customer": "cust_1"}, r"customer must be an object"),
        ("product.created", {"id": "p", "variants": [{"price": None, "key": 3}]}, "key"),
        ("message.received", {"from": "+62"}, r"messageId is required"),
        ("message.status.updated", {"messageId": "m", "error": "x"}, "error must be an object"),
    ],
)
def test_wrong_types_are_bad_payloads(event_type: str, payload: Any, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        parse_event(event_type, payload)


@pytest.mark.parametrize("payload", [None, [], "x", 1])
def test_payload_must_be_an_object(payload: Any) -> None:
    with pytest.raises(BadPayload, match="JSON object"):
        parse_event("customer.created", payload)
