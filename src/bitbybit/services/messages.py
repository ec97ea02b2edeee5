"""WhatsApp messages: sends queued for a channel, inbound messages, and statuses moving forward.

A send is recorded and its job queued in the request's transaction (SPEC §7: outbound sends
share the webhook queue's durability), so a 2xx means the message will be attempted even if the
process dies at once. The channel that attempts it (``channels.messaging``) reports the outcome
back through ``sent`` / ``not_sent``, in the transaction that records the attempt. Statuses,
from Meta's callbacks or the sandbox, go through ``report_status``: a status only moves forward
(``accepted`` → ``sent`` → ``delivered`` → ``read``; ``failed`` only from ``accepted`` or
``sent``, and final), every report is kept in the message's history, and only a report that
moves the message emits ``message.status.updated`` (docs/messaging.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from bitbybit.clock import iso
from bitbybit.errors import Conflict, NotFound, ValidationFailed
from bitbybit.ids import new_id
from bitbybit.models import (
    JSON,
    STATUS_RANK,
    WHATSAPP,
    WHATSAPP_RECEIPT,
    Message,
    Page,
    StatusReport,
    Tenant,
    WhatsAppNumber,
)
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, MessageSend, TemplateSend
from bitbybit.services import customers, events, templates
from bitbybit.services.phones import normalise
from bitbybit.store import Tx

WINDOW_MS = 24 * 60 * 60 * 1000
"""Free-form messages only within 24 hours of the customer's last message (WhatsApp's rule)."""
SANDBOX = "SANDBOX"
SOURCE_CODES = {"whatsapp cloud api": "WHATSAPP_META", "whatsapp coex": "WHATSAPP_COEX"}
"""The ``source`` of events for each of the API's ``sources``."""
UNDELIVERABLE = (131026, "Message undeliverable")
"""What the sandbox answers for the numbers it is told to fail (WhatsApp's code and title)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a tenant's sends go: the channel, the job's target, the source code."""

    channel: str
    """``sandbox`` or ``whatsapp-cloud``."""
    target: str
    """What pacing counts against: the sending number (or the tenant, in the sandbox)."""
    source: str
    number: WhatsAppNumber | None
    pace: float | None
    """The number's own pace; ``None``: the sending process's default for its source."""


async def route(platform: Platform, tx: Tx, tenant: Tenant, sources: str) -> Route:
    """The sandbox for test mode and when ``BITBYBIT_CHANNEL=sandbox``; else the company's
    number for ``sources``, which must be connected: a send that could never go is refused
    before anything is written."""
    settings = platform.settings
    if tenant.mode == "test" or settings.channel == "sandbox":
        return Route("sandbox", f"sandbox:{tenant.company_id}:{tenant.mode}", SANDBOX, None, None)
    number = await tx.get_whatsapp_number(tenant.company_id, sources)
    if number is None:
        raise ValidationFailed(
            f"no WhatsApp number is connected for {sources!r}: connect one with "
            "`bitbybit whatsapp connect` (docs/messaging.md)",
            code="CHANNEL_NOT_CONFIGURED",
        )
    return Route(
        "whatsapp-cloud", f"wa:{number.phone_number_id}", SOURCE_CODES[sources], number, number.pace
    )


# -- sending -------------------------------------------------------------------------------------


async def _recipient(
    platform: Platform, tx: Tx, tenant: Tenant, to: str, country: str | None
) -> str:
    home = country.upper() if country else await platform.country_of(tx, tenant.company_id)
    return normalise(to, home, "to")


async def _check_ticket(tx: Tx, tenant: Tenant, customer_id: str | None, ignore: bool) -> None:
    if customer_id is None or ignore:
        return
    ticket = await tx.open_ticket_of(tenant, customer_id)
    if ticket is not None:
        raise Conflict(
            f"ticket {ticket.id} is open for this customer: an agent is handling the "
            "conversation (send with ignoreActiveTicket=true to send anyway)",
            code="ACTIVE_TICKET",
        )


async def _queue(
    platform: Platform, tx: Tx, tenant: Tenant, message: Message, where: Route, request: JSON
) -> Message:
    """Record ``message`` and queue its send, in the caller's transaction."""
    job = {
        "message": message.id,
        "company": tenant.company_id,
        "mode": tenant.mode,
        "channel": where.channel,
        "phoneNumberId": where.number.phone_number_id if where.number else None,
        "pace": where.pace,
        "coex": where.source == SOURCE_CODES["whatsapp coex"],
        "request": request,
    }
    now = message.created_at
    message.job_id = await tx.enqueue_job(tenant, WHATSAPP, where.target, orjson.dumps(job), now)
    await tx.insert_message(tenant, message)
    return message


