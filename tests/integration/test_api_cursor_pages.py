"""Cursor pages of the Open API's events and a webhook's deliveries (docs/api.md, "Pagination"),
on both databases: ``startingAfter`` walks older, ``endingBefore`` walks back newer, both in the
order the numbered pages give; objects written during a walk appear only at its newest end;
cursors are ids of the caller's own list, and a cursor never goes with a page number or with
the other cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import webhooks
from tests.conftest import CUSTOMERS, Account, FakeClock
from tests.contract.test_delivery_history import NeverSuspend, result
from tests.integration.test_api_events import SHIPPING

EVENTS = "/customer/open/v1/events"
MINUTE = 60_000


def deliveries_path(endpoint_id: str) -> str:
    return f"/customer/open/v1/webhooks/{endpoint_id}/deliveries"


def tenant_of(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


async def get(client: httpx.AsyncClient, path: str, account: Account, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def refused(
    client: httpx.AsyncClient, path: str, account: Account, expected: int, **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=account.headers)
    assert response.status_code == expected, (params, response.text)
    error: dict[str, Any] = response.json()["error"]
    return error


async def make_customers(
    client: httpx.AsyncClient, account: Account, clock: FakeClock, count: int, tag: str = ""
) -> None:
    """``count`` customers, so ``count`` events; the clock moves on after every third one, so
    that events share their millisecond in threes (the events of one instant)."""
    for number in range(count):
        created = await client.post(
            CUSTOMERS,
            json={"email": f"c{tag}{number}@example.com", "firstName": f"C{number}"},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        if number % 3 == 2:
            clock.advance(1)


def ids(body: Any) -> list[str]:
    return [item["id"] for item in body["data"]]


async def every_by_page(
    client: httpx.AsyncClient, path: str, account: Account, **params: Any
) -> list[str]:
    """The whole list by page number, 100 a page."""
    found: list[str] = []
    page = 1
    while True:
        body = await get(client, path, account, page=page, limit=100, **params)
        found += ids(body)
        if not body["meta"]["hasNextPage"]:
            assert body["meta"]["total"] == len(found)
            return found
        page += 1


async def walk_older(
    client: httpx.AsyncClient, path: str, account: Account, limit: int, **params: Any
) -> list[list[str]]:
    """The list in pages of ``limit``: the first by number, then by ``startingAfter``."""
    first = await get(client, path, account, limit=limit, **params)
    pages = [ids(first)]
    more = first["meta"]["hasNextPage"]
    while more:
        body = await get(client, path, account, limit=limit, startingAfter=pages[-1][-1], **params)
        assert set(body["meta"]) == {"limit", "hasMore"}
        assert body["meta"]["limit"] == limit
        pages.append(ids(body))
        more = body["meta"]["hasMore"]
        assert len(pages[-1]) == limit or not more
    return pages


async def walk_newer(
    client: httpx.AsyncClient,
    path: str,
    account: Account,
    limit: int,
    start: str,
    **params: Any,
) -> list[list[str]]:
    """Pages of ``limit`` by ``endingBefore`` from the object ``start`` up to the newest, each
    newest first; returned newest page first."""
    pages: list[list[str]] = []
    cursor, more = start, True
    while more:
        body = await get(client, path, account, limit=limit, endingBefore=cursor, **params)
        assert set(body["meta"]) == {"limit", "hasMore"}
        more = body["meta"]["hasMore"]
        if not body["data"]:
            assert not more
            break
        pages.insert(0, ids(body))
        cursor = pages[0][0]
    return pages


def flat(pages: list[list[str]]) -> list[str]:
    return [item for page in pages for item in page]


# -- events ------------------------------------------------------------------------------------


async def test_events_walk_older_and_back_newer_in_the_order_of_the_numbered_pages(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    await make_customers(client, account, clock, 23)
    listed = await every_by_page(client, EVENTS, account)
    assert len(listed) == 23 == len(set(listed))

    older = await walk_older(client, EVENTS, account, 5)
    assert [len(page) for page in older] == [5, 5, 5, 5, 3]
    assert flat(older) == listed
    for number, page in enumerate(older, start=1):  # the same pages as by number
        assert ids(await get(client, EVENTS, account, page=number, limit=5)) == page

    newer = await walk_newer(client, EVENTS, account, 5, older[-1][0])
    assert newer == older[:-1]  # back up the same pages, the oldest one excepted

    # The last page's own items, and the newest ones from the first.
    assert ids(await get(client, EVENTS, account, startingAfter=older[-2][-1])) == older[-1]
    top = await get(client, EVENTS, account, limit=5, endingBefore=older[1][0])
    assert (ids(top), top["meta"]["hasMore"]) == (older[0], False)
    none = await get(client, EVENTS, account, endingBefore=listed[0])
    assert none == {"data": [], "meta": {"limit": 20, "hasMore": False}}
    none = await get(client, EVENTS, account, startingAfter=listed[-1])
    assert none == {"data": [], "meta": {"limit": 20, "hasMore": False}}
    whole = await get(client, EVENTS, account, limit=100, startingAfter=listed[0])
    assert (ids(whole), whole["meta"]["hasMore"]) == (listed[1:], False)


async def test_events_of_one_instant_keep_the_order_they_were_written_in(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    """An order that makes its customer writes ``customer.created`` then ``order.created`` in
    one transaction, at one instant: newest first, the order's event comes first."""
    product = await client.post(
        "/customer/open/v1/products",
        json={"name": "Tea", "variants": [{"title": "Default", "price": 5}]},
        headers=account.headers,
    )
    assert product.status_code == 201, product.text
    variant = product.json()["data"]["variants"][0]["id"]
    for number in range(3):
        clock.advance(1)
        made = await client.post(
            "/customer/open/v1/orders",
            json={
                "customer": {"firstName": "Ann", "email": f"ann{number}@example.com"},
                "lineItems": [{"productVariantId": variant, "quantity": 1}],
                "shippingAddress": SHIPPING,
            },
            headers=account.headers,
        )
        assert made.status_code == 201, made.text
    listed = await get(client, EVENTS, account)
    types = [event["type"] for event in listed["data"]]
    assert types == ["order.created", "customer.created"] * 3 + ["product.created"]
    walked = flat(await walk_older(client, EVENTS, account, 2))
    assert walked == ids(listed)
    assert flat(await walk_newer(client, EVENTS, account, 2, walked[-1])) == walked[:-1]


