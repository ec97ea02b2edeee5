"""``/dashboard/webhooks`` and ``/dashboard/webhooks/{id}``: endpoints with their health over
24 hours, adding one (the secret shown once; refused URLs say why), editing, Send Test against a
loopback receiver (inline with htmx, on the page without), rotating the secret, suspending and
reactivating with recovery, deleting; viewers, missing CSRF tokens and other companies' endpoint
ids refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bitbybit.dashboard.web import _when
from bitbybit.delivery.policy import SUSPENSION
from bitbybit.models import AttemptResult, Delivery, Endpoint, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, EndpointCreate
from bitbybit.services import customers, webhooks
from bitbybit.services.events import EVENT_TYPES
from bitbybit.webhooks.signing import (
    EVENT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from tests.conftest import Account, FakeClock, with_settings
from tests.dashboard.support import Browser, sign_in
from tests.integration.receivers import Receiver, receiver

NEW_SECRET = re.compile(r'<code id="new-secret"[^>]*>([^<]+)</code>')
ENDPOINT_LINK = re.compile(r'href="/dashboard/webhooks/(we_[^"]+)"')
TEST_RESULT = re.compile(r'<div id="test-result" role="status">(.*?)</div>', re.S)
HOUR_MS = 60 * 60 * 1000


@pytest.fixture
def loopback(platform: Platform) -> Platform:
    """The platform with loopback, plain-HTTP targets allowed (the receivers' URLs)."""
    return with_settings(platform, allow_private_targets=True, allow_http_targets=True)


@pytest.fixture
async def hooks_admin(loopback: Platform, account: Account) -> AsyncIterator[Browser]:
    browser = await sign_in(loopback, account.company.id, email="hooks-admin@example.com")
    async with browser:
        yield browser


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as listening:
        yield listening


def live(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


async def endpoint_of(platform: Platform, account: Account, description: str = "") -> Endpoint:
    """An endpoint made through the service (for tests that never send)."""
    data = EndpointCreate(url="https://example.com/hook", description=description or None)
    endpoint, _ = await webhooks.create_endpoint(platform, live(account), data)
    return endpoint


async def endpoints(platform: Platform, account: Account) -> list[Endpoint]:
    return await webhooks.list_endpoints(platform, live(account))


async def add_customer(platform: Platform, account: Account, n: int) -> None:
    data = CustomerCreate(email=f"c{n}@example.com", firstName=f"C{n}")
    await platform.run(lambda tx: customers.insert(platform, tx, live(account), data))


async def deliveries_of(platform: Platform, account: Account, endpoint_id: str) -> list[Delivery]:
    page = await webhooks.list_deliveries(platform, live(account), endpoint_id, (), 1, 100)
    return sorted(page.items, key=lambda delivery: delivery.created_at)


async def attempt(
    platform: Platform,
    delivery_id: str,
    endpoint_id: str,
    at: int,
    code: int | None,
    error: str | None,
    status: str,
) -> None:
    """Record one attempt of ``delivery_id`` started ``at`` (claimed first, as a worker would)."""
    now = platform.now()
    claimed = await platform.store.claim_due("test", now, now + HOUR_MS, {endpoint_id: 50})
    assert delivery_id in {job.delivery_id for job in claimed}
    result = AttemptResult(
        delivery_id, endpoint_id, 1, at, 42, code, error, b"", status, at + 10 * HOUR_MS
    )
    async with platform.store.write() as tx:
        await tx.record_attempts("test", [result], at, SUSPENSION)
    others = [job for job in claimed if job.delivery_id != delivery_id]
    async with platform.store.write() as tx:
        await tx.release("test", others, at)


async def add_endpoint(browser: Browser, url: str, **form: object) -> tuple[str, str]:
    """Add an endpoint through the form: its id and the secret shown."""
    answer = await browser.post("/dashboard/webhooks", {"url": url, **form})
    assert answer.status_code == 200, answer.text
    link = ENDPOINT_LINK.search(answer.text)
    assert link is not None, answer.text
    return link.group(1), new_secret(answer.text)


def new_secret(text: str) -> str:
    found = NEW_SECRET.search(text)
    assert found is not None, text
    return html.unescape(found.group(1))


def post_routes(endpoint_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every POST of the section, with a valid form."""
    base = f"/dashboard/webhooks/{endpoint_id}"
    return [
        ("/dashboard/webhooks", {"url": "https://example.com/other", "description": "x"}),
        (base, {"description": "changed"}),
        (f"{base}/test", {"event_type": "order.created"}),
        (f"{base}/rotate-secret", {"grace_hours": "24"}),
        (f"{base}/suspend", {}),
        (f"{base}/reactivate", {"recover_since": ""}),
        (f"{base}/delete", {"confirm": "yes"}),
    ]


async def test_the_list_and_the_form_to_add_one(admin: Browser) -> None:
    page = await admin.get("/dashboard/webhooks")
    assert page.status_code == 200, page.text
    assert "No live endpoints yet." in page.text
    assert 'id="endpoint-url"' in page.text
    assert ">Add endpoint</button>" in page.text
    for event_type in EVENT_TYPES:
        assert f'name="events" value="{event_type}"' in page.text
    assert "None ticked: every event type." in page.text


async def test_adding_an_endpoint_shows_its_secret_once(
    hooks_admin: Browser, loopback: Platform, account: Account, hook: Receiver
) -> None:
    endpoint_id, secret = await add_endpoint(
        hooks_admin,
        hook.url,
        description="Orders to the warehouse",
        events=["order.created", "order.updated"],
    )
    assert secret.startswith("whsec_")
    (endpoint,) = await endpoints(loopback, account)
    assert endpoint.id == endpoint_id
    assert endpoint.url == hook.url
    assert endpoint.description == "Orders to the warehouse"
    assert endpoint.events == ["order.created", "order.updated"]
    assert loopback.secrets.open(endpoint.secret) == secret

    listed = await hooks_admin.get("/dashboard/webhooks")
    assert secret not in listed.text
    assert f'<a href="/dashboard/webhooks/{endpoint_id}">{hook.url}</a>' in listed.text
    assert "order.created, order.updated" in listed.text
    assert "badge-active" in listed.text
    assert "no attempts" in listed.text
    page = await hooks_admin.get(f"/dashboard/webhooks/{endpoint_id}")
    assert page.status_code == 200
    assert secret not in page.text

    # no events ticked: every event
    every_id, _ = await add_endpoint(hooks_admin, hook.url + "/all")
    every = await webhooks.get_endpoint(loopback, live(account), every_id)
    assert every.events == []
    assert every.description is None


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"url": "http://127.0.0.1:9/hook"},
            "webhook URL refused: plain http is not allowed; use https (for local development,"
            " the server&#39;s BITBYBIT_ALLOW_HTTP_TARGETS=1 allows it)",
        ),
        ({"url": "https://127.0.0.1/hook"}, "BITBYBIT_ALLOW_PRIVATE_TARGETS=1"),
        ({"url": "ftp://example.com/hook"}, "the scheme &#39;ftp&#39; is not allowed"),
        ({"url": ""}, "URL: String should have at least 1 character"),
        ({"url": "https://example.com/hook", "events": "bogus.event"}, "Events: Input should be"),
        ({"url": "https://example.com/hook", "description": "d" * 1001}, "Description: String"),
    ],
)
async def test_refused_input_rerenders_the_form(
    admin: Browser, platform: Platform, account: Account, form: dict[str, str], message: str
) -> None:
    answer = await admin.post("/dashboard/webhooks", form)
    assert answer.status_code == 400, answer.text
    assert message in answer.text
    assert 'role="alert" id="endpoint-error"' in answer.text
    assert f'value="{html.escape(form["url"])}"' in answer.text  # kept for fixing
    assert await endpoints(platform, account) == []


async def test_health_over_the_last_24_hours(
    admin: Browser, platform: Platform, account: Account, clock: FakeClock
) -> None:
    endpoint = await endpoint_of(platform, account, "busy")
    quiet = await endpoint_of(platform, account, "quiet")
    for n in range(3):
        await add_customer(platform, account, n)
    old, failed, succeeded = await deliveries_of(platform, account, endpoint.id)
    now = clock.now
    await attempt(platform, old.id, endpoint.id, now - 25 * HOUR_MS, 200, None, "succeeded")
    await attempt(platform, succeeded.id, endpoint.id, now - 2000, 200, None, "succeeded")
    await attempt(
        platform, failed.id, endpoint.id, now - 1000, None, "connection refused", "pending"
    )

    health = await webhooks.endpoint_health(platform, live(account), [endpoint.id, quiet.id])
    busy = health[endpoint.id]
    assert (busy.attempts, busy.succeeded, busy.success_rate) == (2, 1, 0.5)
    assert busy.last is not None
    assert busy.last.started_at == now - 1000
    assert (busy.last.status_code, busy.last.error) == (None, "connection refused")
    assert health[quiet.id] == webhooks.EndpointHealth()

    page = await admin.get("/dashboard/webhooks")
    assert page.status_code == 200
    assert '50% <span class="muted">(1 of 2 attempts succeeded)</span>' in page.text
    assert f"{_when(now - 1000)}: connection refused" in page.text
    assert "no attempts" in page.text  # the quiet one

    detail = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert "(1 of 2 attempts succeeded)" in detail.text
    for delivery in (old, failed, succeeded):
        assert f'<a href="/dashboard/deliveries/{delivery.id}">{delivery.id}</a>' in detail.text
    assert "The last 3 of 3." in detail.text


async def test_the_endpoint_page_edits_description_and_events(
    admin: Browser, platform: Platform, account: Account
) -> None:
    endpoint = await endpoint_of(platform, account, "first")
    page = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert page.status_code == 200, page.text
    assert "<h1>https://example.com/hook</h1>" in page.text
    assert "No deliveries yet." in page.text
    assert "all events" in page.text
    assert 'value="first"' in page.text
    assert ">Save</button>" in page.text
    for action in ("test", "rotate-secret", "suspend", "delete"):
        assert f'action="/dashboard/webhooks/{endpoint.id}/{action}"' in page.text
    assert f'hx-post="/dashboard/webhooks/{endpoint.id}/test" hx-target="#test-result"' in (
        page.text
    )
    assert 'id="recover-since"' not in page.text  # active: nothing to reactivate

    saved = await admin.post(
        f"/dashboard/webhooks/{endpoint.id}",
        {"description": "second", "events": ["customer.created", "customer.deleted"]},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/dashboard/webhooks/{endpoint.id}"
    changed = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    assert changed.description == "second"
    assert changed.events == ["customer.created", "customer.deleted"]
    shown = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert "Saved the endpoint&#39;s settings." in shown.text
    assert 'id="edit-event-customer-deleted" name="events" value="customer.deleted" checked' in (
        shown.text
    )

    cleared = await admin.post(f"/dashboard/webhooks/{endpoint.id}", {"description": ""})
    assert cleared.status_code == 303
    changed = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    assert changed.description is None
    assert changed.events == []

    bad = await admin.post(
        f"/dashboard/webhooks/{endpoint.id}", {"description": "d" * 1001, "events": "nope"}
    )
    assert bad.status_code == 400
    assert 'role="alert" id="edit-error"' in bad.text
    assert "Description: String" in bad.text
    assert await webhooks.get_endpoint(platform, live(account), endpoint.id) == changed


async def test_send_test_inline_with_htmx_and_on_the_page_without(
    hooks_admin: Browser, hook: Receiver
) -> None:
    endpoint_id, secret = await add_endpoint(hooks_admin, hook.url)
    fragment = await hooks_admin.post(
        f"/dashboard/webhooks/{endpoint_id}/test", {"event_type": "order.created"}, htmx=True
    )
    assert fragment.status_code == 200, fragment.text
    assert "<html" not in fragment.text
    assert "<h3>Test send: succeeded</h3>" in fragment.text
    assert "<dt>Status code</dt><dd>200</dd>" in fragment.text
    assert "<pre>ok</pre>" in fragment.text
    assert " ms</dd>" in fragment.text
    (received,) = hook.received
    assert received.headers[ID_HEADER].startswith("evt_test_")
    assert received.headers[EVENT_HEADER] == "order.created"
    timestamp = int(received.headers[TIMESTAMP_HEADER])
    assert received.headers[SIGNATURE_HEADER] == sign(received.body, secret, timestamp)

    async def teapot(request: web.Request, _: Receiver) -> web.StreamResponse:
        return web.Response(status=418, text="<b>short</b> and stout " + "x" * 5000)

    hook.handler = teapot
    page = await hooks_admin.post(f"/dashboard/webhooks/{endpoint_id}/test")
    assert page.status_code == 200, page.text
    assert page.text.startswith("<!doctype html>")
    result = TEST_RESULT.search(page.text)
    assert result is not None, page.text
    shown = result.group(1)
    assert "<h3>Test send: failed</h3>" in shown
    assert "<dd>418</dd>" in shown
    assert "&lt;b&gt;short&lt;/b&gt; and stout" in shown  # escaped, never markup
    body = re.search(r"<pre>(.*?)</pre>", shown, re.S)
    assert body is not None
    assert len(html.unescape(body.group(1))) <= 4096
    assert len(hook.received) == 2
    assert hook.received[1].headers[EVENT_HEADER] == "customer.created"

    unknown = await hooks_admin.post(f"/dashboard/webhooks/{endpoint_id}/test", {"event_type": "x"})
    assert unknown.status_code == 400
    assert "unknown event type" in unknown.text
    assert len(hook.received) == 2


async def test_rotating_the_secret_shows_it_once_and_the_grace(
    admin: Browser, platform: Platform, account: Account, clock: FakeClock
) -> None:
    endpoint = await endpoint_of(platform, account)
    old_secret = platform.secrets.open(endpoint.secret)
    answer = await admin.post(f"/dashboard/webhooks/{endpoint.id}/rotate-secret")
    assert answer.status_code == 200, answer.text
    secret = new_secret(answer.text)
    assert secret != old_secret
    assert f"The new secret signs from <strong>{_when(clock.now + 24 * HOUR_MS)}</strong>" in (
        answer.text
    )
    assert "Until then the old secret still signs" in answer.text
    assert '<button type="button" data-copy="new-secret" hidden>Copy</button>' in answer.text
    rotated = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    assert rotated.next_secret is not None
    assert platform.secrets.open(rotated.next_secret) == secret
    assert platform.secrets.open(rotated.secret) == old_secret
    page = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert secret not in page.text
    assert "the new secret signs from" in page.text

    at_once = await admin.post(
        f"/dashboard/webhooks/{endpoint.id}/rotate-secret", {"grace_hours": "0"}
    )
    assert at_once.status_code == 200
    assert "The new secret signs from now on; the old one no longer does." in at_once.text
    current = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    shown = new_secret(at_once.text)
    assert platform.secrets.open(current.secret) == shown
    assert current.next_secret is None

    for grace in ("-1", "abc", "1000"):
        bad = await admin.post(
            f"/dashboard/webhooks/{endpoint.id}/rotate-secret", {"grace_hours": grace}
        )
        assert bad.status_code == 400, grace
        assert 'id="rotate-error"' in bad.text
        assert "Grace period:" in bad.text
    assert await webhooks.get_endpoint(platform, live(account), endpoint.id) == current


async def test_suspend_then_reactivate_with_recovery(
    admin: Browser, platform: Platform, account: Account, clock: FakeClock
) -> None:
    endpoint = await endpoint_of(platform, account)
    await add_customer(platform, account, 1)
    await add_customer(platform, account, 2)
    failed, _ = await deliveries_of(platform, account, endpoint.id)
    await attempt(platform, failed.id, endpoint.id, clock.now - HOUR_MS, 500, None, "failed")

    suspended = await admin.post(f"/dashboard/webhooks/{endpoint.id}/suspend")
    assert suspended.status_code == 303
    assert suspended.headers["location"] == f"/dashboard/webhooks/{endpoint.id}"
    now = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    assert now.status == "suspended"
    assert now.status_reason == "suspended from the dashboard"
    statuses = sorted(d.status for d in await deliveries_of(platform, account, endpoint.id))
    assert statuses == ["failed", "held"]
    page = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert "Suspended: its deliveries are held until you reactivate it." in page.text
    assert "badge-suspended" in page.text
    assert 'id="recover-since"' in page.text
    assert f'action="/dashboard/webhooks/{endpoint.id}/suspend"' not in page.text
    listed = await admin.get("/dashboard/webhooks")
    assert "badge-suspended" in listed.text

    bad = await admin.post(
        f"/dashboard/webhooks/{endpoint.id}/reactivate", {"recover_since": "yesterday"}
    )
    assert bad.status_code == 400
    assert "Recover since: &#39;yesterday&#39; is not a date and time" in bad.text
    assert 'value="yesterday"' in bad.text
    still = await webhooks.get_endpoint(platform, live(account), endpoint.id)
    assert still.status == "suspended"

    since = _when(clock.now - 2 * HOUR_MS)  # "2026-12-02 10:30:00 UTC" → datetime-local
    local = since[:10] + "T" + since[11:16]
    answer = await admin.post(
        f"/dashboard/webhooks/{endpoint.id}/reactivate", {"recover_since": local}
    )
    assert answer.status_code == 303
    page = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert "Reactivated: 2 deliveries queued again." in page.text
    assert "badge-active" in page.text
    statuses = [d.status for d in await deliveries_of(platform, account, endpoint.id)]
    assert statuses == ["pending", "pending"]

    # suspended again, reactivated without a time: the held one only
    await admin.post(f"/dashboard/webhooks/{endpoint.id}/suspend")
    again = await admin.post(f"/dashboard/webhooks/{endpoint.id}/reactivate", {})
    assert again.status_code == 303
    page = await admin.get(f"/dashboard/webhooks/{endpoint.id}")
    assert "Reactivated: 2 deliveries queued again." in page.text


async def test_deleting_needs_a_confirmation(
    admin: Browser, platform: Platform, account: Account
) -> None:
    endpoint = await endpoint_of(platform, account)
    refused = await admin.post(f"/dashboard/webhooks/{endpoint.id}/delete")
    assert refused.status_code == 400
    assert "Tick “I understand” to delete the endpoint." in refused.text
    assert 'id="delete-confirm" name="confirm" value="yes" required' in refused.text
    assert len(await endpoints(platform, account)) == 1
    deleted = await admin.post(f"/dashboard/webhooks/{endpoint.id}/delete", {"confirm": "yes"})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/dashboard/webhooks"
    assert await endpoints(platform, account) == []
    page = await admin.get("/dashboard/webhooks")
    assert "Deleted the endpoint https://example.com/hook." in page.text
    assert (await admin.get(f"/dashboard/webhooks/{endpoint.id}")).status_code == 404


async def test_a_viewer_sees_but_cannot_change(
    viewer: Browser, platform: Platform, account: Account
) -> None:
    endpoint = await endpoint_of(platform, account, "watched")
    listed = await viewer.get("/dashboard/webhooks")
    assert listed.status_code == 200
    assert "https://example.com/hook" in listed.text
    assert "Add endpoint" not in listed.text
    page = await viewer.get(f"/dashboard/webhooks/{endpoint.id}")
    assert page.status_code == 200
    assert "watched" in page.text
    assert "<form" not in page.text.split("<main", 1)[1]  # no change controls at all
    for path, form in post_routes(endpoint.id):
        answer = await viewer.post(path, form)
        assert answer.status_code == 403, (path, answer.text)
    assert await endpoints(platform, account) == [endpoint]


async def test_changes_without_the_csrf_token_are_refused(
    admin: Browser, platform: Platform, account: Account
) -> None:
    endpoint = await endpoint_of(platform, account)
    for path, form in post_routes(endpoint.id):
        answer = await admin.post(path, form, csrf=False)
        assert answer.status_code == 403, (path, answer.text)
        htmx = await admin.post(path, form, csrf=False, htmx=True)
        assert htmx.status_code == 403, path
    assert await endpoints(platform, account) == [endpoint]


async def test_another_companys_endpoint_is_not_found(
    admin: Browser, platform: Platform, account: Account, other_account: Account
) -> None:
    theirs = await endpoint_of(platform, other_account, "secret plans")
    page = await admin.get(f"/dashboard/webhooks/{theirs.id}")
    assert page.status_code == 404
    assert "secret plans" not in page.text
    assert "secret plans" not in (await admin.get("/dashboard/webhooks")).text
    for path, form in post_routes(theirs.id)[1:]:
        answer = await admin.post(path, form)
        assert answer.status_code == 404, (path, answer.text)
        assert "secret plans" not in answer.text
        bad = await admin.post(path, {"grace_hours": "x", "recover_since": "x", "events": "x"})
        assert bad.status_code == 404, path
    assert await endpoints(platform, other_account) == [theirs]
    assert (await admin.get("/dashboard/webhooks/we_doesnotexist")).status_code == 404

    # the same company's endpoint in the other mode is not shown in this one either
    ours = await endpoint_of(platform, account)
    switched = await admin.post("/dashboard/mode", {"mode": "test", "next": "/dashboard"})
    assert switched.status_code == 303
    assert (await admin.get(f"/dashboard/webhooks/{ours.id}")).status_code == 404