def _outbound(
    tenant: Tenant, phone: str, customer_id: str | None, source: str, now: int, **fields: object
) -> Message:
    message = Message(
        id=new_id("msg"),
        direction="out",
        phone=phone,
        customer_id=customer_id,
        type="text",
        body=None,
        media_url=None,
        media_id=None,
        template_name=None,
        template_source=None,
        params=[],
        source=source,
        status="accepted",
        error_code=None,
        error_message=None,
        wa_id=None,
        job_id=None,
        created_at=now,
        updated_at=now,
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


async def send_text(platform: Platform, tx: Tx, tenant: Tenant, data: MessageSend) -> Message:
    """``POST /messages/send``: free text (or an image with a caption) inside the window."""
    now = platform.now()
    phone = await _recipient(platform, tx, tenant, data.to, data.countryCode)
    customer = await tx.find_customer(tenant, phone_number=phone)
    await _check_ticket(tx, tenant, customer.id if customer else None, data.ignoreActiveTicket)
    last = await tx.last_inbound_at(tenant, phone)
    if last is None or now - last > WINDOW_MS:
        since = "has never written" if last is None else f"last wrote at {iso(last)}"
        raise ValidationFailed(
            f"{phone} {since}: free-form messages can only be sent within 24 hours of the "
            "customer's last message; send a template instead",
            code="OUTSIDE_SERVICE_WINDOW",
        )
    where = await route(platform, tx, tenant, data.sources)
    kind = "text" if data.imageUrl is None else "image"
    content: JSON = (
        {"preview_url": False, "body": data.message}
        if data.imageUrl is None
        else {"link": data.imageUrl, "caption": data.message}
    )
    request: JSON = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": phone.removeprefix("+"),
        "type": kind,
        kind: content,
    }
    message = _outbound(
        tenant,
        phone,
        customer.id if customer else None,
        where.source,
        now,
        type=kind,
        body=data.message,
        media_url=data.imageUrl,
    )
    return await _queue(platform, tx, tenant, message, where, request)


async def send_template(platform: Platform, tx: Tx, tenant: Tenant, data: TemplateSend) -> Message:
    """``POST /messages/send-template``: a template, allowed outside the window."""
    now = platform.now()
    template = await tx.get_template(tenant, data.template_name)
    if template is None or template.source != data.template_source:
        raise NotFound(f"no {data.template_source} template named {data.template_name!r}")
    if len(data.params) != template.param_count:
        raise ValidationFailed.field(
            "params",
            f"template {template.name!r} expects {template.param_count} parameter"
            f"{'' if template.param_count == 1 else 's'}, got {len(data.params)}",
        )
    phone = await _recipient(platform, tx, tenant, data.to, data.countryCode)
    customer = await tx.find_customer(tenant, phone_number=phone)
    await _check_ticket(tx, tenant, customer.id if customer else None, data.ignoreActiveTicket)
    where = await route(platform, tx, tenant, data.sources)
    media = data.mediaUrl or template.header_media_url
    request: JSON = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": phone.removeprefix("+"),
        "type": "template",
        "template": {
            "name": template.name,
            "language": {"code": template.language},
            "components": templates.components(template, data.params, media),
        },
    }
    message = _outbound(
        tenant,
        phone,
        customer.id if customer else None,
        where.source,
        now,
        type="template",
        body=templates.render(template.body, data.params),
        media_url=media,
        template_name=template.name,
        template_source=template.source,
        params=list(data.params),
    )
    return await _queue(platform, tx, tenant, message, where, request)


