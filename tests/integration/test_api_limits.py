"""The API never accepts work the worker cannot do (issue 9, SPEC §6), on both dialects.

- A change whose event body would be over 64 KB (65,536 bytes, what the worker sends at most) is
  refused before anything is written: 400 ``VALIDATION_ERROR`` naming the limit and the event,
  no row, no event, no counter consumed, the ``Idempotency-Key`` free for a corrected retry.
  An event of exactly the limit is accepted and delivered.
- JSON nested deeper than 64 levels (the body counting as one) is a 400 with a field detail,
  whatever the depth; JSON at the limit is stored, rendered and sent. Values the encoders cannot
  write (integers beyond JavaScript's safe range, non-finite numbers) are 400s too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bitbybit.clock import system_clock
from bitbybit.delivery.sender import Sender
from bitbybit.delivery.worker import Worker
from bitbybit.limits import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, json_depth
from bitbybit.models import Event, ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import webhooks
from bitbybit.store import Tx
from tests.conftest import CUSTOMERS, ORDERS, PRODUCTS, Account, client_for, with_settings
from tests.integration.receivers import receiver

LIMIT_TEXT = "events are limited to 65,536 bytes"
SHIPPING = {
    "firstName": "Zoe",
    "lastName": "Smith",
    "phone": "+6281234567890",
    "address1": "Jl. Sudirman No. 1",
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "zip": "10110",
}


@pytest.fixture
def sending(platform: Platform) -> Platform:
    """Real time and loopback targets, for the tests that deliver to a local receiver."""
    return with_settings(
        platform,
        clock=system_clock,
        allow_private_targets=True,
        allow_http_targets=True,
        retry_schedule=(0.01,) * 4,
        delivery_timeout=5.0,
    )


def tenant_of(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


async def events_of(platform: Platform, account: Account) -> list[Event]:
    """Every event of the account's live data, oldest first."""
    async with platform.store.read() as tx:
        page = await tx.list_events(tenant_of(account), ListQuery(limit=100))
    return list(reversed(page.items))


