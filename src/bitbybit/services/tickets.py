"""Agent tickets: while a customer's ticket is open, sends are refused with ``ACTIVE_TICKET``
unless they say ``ignoreActiveTicket`` (an agent is handling the conversation)."""

from __future__ import annotations

from bitbybit.clock import iso
from bitbybit.errors import Conflict, IntegrityViolation, NotFound, ValidationFailed
from bitbybit.ids import new_id
from bitbybit.models import JSON, Page, Tenant, Ticket
from bitbybit.runtime import Platform
from bitbybit.store import Tx

STATUSES = ("open", "closed")


def resource(ticket: Ticket) -> JSON:
    return {
        "id": ticket.id,
        "customerId": ticket.customer_id,
        "status": ticket.status,
        "openedAt": iso(ticket.opened_at),
        "closedAt": None if ticket.closed_at is None else iso(ticket.closed_at),
    }


async def open_for(platform: Platform, tx: Tx, tenant: Tenant, customer_id: str) -> Ticket:
    """Open a ticket on the customer; 409 when one is open already (there is one at most)."""
    if await tx.get_customer(tenant, customer_id) is None:
        raise NotFound(f"no customer {customer_id}")
    existing = await tx.open_ticket_of(tenant, customer_id)
    if existing is not None:
        raise Conflict(f"ticket {existing.id} is already open for customer {customer_id}")
    now = platform.now()
    ticket = Ticket(new_id("tkt"), customer_id, "open", now, None, now)
    try:
        await tx.insert_ticket(tenant, ticket)
    except IntegrityViolation:  # opened concurrently
        raise Conflict(f"a ticket is already open for customer {customer_id}") from None
    return ticket


async def close(platform: Platform, tx: Tx, tenant: Tenant, ticket_id: str) -> Ticket:
    """Close a ticket; closing a closed ticket changes nothing (and is not an error)."""
    ticket = await tx.get_ticket(tenant, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket {ticket_id}")
    if ticket.status == "open":
        now = platform.now()
        await tx.close_ticket(tenant, ticket_id, now)
        ticket.status, ticket.closed_at, ticket.updated_at = "closed", now, now
    return ticket


async def listing(
    tx: Tx,
    tenant: Tenant,
    *,
    status: str | None,
    customer_id: str | None,
    page: int,
    limit: int,
) -> Page:
    if status is not None and status not in STATUSES:
        raise ValidationFailed.field("status", "must be open or closed")
    return await tx.list_tickets(
        tenant, status=status, customer_id=customer_id, page=page, limit=limit
    )
