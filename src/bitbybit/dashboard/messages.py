"""``/dashboard/messages``: conversations (one per phone number) with each message's status,
replies inside the 24-hour window, templates outside it, tickets, and the sandbox's simulated
inbound messages.

A conversation's address is its number: ``/dashboard/messages/c/+6281234567890``. The tenant's
messages are the only ones looked at, so another company's number is a conversation with no
messages: 404. Everything that changes data is a plain form (Post/Redirect/Get); with htmx a
reply replaces the message list and the compose box in place instead.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from starlette.responses import Response

from bitbybit.dashboard.web import (
    PATH,
    DashboardRoute,
    Editor,
    Signed,
    done,
    form_of,
    page_number,
    render,
)
from bitbybit.errors import Conflict, DomainError, ValidationFailed
from bitbybit.services import conversations

router = APIRouter(route_class=DashboardRoute)

BASE = f"{PATH}/messages"
PARAM_FIELDS = 10
"""At most this many parameter inputs on the template form (templates rarely take more)."""

PageText = Annotated[str | None, Query()]
SearchText = Annotated[str | None, Query()]


def conversation_url(phone: str) -> str:
    return f"{BASE}/c/{quote(phone, safe='')}"


def _status(error: DomainError) -> int:
    return 409 if isinstance(error, Conflict) else 400


def _details(error: DomainError) -> list[Any]:
    return error.details if isinstance(error, ValidationFailed) else []


# -- the list ----------------------------------------------------------------------------------


async def _list_page(
    viewer: Signed,
    *,
    q: str | None,
    page: int,
    status: int = 200,
    inject_error: str | None = None,
    inject_values: dict[str, str] | None = None,
) -> Response:
    search = (q or "").strip()
    found = await conversations.listing(viewer.platform, viewer.tenant, search=search, page=page)
    fragment = viewer.htmx and viewer.request.headers.get("hx-target") == "conversations"
    return render(
        viewer,
        "messages/_conversations.html" if fragment else "messages/list.html",
        status=status,
        found=found,
        q=search,
        query=urlencode({"q": search}) if search else "",
        conversation_url=conversation_url,
        sandbox=conversations.in_sandbox(viewer.platform, viewer.tenant),
        inject_error=inject_error,
        inject_values=inject_values or {},
        title="Messages",
    )


@router.get("/messages")
async def conversation_list(
    viewer: Signed, q: SearchText = None, page: PageText = None
) -> Response:
    return await _list_page(viewer, q=q, page=page_number(page))


@router.post("/messages/inject")
async def simulate_inbound(viewer: Editor) -> Response:
    """The sandbox's stand-in for a customer writing (``bitbybit messages inject``)."""
    form = await form_of(viewer.request)
    sender, body = form.get("from", ""), form.get("body", "")
    try:
        message = await conversations.simulate_inbound(viewer.platform, viewer.tenant, sender, body)
    except ValidationFailed as error:
        if form.get("back") == "conversation":
            return await _conversation_page(viewer, sender, status=400, error=str(error))
        return await _list_page(
            viewer,
            q=None,
            page=1,
            status=400,
            inject_error=str(error),
            inject_values={"from": sender, "body": body},
        )
    return done(viewer, conversation_url(message.phone), f"Message received from {message.phone}")


# -- templates ---------------------------------------------------------------------------------


