"""Every mutating endpoint writes its exact event in the change's own transaction (SPEC §1, §4).

The expected payloads are written out byte for byte: compact JSON, keys in the seed document's
order, non-ASCII as raw UTF-8 and ``/`` unescaped. Ids are random, so they are spliced into the
literal templates (``@name`` placeholders) from the API's answers.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bitbybit.models import Event, ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.store.sql import SqlTx
from tests.conftest import CUSTOMERS, ORDERS, PRODUCTS, Account, FakeClock

T0 = 1705314600123  # 2024-01-15T10:30:00.123Z
T0_ISO = "2024-01-15T10:30:00.123Z"
T1 = 1705392000000  # 2024-01-16T08:00:00.000Z
T1_ISO = "2024-01-16T08:00:00.000Z"
T2 = 1705482000456  # 2024-01-17T09:00:00.456Z

NAME = "Zoë 😀"


def fill(template: str, **ids: str) -> bytes:
    """The template with each ``@name`` replaced by its id, as UTF-8 bytes."""
    for name in sorted(ids, key=len, reverse=True):  # @cust before @c
        template = template.replace(f"@{name}", ids[name])
    assert "@" not in template.replace("@example.com", ""), template
    return template.encode("utf-8")


def compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def tenant_of(account: Account, mode: str = "live") -> Tenant:
    return Tenant(account.company.id, mode)  # type: ignore[arg-type]


async def all_events(platform: Platform, account: Account, mode: str = "live") -> list[Event]:
    """Every event of the account's tenant, oldest first."""
    async with platform.store.read() as tx:
        page = await tx.list_events(tenant_of(account, mode), ListQuery(limit=100))
    assert page.total == len(page.items)
    return list(reversed(page.items))


async def new_events(platform: Platform, account: Account, before: list[Event]) -> list[Event]:
    events = await all_events(platform, account)
    assert [e.id for e in events[: len(before)]] == [e.id for e in before]
    return events[len(before) :]


async def stored(platform: Platform, account: Account, event: Event) -> Event:
    async with platform.store.read() as tx:
        found = await tx.get_event(tenant_of(account), event.id)
    assert found is not None
    return found


