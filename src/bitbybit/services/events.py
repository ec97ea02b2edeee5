"""The transactional outbox: every change writes its event in the change's own transaction."""

from __future__ import annotations

from typing import Any, Final

from bitbybit.errors import FieldError, ValidationFailed
from bitbybit.ids import new_id
from bitbybit.limits import MAX_PAYLOAD_BYTES
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


def body_of(event_type: str, payload: dict[str, Any]) -> bytes:
    """The bytes ``payload`` is signed and sent as; refused if the worker could never send them.

    Every event is encoded here, in the transaction of the change that causes it, so a change
    whose event is over ``MAX_PAYLOAD_BYTES`` fails before it commits: nothing of it is written
    (the caller's transaction rolls back) and the caller learns why, instead of every delivery
    failing later and the endpoint being suspended for it.
    """
    body = encode_body(payload)
    if len(body) > MAX_PAYLOAD_BYTES:
        raise too_large(event_type, len(body), payload)
    return body


def too_large(
    event_type: str, size: int, payload: dict[str, Any], *, which: str = "for this change"
) -> ValidationFailed:
    """The refusal of an event of ``size`` bytes, naming the member of it that weighs most."""
    message = (
        f"the {event_type} event {which} would be {size:,} bytes; "
        f"events are limited to {MAX_PAYLOAD_BYTES:,} bytes"
    )
    weights = {key: len(encode_body(value)) for key, value in payload.items()}
    heaviest = max(weights, key=weights.__getitem__, default=None)
    details = []
    if heaviest is not None:
        details.append(
            FieldError(heaviest, f"takes {weights[heaviest]:,} bytes of the {event_type} event")
        )
    return ValidationFailed(message, details)


async def record_many(
    tx: Tx, tenant: Tenant, changes: list[tuple[str, dict[str, Any]]], now: int
) -> list[Event]:
    """``record`` for several events of one tenant at once: one statement writes them, one read
    of the endpoints fans them out (a batch of a worker's results, say)."""
    if any(event_type not in EVENT_TYPES for event_type, _ in changes):
        raise ValueError(f"unknown event type among {sorted({t for t, _ in changes})}")
    written = [
        Event(new_id("evt"), event_type, body_of(event_type, payload), now)
        for event_type, payload in changes
    ]
    if written:
        await tx.insert_events(tenant, written)
        targets = await tx.fan_out_targets(tenant)
        for event in written:
            endpoints = [e for e in targets if webhooks.subscribed(e, event.type)]
            if endpoints:
                await tx.queue_deliveries(tenant, event, endpoints, now)
    return written


async def record(
    tx: Tx, tenant: Tenant, event_type: str, payload: dict[str, Any], now: int
) -> Event:
    """Write ``event_type`` with ``payload`` (already in the seed's key order) to the outbox,
    and queue its deliveries, in the caller's transaction: the change's own."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event = Event(new_id("evt"), event_type, body_of(event_type, payload), now)
    await tx.insert_event(tenant, event)
    await webhooks.fan_out(tx, tenant, event, now)
    return event