async def _templates_page(
    viewer: Signed,
    page: int,
    *,
    status: int = 200,
    error: str | None = None,
    details: list[Any] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    found = await conversations.template_page(viewer.platform, viewer.tenant, page)
    return render(
        viewer,
        "messages/templates.html",
        status=status,
        found=found,
        error=error,
        details=details or [],
        values=values or {},
        title="Message templates",
    )


@router.get("/messages/templates")
async def template_list(viewer: Signed, page: PageText = None) -> Response:
    return await _templates_page(viewer, page_number(page))


@router.post("/messages/templates")
async def create_template(viewer: Editor) -> Response:
    form = await form_of(viewer.request)
    values = {
        name: form.get(name, "").strip()
        for name in ("name", "source", "language", "body", "headerMediaUrl")
    }
    fields: dict[str, object] = {
        "name": values["name"],
        "source": values["source"] or "CRM",
        "language": values["language"] or "en",
        "body": values["body"],
    }
    if values["headerMediaUrl"]:
        fields["headerMediaUrl"] = values["headerMediaUrl"]
    try:
        template = await conversations.create_template(viewer.platform, viewer.tenant, fields)
    except (ValidationFailed, Conflict) as error:
        return await _templates_page(
            viewer,
            1,
            status=_status(error),
            error=str(error),
            details=_details(error),
            values=values,
        )
    return done(viewer, f"{BASE}/templates", f"Template {template.name} created")


# -- one conversation --------------------------------------------------------------------------


async def _conversation_page(
    viewer: Signed,
    phone: str,
    *,
    page: int = 1,
    status: int = 200,
    error: str | None = None,
    reply_text: str = "",
    sent: str | None = None,
    fragment: bool = False,
) -> Response:
    platform, tenant = viewer.platform, viewer.tenant
    thread = await conversations.thread(platform, tenant, phone, page=page)
    templates = (
        await conversations.all_templates(platform, tenant)
        if viewer.is_admin and not thread.window_open
        else []
    )
    fields = min(PARAM_FIELDS, max((t.param_count for t in templates), default=0))
    return render(
        viewer,
        "messages/_update.html" if fragment else "messages/conversation.html",
        status=status,
        thread=thread,
        url=conversation_url(thread.phone),
        templates=templates,
        param_fields=fields,
        error=error,
        reply_text=reply_text,
        sent=sent,
        sandbox=conversations.in_sandbox(platform, tenant),
        now=platform.now(),
        title=thread.name or thread.phone,
    )


@router.get("/messages/c/{phone}")
async def conversation(viewer: Signed, phone: str, page: PageText = None) -> Response:
    return await _conversation_page(viewer, phone, page=page_number(page))


@router.post("/messages/c/{phone}/reply")
async def reply(viewer: Editor, phone: str) -> Response:
    """A free-form reply (window open). Plain form: back to the conversation with a flash, or
    the page again with the error (400). htmx: the message list and compose box, refreshed."""
    text = (await form_of(viewer.request)).get("message", "")
    try:
        message = await conversations.reply(viewer.platform, viewer.tenant, phone, text)
    except (ValidationFailed, Conflict) as error:
        if viewer.htmx:  # htmx swaps only 2xx answers: the error is shown in the compose box
            return await _conversation_page(
                viewer, phone, error=str(error), reply_text=text, fragment=True
            )
        return await _conversation_page(
            viewer, phone, status=_status(error), error=str(error), reply_text=text
        )
    if viewer.htmx:
        return await _conversation_page(
            viewer, phone, sent=f"Reply queued ({message.status}).", fragment=True
        )
    return done(viewer, conversation_url(message.phone), "Reply queued")


@router.post("/messages/c/{phone}/template")
async def send_template(viewer: Editor, phone: str) -> Response:
    """A template (allowed outside the window) with its parameters; trailing empty parameter
    inputs are not parameters."""
    form = await form_of(viewer.request)
    params = [form.get(f"param{number}", "") for number in range(1, PARAM_FIELDS + 1)]
    while params and not params[-1].strip():
        params.pop()
    try:
        message = await conversations.send_template(
            viewer.platform, viewer.tenant, phone, form.get("template", ""), params
        )
    except (ValidationFailed, Conflict) as error:
        return await _conversation_page(viewer, phone, status=_status(error), error=str(error))
    return done(viewer, conversation_url(message.phone), f"Template {message.template_name} queued")


@router.post("/messages/c/{phone}/ticket/open")
async def open_ticket(viewer: Editor, phone: str) -> Response:
    try:
        ticket = await conversations.open_ticket(viewer.platform, viewer.tenant, phone)
    except (ValidationFailed, Conflict) as error:
        return await _conversation_page(viewer, phone, status=_status(error), error=str(error))
    return done(viewer, conversation_url(phone), f"Ticket {ticket.id} opened")


@router.post("/messages/c/{phone}/ticket/close")
async def close_ticket(viewer: Editor, phone: str) -> Response:
    try:
        ticket = await conversations.close_ticket(viewer.platform, viewer.tenant, phone)
    except ValidationFailed as error:
        return await _conversation_page(viewer, phone, status=400, error=str(error))
    message = "No ticket was open" if ticket is None else f"Ticket {ticket.id} closed"
    return done(viewer, conversation_url(phone), message)
