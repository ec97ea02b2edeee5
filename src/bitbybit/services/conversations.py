"""Conversations as the dashboard shows them: one per phone number, both directions, with each
outbound message's status history, the customer's service window and their open ticket.

Reads go through the tenant, so another company's number is simply a conversation with no
messages (``NotFound``). Sends are ``services.messages``' own (``send_text``,
``send_template``), each in one transaction, with ``ignoreActiveTicket``: a person answering in
the dashboard is the agent the ticket is for (a ticket holds back automated sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bitbybit.errors import FieldError, NotFound, ValidationFailed
from bitbybit.models import Customer, Message, Page, StatusReport, Template, Tenant, Ticket
from bitbybit.runtime import Platform
from bitbybit.schemas import MessageSend, TemplateCreate, TemplateSend
from bitbybit.services import messages, templates, tickets
from bitbybit.services.phones import normalise
from bitbybit.store import Tx

M = TypeVar("M", bound=BaseModel)

THREAD_LIMIT = 100
"""Messages shown on one page of a conversation (the latest first; earlier ones page back)."""
SEARCH_LIMIT = 200
"""The longest search text considered."""


def window_open(last_inbound_at: int | None, now: int) -> bool:
    """Whether a free-form reply may go now: the customer wrote within the last 24 hours (the
    test ``messages.send_text`` applies)."""
    return last_inbound_at is not None and now - last_inbound_at <= messages.WINDOW_MS


def window_closes_at(last_inbound_at: int | None) -> int | None:
    return None if last_inbound_at is None else last_inbound_at + messages.WINDOW_MS


def display_name(customer: Customer | None) -> str | None:
    """The customer's name, or ``None`` when they have none."""
    if customer is None:
        return None
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
    return name or None


@dataclass(frozen=True, slots=True)
class Conversation:
    """One line of the list: a number, who it is, its last message and the window."""

    phone: str
    customer: Customer | None
    last: Message
    last_inbound_at: int | None
    window_open: bool

    @property
    def name(self) -> str | None:
        return display_name(self.customer)

    @property
    def window_closes_at(self) -> int | None:
        return window_closes_at(self.last_inbound_at)


@dataclass(frozen=True, slots=True)
class Thread:
    """One page of a conversation, oldest first, with what the page around it needs."""

    phone: str
    customer: Customer | None
    messages: list[Message]
    """Oldest first: the ``page``-th hundred counting back from the latest."""
    history: dict[str, list[StatusReport]]
    """Each outbound message's reported statuses, oldest first."""
    page: Page
    """The page (``items`` newest first, as stored); ``has_next_page``: earlier messages."""
    last_inbound_at: int | None
    window_open: bool
    ticket: Ticket | None
    """The customer's open ticket."""

    @property
    def name(self) -> str | None:
        return display_name(self.customer)

    @property
    def window_closes_at(self) -> int | None:
        return window_closes_at(self.last_inbound_at)


def in_sandbox(platform: Platform, tenant: Tenant) -> bool:
    """Whether the tenant's messages go through the sandbox (``messages.route``), where
    inbound messages may be simulated."""
    return tenant.mode == "test" or platform.settings.channel == "sandbox"


async def listing(
    platform: Platform, tenant: Tenant, *, search: str | None, page: int, limit: int = 25
) -> Page:
    """The tenant's conversations, latest activity first (``Conversation`` items)."""
    text = (search or "").strip()[:SEARCH_LIMIT] or None
    async with platform.store.read(snapshot=True) as tx:
        found = await tx.list_conversations(tenant, search=text, page=page, limit=limit)
    now = platform.now()
    items = [
        Conversation(last.phone, customer, last, last_in, window_open(last_in, now))
        for last, last_in, customer in found.items
    ]
    return Page(items, found.total, found.page, found.limit)


async def _phone(platform: Platform, tx: Tx, tenant: Tenant, raw: str) -> str:
    """The number as stored (E.164); a number that cannot be one has no conversation."""
    try:
        return normalise(raw, await platform.country_of(tx, tenant.company_id), "phone")
    except ValidationFailed:
        raise NotFound("there is no conversation with that number") from None


async def _existing(platform: Platform, tx: Tx, tenant: Tenant, raw: str) -> str:
    """The conversation's number; ``NotFound`` when the tenant has no message with it."""
    phone = await _phone(platform, tx, tenant, raw)
    found = await tx.list_messages(tenant, phone=phone, page=1, limit=1)
    if not found.items:
        raise NotFound("there is no conversation with that number")
    return phone


async def thread(platform: Platform, tenant: Tenant, raw_phone: str, *, page: int = 1) -> Thread:
    """A conversation's ``page``-th hundred messages counting back from the latest, in one
    snapshot; ``NotFound`` when the tenant has no message with the number (another company's
    conversation included)."""
    async with platform.store.read(snapshot=True) as tx:
        phone = await _phone(platform, tx, tenant, raw_phone)
        found = await tx.list_messages(tenant, phone=phone, page=page, limit=THREAD_LIMIT)
        if found.total == 0:
            raise NotFound("there is no conversation with that number")
        history = await tx.status_reports([m.id for m in found.items if m.direction == "out"])
        last_in = await tx.last_inbound_at(tenant, phone)
        customer = await tx.find_customer(tenant, phone_number=phone)
        ticket = None if customer is None else await tx.open_ticket_of(tenant, customer.id)
    return Thread(
        phone=phone,
        customer=customer,
        messages=list(reversed(found.items)),
        history=history,
        page=found,
        last_inbound_at=last_in,
        window_open=window_open(last_in, platform.now()),
        ticket=ticket,
    )