# -- what the channel reports ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the channel's attempts at sending ``message`` came to: WhatsApp took it (``wa_id``)
    or it failed for good (``code``, ``title``)."""

    tenant: Tenant
    message: Message
    at: int
    wa_id: str | None = None
    code: int | None = None
    title: str | None = None


async def record_outcomes(platform: Platform, tx: Tx, outcomes: list[Outcome]) -> None:
    """Write a batch of sends' outcomes, in the transaction that records their attempts: each
    message ``sent`` with WhatsApp's id (then the statuses Meta reported for that id before
    this, and for the sandbox its delivered and read receipts) or ``failed``."""
    reports: list[tuple[Tenant, Message, StatusReport]] = []
    for outcome in outcomes:
        if outcome.wa_id is not None:
            outcome.message.wa_id = outcome.wa_id
            reports.append((outcome.tenant, outcome.message, StatusReport("sent", outcome.at)))
        else:
            failed = StatusReport("failed", outcome.at, outcome.code, outcome.title)
            reports.append((outcome.tenant, outcome.message, failed))
    await report_statuses(platform, tx, reports)
    sent = [o for o in outcomes if o.wa_id is not None]
    await _apply_unmatched(platform, tx, sent)
    await _queue_receipts(platform, tx, [o for o in sent if o.message.source == SANDBOX])


async def _apply_unmatched(platform: Platform, tx: Tx, sent: list[Outcome]) -> None:
    by_company: dict[str, list[Outcome]] = {}
    for outcome in sent:
        by_company.setdefault(outcome.tenant.company_id, []).append(outcome)
    for company_id, mine in by_company.items():
        waiting = await tx.take_unmatched_statuses(company_id, [o.wa_id or "" for o in mine])
        later = [
            (o.tenant, o.message, report) for o in mine for report in waiting.get(o.wa_id or "", ())
        ]
        for item in later:  # in order: each may move the message on
            await report_statuses(platform, tx, [item])


async def _queue_receipts(platform: Platform, tx: Tx, sent: list[Outcome]) -> None:
    """The sandbox's stand-in for Meta's callbacks: delivered after one step, read after two."""
    step = round(platform.settings.sandbox_status_step * 1000)
    now = platform.now()
    by_tenant: dict[Tenant, list[tuple[bytes, int]]] = {}
    for outcome in sent:
        tenant = outcome.tenant
        for number, status in enumerate(("delivered", "read"), start=1):
            due = now + number * step
            receipt = {
                "company": tenant.company_id,
                "mode": tenant.mode,
                "message": outcome.message.id,
                "status": status,
                "at": due,
            }
            by_tenant.setdefault(tenant, []).append((orjson.dumps(receipt), due))
    for tenant, receipts in by_tenant.items():
        target = f"sandbox:{tenant.company_id}:{tenant.mode}"
        await tx.enqueue_jobs(tenant, WHATSAPP_RECEIPT, target, receipts, now)


def advances(current: str, status: str) -> bool:
    """Whether a report of ``status`` moves a message that is ``current``."""
    if current == "failed" or current not in STATUS_RANK:
        return False
    if status == "failed":
        return current in ("accepted", "sent")
    return STATUS_RANK.get(status, -1) > STATUS_RANK[current]


async def report_statuses(
    platform: Platform, tx: Tx, reports: list[tuple[Tenant, Message, StatusReport]]
) -> list[bool]:
    """Keep each report in its message's history and, where it moves the message forward,
    apply it and emit ``message.status.updated``; returns which did. Reports are taken in the
    order given (one message's ``read`` then ``delivered``: the second moves nothing). A report
    of a status reported before (a repeated callback) is not kept again and emits nothing.
    Messages are written in a few statements for the whole batch."""
    now = platform.now()
    judged = []
    reached: dict[str, str] = {}  # each message's status as the reports before this one left it
    for tenant, message, report in reports:
        current = reached.get(message.id, message.status)
        applies = advances(current, report.status)
        if applies:
            reached[message.id] = report.status
        judged.append((tenant, message, replace(report, applied=applies)))
    kept = await tx.add_status_reports([(m.id, r) for _, m, r in judged], now)
    moved: list[bool] = []
    changed: dict[str, tuple[Tenant, Message]] = {}
    announced: dict[Tenant, list[tuple[str, JSON]]] = {}
    for tenant, message, report in judged:
        applies = report.applied and (message.id, report.status) in kept
        moved.append(applies)
        if report.status == "sent" and message.wa_id is not None:
            changed[message.id] = (tenant, message)  # WhatsApp's id is known, moved or not
        if not applies:
            continue
        message.status = report.status
        if report.status == "failed":
            message.error_code, message.error_message = report.error_code, report.error_message
        message.updated_at = now
        changed[message.id] = (tenant, message)
        change = ("message.status.updated", status_payload(message, report))
        announced.setdefault(tenant, []).append(change)
    if changed:
        await tx.update_messages(list(changed.values()))
    for tenant, changes in announced.items():
        await events.record_many(tx, tenant, changes, now)
    return moved


async def report_wa_status(
    platform: Platform, tx: Tx, tenant: Tenant, wa_id: str, report: StatusReport
) -> bool:
    """A status Meta reported for WhatsApp id ``wa_id``; kept for later when no message has
    that id yet (the callback overtook the recording of the send)."""
    message = await tx.find_message_by_wa_id(tenant, wa_id)
    if message is None:
        await tx.keep_unmatched_status(tenant.company_id, wa_id, report, platform.now())
        return False
    (moved,) = await report_statuses(platform, tx, [(tenant, message, report)])
    return moved


# -- inbound -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message from a customer, as a channel received it."""

    sender: str
    """E.164."""
    body: str
    type: str = "text"
    wa_id: str | None = None
    """WhatsApp's id: the key that makes a repeated callback store nothing."""
    media_id: str | None = None
    profile_name: str | None = None
    at: int | None = None
    """When the customer sent it (ms); now when not known."""
    source: str = SANDBOX


async def receive(platform: Platform, tx: Tx, tenant: Tenant, inbound: Inbound) -> Message | None:
    """Store an inbound message and emit ``message.received`` (after ``customer.created`` when
    the number is new: the customer is created, source ``whatsapp``, in the same transaction).
    ``None`` when the message was received before (nothing is written)."""
    now = platform.now()
    phone = normalise(inbound.sender, await platform.country_of(tx, tenant.company_id), "from")
    message = Message(
        id=new_id("msg"),
        direction="in",
        phone=phone,
        customer_id=None,
        type=inbound.type,
        body=inbound.body,
        media_url=None,
        media_id=inbound.media_id,
        template_name=None,
        template_source=None,
        params=[],
        source=inbound.source,
        status="received",
        error_code=None,
        error_message=None,
        wa_id=inbound.wa_id or f"wamid.{new_id('in')}",
        job_id=None,
        created_at=inbound.at if inbound.at is not None else now,
        updated_at=now,
    )
    customer = await tx.find_customer(tenant, phone_number=phone)
    message.customer_id = customer.id if customer else None
    if not await tx.insert_message(tenant, message):  # Meta delivered it again
        return None
    if customer is None:  # a new number: the customer first, then the message is theirs
        first, _, last = (inbound.profile_name or "").strip().partition(" ")
        data = CustomerCreate(phoneNumber=phone, firstName=first or None, lastName=last or None)
        customer = await customers.insert(platform, tx, tenant, data, source="whatsapp")
        message.customer_id = customer.id
        await tx.update_messages([(tenant, message)])
        now = max(now, customer.created_at)  # its event after the customer's, in time too
    await events.record(tx, tenant, "message.received", received_payload(message), now)
    return message


# -- reading -----------------------------------------------------------------------------------


async def get(tx: Tx, tenant: Tenant, message_id: str) -> Message:
    message = await tx.get_message(tenant, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}")
    return message


async def conversation(
    platform: Platform,
    tx: Tx,
    tenant: Tenant,
    *,
    customer_id: str | None,
    phone: str | None,
    page: int,
    limit: int,
) -> Page:
    """A customer's messages both ways, newest first (by customer id or by number)."""
    if (customer_id is None) == (phone is None):
        raise ValidationFailed.field("customerId", "give either customerId or phone")
    if customer_id is not None:
        customer = await tx.get_customer(tenant, customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id}")
        if customer.phone_number is None:
            return Page([], 0, page, limit)
        phone = customer.phone_number
    else:
        assert phone is not None
        phone = normalise(phone, await platform.country_of(tx, tenant.company_id), "phone")
    return await tx.list_messages(tenant, phone=phone, page=page, limit=limit)


# -- payloads (SPEC §4: the seed's keys first, ours after) -----------------------------------------


def received_payload(message: Message) -> JSON:
    return {
        "messageId": message.id,
        "from": message.phone,
        "body": message.body,
        "source": message.source,
        "receivedAt": iso(message.created_at),
        "type": message.type,
        "mediaId": message.media_id,
        "customerId": message.customer_id,
    }


def status_payload(message: Message, report: StatusReport) -> JSON:
    payload: JSON = {
        "messageId": message.id,
        "status": report.status,
        "to": message.phone,
        "templateName": message.template_name,
        "timestamp": iso(report.at),
    }
    if report.status == "failed":
        payload["error"] = {"code": report.error_code, "message": report.error_message}
    return payload


def resource(message: Message, history: list[StatusReport] | None = None) -> JSON:
    """A message as the API shows it."""
    data: JSON = {
        "id": message.id,
        "direction": "inbound" if message.direction == "in" else "outbound",
        "from" if message.direction == "in" else "to": message.phone,
        "customerId": message.customer_id,
        "type": message.type,
        "body": message.body,
        "mediaUrl": message.media_url,
        "mediaId": message.media_id,
        "templateName": message.template_name,
        "templateSource": message.template_source,
        "params": message.params,
        "source": message.source,
        "status": message.status,
        "error": (
            None
            if message.error_code is None and message.error_message is None
            else {"code": message.error_code, "message": message.error_message}
        ),
        "whatsappMessageId": message.wa_id,
        "createdAt": iso(message.created_at),
        "updatedAt": iso(message.updated_at),
    }
    if history is not None:
        data["statuses"] = [
            {
                "status": report.status,
                "timestamp": iso(report.at),
                "applied": report.applied,
                **(
                    {"error": {"code": report.error_code, "message": report.error_message}}
                    if report.status == "failed"
                    else {}
                ),
            }
            for report in history
        ]
    return data