async def total(client: httpx.AsyncClient, path: str, account: Account) -> int:
    response = await client.get(path, headers=account.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["meta"]["total"]
    return count


async def created(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def assert_too_large(response: httpx.Response, event_type: str, field: str) -> int:
    """The refusal names the event, its size and the limit; returns the size it gave."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert f"the {event_type} event" in error["message"], error
    assert LIMIT_TEXT in error["message"], error
    assert [detail["field"] for detail in error["details"]] == [field], error
    size_text = error["message"].split(" would be ")[1].split(" bytes")[0]
    size = int(size_text.replace(",", ""))
    assert size > MAX_PAYLOAD_BYTES
    return size


def product(media: Any = None, name: str = "Poster", **fields: Any) -> dict[str, Any]:
    return {"name": name, "variants": [{"title": "Default", "price": 1}], "media": media, **fields}


# -- event size ---------------------------------------------------------------------------------


async def test_product_whose_event_is_too_large_writes_nothing_and_frees_its_key(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    headers = {**account.headers, "Idempotency-Key": "poster-1"}
    big = product({"images": ["https://cdn.example.com/" + "p" * 70_000]})

    refused = await client.post(PRODUCTS, json=big, headers=headers)
    size = assert_too_large(refused, "product.created", "media")
    assert size > 70_000
    assert await total(client, PRODUCTS, account) == 0
    assert await events_of(platform, account) == []

    again = await client.post(PRODUCTS, json=big, headers=headers)  # refused again, not "in use"
    assert_too_large(again, "product.created", "media")

    fixed = await client.post(PRODUCTS, json=product({"images": []}), headers=headers)
    assert fixed.status_code == 201, fixed.text
    assert "Idempotent-Replayed" not in fixed.headers
    assert fixed.json()["data"]["productId"] == "PROD-001"  # the refused ones took no number
    replayed = await client.post(PRODUCTS, json=product({"images": []}), headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == fixed.content
    assert [e.type for e in await events_of(platform, account)] == ["product.created"]


async def test_order_with_200_line_items_over_the_limit_writes_nothing(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    variant = "Extra large, organic cotton, " + "limited edition " * 6
    made = await created(
        client,
        PRODUCTS,
        {
            "name": "Premium heavyweight T-Shirt, " + "hand printed " * 10,
            "variants": [{"title": variant, "price": 75000}],
        },
        account.headers,
    )
    events_before = await events_of(platform, account)
    line = {"productVariantId": made["variants"][0]["id"], "quantity": 1}
    body = {
        "lineItems": [line] * 200,
        "shippingAddress": SHIPPING,
        "customer": {"firstName": "New", "email": "new@example.com"},
    }
    headers = {**account.headers, "Idempotency-Key": "order-200"}

    refused = await client.post(ORDERS, json=body, headers=headers)
    assert_too_large(refused, "order.created", "lineItems")
    assert await total(client, ORDERS, account) == 0
    assert await total(client, CUSTOMERS, account) == 0  # the customer it created went too
    assert await events_of(platform, account) == events_before

    fixed = await client.post(ORDERS, json={**body, "lineItems": [line] * 20}, headers=headers)
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["data"]["orderId"] == "ORD-001"
    assert await total(client, CUSTOMERS, account) == 1
    new = await events_of(platform, account)
    assert [e.type for e in new[len(events_before) :]] == ["customer.created", "order.created"]


async def test_customer_over_the_limit_is_refused_on_create_and_update(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    address = {
        "firstName": "F" * 255,
        "lastName": "L" * 255,
        "address1": "A" * 1000,
        "address2": "B" * 1000,
        "city": "C" * 255,
        "province": "P" * 255,
        "country": "N" * 255,
        "zip": "Z" * 255,
    }
    many = [address] * 20
    refused = await client.post(
        CUSTOMERS, json={"email": "big@example.com", "addresses": many}, headers=account.headers
    )
    assert_too_large(refused, "customer.created", "addresses")
    assert await total(client, CUSTOMERS, account) == 0
    assert await events_of(platform, account) == []

    customer = await created(
        client, CUSTOMERS, {"email": "big@example.com", "addresses": many[:2]}, account.headers
    )
    before = await events_of(platform, account)
    grown = await client.put(
        f"{CUSTOMERS}/{customer['id']}", json={"addresses": many}, headers=account.headers
    )
    assert_too_large(grown, "customer.updated", "addresses")
    fetched = await client.get(f"{CUSTOMERS}/{customer['id']}", headers=account.headers)
    assert fetched.json()["data"] == customer
    assert await events_of(platform, account) == before


async def test_product_update_over_the_limit_changes_nothing(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    made = await created(client, PRODUCTS, product(["a.jpg"]), account.headers)
    before = await events_of(platform, account)
    variants = [{"title": f"Size {i}", "price": 1, "media": "v" * 1000} for i in range(70)]
    refused = await client.put(
        f"{PRODUCTS}/{made['id']}", json={"variants": variants}, headers=account.headers
    )
    assert_too_large(refused, "product.updated", "variants")
    fetched = await client.get(f"{PRODUCTS}/{made['id']}", headers=account.headers)
    assert fetched.json()["data"] == made
    assert await events_of(platform, account) == before


@asynccontextmanager
async def running(platform: Platform) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(platform).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_event_of_exactly_the_limit_is_accepted_and_delivered(
    sending: Platform, account: Account
) -> None:
    async with receiver() as hook, client_for(sending) as client:
        endpoint, _ = await webhooks.create_endpoint(
            sending, tenant_of(account), EndpointCreate(url=hook.url)
        )
        probe = await created(client, PRODUCTS, product("x" * 60_000), account.headers)
        await client.delete(f"{PRODUCTS}/{probe['id']}", headers=account.headers)
        (probe_event, _) = await events_of(sending, account)
        exact = 60_000 + MAX_PAYLOAD_BYTES - len(probe_event.payload)

        over = await client.post(PRODUCTS, json=product("x" * (exact + 1)), headers=account.headers)
        assert assert_too_large(over, "product.created", "media") == MAX_PAYLOAD_BYTES + 1

        at_limit = await created(client, PRODUCTS, product("x" * exact), account.headers)
        event = (await events_of(sending, account))[-1]
        assert event.type == "product.created"
        assert len(event.payload) == MAX_PAYLOAD_BYTES
        assert json.loads(event.payload)["id"] == at_limit["id"]

        async with running(sending):
            received = await hook.wait_for(3)  # the probe's two events and this one
            await asyncio.sleep(0.2)  # time for a delivery that should not exist to arrive
        async with sending.store.read() as tx:
            page = await tx.list_deliveries(tenant_of(account), endpoint_id=endpoint.id, limit=10)
    assert len(received) == 3  # the refused change queued nothing
    (got,) = [r for r in received if r.headers["X-BitByBit-Webhook-Id"] == event.id]
    assert got.body == event.payload
    assert sorted(d.status for d in page.items) == ["succeeded"] * 3


async def order_event_size(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    items: list[dict[str, Any]],
    names: tuple[str, str],
    email: str,
) -> tuple[httpx.Response, int | None]:
    """Place an order for a new customer with these names; the order.created event's size."""
    customer = await created(
        client,
        CUSTOMERS,
        {"email": email, "firstName": names[0], "lastName": names[1]},
        account.headers,
    )
    body = {"lineItems": items, "shippingAddress": SHIPPING, "customerId": customer["id"]}
    response = await client.post(ORDERS, json=body, headers=account.headers)
    if response.status_code != 201:
        return response, None
    event = (await events_of(platform, account))[-1]
    assert event.type == "order.created"
    return response, len(event.payload)


async def test_order_is_refused_when_a_status_change_would_outgrow_the_limit(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    """An accepted order can always be updated: ``cancelled``/``refunded`` add 4 bytes at most."""
    made = await created(
        client,
        PRODUCTS,
        {"name": "N" * 255, "variants": [{"title": "Default", "price": 0}]},
        account.headers,
    )
    item = {"productVariantId": made["variants"][0]["id"], "quantity": 1}
    _, one = await order_event_size(client, platform, account, [item], ("F", "L"), "c1@x.example")
    _, two = await order_event_size(
        client, platform, account, [item] * 2, ("F", "L"), "c2@x.example"
    )
    assert one is not None
    assert two is not None
    per_item = two - one
    count = 1 + (MAX_PAYLOAD_BYTES - 10 - one) // per_item
    base = one + (count - 1) * per_item  # with names "F" and "L"
    extra = MAX_PAYLOAD_BYTES - 2 - base  # to make the order.created event 65,534 bytes
    assert 0 < extra < 500

    def names(length: int) -> tuple[str, str]:
        first = min(length - 1, 255)  # both set: an empty name would be written differently
        return "F" * first, "L" * (length - first)

    refused, _ = await order_event_size(
        client, platform, account, [item] * count, names(2 + extra), "c3@x.example"
    )
    assert_too_large(refused, "order.updated", "lineItems")
    assert "after a status change would be 65,538 bytes" in refused.json()["error"]["message"]

    accepted, size = await order_event_size(
        client, platform, account, [item] * count, names(extra), "c4@x.example"
    )
    assert accepted.status_code == 201, accepted.text
    assert size == MAX_PAYLOAD_BYTES - 4
    order = accepted.json()["data"]
    updated = await client.put(
        f"{ORDERS}/{order['id']}",
        json={"status": "cancelled", "financialStatus": "refunded"},
        headers=account.headers,
    )
    assert updated.status_code == 200, updated.text
    event = (await events_of(platform, account))[-1]
    assert event.type == "order.updated"
    assert len(event.payload) == MAX_PAYLOAD_BYTES


async def test_replay_refuses_an_event_over_the_limit(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    """An event written before the API refused such events is not queued again."""
    legacy = Event("evt_legacy0000000000000", "product.created", b'"' + b"x" * 70_000 + b'"', 1)

    async def insert(tx: Tx) -> None:
        await tx.insert_event(tenant_of(account), legacy)

    await platform.run(insert)
    replayed = await client.post(
        f"/customer/open/v1/events/{legacy.id}/replay", headers=account.headers
    )
    assert replayed.status_code == 400, replayed.text
    error = replayed.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "70,002 bytes" in error["message"]
    assert LIMIT_TEXT in error["message"]


# -- JSON depth and values the encoders cannot write -------------------------------------------


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for index in range(levels):
        value = [value] if index % 2 else {"m": value}
    return value


def deep_text(levels: int) -> str:
    """``levels`` arrays in JSON text (built as text: deep values break ``json.dumps``)."""
    return "[" * levels + "1" + "]" * levels


def member(name: str, text: str) -> str:
    """``{"name": <text>}``: JSON text with ``text`` spliced in as it is."""
    return "{" + json.dumps(name) + ":" + text + "}"


async def post_raw(
    client: httpx.AsyncClient, path: str, text: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        path, content=text.encode(), headers={**headers, "content-type": "application/json"}
    )


def assert_validation_error(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR", error
    assert [detail["field"] for detail in error["details"]] == [field], error


async def test_json_at_the_depth_limit_is_stored_rendered_and_sendable(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    media = nested(MAX_JSON_DEPTH - 1)  # the body is the first level
    variant_media = nested(MAX_JSON_DEPTH - 3)  # body, variants, the variant
    body = product(media)
    body["variants"][0]["media"] = variant_media
    made = await created(client, PRODUCTS, body, account.headers)
    assert made["media"] == media
    assert made["variants"][0]["media"] == variant_media

    for path in (PRODUCTS, f"{PRODUCTS}/{made['id']}", "/customer/open/v1/events"):
        shown = await client.get(path, headers=account.headers)  # lists add levels: still fine
        assert shown.status_code == 200, shown.text
    (event,) = await events_of(platform, account)
    assert json.loads(event.payload)["media"] == media
    assert len(event.payload) <= MAX_PAYLOAD_BYTES
    detail = await client.get(f"/customer/open/v1/events/{event.id}", headers=account.headers)
    assert detail.status_code == 200, detail.text
    assert json_depth(detail.json()) > MAX_JSON_DEPTH

    updated = await client.put(
        f"{PRODUCTS}/{made['id']}",
        json={"media": nested(MAX_JSON_DEPTH - 2)},
        headers=account.headers,
    )
    assert updated.status_code == 200, updated.text


async def test_json_at_the_depth_limit_can_be_sent(sending: Platform, account: Account) -> None:
    async with receiver() as hook, client_for(sending) as client:
        await created(client, PRODUCTS, product(nested(MAX_JSON_DEPTH - 1)), account.headers)
        (event,) = await events_of(sending, account)
        sender = Sender(sending.settings)
        try:
            result = await sender.send(hook.url, event.id, event.type, event.payload, ["whsec_x"])
        finally:
            await sender.close()
    assert result.succeeded, result
    assert hook.received[0].body == event.payload


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 255, 300, 990, 2000, 200_000])
async def test_json_deeper_than_the_limit_is_a_400_naming_the_field(
    client: httpx.AsyncClient, account: Account, platform: Platform, levels: int
) -> None:
    """``media`` of ``levels`` levels makes a body of ``levels + 1``: one over the limit or more."""
    text = '{"name":"Poster","variants":[{"title":"Default","price":1}],"media":DEEP}'
    refused = await post_raw(
        client, PRODUCTS, text.replace("DEEP", deep_text(levels)), account.headers
    )
    assert_validation_error(refused, "media")
    assert f"at most {MAX_JSON_DEPTH} arrays and objects" in refused.json()["error"]["message"]
    assert await total(client, PRODUCTS, account) == 0
    assert await events_of(platform, account) == []


async def test_deep_json_is_refused_on_every_route_after_authentication(
    client: httpx.AsyncClient, account: Account
) -> None:
    made = await created(client, PRODUCTS, product(), account.headers)
    deep = deep_text(300)
    variant = '{"name":"P","variants":[{"title":"D","price":1,"media":DEEP}]}'
    for path, method, text, field in (
        (PRODUCTS, "POST", variant.replace("DEEP", deep_text(62)), "variants"),
        (f"{PRODUCTS}/{made['id']}", "PUT", member("media", deep), "media"),
        (CUSTOMERS, "POST", member("tags", deep), "tags"),
        (ORDERS, "POST", member("lineItems", deep), "lineItems"),
        ("/customer/open/v1/webhooks", "POST", member("url", deep), "url"),
        ("/customer/api/open/v1/products", "POST", member("unknown", deep), "unknown"),
        (PRODUCTS, "POST", deep, "body"),
    ):
        headers = {**account.headers, "content-type": "application/json"}
        response = await client.request(method, path, content=text.encode(), headers=headers)
        assert_validation_error(response, field)
        assert "ratelimit-remaining" in response.headers

    anonymous = await post_raw(client, PRODUCTS, member("media", deep), {})
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "MISSING_API_KEY"
    fetched = await client.get(f"{PRODUCTS}/{made['id']}", headers=account.headers)
    assert fetched.json()["data"] == made


async def test_brackets_inside_strings_are_not_nesting(
    client: httpx.AsyncClient, account: Account
) -> None:
    text = '[{"caption":"' + '[{\\"' * 500 + '"}]'
    made = await created(client, PRODUCTS, product(json.loads(text)), account.headers)
    assert made["media"] == json.loads(text)


@pytest.mark.parametrize(
    "value",
    [
        str(2**64),
        str(2**63),
        str(-(2**64) - 1),
        str(2**53),
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        '{"10":true}',
    ],
)
async def test_values_the_encoders_cannot_write_are_400s(
    client: httpx.AsyncClient, account: Account, platform: Platform, value: str
) -> None:
    text = '{"name":"P","variants":[{"title":"D","price":1}],"media":{"list":[VALUE]}}'
    text = text.replace("VALUE", value)
    refused = await post_raw(client, PRODUCTS, text, account.headers)
    assert_validation_error(refused, "media")
    assert await events_of(platform, account) == []
