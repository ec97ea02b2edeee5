"""``/dashboard/events``: the company's events newest first, filtered by type and paged by
cursor both ways; one event's payload and deliveries; replaying it (a new delivery appears);
viewers, missing CSRF tokens, other companies' ids and bad filters refused. On SQLite and
PostgreSQL."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator

import pytest

from bitbybit.models import Event
from bitbybit.runtime import Platform
from bitbybit.services import history, webhooks
from tests.conftest import Account, FakeClock
from tests.dashboard.support import Browser
from tests.dashboard.test_deliveries import NEWER, OLDER, Sent, link, make_history

ROW = re.compile(r'href="/dashboard/events/(evt_[A-Za-z0-9]+)"')


@pytest.fixture
async def sent(platform: Platform, account: Account, clock: FakeClock) -> AsyncIterator[Sent]:
    async for made in make_history(platform, account, clock):
        yield made


def rows(text: str) -> list[str]:
    return list(dict.fromkeys(ROW.findall(text)))


async def all_events(platform: Platform, sent: Sent) -> list[Event]:
    async with platform.store.read() as tx:
        items, _ = await tx.event_history(sent.tenant, limit=1000)
    return items


async def deliveries_of(platform: Platform, sent: Sent, event_id: str) -> list[str]:
    _, deliveries = await webhooks.get_event(platform, sent.tenant, event_id)
    return [d.id for d in deliveries]


async def test_the_events_are_listed_newest_first(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    every = await all_events(platform, sent)
    assert [e.type for e in every] == ["customer.updated"] + ["customer.created"] * 3
    assert [e.created_at for e in every] == sent.times[::-1]
    page = await admin.get("/dashboard/events")
    assert page.status_code == 200, page.text
    assert rows(page.text) == [e.id for e in every]
    assert "Showing 4 events, newest first." in page.text
    assert 'hx-get="/dashboard/events"' in page.text
    assert 'hx-push-url="true"' in page.text
    assert f"{len(every[0].payload)} bytes" in page.text


async def test_the_type_filter_narrows_the_list(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    every = await all_events(platform, sent)
    page = await admin.get("/dashboard/events?type=customer.created")
    assert page.status_code == 200, page.text
    assert rows(page.text) == [e.id for e in every if e.type == "customer.created"]
    assert '<option value="customer.created" selected>' in page.text
    none = await admin.get("/dashboard/events?type=order.created")
    assert rows(none.text) == []
    assert "No events of this type." in none.text
    fragment = await admin.get(
        "/dashboard/events?type=customer.updated", headers={"hx-request": "true"}
    )
    assert fragment.status_code == 200
    assert "<h1" not in fragment.text
    assert rows(fragment.text) == [every[0].id]


async def test_cursor_pages_go_older_and_back_newer(
    admin: Browser, platform: Platform, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "PAGE_SIZE", 3)
    ids = [e.id for e in await all_events(platform, sent)]
    first = await admin.get("/dashboard/events")
    assert rows(first.text) == ids[:3]
    older = link(OLDER, first.text)
    assert older is not None
    assert "before=" in older
    second = await admin.get(older)
    assert rows(second.text) == ids[3:]
    assert link(OLDER, second.text) is None
    newer = link(NEWER, second.text)
    assert newer is not None
    assert "after=" in newer
    back = await admin.get(newer)
    assert rows(back.text) == ids[:3]
    assert link(NEWER, back.text) is None
    monkeypatch.setattr(history, "PAGE_SIZE", 1)
    typed = await admin.get("/dashboard/events?type=customer.created")
    older = link(OLDER, typed.text)
    assert older is not None
    assert "type=customer.created" in older
    assert rows((await admin.get(older)).text) == ids[2:3]


async def test_an_event_shows_its_payload_and_deliveries(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    updated = (await all_events(platform, sent))[0]
    page = await admin.get(f"/dashboard/events/{updated.id}")
    assert page.status_code == 200, page.text
    pretty = json.dumps(json.loads(updated.payload), indent=2, ensure_ascii=False)
    shown = re.search(r"<h2>Payload</h2>\s*<pre>(.*?)</pre>", page.text, re.S)
    assert shown is not None
    assert html.unescape(shown.group(1)) == pretty
    assert "Zoë &lt;script&gt;" in page.text
    (delivery,) = await deliveries_of(platform, sent, updated.id)
    assert f'href="/dashboard/deliveries/{delivery}"' in page.text
    assert sent.ok_url in page.text
    assert 'action="/dashboard/events/' + updated.id + '/replay"' in page.text
    assert '<label for="replay-endpoint">' in page.text


async def test_a_viewer_sees_an_event_without_the_replay_form(
    viewer: Browser, platform: Platform, sent: Sent
) -> None:
    event = (await all_events(platform, sent))[0]
    page = await viewer.get(f"/dashboard/events/{event.id}")
    assert page.status_code == 200, page.text
    assert "Replay event" not in page.text
    assert "/replay" not in page.text


async def test_replay_queues_a_new_delivery(admin: Browser, platform: Platform, sent: Sent) -> None:
    created = (await all_events(platform, sent))[1]  # to both endpoints
    before = await deliveries_of(platform, sent, created.id)
    assert len(before) == 2
    answer = await admin.post(f"/dashboard/events/{created.id}/replay")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/dashboard/events/{created.id}"
    after = await deliveries_of(platform, sent, created.id)
    assert len(after) == 4
    assert set(before) < set(after)
    page = await admin.get(answer.headers["location"])
    assert "Replayed: 2 deliveries created." in page.text
    # to one endpoint, from the event page's select
    one = await admin.post(f"/dashboard/events/{created.id}/replay", {"endpoint": sent.ok})
    assert one.status_code == 303
    newest = await deliveries_of(platform, sent, created.id)
    assert len(newest) == 5
    (new,) = set(newest) - set(after)
    detail, _ = await webhooks.get_delivery(platform, sent.tenant, new)
    assert detail.endpoint_id == sent.ok
    assert detail.status == "pending"
    shown = await admin.get(f"/dashboard/events/{created.id}")
    assert f"Replayed: delivery {new} created." in shown.text


async def test_replay_from_a_delivery_page_goes_to_every_subscribed_endpoint(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    updated = (await all_events(platform, sent))[0]  # only ok is subscribed
    answer = await admin.post(f"/dashboard/events/{updated.id}/replay", {"endpoint": ""})
    assert answer.status_code == 303
    assert len(await deliveries_of(platform, sent, updated.id)) == 2


async def test_a_viewer_cannot_replay(viewer: Browser, platform: Platform, sent: Sent) -> None:
    event = (await all_events(platform, sent))[0]
    answer = await viewer.post(f"/dashboard/events/{event.id}/replay")
    assert answer.status_code == 403, answer.text
    assert len(await deliveries_of(platform, sent, event.id)) == 1


async def test_replay_without_the_csrf_token_is_refused(
    admin: Browser, platform: Platform, sent: Sent
) -> None:
    event = (await all_events(platform, sent))[0]
    answer = await admin.post(f"/dashboard/events/{event.id}/replay", csrf=False)
    assert answer.status_code == 403, answer.text
    htmx = await admin.post(f"/dashboard/events/{event.id}/replay", htmx=True, csrf=False)
    assert htmx.status_code == 403
    assert len(await deliveries_of(platform, sent, event.id)) == 1


async def test_another_companys_event_is_not_found_on_every_route(
    stranger: Browser, platform: Platform, sent: Sent
) -> None:
    event = (await all_events(platform, sent))[0]
    shown = await stranger.get(f"/dashboard/events/{event.id}")
    assert shown.status_code == 404, shown.text
    assert sent.ok_url not in shown.text
    replayed = await stranger.post(f"/dashboard/events/{event.id}/replay")
    assert replayed.status_code == 404, replayed.text
    assert len(await deliveries_of(platform, sent, event.id)) == 1
    listed = await stranger.get("/dashboard/events")
    assert rows(listed.text) == []


async def test_replaying_to_another_companys_endpoint_is_refused(
    admin: Browser, stranger: Browser, platform: Platform, sent: Sent, other_account: Account
) -> None:
    from bitbybit.models import Tenant
    from bitbybit.schemas import EndpointCreate

    theirs, _ = await webhooks.create_endpoint(
        platform,
        Tenant(other_account.company.id, "live"),
        EndpointCreate(url="https://hooks.example.com/theirs"),
    )
    event = (await all_events(platform, sent))[0]
    answer = await admin.post(f"/dashboard/events/{event.id}/replay", {"endpoint": theirs.id})
    assert answer.status_code == 400, answer.text
    assert f"no webhook endpoint {theirs.id}" in answer.text
    assert len(await deliveries_of(platform, sent, event.id)) == 1


async def test_an_unknown_event_is_not_found(admin: Browser, sent: Sent) -> None:
    assert (await admin.get("/dashboard/events/evt_nope")).status_code == 404
    assert (await admin.post("/dashboard/events/evt_nope/replay")).status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("type=order.exploded", "Event type: unknown event type &#39;order.exploded&#39;"),
        ("before=garbage", "Older page: is not a place in the list"),
        ("after=12:x;drop", "Newer page: is not a place in the list"),
    ],
)
async def test_bad_filters_answer_400_with_a_clear_message(
    admin: Browser, sent: Sent, query: str, message: str
) -> None:
    page = await admin.get(f"/dashboard/events?{query}")
    assert page.status_code == 400, page.text
    assert message in page.text
    assert 'id="filter-type"' in page.text
    assert rows(page.text) == []
