"""Sample payloads of each event type (the seed document's examples) for test sends."""

from __future__ import annotations

from typing import Any

_ADDRESS = {
    "id": "addr_xyz",
    "firstName": "John",
    "lastName": "Doe",
    "phone": "+6281234567890",
    "address1": "Jl. Sudirman No. 1",
    "address2": None,
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "country": "ID",
    "zip": "10110",
    "mainAddress": True,
}
_CUSTOMER = {
    "id": "cust_abc123",
    "email": "john@example.com",
    "phoneNumber": "+6281234567890",
    "firstName": "John",
    "lastName": "Doe",
    "imageUrl": None,
    "tags": ["new-customer"],
    "addresses": [_ADDRESS],
    "createdAt": "2024-01-15T10:30:00.000Z",
    "updatedAt": "2024-01-15T10:30:00.000Z",
}
_ORDER = {
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
        "phone": "+6281234567890",
        "address1": "Jl. Sudirman No. 1",
        "address2": None,
        "city": "Jakarta",
        "province": "DKI Jakarta",
        "country": "ID",
        "zip": "10110",
    },
    "tags": [],
    "createdAt": "2024-01-15T10:30:00.000Z",
    "updatedAt": "2024-01-15T10:30:00.000Z",
}
_PRODUCT = {
    "id": "prod_ghi789",
    "productId": "PROD-001",
    "name": "Premium T-Shirt",
    "description": "High-quality cotton t-shirt",
    "media": None,
    "status": None,
    "variants": [
        {
            "id": "var_001",
            "key": "Default",
            "price": 75000,
            "compareAtPrice": None,
            "inventorySku": "TSH-001",
            "media": None,
        }
    ],
    "options": [],
    "tags": ["apparel"],
    "types": [],
    "createdAt": "2024-01-15T10:30:00.000Z",
    "updatedAt": "2024-01-15T10:30:00.000Z",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "customer.created": _CUSTOMER,
    "customer.updated": {**_CUSTOMER, "updatedAt": "2024-01-16T08:00:00.000Z"},
    "customer.deleted": {"id": "cust_abc123"},
    "order.created": _ORDER,
    "order.updated": {**_ORDER, "fulfillmentStatus": "fulfilled", "financialStatus": "paid"},
    "product.created": _PRODUCT,
    "product.updated": {**_PRODUCT, "name": "Premium T-Shirt (Updated)"},
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
        "timestamp": "2024-01-15T10:30:00.000Z",
    },
}
