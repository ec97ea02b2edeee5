"""Shared fixtures for the receiver library's tests: a fixed secret and signed deliveries."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from bitbybit.webhooks import webhook_headers
from bitbybit.webhooks.body import encode_body

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CUSTOMER = {
    "id": "cust_abc123",
    "email": "john@example.com",
    "phoneNumber": "+6281234567890",
    "firstName": "John",
    "lastName": "Doe",
    "imageUrl": None,
    "tags": ["new-customer"],
    "addresses": [],
    "createdAt": "2024-01-15T10:30:00.000Z",
    "updatedAt": "2024-01-15T10:30:00.000Z",
}

Delivery = tuple[bytes, dict[str, str]]
MakeDelivery = Callable[..., Delivery]


def _make(
    payload: Mapping[str, Any] | bytes = CUSTOMER,
    *,
    event_type: str = "customer.created",
    event_id: str = "evt_0001",
    secret: str | Sequence[str] = SECRET,
    timestamp: int | None = None,
) -> Delivery:
    body = payload if isinstance(payload, bytes) else encode_body(payload)
    ts = int(time.time()) if timestamp is None else timestamp
    return body, webhook_headers(event_id, event_type, body, secret, ts)


@pytest.fixture
def make_delivery() -> MakeDelivery:
    """``make_delivery(payload, event_type=…, event_id=…, secret=…, timestamp=…)`` → body, headers.

    The timestamp defaults to now, which is what the framework adapters check against.
    """
    return _make


def _require(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not available here (set CI=true to make this a failure)")


@pytest.fixture
def require() -> Callable[[bool, str], None]:
    """``require(available, what)``: skip locally with a reason, fail when ``CI=true``."""
    return _require


@pytest.fixture
def secret() -> str:
    """The fixed test signing secret, as the dashboard shows it."""
    return SECRET
