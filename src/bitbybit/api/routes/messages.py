"""``/whatsapp/open/v1``: SPEC §3 Messages and §7 (templates, tickets, conversations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from bitbybit.api import schemas as out
from bitbybit.api.deps import (
    IdempotencyKey,
    Limit,
    MessagesRead,
    MessagesWrite,
    PageNumber,
    PlatformDep,
    create_once,
    many,
    one,
)
from bitbybit.api.routes import (
    WRITE,
    Route,
    by_id,
    errors,
    links,
    one_of_query,
    time_query,
)
from bitbybit.clock import iso, parse_iso
from bitbybit.errors import ValidationFailed
from bitbybit.models import Message, Page
from bitbybit.schemas import MessageSend, TemplateCreate, TemplateSend, TemplateUpdate, TicketCreate
from bitbybit.services import messages, templates, tickets
from bitbybit.store import Tx

router = APIRouter(tags=["messages"], route_class=Route)
SEND_ERRORS = errors(404, *WRITE)
SENT = {**SEND_ERRORS, **links(200, by_id("/data/messageId2", "message_id", "getMessage"))}


def _accepted(message: Message) -> dict[str, str]:
    return {"messageId2": message.id, "timestamp": iso(message.created_at)}


@router.post(
    "/messages/send",
    response_model=out.SendEnvelope,
    responses=SENT,
    operation_id="sendMessage",
)
async def send_message(
    body: MessageSend,
    request: Request,
    platform: PlatformDep,
    who: MessagesWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Free text, or an image with `message` as its caption, inside the customer's 24-hour
    service window (else 400 `OUTSIDE_SERVICE_WINDOW`); an open ticket answers 409
    `ACTIVE_TICKET` unless `ignoreActiveTicket`. The message is recorded and queued: 200 means
    it will be attempted, and its statuses arrive as `message.status.updated`."""
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: messages.send_text(platform, tx, who.tenant, body),
        _accepted,
        status_code=200,
    )


