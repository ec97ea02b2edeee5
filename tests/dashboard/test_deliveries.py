"""``/dashboard/deliveries``: the history of real deliveries (sent by the worker to loopback
receivers at known fake times), each filter, cursor pages both ways, the chart's figures, one
delivery's attempts with the requests they sent, retrying; viewers, missing CSRF tokens, other
companies' ids and bad filters refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from bitbybit.dashboard.web import _when
from bitbybit.delivery.worker import Worker
from bitbybit.models import Delivery, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import history, webhooks
from bitbybit.webhooks.signing import sign
from tests.conftest import CUSTOMERS, Account, FakeClock, client_for, with_settings
from tests.dashboard.support import Browser
from tests.integration.receivers import Received, Receiver, receiver

MINUTE = 60_000
ROW = re.compile(r'href="/dashboard/deliveries/(dlv_[A-Za-z0-9]+)"')
CHART = re.compile(r"data-chart='([^']*)'")
OLDER = re.compile(r'<a rel="next" href="([^"]+)"')
NEWER = re.compile(r'<a rel="prev" href="([^"]+)"')


@dataclass
class Sent:
    """Seven deliveries of four events, made one minute apart from ``base + 5 s``: customers
    0 to 2 created (to ``ok`` and ``failing``), customer 0 updated (to ``ok`` alone). ``ok``
    answered 200; ``failing`` answered 500 for customers 0 and 2 (no retries: failed at once;
    two, so the endpoint is not suspended) and 200 for customer 1."""

    tenant: Tenant
    ok: str
    failing: str
    ok_url: str
    failing_url: str
    secret: str
    base: int
    customers: list[str]
    received: list[Received]

    @property
    def times(self) -> list[int]:
        return [self.base + 5_000 + n * MINUTE for n in range(4)]


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def all_deliveries(platform: Platform, tenant: Tenant) -> list[Delivery]:
    async with platform.store.read() as tx:
        items, _ = await tx.delivery_history(tenant, limit=1000)
    return items


async def drain(platform: Platform, tenant: Tenant) -> None:
    """Run a delivery worker until none of the tenant's deliveries is pending."""
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(platform, concurrency=8).run(stop))
    try:

        async def settled() -> bool:
            return all(d.status != "pending" for d in await all_deliveries(platform, tenant))

        await until(settled)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def make_history(
    platform: Platform, account: Account, clock: FakeClock
) -> AsyncIterator[Sent]:
    async def fails(request: web.Request, hook: Receiver) -> web.StreamResponse:
        if b"c1@example.com" in await request.read():
            return web.Response(status=200, text="fine")
        return web.Response(status=500, text="<b>boom</b>")

    async def thanks(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=200, text="thanks")

    tenant = Tenant(account.company.id, "live")
    live = with_settings(
        platform, allow_private_targets=True, allow_http_targets=True, retry_schedule=()
    )
    async with receiver(thanks) as good, receiver(fails) as bad:
        ok, secret = await webhooks.create_endpoint(live, tenant, EndpointCreate(url=good.url))
        failing, _ = await webhooks.create_endpoint(
            live, tenant, EndpointCreate(url=bad.url, events=["customer.created"])
        )
        base = clock.now // MINUTE * MINUTE - 30 * MINUTE
        clock.now = base + 5_000
        customers = []
        async with client_for(platform) as http:
            for n in range(3):
                made = await http.post(
                    CUSTOMERS, json={"email": f"c{n}@example.com"}, headers=account.headers
                )
                assert made.status_code == 201, made.text
                customers.append(made.json()["data"]["id"])
                clock.advance(MINUTE)
            changed = await http.put(
                f"{CUSTOMERS}/{customers[0]}",
                json={"firstName": "Zoë <script>"},
                headers=account.headers,
            )
            assert changed.status_code == 200, changed.text
        clock.advance(MINUTE)
        await drain(live, tenant)
        yield Sent(
            tenant, ok.id, failing.id, good.url, bad.url, secret, base, customers, good.received
        )


@pytest.fixture
async def sent(platform: Platform, account: Account, clock: FakeClock) -> AsyncIterator[Sent]:
    async for made in make_history(platform, account, clock):
        yield made


def rows(text: str) -> list[str]:
    """The delivery ids linked from the page, in order, each once."""
    return list(dict.fromkeys(ROW.findall(text)))


def local(ms: int) -> str:
    """A ``datetime-local`` value for ``ms`` (UTC)."""
    return _when(ms)[:16].replace(" ", "T")


