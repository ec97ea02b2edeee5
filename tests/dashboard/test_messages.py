"""The dashboard's messages: conversations, statuses, replies inside the window, templates outside
it, tickets, the sandbox's simulated inbound messages — and that none of it crosses companies."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from bitbybit.models import Message, StatusReport, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import MessageSend, TemplateCreate
from bitbybit.services import messages, templates
from bitbybit.store import Tx
from tests.conftest import Account, FakeClock, with_settings
from tests.dashboard.support import Browser, sign_in

SITI = "+6281234567890"
BUDI = "+6281298765432"
HOUR = 60 * 60 * 1000


def url(phone: str, tail: str = "") -> str:
    return f"/dashboard/messages/c/{quote(phone, safe='')}{tail}"


def live(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


async def inbound(
    platform: Platform,
    tenant: Tenant,
    phone: str,
    body: str,
    name: str | None = None,
    ago: int = 0,
) -> Message:
    """A message from the customer, sent ``ago`` ms ago (moving the clock instead would end
    the dashboard session)."""
    sent = messages.Inbound(sender=phone, body=body, profile_name=name, at=platform.now() - ago)

    async def run(tx: Tx) -> Message:
        found = await messages.receive(platform, tx, tenant, sent)
        assert found is not None
        return found

    return await platform.run(run)


async def outbound(platform: Platform, tenant: Tenant, phone: str, text: str) -> Message:
    data = MessageSend(to=phone, message=text, ignoreActiveTicket=True)
    return await platform.run(lambda tx: messages.send_text(platform, tx, tenant, data))


async def report(
    platform: Platform, tenant: Tenant, message: Message, *reports: StatusReport
) -> None:
    async def run(tx: Tx) -> None:
        (locked,) = await tx.messages_for_update(tenant, [message.id])
        locked.wa_id = f"wamid.{message.id}"
        await messages.report_statuses(platform, tx, [(tenant, locked, r) for r in reports])

    await platform.run(run)


async def outbound_count(platform: Platform, tenant: Tenant, phone: str | None = None) -> int:
    async with platform.store.read() as tx:
        found = await tx.list_messages(tenant, phone=phone, direction="out", limit=1)
    return found.total


async def make_template(platform: Platform, tenant: Tenant, name: str, body: str) -> None:
    data = TemplateCreate(name=name, body=body)
    await platform.run(lambda tx: templates.create(platform, tx, tenant, data))


class _Outline(HTMLParser):
    """What the page rules check: headings, ids, labels, controls, table headers, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.ids: Counter[str] = Counter()
        self.labelled: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.header_cells: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids[found["id"] or ""] += 1
        if tag in {"h1", "h2", "h3", "h4"}:
            self.headings.append(int(tag[1]))
        if tag == "label" and found.get("for"):
            self.labelled.add(found["for"] or "")
        if tag in {"input", "select", "textarea"} and found.get("type") not in ("hidden",):
            self.controls.append(found)
        if tag == "th":
            self.header_cells.append(found)
        if tag == "script" and not found.get("src"):
            self.inline.append("script")
        if "style" in found or any(name.startswith(("on", "hx-on")) for name in found):
            self.inline.append(f"{tag} {found}")


def check_page(html: str) -> None:
    """One h1, headings in order, unique ids, every control labelled, header cells scoped,
    nothing inline the CSP would refuse."""
    outline = _Outline()
    outline.feed(html)
    assert outline.headings.count(1) == 1, outline.headings
    for before, after in zip(outline.headings, outline.headings[1:], strict=False):
        assert after <= before + 1, outline.headings
    assert not [name for name, count in outline.ids.items() if count > 1]
    for control in outline.controls:
        assert control.get("aria-label") or control.get("id") in outline.labelled, control
    for cell in outline.header_cells:
        assert cell.get("scope") in ("col", "row"), cell
    assert not outline.inline, outline.inline


# -- the list ----------------------------------------------------------------------------------