@router.post(
    "/messages/send-template",
    response_model=out.SendEnvelope,
    responses=SENT,
    operation_id="sendTemplate",
)
async def send_template(
    body: TemplateSend,
    request: Request,
    platform: PlatformDep,
    who: MessagesWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A template, allowed outside the service window: unknown template 404, a wrong number of
    `params` 400 naming the count the template expects."""
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: messages.send_template(platform, tx, who.tenant, body),
        _accepted,
        status_code=200,
    )


def _time(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ValidationFailed.field(
            name, "must be an ISO-8601 date or time such as 2024-01-15T10:30:00.000Z"
        ) from None


async def _with_history(tx: Tx, found: Page) -> Page:
    """The page's messages with their status histories, read in the same snapshot."""
    history = await tx.status_reports([message.id for message in found.items])
    items = [messages.resource(m, history.get(m.id, [])) for m in found.items]
    return Page(items, found.total, found.page, found.limit)


@router.get(
    "/messages/requests",
    response_model=out.MessageList,
    responses=errors(),
    operation_id="listMessageRequests",
)
async def list_requests(
    platform: PlatformDep,
    who: MessagesRead,
    responseId: Annotated[str | None, Query(description="A send's `messageId2`")] = None,
    templateId: Annotated[str | None, Query(description="A template's name")] = None,
    startDate: Annotated[str | None, time_query("From, inclusive")] = None,
    endDate: Annotated[str | None, time_query("Until, inclusive")] = None,
    page: PageNumber = 1,
    limit: Limit = 20,
) -> Response:
    """Every send request, newest first, with its current status, error and status history."""
    since, until = _time("startDate", startDate), _time("endDate", endDate)
    async with platform.store.read(snapshot=True) as tx:
        found = await tx.list_messages(
            who.tenant,
            direction="out",
            message_id=responseId,
            template_name=templateId,
            since=since,
            until=until,
            page=page,
            limit=limit,
        )
        shown = await _with_history(tx, found)
    return many(shown, lambda item: item)


@router.get(
    "/messages", response_model=out.MessageList, responses=errors(404), operation_id="listMessages"
)
async def conversation(
    platform: PlatformDep,
    who: MessagesRead,
    customerId: Annotated[
        str | None, Query(max_length=255, description="An existing customer's id (else 404)")
    ] = None,
    phone: Annotated[
        str | None,
        Query(
            max_length=32,
            description="A number libphonenumber accepts as valid (E.164, or national)",
            json_schema_extra={"format": "phone", "minLength": 1},
        ),
    ] = None,
    page: PageNumber = 1,
    limit: Limit = 20,
) -> Response:
    """A customer's conversation, both directions, newest first: by `customerId` or `phone`
    (exactly one of them, else 400)."""
    async with platform.store.read(snapshot=True) as tx:
        found = await messages.conversation(
            platform, tx, who.tenant, customer_id=customerId, phone=phone, page=page, limit=limit
        )
        shown = await _with_history(tx, found)
    return many(shown, lambda item: item)


@router.get(
    "/messages/{message_id}",
    response_model=out.MessageEnvelope,
    responses=errors(404),
    operation_id="getMessage",
)
async def get_message(message_id: str, platform: PlatformDep, who: MessagesRead) -> Response:
    async with platform.store.read() as tx:
        message = await messages.get(tx, who.tenant, message_id)
        history = await tx.status_reports([message.id])
    return one(messages.resource(message, history.get(message.id, [])))


# -- templates ---------------------------------------------------------------------------------


@router.get(
    "/templates", response_model=out.TemplateList, responses=errors(), operation_id="listTemplates"
)
async def list_templates(
    platform: PlatformDep, who: MessagesRead, page: PageNumber = 1, limit: Limit = 20
) -> Response:
    async with platform.store.read() as tx:
        found = await templates.listing(tx, who.tenant, page, limit)
    return many(found, templates.resource)


@router.post(
    "/templates",
    status_code=201,
    response_model=out.TemplateEnvelope,
    responses={
        **errors(*WRITE),
        **links(
            201, by_id("/data/name", "name", "getTemplate", "updateTemplate", "deleteTemplate")
        ),
    },
    operation_id="createTemplate",
)
async def create_template(
    body: TemplateCreate,
    request: Request,
    platform: PlatformDep,
    who: MessagesWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A template: `body` with `{{1}}`, `{{2}}`… placeholders numbered without gaps."""
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: templates.create(platform, tx, who.tenant, body),
        templates.resource,
    )


@router.get(
    "/templates/{name}",
    response_model=out.TemplateEnvelope,
    responses=errors(404),
    operation_id="getTemplate",
)
async def get_template(name: str, platform: PlatformDep, who: MessagesRead) -> Response:
    async with platform.store.read() as tx:
        return one(templates.resource(await templates.get(tx, who.tenant, name)))


@router.put(
    "/templates/{name}",
    response_model=out.TemplateEnvelope,
    responses=errors(404, *WRITE),
    operation_id="updateTemplate",
)
async def update_template(
    name: str, body: TemplateUpdate, platform: PlatformDep, who: MessagesWrite
) -> Response:
    template = await platform.run(lambda tx: templates.update(platform, tx, who.tenant, name, body))
    return one(templates.resource(template))


@router.delete(
    "/templates/{name}",
    response_model=out.DeletedTemplateEnvelope,
    responses=errors(404),
    operation_id="deleteTemplate",
)
async def delete_template(name: str, platform: PlatformDep, who: MessagesWrite) -> Response:
    deleted = await platform.run(lambda tx: templates.delete(tx, who.tenant, name))
    return one({"name": deleted})


# -- tickets -----------------------------------------------------------------------------------


@router.post(
    "/tickets",
    status_code=201,
    response_model=out.TicketEnvelope,
    responses={
        **errors(404, *WRITE),
        **links(201, by_id("/data/id", "ticket_id", "closeTicket")),
    },
    operation_id="openTicket",
)
async def open_ticket(
    body: TicketCreate,
    request: Request,
    platform: PlatformDep,
    who: MessagesWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Open an agent ticket on a customer (409 when one is open already)."""
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: tickets.open_for(platform, tx, who.tenant, body.customerId),
        tickets.resource,
    )


@router.post(
    "/tickets/{ticket_id}/close",
    response_model=out.TicketEnvelope,
    responses=errors(404),
    operation_id="closeTicket",
)
async def close_ticket(ticket_id: str, platform: PlatformDep, who: MessagesWrite) -> Response:
    ticket = await platform.run(lambda tx: tickets.close(platform, tx, who.tenant, ticket_id))
    return one(tickets.resource(ticket))


@router.get(
    "/tickets", response_model=out.TicketList, responses=errors(), operation_id="listTickets"
)
async def list_tickets(
    platform: PlatformDep,
    who: MessagesRead,
    status: Annotated[str | None, one_of_query(tickets.STATUSES)] = None,
    customerId: Annotated[str | None, Query(max_length=255)] = None,
    page: PageNumber = 1,
    limit: Limit = 20,
) -> Response:
    async with platform.store.read() as tx:
        found = await tickets.listing(
            tx, who.tenant, status=status, customer_id=customerId, page=page, limit=limit
        )
    return many(found, tickets.resource)
