"""The transactional outbox: every change writes its event in the change's own transaction."""

from __future__ import annotations

from typing import Any, Final

from bitbybit.ids import new_id
from bitbybit.models import Event, Tenant
from bitbybit.services import webhooks
from bitbybit.store import Tx
from bitbybit.webhooks.body import encode_body

EVENT_TYPES: Final = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "order.created",
    "order.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "message.received",
    "message.status.updated",
)


async def record(
    tx: Tx, tenant: Tenant, event_type: str, payload: dict[str, Any], now: int
) -> Event:
    """Write ``event_type`` with ``payload`` (already in the seed's key order) to the outbox."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event = Event(new_id("evt"), event_type, encode_body(payload), now)
    await tx.insert_event(tenant, event)
    await webhooks.fan_out(tx, tenant, event, now)
    return event