async def test_conversations_are_listed_latest_first_with_name_window_and_search(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    await inbound(
        platform, tenant, SITI, "Is the blue shirt in stock?", name="Siti Rahma", ago=25 * HOUR
    )  # Siti's window has closed
    await inbound(platform, tenant, BUDI, "Where is my order?")
    clock.advance(1000)
    await outbound(platform, tenant, BUDI, "On its way!")

    page = await admin.get("/dashboard/messages")
    check_page(page.text)
    assert page.status_code == 200, page.text
    text = page.text
    assert text.index(BUDI) < text.index("Siti Rahma")  # latest activity first
    assert "On its way!" in text
    assert "Is the blue shirt in stock?" in text
    assert url(BUDI) in text
    assert url(SITI) in text
    budi_row = text[text.index(url(BUDI)) : text.index("Siti Rahma")]
    assert "You:" in budi_row
    assert "Open" in budi_row
    assert "accepted" in budi_row
    siti_row = text[text.index("Siti Rahma") :]
    assert "Customer:" in siti_row
    assert "Closed" in siti_row

    by_name = await admin.get("/dashboard/messages", params={"q": "siti"})
    assert "Siti Rahma" in by_name.text
    assert BUDI not in by_name.text
    by_digits = await admin.get("/dashboard/messages", params={"q": "0812 9876"})
    assert by_digits.text.count(url(BUDI)) == 1
    assert "Siti Rahma" not in by_digits.text
    by_number = await admin.get("/dashboard/messages", params={"q": "+6281298765432"})
    assert url(BUDI) in by_number.text
    assert url(SITI) not in by_number.text
    nothing = await admin.get("/dashboard/messages", params={"q": "nobody_%"})
    assert nothing.status_code == 200
    assert "No conversation matches" in nothing.text
    assert url(SITI) not in nothing.text

    fragment = await admin.get(
        "/dashboard/messages",
        params={"q": "siti"},
        headers={"hx-request": "true", "hx-target": "conversations"},
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="conversations">')
    assert "<html" not in fragment.text
    assert "Siti Rahma" in fragment.text


async def test_the_conversation_list_pages_and_bad_page_numbers_are_harmless(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    for number in range(27):
        await inbound(platform, tenant, f"+62812000100{number:02d}", f"hello {number:02d}")
        clock.advance(1000)
    first = await admin.get("/dashboard/messages")
    assert "hello 26" in first.text
    assert "hello 02" in first.text
    assert "hello 01" not in first.text
    assert "27 in all" in first.text
    assert 'href="/dashboard/messages?page=2"' in first.text
    second = await admin.get("/dashboard/messages?page=2")
    assert second.status_code == 200
    assert "hello 01" in second.text
    assert "hello 00" in second.text
    assert "hello 26" not in second.text
    searched = await admin.get("/dashboard/messages", params={"q": "0812000", "page": "2"})
    assert "hello 00" in searched.text
    assert 'href="/dashboard/messages?q=0812000&amp;page=1"' in (searched.text)
    for bad in ("0", "-3", "x", "1e9", "99999999999", ""):
        answer = await admin.get(f"/dashboard/messages?page={bad}")
        assert answer.status_code == 200, bad
    beyond = await admin.get("/dashboard/messages?page=50")
    assert beyond.status_code == 200
    assert "no conversations on this page" in beyond.text
    assert "27 in all" in beyond.text


# -- one conversation --------------------------------------------------------------------------


async def test_a_conversation_shows_both_directions_in_order_with_status_history(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    await inbound(platform, tenant, SITI, "Hi, do you ship to Bandung?", name="Siti Rahma")
    clock.advance(1000)
    answer = await outbound(platform, tenant, SITI, "Yes, in two days.")
    clock.advance(1000)
    bounced = await outbound(platform, tenant, SITI, "Anything else?")
    now = platform.now()
    await report(
        platform,
        tenant,
        answer,
        StatusReport("sent", now),
        StatusReport("read", now + 2000),
        StatusReport("delivered", now + 1000),  # late: kept, changes nothing
    )
    await report(
        platform, tenant, bounced, StatusReport("failed", now, 131026, "Message undeliverable")
    )

    page = await admin.get(url(SITI))
    check_page(page.text)
    assert page.status_code == 200, page.text
    text = page.text
    assert "<h1>Siti Rahma</h1>" in text
    assert SITI in text
    first, second, third = (
        text.index("Hi, do you ship to Bandung?"),
        text.index("Yes, in two days."),
        text.index("Anything else?"),
    )
    assert first < second < third  # oldest first
    answered = text[text.index(f'id="message-{answer.id}"') : text.index(f'"message-{bounced.id}"')]
    assert "badge-read" in answered
    assert "Status history" in answered
    assert "sent at" in answered
    assert "read at" in answered
    assert "changed nothing" in answered  # the late delivered report
    failed = text[text.index(f'id="message-{bounced.id}"') :]
    assert "badge-failed" in failed
    assert "131026" in failed
    assert "Message undeliverable" in failed
    assert f'href="/dashboard/customers/{answer.customer_id}"' in text
    assert 'id="reply-body"' in text
    assert "Send reply" in text
    assert "open until" in text


async def test_a_long_conversation_pages_back_to_earlier_messages(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    for number in range(103):
        await inbound(platform, tenant, SITI, f"line {number:03d}")
        clock.advance(10)
    latest = await admin.get(url(SITI))
    check_page(latest.text)
    assert "line 102" in latest.text
    assert "line 003" in latest.text
    assert "line 002" not in latest.text
    assert f'href="{url(SITI)}?page=2"' in latest.text
    assert "Earlier messages" in latest.text
    earlier = await admin.get(url(SITI) + "?page=2")
    assert earlier.status_code == 200
    assert "line 000" in earlier.text
    assert "line 002" in earlier.text
    assert "line 003" not in earlier.text
    assert "Later messages" in earlier.text
    for bad in ("0", "abc", "99"):
        answer = await admin.get(url(SITI) + f"?page={bad}")
        assert answer.status_code == 200, bad


async def test_an_admin_replies_inside_the_window(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    await inbound(platform, tenant, SITI, "Can I change my size?")
    answer = await admin.post(url(SITI, "/reply"), {"message": "Of course: which size?"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == url(SITI)
    page = await admin.get(answer.headers["location"])
    assert "Reply queued" in page.text
    assert "Of course: which size?" in page.text
    assert "badge-accepted" in page.text
    async with platform.store.read() as tx:
        sent = await tx.list_messages(tenant, phone=SITI, direction="out")
    assert [m.body for m in sent.items] == ["Of course: which size?"]
    assert sent.items[0].status == "accepted"
    assert sent.items[0].job_id is not None


async def test_an_htmx_reply_answers_the_message_list_and_a_fresh_compose_box(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    await inbound(platform, tenant, SITI, "Hello?")
    page = await admin.get(url(SITI))
    assert f'hx-post="{url(SITI, "/reply")}"' in page.text
    assert 'hx-target="#thread"' in page.text
    answer = await admin.post(url(SITI, "/reply"), {"message": "Hello Siti!"}, htmx=True)
    assert answer.status_code == 200, answer.text
    assert answer.text.lstrip().startswith('<section id="thread"')
    assert "<html" not in answer.text
    assert "Hello Siti!" in answer.text
    assert "Reply queued" in answer.text
    assert 'id="compose"' in answer.text
    assert 'hx-swap-oob="true"' in answer.text
    assert "></textarea>" in answer.text  # the compose box is empty again
    assert await outbound_count(platform, tenant, SITI) == 1
    empty = await admin.post(url(SITI, "/reply"), {"message": "   "}, htmx=True)
    assert empty.status_code == 200
    assert "write a reply first" in empty.text
    assert await outbound_count(platform, tenant, SITI) == 1


async def test_a_reply_outside_the_window_is_refused_and_nothing_is_stored(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    await inbound(platform, tenant, SITI, "Thanks!", ago=24 * HOUR + 1)
    page = await admin.get(url(SITI))
    assert 'id="reply-body"' not in page.text
    assert "The customer service window is closed" in page.text
    answer = await admin.post(url(SITI, "/reply"), {"message": "Are you still there?"})
    check_page(answer.text)
    assert answer.status_code == 400
    assert "within 24 hours" in answer.text
    assert "send a template instead" in answer.text
    assert 'role="alert"' in answer.text
    assert await outbound_count(platform, tenant) == 0


async def test_a_template_goes_outside_the_window(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    await make_template(platform, tenant, "order_ready", "Hi {{1}}, order {{2}} is ready.")
    await make_template(platform, tenant, "hello", "Hello!")
    await inbound(platform, tenant, SITI, "ok", ago=48 * HOUR)
    page = await admin.get(url(SITI))
    check_page(page.text)
    assert "Send template" in page.text
    assert 'id="template-name"' in page.text
    assert 'id="param-1"' in page.text
    assert 'id="param-2"' in page.text
    assert 'id="param-3"' not in page.text

    wrong = await admin.post(url(SITI, "/template"), {"template": "order_ready", "param1": "Siti"})
    check_page(wrong.text)
    assert wrong.status_code == 400
    assert "expects 2 parameters, got 1" in wrong.text
    unknown = await admin.post(url(SITI, "/template"), {"template": "nope"})
    assert unknown.status_code == 400
    assert "no template named" in unknown.text
    assert await outbound_count(platform, tenant) == 0

    sent = await admin.post(
        url(SITI, "/template"),
        {"template": "order_ready", "param1": "Siti", "param2": "1001", "param3": ""},
    )
    assert sent.status_code == 303, sent.text
    page = await admin.get(url(SITI))
    check_page(page.text)
    assert "Template order_ready queued" in page.text
    assert "Hi Siti, order 1001 is ready." in page.text
    async with platform.store.read() as tx:
        found = await tx.list_messages(tenant, phone=SITI, direction="out")
    (message,) = found.items
    assert message.type == "template"
    assert message.params == ["Siti", "1001"]


async def test_tickets_open_and_close_from_the_conversation(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    first = await inbound(platform, tenant, SITI, "I need a person")
    assert first.customer_id is not None
    page = await admin.get(url(SITI))
    check_page(page.text)
    assert "No ticket is open" in page.text
    assert "Open ticket" in page.text
    opened = await admin.post(url(SITI, "/ticket/open"))
    assert opened.status_code == 303
    page = await admin.get(url(SITI))
    assert "Ticket tkt_" in page.text
    assert "Close ticket" in page.text
    async with platform.store.read() as tx:
        ticket = await tx.open_ticket_of(tenant, first.customer_id)
    assert ticket is not None
    again = await admin.post(url(SITI, "/ticket/open"))
    assert again.status_code == 409
    assert "already open" in again.text
    # the agent in the dashboard answers despite the ticket
    replied = await admin.post(url(SITI, "/reply"), {"message": "I am here"})
    assert replied.status_code == 303
    closed = await admin.post(url(SITI, "/ticket/close"))
    assert closed.status_code == 303
    page = await admin.get(url(SITI))
    assert f"Ticket {ticket.id} closed" in page.text
    assert "Open ticket" in page.text
    async with platform.store.read() as tx:
        assert await tx.open_ticket_of(tenant, first.customer_id) is None
        stored = await tx.get_ticket(tenant, ticket.id)
    assert stored is not None
    assert stored.status == "closed"
    none_open = await admin.post(url(SITI, "/ticket/close"))
    assert none_open.status_code == 303


async def test_a_number_that_is_no_customer_has_no_ticket_controls(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    message = await inbound(platform, tenant, SITI, "hi")
    assert message.customer_id is not None
    await platform.run(lambda tx: tx.delete_customer(tenant, message.customer_id or ""))
    page = await admin.get(url(SITI))
    assert page.status_code == 200
    assert "cannot have a ticket" in page.text
    assert "Open ticket" not in page.text
    refused = await admin.post(url(SITI, "/ticket/open"))
    assert refused.status_code == 400
    assert "not a customer" in refused.text


# -- sandbox -----------------------------------------------------------------------------------


async def test_the_sandbox_simulates_a_customer_writing(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    listing = await admin.get("/dashboard/messages")
    check_page(listing.text)
    assert 'id="inject-from"' in listing.text
    answer = await admin.post(
        "/dashboard/messages/inject", {"from": "081234567890", "body": "Halo!"}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == url(SITI)
    page = await admin.get(url(SITI))
    assert "Halo!" in page.text
    assert "Message received from" in page.text
    assert 'id="reply-body"' in page.text  # the window is open
    assert 'id="simulate-body"' in page.text
    again = await admin.post(
        "/dashboard/messages/inject", {"from": SITI, "body": "Still there?", "back": "conversation"}
    )
    assert again.status_code == 303
    bad = await admin.post("/dashboard/messages/inject", {"from": "12", "body": "x"})
    assert bad.status_code == 400
    assert "not a" in bad.text
    empty = await admin.post("/dashboard/messages/inject", {"from": SITI, "body": " "})
    assert empty.status_code == 400
    assert "write the customer" in empty.text
    async with platform.store.read() as tx:
        found = await tx.list_messages(tenant, phone=SITI)
    assert [m.body for m in found.items] == ["Still there?", "Halo!"]


async def test_outside_the_sandbox_inbound_messages_cannot_be_simulated(
    platform: Platform, account: Account
) -> None:
    cloud = with_settings(platform, channel="whatsapp-cloud")
    browser = await sign_in(cloud, account.company.id, email="cloud@example.com")
    async with browser:
        listing = await browser.get("/dashboard/messages")
        assert 'id="inject-from"' not in listing.text
        answer = await browser.post("/dashboard/messages/inject", {"from": SITI, "body": "x"})
        assert answer.status_code == 400
        assert "only be simulated in the sandbox" in answer.text
    assert await outbound_count(platform, live(account)) == 0
    async with platform.store.read() as tx:
        assert (await tx.list_messages(live(account))).total == 0


async def test_test_mode_shows_test_conversations_only(
    platform: Platform, account: Account, admin: Browser
) -> None:
    await inbound(platform, live(account), SITI, "live hello")
    await inbound(platform, Tenant(account.company.id, "test"), BUDI, "test hello")
    switched = await admin.post("/dashboard/mode", {"mode": "test", "next": "/dashboard/messages"})
    assert switched.status_code == 303
    page = await admin.get("/dashboard/messages")
    assert "test hello" in page.text
    assert "live hello" not in page.text
    assert (await admin.get(url(SITI))).status_code == 404


# -- templates ---------------------------------------------------------------------------------


async def test_templates_are_listed_and_created(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    await make_template(platform, tenant, "welcome", "Welcome, {{1}}!")
    page = await admin.get("/dashboard/messages/templates")
    check_page(page.text)
    assert page.status_code == 200
    assert "welcome" in page.text
    assert "Welcome, {{1}}!" in page.text
    assert "Create template" in page.text
    created = await admin.post(
        "/dashboard/messages/templates",
        {"name": "otp_code", "source": "AUTH", "language": "id", "body": "Kode {{1}}"},
    )
    assert created.status_code == 303, created.text
    page = await admin.get(created.headers["location"])
    assert "Template otp_code created" in page.text
    assert "Kode {{1}}" in page.text
    gap = await admin.post("/dashboard/messages/templates", {"name": "gappy", "body": "Hi {{2}}"})
    check_page(gap.text)
    assert gap.status_code == 400
    assert "without gaps" in gap.text
    assert 'value="gappy"' in gap.text  # the form keeps what was typed
    bad_name = await admin.post("/dashboard/messages/templates", {"name": "Bad Name", "body": "x"})
    assert bad_name.status_code == 400
    assert "name" in bad_name.text
    twice = await admin.post("/dashboard/messages/templates", {"name": "welcome", "body": "Again"})
    assert twice.status_code == 409
    assert "already exists" in twice.text
    async with platform.store.read() as tx:
        names = [t.name for t in (await tx.list_templates(tenant, 1, 50)).items]
    assert names == ["otp_code", "welcome"]
    for bad in ("0", "x", "12"):
        assert (await admin.get(f"/dashboard/messages/templates?page={bad}")).status_code == 200


# -- who may do what ---------------------------------------------------------------------------

CHANGES = [
    ("/reply", {"message": "hi"}),
    ("/template", {"template": "hello"}),
    ("/ticket/open", {}),
    ("/ticket/close", {}),
]


async def test_a_viewer_sees_conversations_but_changes_nothing(
    platform: Platform, account: Account, viewer: Browser
) -> None:
    tenant = live(account)
    await make_template(platform, tenant, "hello", "Hello!")
    await inbound(platform, tenant, SITI, "hi")
    listing = await viewer.get("/dashboard/messages")
    check_page(listing.text)
    assert listing.status_code == 200
    assert SITI in listing.text
    assert "inject-from" not in listing.text
    page = await viewer.get(url(SITI))
    check_page(page.text)
    assert page.status_code == 200
    assert "hi" in page.text
    for control in ("reply-body", "Send reply", "Open ticket", "simulate-body"):
        assert control not in page.text
    templates_page = await viewer.get("/dashboard/messages/templates")
    check_page(templates_page.text)
    assert templates_page.status_code == 200
    assert "Create template" not in templates_page.text
    for tail, form in CHANGES:
        answer = await viewer.post(url(SITI, tail), form)
        assert answer.status_code == 403, tail
    refused = await viewer.post("/dashboard/messages/inject", {"from": BUDI, "body": "x"})
    assert refused.status_code == 403
    created = await viewer.post("/dashboard/messages/templates", {"name": "x", "body": "y"})
    assert created.status_code == 403
    assert await outbound_count(platform, tenant) == 0
    async with platform.store.read() as tx:
        assert (await tx.list_messages(tenant)).total == 1
        assert (await tx.list_tickets(tenant)).total == 0
        assert (await tx.list_templates(tenant, 1, 10)).total == 1


async def test_changes_without_the_csrf_token_are_refused(
    platform: Platform, account: Account, admin: Browser
) -> None:
    tenant = live(account)
    await inbound(platform, tenant, SITI, "hi")
    for tail, form in CHANGES:
        answer = await admin.post(url(SITI, tail), form, csrf=False)
        assert answer.status_code == 403, tail
        assert "security token" in answer.text
        stale = await admin.post(url(SITI, tail), {**form, "csrf_token": "stale"}, csrf=False)
        assert stale.status_code == 403, tail
    htmx = await admin.post(url(SITI, "/reply"), {"message": "hi"}, csrf=False, htmx=True)
    assert htmx.status_code == 403
    for path, form in (
        ("/dashboard/messages/inject", {"from": BUDI, "body": "x"}),
        ("/dashboard/messages/templates", {"name": "x", "body": "y"}),
    ):
        assert (await admin.post(path, form, csrf=False)).status_code == 403
    assert await outbound_count(platform, tenant) == 0
    async with platform.store.read() as tx:
        assert (await tx.list_messages(tenant)).total == 1
        assert (await tx.list_tickets(tenant)).total == 0
        assert (await tx.list_templates(tenant, 1, 10)).total == 0


async def test_another_companys_conversation_is_not_found_on_every_route(
    platform: Platform, account: Account, other_account: Account, admin: Browser
) -> None:
    theirs = live(other_account)
    await make_template(platform, theirs, "hello", "Hello!")
    message = await inbound(platform, theirs, SITI, "their secret", name="Their Customer")
    listing = await admin.get("/dashboard/messages")
    assert "their secret" not in listing.text
    assert SITI not in listing.text
    searched = await admin.get("/dashboard/messages", params={"q": "Their"})
    assert "their secret" not in searched.text
    for path in (url(SITI), url(SITI) + "?page=2", url("not-a-number"), url("+1")):
        answer = await admin.get(path)
        assert answer.status_code == 404, path
        assert "their secret" not in answer.text
    for tail, form in CHANGES:
        answer = await admin.post(url(SITI, tail), form)
        assert answer.status_code == 404, tail
        htmx = await admin.post(url(SITI, tail), form, htmx=True)
        assert htmx.status_code == 404, tail
    back = await admin.post(
        "/dashboard/messages/inject", {"from": "x", "body": "y", "back": "conversation"}
    )
    assert back.status_code == 404
    customer = await admin.get(f"/dashboard/customers/{message.customer_id}")
    assert customer.status_code == 404
    async with platform.store.read() as tx:
        assert (await tx.list_messages(theirs)).total == 1
        assert (await tx.list_tickets(theirs)).total == 0


@pytest.mark.parametrize("path", ["/dashboard/messages", "/dashboard/messages/templates"])
async def test_signed_out_message_pages_ask_to_sign_in(
    platform: Platform, account: Account, path: str
) -> None:
    from tests.dashboard.support import client

    async with client(platform) as http:
        answer = await http.get(path)
    assert answer.status_code == 303
    assert "/dashboard/login" in answer.headers["location"]