def api_only_removed(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """The API resource without the fields that only the API shows."""
    data = json.loads(json.dumps(data))
    if kind == "customer":
        assert list(data)[-1] == "source"
        del data["source"]
    elif kind == "order":
        assert list(data)[-1] == "notes"
        del data["notes"]
        for item in data["lineItems"]:
            assert list(item)[-2:] == ["productVariantId", "productVariant"]
            del item["productVariantId"], item["productVariant"]
    return data


async def assert_one_event(
    platform: Platform,
    account: Account,
    before: list[Event],
    event_type: str,
    expected: bytes,
    created_at: int,
    data: dict[str, Any] | None = None,
    kind: str = "",
) -> Event:
    added = await new_events(platform, account, before)
    assert [e.type for e in added] == [event_type]
    event = added[0]
    assert event.id.startswith("evt_")
    assert event.payload == expected
    assert b"\\u" not in event.payload
    assert b"\\/" not in event.payload
    assert event.created_at == created_at
    assert await stored(platform, account, event) == event
    if data is not None:
        assert event.payload == compact(api_only_removed(data, kind))
    return event


# -- customers ---------------------------------------------------------------------------------

CUSTOMER_BODY = {
    "email": "zoe/shop@example.com",
    "phoneNumber": "0812-3456-7890",
    "firstName": NAME,
    "lastName": "Smith/Jones",
    "imageUrl": "https://cdn.example.com/img/zoe.png",
    "tags": ["vip/gold", "new"],
    "addresses": [
        {
            "firstName": NAME,
            "phone": "0812-3456-7890",
            "address1": "Jl. Sudirman No. 1/2",
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10110",
            "mainAddress": True,
        }
    ],
}

CUSTOMER_CREATED = (
    '{"id":"@cust","email":"zoe/shop@example.com","phoneNumber":"+6281234567890",'
    '"firstName":"Zoë 😀","lastName":"Smith/Jones",'
    '"imageUrl":"https://cdn.example.com/img/zoe.png","tags":["vip/gold","new"],'
    '"addresses":[{"id":"@addr","firstName":"Zoë 😀","lastName":null,'
    '"phone":"+6281234567890","address1":"Jl. Sudirman No. 1/2","address2":null,'
    '"city":"Jakarta","province":"DKI Jakarta","country":"ID","zip":"10110",'
    '"mainAddress":true}],'
    '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-15T10:30:00.123Z"}'
)


async def create_customer(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(CUSTOMERS, json=body or CUSTOMER_BODY, headers=account.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_post_customer_writes_customer_created(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    before = await all_events(platform, account)
    data = await create_customer(client, account)
    expected = fill(CUSTOMER_CREATED, cust=data["id"], addr=data["addresses"][0]["id"])
    await assert_one_event(
        platform, account, before, "customer.created", expected, T0, data, "customer"
    )
    assert data["source"] == "api"


async def test_put_customer_writes_customer_updated(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    created = await create_customer(client, account)
    address_id = created["addresses"][0]["id"]
    clock.now = T1
    before = await all_events(platform, account)
    response = await client.put(
        f"{CUSTOMERS}/{created['id']}",
        json={
            "email": "zoe.updated/x@example.com",
            "imageUrl": None,
            "tags": ["vip"],
            "addresses": [
                {"id": address_id, "address1": "Jl. Thamrin 9/10", "city": "Jakarta"},
                {"address1": "Rue de l'Église 3", "country": "FR"},
            ],
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    new_address = data["addresses"][1]["id"]
    assert new_address.startswith("addr_")
    assert new_address != address_id
    expected = fill(
        '{"id":"@cust","email":"zoe.updated/x@example.com","phoneNumber":"+6281234567890",'
        '"firstName":"Zoë 😀","lastName":"Smith/Jones","imageUrl":null,"tags":["vip"],'
        '"addresses":[{"id":"@a1","firstName":null,"lastName":null,"phone":null,'
        '"address1":"Jl. Thamrin 9/10","address2":null,"city":"Jakarta","province":null,'
        '"country":null,"zip":null,"mainAddress":null},'
        '{"id":"@a2","firstName":null,"lastName":null,"phone":null,'
        '"address1":"Rue de l\'Église 3","address2":null,"city":null,"province":null,'
        '"country":"FR","zip":null,"mainAddress":null}],'
        '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-16T08:00:00.000Z"}',
        cust=created["id"],
        a1=address_id,
        a2=new_address,
    )
    await assert_one_event(
        platform, account, before, "customer.updated", expected, T1, data, "customer"
    )


async def test_delete_customer_writes_customer_deleted(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    created = await create_customer(client, account)
    clock.now = T2
    before = await all_events(platform, account)
    response = await client.delete(f"{CUSTOMERS}/{created['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"id": created["id"]}}
    expected = fill('{"id":"@cust"}', cust=created["id"])
    await assert_one_event(
        platform, account, before, "customer.deleted", expected, T2, response.json()["data"]
    )


# -- products ----------------------------------------------------------------------------------

PRODUCT_BODY = {
    "name": f"{NAME} Tee/Shirt",
    "description": "Soft/cotton “premium”",
    "tags": ["apparel"],
    "types": ["shirt"],
    "variants": [
        {"title": "Default", "price": 150000, "sku": "TSH/001"},
        {"title": "Large", "price": 19.99, "compareAtPrice": 24.5},
    ],
}

PRODUCT_CREATED = (
    '{"id":"@prod","productId":"PROD-001","name":"Zoë 😀 Tee/Shirt",'
    '"description":"Soft/cotton “premium”","media":null,"status":null,'
    '"variants":[{"id":"@v1","key":"Default","price":150000,"compareAtPrice":null,'
    '"inventorySku":"TSH/001","media":null},'
    '{"id":"@v2","key":"Large","price":19.99,"compareAtPrice":24.5,"inventorySku":null,'
    '"media":null}],'
    '"options":[],"tags":["apparel"],"types":["shirt"],'
    '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-15T10:30:00.123Z"}'
)


async def create_product(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(PRODUCTS, json=body or PRODUCT_BODY, headers=account.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def product_ids(data: dict[str, Any]) -> dict[str, str]:
    return {
        "prod": data["id"],
        **{f"v{i + 1}": v["id"] for i, v in enumerate(data["variants"])},
    }


async def test_post_product_writes_product_created(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    before = await all_events(platform, account)
    data = await create_product(client, account)
    expected = fill(PRODUCT_CREATED, **product_ids(data))
    await assert_one_event(platform, account, before, "product.created", expected, T0, data)


async def test_put_product_writes_product_updated(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    created = await create_product(client, account)
    clock.now = T1
    before = await all_events(platform, account)
    response = await client.put(
        f"{PRODUCTS}/{created['id']}",
        json={
            "name": "Tee/Shirt (Updated)",
            "description": None,
            "status": "active",
            "tags": [],
            "variants": [{"title": "XL", "price": 0.3, "sku": "X/L", "compareAtPrice": 1000}],
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["variants"][0]["id"] not in {v["id"] for v in created["variants"]}
    expected = fill(
        '{"id":"@prod","productId":"PROD-001","name":"Tee/Shirt (Updated)",'
        '"description":null,"media":null,"status":"active",'
        '"variants":[{"id":"@v1","key":"XL","price":0.3,"compareAtPrice":1000,'
        '"inventorySku":"X/L","media":null}],'
        '"options":[],"tags":[],"types":["shirt"],'
        '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-16T08:00:00.000Z"}',
        **product_ids(data),
    )
    await assert_one_event(platform, account, before, "product.updated", expected, T1, data)


async def test_delete_product_writes_product_deleted(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    created = await create_product(client, account)
    clock.now = T2
    before = await all_events(platform, account)
    response = await client.delete(f"{PRODUCTS}/{created['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"id": created["id"]}}
    expected = fill('{"id":"@prod"}', prod=created["id"])
    await assert_one_event(
        platform, account, before, "product.deleted", expected, T2, response.json()["data"]
    )


# -- orders ------------------------------------------------------------------------------------

SHIPPING = {
    "firstName": NAME,
    "lastName": "Smith/Jones",
    "phone": "0812-3456-7890",
    "address1": "Jl. Sudirman No. 1/2",
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "zip": "10110",
}

SHIPPING_JSON = (
    '"shippingAddress":{"firstName":"Zoë 😀","lastName":"Smith/Jones",'
    '"phone":"+6281234567890","address1":"Jl. Sudirman No. 1/2","address2":null,'
    '"city":"Jakarta","province":"DKI Jakarta","country":"ID","zip":"10110"}'
)


def order_body(product: dict[str, Any], **customer: Any) -> dict[str, Any]:
    return {
        "lineItems": [
            {"productVariantId": product["variants"][0]["id"], "quantity": 2},
            {"productVariantId": product["variants"][1]["id"], "quantity": 3},
        ],
        "shippingAddress": SHIPPING,
        "notes": "leave at the door/gate",
        "tags": ["web/shop"],
        **customer,
    }


def order_ids(data: dict[str, Any]) -> dict[str, str]:
    return {
        "order": data["id"],
        "cust": data["customer"]["id"],
        **{f"li{i + 1}": item["id"] for i, item in enumerate(data["lineItems"])},
    }


def order_created(customer_json: str) -> str:
    return (
        '{"id":"@order","orderId":"ORD-001","orderNumber":"1001","status":"active",'
        '"fulfillmentStatus":"unfulfilled","financialStatus":"pending",'
        '"total":300059.97,"currency":null,' + customer_json + ","
        '"lineItems":[{"id":"@li1","quantity":2,"price":150000,"title":"Zoë 😀 Tee/Shirt"},'
        '{"id":"@li2","quantity":3,"price":19.99,"title":"Zoë 😀 Tee/Shirt - Large"}],'
        + SHIPPING_JSON
        + ',"tags":["web/shop"],'
        '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-15T10:30:00.123Z"}'
    )


async def test_post_order_writes_order_created(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    customer = await create_customer(client, account)
    product = await create_product(client, account)
    before = await all_events(platform, account)
    response = await client.post(
        ORDERS, json=order_body(product, customerId=customer["id"]), headers=account.headers
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["notes"] == "leave at the door/gate"
    expected = fill(
        order_created(
            '"customer":{"id":"@cust","firstName":"Zoë 😀","lastName":"Smith/Jones",'
            '"email":"zoe/shop@example.com","phoneNumber":"+6281234567890"}'
        ),
        **order_ids(data),
    )
    assert data["customer"]["id"] == customer["id"]
    await assert_one_event(platform, account, before, "order.created", expected, T0, data, "order")


async def test_post_order_with_new_customer_writes_customer_then_order(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    product = await create_product(client, account)
    before = await all_events(platform, account)
    inline = {"firstName": NAME, "lastName": None, "phone": "0812-3456-7890"}
    inline["email"] = "new/buyer@example.com"
    response = await client.post(
        ORDERS, json=order_body(product, customer=inline), headers=account.headers
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    ids = order_ids(data)
    added = await new_events(platform, account, before)
    assert [e.type for e in added] == ["customer.created", "order.created"]
    assert [e.created_at for e in added] == [T0, T0]
    assert added[0].payload == fill(
        '{"id":"@cust","email":"new/buyer@example.com","phoneNumber":"+6281234567890",'
        '"firstName":"Zoë 😀","lastName":null,"imageUrl":null,"tags":[],"addresses":[],'
        '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-15T10:30:00.123Z"}',
        cust=ids["cust"],
    )
    assert added[1].payload == fill(
        order_created(
            '"customer":{"id":"@cust","firstName":"Zoë 😀","lastName":null,'
            '"email":"new/buyer@example.com","phoneNumber":"+6281234567890"}'
        ),
        **ids,
    )
    assert added[1].payload == compact(api_only_removed(data, "order"))
    customer = await client.get(f"{CUSTOMERS}/{ids['cust']}", headers=account.headers)
    assert customer.status_code == 200
    assert customer.json()["data"]["source"] == "order"
    assert added[0].payload == compact(api_only_removed(customer.json()["data"], "customer"))


async def test_post_order_with_known_phone_reuses_the_customer(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    existing = await create_customer(client, account)
    product = await create_product(client, account)
    before = await all_events(platform, account)
    inline = {"firstName": "Someone", "lastName": "Else", "phone": "+62 812-3456-7890"}
    response = await client.post(
        ORDERS, json=order_body(product, customer=inline), headers=account.headers
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["customer"]["id"] == existing["id"]
    expected = fill(
        order_created(
            '"customer":{"id":"@cust","firstName":"Zoë 😀","lastName":"Smith/Jones",'
            '"email":"zoe/shop@example.com","phoneNumber":"+6281234567890"}'
        ),
        **order_ids(data),
    )
    await assert_one_event(platform, account, before, "order.created", expected, T0, data, "order")
    listed = await client.get(CUSTOMERS, headers=account.headers)
    assert listed.json()["meta"]["total"] == 1


async def test_put_order_writes_order_updated(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    customer = await create_customer(client, account)
    product = await create_product(client, account)
    created = await client.post(
        ORDERS, json=order_body(product, customerId=customer["id"]), headers=account.headers
    )
    assert created.status_code == 201, created.text
    clock.now = T1
    before = await all_events(platform, account)
    response = await client.put(
        f"{ORDERS}/{created.json()['data']['id']}",
        json={
            "status": "cancelled",
            "fulfillmentStatus": "fulfilled",
            "financialStatus": "paid",
            "notes": "changed/notes",
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["notes"] == "changed/notes"
    expected = fill(
        '{"id":"@order","orderId":"ORD-001","orderNumber":"1001","status":"cancelled",'
        '"fulfillmentStatus":"fulfilled","financialStatus":"paid",'
        '"total":300059.97,"currency":null,'
        '"customer":{"id":"@cust","firstName":"Zoë 😀","lastName":"Smith/Jones",'
        '"email":"zoe/shop@example.com","phoneNumber":"+6281234567890"},'
        '"lineItems":[{"id":"@li1","quantity":2,"price":150000,"title":"Zoë 😀 Tee/Shirt"},'
        '{"id":"@li2","quantity":3,"price":19.99,"title":"Zoë 😀 Tee/Shirt - Large"}],'
        + SHIPPING_JSON
        + ',"tags":["web/shop"],'
        '"createdAt":"2024-01-15T10:30:00.123Z","updatedAt":"2024-01-16T08:00:00.000Z"}',
        **order_ids(data),
    )
    await assert_one_event(platform, account, before, "order.updated", expected, T1, data, "order")


async def test_events_are_per_tenant_and_mode(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    clock.now = T0
    response = await client.post(
        CUSTOMERS, json={"email": "test/mode@example.com"}, headers=account.test_headers
    )
    assert response.status_code == 201, response.text
    assert await all_events(platform, account) == []
    in_test = await all_events(platform, account, "test")
    assert [e.type for e in in_test] == ["customer.created"]
    async with platform.store.read() as tx:
        assert await tx.get_event(tenant_of(account), in_test[0].id) is None


# -- a failure inside the transaction leaves nothing behind -------------------------------------


class LogRecorder:
    """Stands in for the API's error logger: records instead of rendering tracebacks (slow)."""

    def __init__(self) -> None:
        self.exceptions: list[tuple[str, dict[str, Any]]] = []

    def exception(self, event: str, **fields: Any) -> None:
        self.exceptions.append((event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        raise AssertionError(f"unexpected warning {event}: {fields}")


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr("bitbybit.api.errors.log", recorder)
    return recorder


@pytest.fixture
def broken_outbox(monkeypatch: pytest.MonkeyPatch, logged: LogRecorder) -> Any:
    """Call the returned function to make writing any event fail from then on."""

    def breaker() -> None:
        async def insert_event(self: SqlTx, tenant: Tenant, event: Event) -> None:
            raise RuntimeError("outbox is down")

        monkeypatch.setattr(SqlTx, "insert_event", insert_event)

    return breaker


def assert_internal_error(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.json() == {
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "an internal error occurred; it has been logged",
            "requestId": response.headers["x-request-id"],
        }
    }
    assert "outbox is down" not in response.text
    assert "Traceback" not in response.text


async def test_failed_event_rolls_back_customer_changes(
    client: httpx.AsyncClient,
    account: Account,
    platform: Platform,
    broken_outbox: Any,
    logged: LogRecorder,
) -> None:
    existing = await create_customer(client, account)
    before = await all_events(platform, account)
    broken_outbox()

    created = await client.post(
        CUSTOMERS, json={"email": "ghost@example.com"}, headers=account.headers
    )
    assert_internal_error(created)
    updated = await client.put(
        f"{CUSTOMERS}/{existing['id']}",
        json={"firstName": "Changed", "addresses": []},
        headers=account.headers,
    )
    assert_internal_error(updated)
    deleted = await client.delete(f"{CUSTOMERS}/{existing['id']}", headers=account.headers)
    assert_internal_error(deleted)

    listed = await client.get(CUSTOMERS, headers=account.headers)
    assert listed.status_code == 200
    assert listed.json()["data"] == [existing]
    assert await all_events(platform, account) == before
    assert [event for event, _ in logged.exceptions] == ["internal_error"] * 3


async def test_failed_event_rolls_back_product_changes(
    client: httpx.AsyncClient,
    account: Account,
    platform: Platform,
    broken_outbox: Any,
    logged: LogRecorder,
) -> None:
    existing = await create_product(client, account)
    before = await all_events(platform, account)
    broken_outbox()

    created = await client.post(
        PRODUCTS,
        json={"name": "Ghost", "variants": [{"title": "Default", "price": 1}]},
        headers=account.headers,
    )
    assert_internal_error(created)
    updated = await client.put(
        f"{PRODUCTS}/{existing['id']}",
        json={"name": "Changed", "variants": [{"title": "Default", "price": 2}]},
        headers=account.headers,
    )
    assert_internal_error(updated)
    deleted = await client.delete(f"{PRODUCTS}/{existing['id']}", headers=account.headers)
    assert_internal_error(deleted)

    listed = await client.get(PRODUCTS, headers=account.headers)
    assert listed.status_code == 200
    assert listed.json()["data"] == [existing]
    assert await all_events(platform, account) == before
    assert [event for event, _ in logged.exceptions] == ["internal_error"] * 3


async def test_failed_event_rolls_back_the_counter(
    client: httpx.AsyncClient,
    account: Account,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    logged: LogRecorder,
) -> None:
    original = SqlTx.insert_event

    async def fail_once(self: SqlTx, tenant: Tenant, event: Event) -> None:
        monkeypatch.setattr(SqlTx, "insert_event", original)
        raise RuntimeError("outbox is down")

    monkeypatch.setattr(SqlTx, "insert_event", fail_once)
    body = {"name": "Mug", "variants": [{"title": "Default", "price": 1}]}
    failed = await client.post(PRODUCTS, json=body, headers=account.headers)
    assert_internal_error(failed)
    created = await create_product(client, account, body)
    assert created["productId"] == "PROD-001"
    assert [event for event, _ in logged.exceptions] == ["internal_error"]
    assert [e.type for e in await all_events(platform, account)] == ["product.created"]


async def test_failed_event_rolls_back_order_changes(
    client: httpx.AsyncClient,
    account: Account,
    platform: Platform,
    broken_outbox: Any,
    logged: LogRecorder,
) -> None:
    customer = await create_customer(client, account)
    product = await create_product(client, account)
    placed = await client.post(
        ORDERS, json=order_body(product, customerId=customer["id"]), headers=account.headers
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()["data"]
    before = await all_events(platform, account)
    broken_outbox()

    created = await client.post(
        ORDERS, json=order_body(product, customerId=customer["id"]), headers=account.headers
    )
    assert_internal_error(created)
    inline = {"firstName": "New", "email": "brand.new@example.com"}
    with_customer = await client.post(
        ORDERS, json=order_body(product, customer=inline), headers=account.headers
    )
    assert_internal_error(with_customer)
    updated = await client.put(
        f"{ORDERS}/{order['id']}",
        json={"status": "cancelled", "notes": "changed"},
        headers=account.headers,
    )
    assert_internal_error(updated)

    orders = await client.get(ORDERS, headers=account.headers)
    assert orders.json()["data"] == [order]
    customers = await client.get(CUSTOMERS, headers=account.headers)
    assert [c["id"] for c in customers.json()["data"]] == [customer["id"]]
    assert await all_events(platform, account) == before
    assert [event for event, _ in logged.exceptions] == ["internal_error"] * 3


# -- a refused request writes nothing -----------------------------------------------------------


async def test_refused_requests_write_nothing(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    customer = await create_customer(client, account)
    product = await create_product(client, account)
    before = await all_events(platform, account)

    duplicate = await client.post(
        CUSTOMERS, json={"email": "ZOE/SHOP@example.com"}, headers=account.headers
    )
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["error"]["code"] == "CONFLICT"

    other = await create_customer(client, account, {"email": "other@example.com"})
    before = await all_events(platform, account)
    clash = await client.put(
        f"{CUSTOMERS}/{other['id']}",
        json={"email": "Zoe/Shop@Example.com"},
        headers=account.headers,
    )
    assert clash.status_code == 409, clash.text

    body = order_body(product, customer={"firstName": "New", "email": "fresh@example.com"})
    body["lineItems"].append({"productVariantId": "var_missing", "quantity": 1})
    unknown_variant = await client.post(ORDERS, json=body, headers=account.headers)
    assert unknown_variant.status_code == 400, unknown_variant.text
    assert unknown_variant.json()["error"]["details"] == [
        {"field": "lineItems[2].productVariantId", "message": "no variant var_missing"}
    ]

    # The new customer is inserted (with its event) before the shipping phone is refused:
    # the whole transaction must go.
    bad_phone = order_body(product, customer={"firstName": "New", "email": "fresh@example.com"})
    bad_phone["shippingAddress"] = {**SHIPPING, "phone": "12345"}
    refused = await client.post(ORDERS, json=bad_phone, headers=account.headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "shippingAddress.phone"

    missing_customer = await client.post(
        ORDERS, json=order_body(product, customerId="cust_missing"), headers=account.headers
    )
    assert missing_customer.status_code == 400, missing_customer.text

    assert await all_events(platform, account) == before
    customers = await client.get(CUSTOMERS, headers=account.headers)
    assert {c["id"] for c in customers.json()["data"]} == {customer["id"], other["id"]}
    assert (await client.get(ORDERS, headers=account.headers)).json()["meta"]["total"] == 0
    fetched = await client.get(f"{CUSTOMERS}/{other['id']}", headers=account.headers)
    assert fetched.json()["data"] == other


async def test_failed_event_releases_the_idempotency_key(
    client: httpx.AsyncClient,
    account: Account,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    logged: LogRecorder,
) -> None:
    original = SqlTx.insert_event

    async def fail_once(self: SqlTx, tenant: Tenant, event: Event) -> None:
        monkeypatch.setattr(SqlTx, "insert_event", original)
        raise RuntimeError("outbox is down")

    monkeypatch.setattr(SqlTx, "insert_event", fail_once)
    headers = {**account.headers, "Idempotency-Key": "order-42"}
    body = {"email": "once@example.com"}
    failed = await client.post(CUSTOMERS, json=body, headers=headers)
    assert_internal_error(failed)
    assert await all_events(platform, account) == []
    retried = await client.post(CUSTOMERS, json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    replayed = await client.post(CUSTOMERS, json=body, headers=headers)
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == retried.content
    events = await all_events(platform, account)
    assert [e.type for e in events] == ["customer.created"]
    assert events[0].payload == compact(api_only_removed(retried.json()["data"], "customer"))


async def test_a_put_that_changes_nothing_writes_nothing_and_emits_no_event(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    """The same values again (or an empty body): 200 with the resource as it was, its
    ``updatedAt`` unchanged, and no ``*.updated`` event (receivers would see a change that is
    not one)."""
    clock.now = T0
    customer = await create_customer(client, account)
    product = await create_product(client, account)
    order = await client.post(
        ORDERS, json=order_body(product, customerId=customer["id"]), headers=account.headers
    )
    assert order.status_code == 201, order.text
    created = order.json()["data"]
    clock.now = T1
    before = await all_events(platform, account)
    for path, body, original in (
        (
            f"{ORDERS}/{created['id']}",
            {"status": created["status"], "notes": created["notes"]},
            created,
        ),
        (f"{ORDERS}/{created['id']}", {}, created),
        (f"{CUSTOMERS}/{customer['id']}", {"firstName": customer["firstName"]}, customer),
        (f"{PRODUCTS}/{product['id']}", {"name": product["name"]}, product),
    ):
        response = await client.put(path, json=body, headers=account.headers)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == original, path
    assert await all_events(platform, account) == before
    # a real change still is one
    changed = await client.put(
        f"{ORDERS}/{created['id']}", json={"notes": "changed"}, headers=account.headers
    )
    assert changed.status_code == 200, changed.text
    assert [e.type for e in await new_events(platform, account, before)] == ["order.updated"]