async def test_events_written_during_a_walk_appear_only_at_its_newest_end(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    await make_customers(client, account, clock, 12)
    listed = await every_by_page(client, EVENTS, account)
    walked: list[str] = []
    cursor: dict[str, str] = {}
    for step in range(1, 10):
        body = await get(client, EVENTS, account, limit=4, **cursor)
        walked += ids(body)
        clock.advance(1)
        await make_customers(client, account, clock, 2, tag=f"during{step}")
        if body["meta"].get("hasMore", body["meta"].get("hasNextPage")) is False:
            break
        cursor = {"startingAfter": walked[-1]}
    assert walked == listed  # nothing repeated, nothing skipped
    assert step == 3

    now = await every_by_page(client, EVENTS, account)
    written = now[: len(now) - len(listed)]
    assert now[len(written) :] == listed
    assert len(written) == 6
    back = flat(await walk_newer(client, EVENTS, account, 4, listed[-1]))
    assert back == now[:-1]
    # What was written since a client last looked: just newer than the newest it saw.
    since = await get(client, EVENTS, account, endingBefore=listed[0], limit=5)
    assert (ids(since), since["meta"]["hasMore"]) == (written[-5:], True)
    rest = await get(client, EVENTS, account, endingBefore=since["data"][0]["id"], limit=5)
    assert (ids(rest), rest["meta"]["hasMore"]) == (written[:-5], False)


async def test_event_cursors_keep_the_filters(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    await make_customers(client, account, clock, 9)
    listed = await get(client, EVENTS, account)
    ids_by_time = ids(listed)
    first_customer = ids_by_time[-1]
    updated = []
    for event in listed["data"][:4]:
        clock.advance(MINUTE)
        customer = event["payload"]["id"]
        changed = await client.put(
            f"{CUSTOMERS}/{customer}", json={"firstName": "New"}, headers=account.headers
        )
        assert changed.status_code == 200, changed.text
        updated.append(customer)

    typed = await every_by_page(client, EVENTS, account, type="customer.updated")
    assert len(typed) == 4
    # A cursor that is not of the type itself still marks a place in the list.
    after = await get(client, EVENTS, account, type="customer.updated", endingBefore=ids_by_time[0])
    assert (ids(after), after["meta"]["hasMore"]) == (typed, False)
    older = await get(client, EVENTS, account, type="customer.updated", startingAfter=typed[1])
    assert ids(older) == typed[2:]
    walked = flat(await walk_older(client, EVENTS, account, 1, type="customer.updated"))
    assert walked == typed

    newest = await get(client, EVENTS, account, limit=1)
    since = newest["data"][0]["createdAt"]
    window = await get(client, EVENTS, account, since=since, startingAfter=ids_by_time[-1])
    assert ids(window) == []  # nothing older than the oldest
    window = await get(client, EVENTS, account, since=since, endingBefore=first_customer)
    assert ids(window) == typed[:1]  # the newest alone is that recent (since is inclusive)
    until = listed["data"][0]["createdAt"]
    window = await get(client, EVENTS, account, until=until, startingAfter=typed[-1])
    assert ids(window) == ids_by_time  # every customer.created, none of the updates


async def test_event_cursors_are_refused_with_a_page_with_each_other_and_out_of_range(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    await make_customers(client, account, clock, 3)
    newest = ids(await get(client, EVENTS, account))[0]

    both = await refused(client, EVENTS, account, 400, startingAfter=newest, endingBefore=newest)
    assert both["code"] == "VALIDATION_ERROR"
    assert both["details"] == [
        {"field": "endingBefore", "message": "give startingAfter or endingBefore, not both"}
    ]
    for cursor in ("startingAfter", "endingBefore"):
        for page in ("1", "2"):
            mixed = await refused(client, EVENTS, account, 400, page=page, **{cursor: newest})
            assert mixed["details"][0]["field"] == "page"
            assert "cannot be combined" in mixed["message"]
        for limit in (0, 101, "x"):
            await refused(client, EVENTS, account, 400, limit=limit, **{cursor: newest})
        for malformed in ("", "evt_", "cust_abc", "evt_a-b", "evt_" + "a" * 61):
            shape = await refused(client, EVENTS, account, 400, **{cursor: malformed})
            assert shape["code"] == "VALIDATION_ERROR", shape
        unknown = await refused(client, EVENTS, account, 404, **{cursor: "evt_0000nothere"})
        assert unknown["code"] == "NOT_FOUND"
        assert unknown["message"] == f"{cursor}: no event evt_0000nothere"
    for limit in (1, 100):
        body = await get(client, EVENTS, account, limit=limit, startingAfter=newest)
        assert len(body["data"]) == min(limit, 2)
        assert body["meta"] == {"limit": limit, "hasMore": limit == 1}


async def test_an_event_of_another_company_or_mode_is_no_cursor(
    client: httpx.AsyncClient, account: Account, other_account: Account, clock: FakeClock
) -> None:
    await make_customers(client, account, clock, 2)
    await make_customers(client, other_account, clock, 2, tag="other")
    test_made = await client.post(
        CUSTOMERS, json={"email": "t@example.com"}, headers=account.test_headers
    )
    assert test_made.status_code == 201
    theirs = ids(await get(client, EVENTS, other_account))[0]
    in_test = (await client.get(EVENTS, headers=account.test_headers)).json()["data"][0]["id"]
    for foreign in (theirs, in_test):
        for cursor in ("startingAfter", "endingBefore"):
            error = await refused(client, EVENTS, account, 404, **{cursor: foreign})
            assert error["message"] == f"{cursor}: no event {foreign}"
    assert (await client.get(EVENTS, headers=other_account.headers)).status_code == 200


# -- deliveries --------------------------------------------------------------------------------


async def make_endpoint(platform: Platform, account: Account, path: str = "hook") -> str:
    endpoint, _ = await webhooks.create_endpoint(
        platform, tenant_of(account), EndpointCreate(url=f"https://example.com/{path}")
    )
    return endpoint.id


async def settle(
    platform: Platform, clock: FakeClock, endpoint_id: str, outcome: Callable[[int], str]
) -> dict[str, str]:
    """Send each pending delivery of the endpoint once, oldest first, the ``n``-th (from 0)
    ending as ``outcome(n)`` (succeeded, failed, or pending to be retried); returns each
    delivery's new status."""
    now = clock.now
    claimed = await platform.store.claim_due("w", now, now + MINUTE, {endpoint_id: 1000})
    results = []
    for number, job in enumerate(claimed):
        status = outcome(number)
        code = 200 if status == "succeeded" else 500
        results.append(result(job.delivery_id, job.target, status, code, now))
    async with platform.store.write(durable=False) as tx:
        await tx.record_attempts("w", results, now, NeverSuspend())
    return {job.delivery_id: outcome(n) for n, job in enumerate(claimed)}


async def test_deliveries_walk_both_ways_by_status_in_the_order_of_the_numbered_pages(
    platform: Platform, client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    endpoint_id = await make_endpoint(platform, account)
    other = await make_endpoint(platform, account, "other")
    await make_customers(client, account, clock, 20)
    cycle = ("succeeded", "failed", "succeeded", "pending")
    statuses = await settle(platform, clock, endpoint_id, lambda n: cycle[n % 4])
    await settle(platform, clock, other, lambda n: "succeeded")
    held = await make_endpoint(platform, account, "held")
    await webhooks.suspend_endpoint(platform, tenant_of(account), held, "by hand")
    path = deliveries_path(endpoint_id)

    listed = await every_by_page(client, path, account)
    assert sorted(listed) == sorted(statuses)
    older = await walk_older(client, path, account, 6)
    assert flat(older) == listed
    assert [len(page) for page in older] == [6, 6, 6, 2]
    assert await walk_newer(client, path, account, 6, older[-1][0]) == older[:-1]

    for wanted in (
        ("succeeded",),
        ("failed",),
        ("pending",),
        ("held",),
        ("failed", "pending"),
        ("succeeded", "failed"),
        ("succeeded", "pending", "failed", "held"),
    ):
        status = ",".join(wanted)
        expected = [d for d in listed if statuses[d] in wanted]
        page = await get(client, path, account, status=status, limit=3)
        assert page["meta"]["total"] == len(expected), wanted
        assert await every_by_page(client, path, account, status=status) == expected
        walked = await walk_older(client, path, account, 3, status=status)
        assert flat(walked) == expected, wanted
        if len(walked) > 1:
            back = await walk_newer(client, path, account, 3, walked[-1][0], status=status)
            assert back == walked[:-1], wanted

    # A delivery that is no longer of the status asked for still marks its place.
    failed = [d for d in listed if statuses[d] == "failed"]
    retried = await client.post(
        f"/customer/open/v1/deliveries/{failed[1]}/retry", headers=account.headers
    )
    assert retried.status_code == 200
    assert retried.json()["data"]["status"] == "pending"
    older = await get(client, path, account, status="failed", startingAfter=failed[1])
    assert ids(older) == failed[2:]
    newer = await get(client, path, account, status="failed", endingBefore=failed[1])
    assert ids(newer) == failed[:1]


async def test_deliveries_written_during_a_walk_appear_only_at_its_newest_end(
    platform: Platform, client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    endpoint_id = await make_endpoint(platform, account)
    path = deliveries_path(endpoint_id)
    await make_customers(client, account, clock, 9)
    listed = await every_by_page(client, path, account)
    walked: list[str] = []
    body = await get(client, path, account, limit=2)
    walked += ids(body)
    while True:
        clock.advance(1)
        await make_customers(client, account, clock, 1, tag=f"d{len(walked)}")
        body = await get(client, path, account, limit=2, startingAfter=walked[-1])
        walked += ids(body)
        if not body["meta"]["hasMore"]:
            break
    assert walked == listed
    now = await every_by_page(client, path, account)
    assert now[-len(listed) :] == listed
    assert len(now) == len(listed) + 4  # one each page after the first
    assert flat(await walk_newer(client, path, account, 2, listed[-1])) == now[:-1]


async def test_delivery_cursors_are_the_endpoints_own(
    platform: Platform,
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    clock: FakeClock,
) -> None:
    mine = await make_endpoint(platform, account)
    sibling = await make_endpoint(platform, account, "sibling")
    theirs = await make_endpoint(platform, other_account)
    await make_customers(client, account, clock, 2)
    await make_customers(client, other_account, clock, 2, tag="other")
    own = ids(await get(client, deliveries_path(mine), account))
    of_sibling = ids(await get(client, deliveries_path(sibling), account))[0]
    of_theirs = ids(await get(client, deliveries_path(theirs), other_account))[0]
    path = deliveries_path(mine)
    for cursor in ("startingAfter", "endingBefore"):
        for foreign in (of_sibling, of_theirs, "dlv_0000nothere"):
            error = await refused(client, path, account, 404, **{cursor: foreign})
            assert error["message"] == f"{cursor}: no delivery {foreign} to webhook endpoint {mine}"
        # Another company's endpoint is unknown, whichever the cursor.
        error = await refused(client, deliveries_path(theirs), account, 404, **{cursor: own[0]})
        assert error["message"] == f"no webhook endpoint {theirs}"
        for malformed in ("evt_abc", "dlv_", "dlv_a b"):
            await refused(client, path, account, 400, **{cursor: malformed})
        mixed = await refused(client, path, account, 400, page=1, **{cursor: own[0]})
        assert mixed["details"][0]["field"] == "page"
        unknown_status = await refused(
            client, path, account, 400, status="lost", **{cursor: own[0]}
        )
        assert unknown_status["details"][0]["field"] == "status"
    both = await refused(client, path, account, 400, startingAfter=own[0], endingBefore=own[1])
    assert both["details"][0]["field"] == "endingBefore"
    body = await get(client, path, account, limit=1, startingAfter=own[0])
    assert body == {
        "data": [(await get(client, path, account))["data"][1]],
        "meta": {"limit": 1, "hasMore": False},
    }


@pytest.mark.parametrize("cursor", ["startingAfter", "endingBefore"])
async def test_cursor_pages_need_the_read_scope(
    platform: Platform, client: httpx.AsyncClient, account: Account, cursor: str
) -> None:
    from bitbybit.services import access

    _, raw = await access.create_api_key(platform, account.company.id, scopes=["customers:read"])
    response = await client.get(EVENTS, params={cursor: "evt_abc"}, headers={"x-api-key": raw})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