def link(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return None if found is None else html.unescape(found.group(1))


# -- the list ----------------------------------------------------------------------------------


async def test_the_history_lists_every_delivery_newest_first(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    expected = [d.id for d in await all_deliveries(platform, sent.tenant)]
    assert len(expected) == 7
    page = await admin.get("/dashboard/deliveries")
    assert page.status_code == 200, page.text
    assert rows(page.text) == expected
    assert "Showing 7 deliveries, newest first." in page.text
    assert sent.ok_url in page.text
    assert sent.failing_url in page.text
    assert "HTTP 500: HTTP 500" in page.text  # last status code and error of a failed one
    assert 'hx-get="/dashboard/deliveries"' in page.text
    assert 'hx-target="#results"' in page.text
    assert 'hx-push-url="true"' in page.text
    assert "rel=" not in page.text.split('id="results"')[1]  # one page: no Older, no Newer
    first = (await all_deliveries(platform, sent.tenant))[0]
    assert first.event_type == "customer.updated"
    assert _when(first.created_at) in page.text


async def test_each_filter_narrows_the_history(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    every = await all_deliveries(platform, sent.tenant)

    async def shown(query: str) -> list[str]:
        page = await admin.get(f"/dashboard/deliveries?{query}")
        assert page.status_code == 200, page.text
        assert "matching the filters" in page.text
        return rows(page.text)

    assert await shown(f"endpoint={sent.failing}") == [
        d.id for d in every if d.endpoint_id == sent.failing
    ]
    assert len(await shown(f"endpoint={sent.failing}")) == 3
    assert await shown("type=customer.updated") == [
        d.id for d in every if d.event_type == "customer.updated"
    ]
    assert len(await shown("type=customer.created")) == 6
    assert await shown("status=failed") == [d.id for d in every if d.status == "failed"]
    assert len(await shown("status=failed")) == 2
    assert len(await shown("status=succeeded")) == 5
    assert await shown("status=held") == []
    second = sent.times[1]
    window = f"from={local(second - 5_000)}&to={local(second + MINUTE - 5_000)}"
    assert await shown(window) == [d.id for d in every if d.created_at == second]
    assert len(await shown(window)) == 2
    combined = await shown(f"{window}&endpoint={sent.ok}&status=succeeded&type=customer.created")
    assert combined == [d.id for d in every if d.created_at == second and d.endpoint_id == sent.ok]
    assert len(combined) == 1
    assert await shown(f"endpoint={sent.failing}&type=customer.updated") == []


async def test_the_filter_form_keeps_what_was_chosen(admin: Browser, sent: Sent) -> None:
    page = await admin.get(
        f"/dashboard/deliveries?endpoint={sent.ok}&type=customer.updated&status=succeeded"
        "&from=2020-01-02T03:04&hours=6"
    )
    assert page.status_code == 200, page.text
    assert f'<option value="{sent.ok}" selected>' in page.text
    assert '<option value="customer.updated" selected>' in page.text
    assert '<option value="succeeded" selected>' in page.text
    assert 'value="2020-01-02T03:04"' in page.text
    assert '<option value="6" selected>' in page.text
    assert 'type="hidden" name="hours" value="6"' in page.text


async def test_an_htmx_request_gets_the_results_alone(admin: Browser, sent: Sent) -> None:
    page = await admin.get("/dashboard/deliveries?status=failed", headers={"hx-request": "true"})
    assert page.status_code == 200, page.text
    assert "<html" not in page.text
    assert "<h1" not in page.text
    assert "data-chart" not in page.text
    assert len(rows(page.text)) == 2
    assert "Showing 2 deliveries matching the filters" in page.text


async def test_cursor_pages_go_older_and_back_newer_keeping_the_filters(
    admin: Browser, platform: Platform, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    every = [d.id for d in await all_deliveries(platform, sent.tenant)]
    first = await admin.get("/dashboard/deliveries?type=customer.created")
    created = every[1:]  # all but the update, the newest
    assert rows(first.text) == created[:2]
    assert link(NEWER, first.text) is None
    older = link(OLDER, first.text)
    assert older is not None
    query = parse_qs(urlsplit(older).query)
    assert query["type"] == ["customer.created"]
    assert re.fullmatch(r"\d+:dlv_\w+", query["before"][0])
    second = await admin.get(older)
    assert rows(second.text) == created[2:4]
    third_link = link(OLDER, second.text)
    assert third_link is not None
    third = await admin.get(third_link)
    assert rows(third.text) == created[4:6]
    assert link(OLDER, third.text) is None  # the oldest page
    newer = link(NEWER, third.text)
    assert newer is not None
    assert "after=" in newer
    back = await admin.get(newer)
    assert rows(back.text) == created[2:4]
    newest_link = link(NEWER, back.text)
    assert newest_link is not None
    newest = await admin.get(newest_link)
    assert rows(newest.text) == created[:2]
    assert link(NEWER, newest.text) is None
    # htmx follows the same links for the results region alone
    fragment = await admin.get(older, headers={"hx-request": "true"})
    assert rows(fragment.text) == created[2:4]
    assert "<h1" not in fragment.text


async def test_paging_newer_from_near_the_top_shows_the_newest_page_whole(
    admin: Browser, platform: Platform, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "PAGE_SIZE", 3)
    every = await all_deliveries(platform, sent.tenant)
    cursor = f"{every[1].created_at}:{every[1].id}"
    page = await admin.get(f"/dashboard/deliveries?after={cursor}")
    assert page.status_code == 200, page.text
    assert rows(page.text) == [d.id for d in every[:3]]
    assert link(NEWER, page.text) is None
    assert link(OLDER, page.text) is not None


async def test_a_cursor_past_the_end_shows_nothing_and_leads_back(
    admin: Browser, sent: Sent
) -> None:
    page = await admin.get("/dashboard/deliveries?before=1:dlv_0")
    assert page.status_code == 200, page.text
    assert rows(page.text) == []
    assert "No deliveries further back." in page.text
    newer = link(NEWER, page.text)
    assert newer is not None
    assert "after=1%3Adlv_0" in newer


# -- the chart ---------------------------------------------------------------------------------


async def test_the_chart_counts_deliveries_and_failures_per_minute(
    admin: Browser, sent: Sent, clock: FakeClock
) -> None:
    page = await admin.get("/dashboard/deliveries?hours=1")
    assert page.status_code == 200, page.text
    found = CHART.search(page.text)
    assert found is not None
    data = json.loads(html.unescape(found.group(1)))
    assert len(data["t"]) == 60
    now_minute = clock.now // MINUTE * MINUTE
    assert data["t"][-1] == now_minute // 1000
    assert all(b - a == 60 for a, b in zip(data["t"], data["t"][1:], strict=False))
    figures = dict(
        zip(data["t"], zip(data["deliveries"], data["failures"], strict=True), strict=True)
    )
    minutes = [(time_ // MINUTE * MINUTE) // 1000 for time_ in sent.times]
    assert [figures[m] for m in minutes] == [(2, 1), (2, 0), (2, 1), (1, 0)]
    assert sum(data["deliveries"]) == 7
    assert sum(data["failures"]) == 2
    assert 'role="img"' in page.text
    summary = "7 deliveries created in the last 1 hour, 2 of them failing"
    assert summary in page.text
    assert f"<td>{_when(minutes[0] * 1000)}</td><td>2</td><td>1</td>" in page.text
    assert "uPlot.iife.min.js" in page.text


async def test_the_chart_defaults_to_three_hours_and_leaves_older_minutes_out(
    admin: Browser, platform: Platform, sent: Sent, clock: FakeClock
) -> None:
    chart = await history.delivery_chart(platform, sent.tenant)
    assert chart.hours == 3
    assert len(chart.minutes) == 180
    assert chart.total == 7
    assert chart.failed == 2
    assert chart.busiest == (sent.times[0] // MINUTE * MINUTE, 2)
    page = await admin.get("/dashboard/deliveries")
    assert "in the last 3 hours" in page.text
    clock.advance(60 * MINUTE)  # every minute falls out of the last hour
    later = await history.delivery_chart(platform, sent.tenant, 1)
    assert later.total == 0
    clock.now = sent.times[1] + 59 * MINUTE  # the first minute is out, the second in
    shifted = await history.delivery_chart(platform, sent.tenant, 1)
    assert shifted.total == 5
    assert shifted.failed == 1


# -- one delivery ------------------------------------------------------------------------------


async def test_a_delivery_shows_its_attempt_with_the_request_sent(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    every = await all_deliveries(platform, sent.tenant)
    delivery = next(
        d for d in every if d.endpoint_id == sent.ok and d.event_type == "customer.updated"
    )
    (got,) = [r for r in sent.received if r.body.count(b"Zo\xc3\xab")]
    page = await admin.get(f"/dashboard/deliveries/{delivery.id}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "<h1>Delivery <code>" in text
    assert delivery.id in text
    assert "Attempt 1:" in text
    assert "HTTP 200" in text
    assert "<pre>thanks</pre>" in text
    for name in (
        "Content-Type",
        "User-Agent",
        "X-BitByBit-Webhook-Id",
        "X-BitByBit-Webhook-Event",
        "X-BitByBit-Webhook-Timestamp",
        "X-BitByBit-Webhook-Signature",
    ):
        assert f"<code>{got.headers[name]}</code>" in text, name
    # the body as sent, escaped (the update's first name holds markup)
    assert html.escape(got.body.decode(), quote=False) in text.replace("&#34;", '"')
    assert "<script>" not in text.split("<main")[1]
    stamp = int(got.headers["X-BitByBit-Webhook-Timestamp"])
    _, attempts = await webhooks.get_delivery(platform, sent.tenant, delivery.id)
    assert stamp == attempts[0].started_at // 1000
    assert got.headers["X-BitByBit-Webhook-Signature"] == sign(got.body, sent.secret, stamp)
    assert "recomputed now with the endpoint's current signing secret" in text
    assert 'action="/dashboard/deliveries/' + delivery.id + '/retry"' in text
    assert f'action="/dashboard/events/{delivery.event_id}/replay"' in text


async def test_a_failed_delivery_shows_the_answer_escaped(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    failed = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    page = await admin.get(f"/dashboard/deliveries/{failed.id}")
    assert page.status_code == 200, page.text
    assert "<pre>&lt;b&gt;boom&lt;/b&gt;</pre>" in page.text
    assert "HTTP 500" in page.text
    assert "<b>boom</b>" not in page.text


async def test_a_viewer_sees_a_delivery_without_its_signature_or_buttons(
    viewer: Browser, platform: Platform, sent: Sent
) -> None:
    delivery = (await all_deliveries(platform, sent.tenant))[0]
    page = await viewer.get(f"/dashboard/deliveries/{delivery.id}")
    assert page.status_code == 200, page.text
    assert "X-BitByBit-Webhook-Signature" in page.text
    assert "shown to admins" in page.text
    assert "v1=" not in page.text
    assert "Retry delivery" not in page.text
    assert "Replay event" not in page.text


# -- retrying ----------------------------------------------------------------------------------


async def test_retry_makes_a_failed_delivery_pending_again(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    failed = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    answer = await admin.post(f"/dashboard/deliveries/{failed.id}/retry")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/dashboard/deliveries/{failed.id}"
    again, _ = await webhooks.get_delivery(platform, sent.tenant, failed.id)
    assert again.status == "pending"
    shown = await admin.get(answer.headers["location"])
    assert f"Delivery {failed.id} is queued to be sent again." in shown.text
    assert "Next attempt" in shown.text


async def test_a_viewer_cannot_retry(viewer: Browser, platform: Platform, sent: Sent) -> None:
    failed = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    answer = await viewer.post(f"/dashboard/deliveries/{failed.id}/retry")
    assert answer.status_code == 403, answer.text
    assert (await webhooks.get_delivery(platform, sent.tenant, failed.id))[0].status == "failed"


async def test_retry_without_the_csrf_token_is_refused(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    failed = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    answer = await admin.post(f"/dashboard/deliveries/{failed.id}/retry", csrf=False)
    assert answer.status_code == 403, answer.text
    assert (await webhooks.get_delivery(platform, sent.tenant, failed.id))[0].status == "failed"
    stale = await admin.post(f"/dashboard/deliveries/{failed.id}/retry", {"csrf_token": "nope"})
    assert stale.status_code == 403


async def test_another_companys_delivery_is_not_found_on_every_route(
    stranger: Browser, platform: Platform, sent: Sent
) -> None:
    delivery = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    shown = await stranger.get(f"/dashboard/deliveries/{delivery.id}")
    assert shown.status_code == 404, shown.text
    assert delivery.event_id not in shown.text
    retried = await stranger.post(f"/dashboard/deliveries/{delivery.id}/retry")
    assert retried.status_code == 404, retried.text
    assert (await webhooks.get_delivery(platform, sent.tenant, delivery.id))[0].status == "failed"
    listed = await stranger.get("/dashboard/deliveries")
    assert listed.status_code == 200
    assert rows(listed.text) == []
    assert delivery.id not in listed.text
    filtered = await stranger.get(f"/dashboard/deliveries?endpoint={sent.ok}")
    assert filtered.status_code == 400
    assert sent.ok_url not in filtered.text


async def test_an_unknown_delivery_is_not_found(admin: Browser, sent: Sent) -> None:
    assert (await admin.get("/dashboard/deliveries/dlv_nope")).status_code == 404
    assert (await admin.post("/dashboard/deliveries/dlv_nope/retry")).status_code == 404


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=garbage", "From: must be a date and time in UTC"),
        ("to=2026-13-45T99:99", "To: must be a date and time in UTC"),
        ("from=2026-01-02T00:00&to=2026-01-01T00:00", "To: must be later than from"),
        ("status=lost", "Status: unknown status &#39;lost&#39;"),
        ("type=order.exploded", "Event type: unknown event type &#39;order.exploded&#39;"),
        ("endpoint=we_nope", "Endpoint: no webhook endpoint we_nope"),
        ("hours=25", "Chart hours: must be a whole number from 1 to 24"),
        ("hours=many", "Chart hours: must be a whole number from 1 to 24"),
        ("before=yesterday", "Older page: is not a place in the list"),
        ("after=1:dlv_0&before=1:dlv_0", "not both"),
    ],
)
async def test_bad_filters_answer_400_with_the_form_and_a_clear_message(
    admin: Browser, sent: Sent, query: str, message: str
) -> None:
    page = await admin.get(f"/dashboard/deliveries?{query}")
    assert page.status_code == 400, page.text
    assert message in page.text
    assert 'role="alert"' in page.text
    assert 'id="filter-endpoint"' in page.text  # the form, to correct it
    assert rows(page.text) == []


async def test_bad_filters_asked_by_htmx_load_the_page_whole(admin: Browser, sent: Sent) -> None:
    page = await admin.get("/dashboard/deliveries?from=garbage", headers={"hx-request": "true"})
    assert page.status_code == 400
    assert page.headers["hx-redirect"] == "/dashboard/deliveries?from=garbage"
    assert "From: must be a date and time in UTC" in page.text


async def test_the_pages_need_a_session(platform: Platform, sent: Sent) -> None:
    async with client_for(platform) as http:
        page = await http.get("/dashboard/deliveries?status=failed")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/dashboard/login?next=")
        delivery = (await all_deliveries(platform, sent.tenant))[0]
        assert (await http.post(f"/dashboard/deliveries/{delivery.id}/retry")).status_code == 401


async def test_over_more_than_three_hours_the_figures_are_per_hour(
    admin: Browser, sent: Sent
) -> None:
    page = await admin.get("/dashboard/deliveries?hours=24")
    assert page.status_code == 200, page.text
    found = CHART.search(page.text)
    assert found is not None
    assert len(json.loads(html.unescape(found.group(1)))["t"]) == 24 * 60
    assert "Figures per hour" in page.text
    hours = {t // (60 * MINUTE) for t in sent.times}
    rows_shown = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td></tr>", page.text)
    assert len(rows_shown) == len(hours)
    assert sum(int(count) for _, count, _ in rows_shown) == 7
    assert sum(int(failing) for _, _, failing in rows_shown) == 2


async def test_retry_to_an_endpoint_that_is_not_active_says_why(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    from bitbybit.schemas import EndpointUpdate

    await webhooks.update_endpoint(
        platform, sent.tenant, sent.failing, EndpointUpdate(status="disabled")
    )
    failed = next(d for d in await all_deliveries(platform, sent.tenant) if d.status == "failed")
    page = await admin.get(f"/dashboard/deliveries/{failed.id}")
    assert "Retry delivery" not in page.text
    assert "The endpoint is disabled:" in page.text
    assert f'<a href="/dashboard/webhooks/{sent.failing}">reactivate it</a>' in page.text
    answer = await admin.post(f"/dashboard/deliveries/{failed.id}/retry")
    assert answer.status_code == 409, answer.text
    assert "the endpoint is disabled: reactivate it first" in answer.text
    assert (await webhooks.get_delivery(platform, sent.tenant, failed.id))[0].status == "failed"


async def test_the_test_mode_shows_the_test_data_alone(admin: Browser, sent: Sent) -> None:
    switched = await admin.post(
        "/dashboard/mode", {"mode": "test", "next": "/dashboard/deliveries"}
    )
    assert switched.status_code == 303
    page = await admin.get("/dashboard/deliveries")
    assert page.status_code == 200
    assert rows(page.text) == []
    assert "Showing 0 deliveries, newest first." in page.text
    assert "0 deliveries created in the last 3 hours, 0 of them failing." in page.text


async def test_without_the_secret_the_headers_are_shown_unsigned(
    platform: Platform, sent: Sent
) -> None:
    delivery = (await all_deliveries(platform, sent.tenant))[0]
    other_key = with_settings(platform, secret_key="not-the-key-that-sealed-the-secrets")
    detail = await history.delivery_detail(other_key, sent.tenant, delivery.id)
    assert detail.secret_problem is not None
    assert "cannot be decrypted" in detail.secret_problem
    (attempt,) = detail.attempts
    headers = dict(attempt.headers)
    assert headers["X-BitByBit-Webhook-Signature"] == ""
    assert headers["X-BitByBit-Webhook-Id"] == delivery.event_id
    assert not attempt.signature_recomputed