async def has_messages(platform: Platform, tenant: Tenant, phone: str | None) -> bool:
    """Whether the tenant has a conversation with ``phone`` (for a link to it)."""
    if not phone:
        return False
    async with platform.store.read() as tx:
        found = await tx.list_messages(tenant, phone=phone, page=1, limit=1)
    return bool(found.items)


async def all_templates(platform: Platform, tenant: Tenant, limit: int = 100) -> list[Template]:
    """The tenant's templates by name (the first ``limit``), to choose one to send."""
    async with platform.store.read() as tx:
        found = await templates.listing(tx, tenant, 1, limit)
    return list(found.items)


async def template_page(platform: Platform, tenant: Tenant, page: int, limit: int = 25) -> Page:
    async with platform.store.read(snapshot=True) as tx:
        return await templates.listing(tx, tenant, page, limit)


# -- changes -----------------------------------------------------------------------------------


def parsed(model: type[M], **fields: object) -> M:
    """``model`` built from a form's fields; invalid ones are a ``ValidationFailed`` naming
    each field and what is wrong with it (as the API's 400 does)."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        details = [
            FieldError(".".join(str(part) for part in item["loc"]) or "form", item["msg"])
            for item in error.errors()
        ]
        message = "; ".join(f"{detail.field}: {detail.message}" for detail in details)
        raise ValidationFailed(message, details) from None


async def reply(platform: Platform, tenant: Tenant, raw_phone: str, text: str) -> Message:
    """A free-form reply inside the window (``messages.send_text``): recorded and queued in one
    transaction, or nothing written (window closed, empty text, …)."""
    if not text.strip():
        raise ValidationFailed.field("message", "write a reply first")

    async def send(tx: Tx) -> Message:
        phone = await _existing(platform, tx, tenant, raw_phone)
        data = parsed(MessageSend, to=phone, message=text, ignoreActiveTicket=True)
        return await messages.send_text(platform, tx, tenant, data)

    return await platform.run(send)


async def send_template(
    platform: Platform, tenant: Tenant, raw_phone: str, name: str, params: list[str]
) -> Message:
    """Send the template ``name`` (allowed outside the window) with ``params``."""
    if not name:
        raise ValidationFailed.field("template", "choose a template")

    async def send(tx: Tx) -> Message:
        phone = await _existing(platform, tx, tenant, raw_phone)
        template = await tx.get_template(tenant, name)
        if template is None:
            raise ValidationFailed.field("template", f"there is no template named {name!r}")
        data = parsed(
            TemplateSend,
            to=phone,
            template_name=template.name,
            template_source=template.source,
            params=params,
            ignoreActiveTicket=True,
        )
        return await messages.send_template(platform, tx, tenant, data)

    return await platform.run(send)


async def create_template(
    platform: Platform, tenant: Tenant, fields: dict[str, object]
) -> Template:
    """A new template from the dashboard's form (``templates.create``)."""
    data = parsed(TemplateCreate, **fields)
    return await platform.run(lambda tx: templates.create(platform, tx, tenant, data))


async def _customer_of(platform: Platform, tx: Tx, tenant: Tenant, raw_phone: str) -> Customer:
    phone = await _existing(platform, tx, tenant, raw_phone)
    customer = await tx.find_customer(tenant, phone_number=phone)
    if customer is None:
        raise ValidationFailed(f"{phone} is not a customer's number: there is no one to ticket")
    return customer


async def open_ticket(platform: Platform, tenant: Tenant, raw_phone: str) -> Ticket:
    """Open a ticket on the conversation's customer (``tickets.open_for``)."""

    async def work(tx: Tx) -> Ticket:
        customer = await _customer_of(platform, tx, tenant, raw_phone)
        return await tickets.open_for(platform, tx, tenant, customer.id)

    return await platform.run(work)


async def close_ticket(platform: Platform, tenant: Tenant, raw_phone: str) -> Ticket | None:
    """Close the conversation's customer's open ticket; ``None`` when none was open."""

    async def work(tx: Tx) -> Ticket | None:
        customer = await _customer_of(platform, tx, tenant, raw_phone)
        ticket = await tx.open_ticket_of(tenant, customer.id)
        if ticket is None:
            return None
        return await tickets.close(platform, tx, tenant, ticket.id)

    return await platform.run(work)


async def simulate_inbound(
    platform: Platform, tenant: Tenant, raw_phone: str, body: str
) -> Message:
    """A message from the customer at ``raw_phone``, as the sandbox would receive it
    (``bitbybit messages inject``); only where sends go through the sandbox."""
    if not in_sandbox(platform, tenant):
        raise ValidationFailed(
            "inbound messages can only be simulated in the sandbox (test data, or"
            " BITBYBIT_CHANNEL=sandbox)"
        )
    if not raw_phone.strip():
        raise ValidationFailed.field("from", "give the customer's number")
    if not body.strip():
        raise ValidationFailed.field("body", "write the customer's message")
    if len(body) > 4096:
        raise ValidationFailed.field("body", "at most 4096 characters")

    async def work(tx: Tx) -> Message:
        inbound = messages.Inbound(sender=raw_phone.strip(), body=body)
        message = await messages.receive(platform, tx, tenant, inbound)
        assert message is not None  # a new WhatsApp id: never a repeat
        return message

    return await platform.run(work)
