"""Customers, products and orders through the Open API (SPEC §3), on both dialects."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bitbybit.models import Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate
from bitbybit.services import customers
from bitbybit.store import Tx
from tests.conftest import CUSTOMERS, ORDERS, PRODUCTS, Account, FakeClock, make_account

T0 = 1705314600000  # 2024-01-15T10:30:00.000Z


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def get_json(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_validation_error(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [detail["field"] for detail in error["details"]], error


# -- customers ---------------------------------------------------------------------------------


async def seed_customers(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> dict[str, dict[str, Any]]:
    """Five customers, one minute apart, from several sources."""
    clock.now = T0
    made: dict[str, dict[str, Any]] = {}
    for key, body in (
        ("zoe", {"firstName": "Zoë", "lastName": "Ånström", "email": "zoe@shop.example"}),
        ("bob", {"firstName": "Bob", "email": "BOB.Builder@Example.org", "tags": ["vip"]}),
        ("cat", {"firstName": "Cat", "phoneNumber": "0811-2222-3333", "tags": ["gold", "x"]}),
    ):
        made[key] = await post(client, CUSTOMERS, body, account.headers)
        clock.advance(60_000)
    tenant = Tenant(account.company.id, "live")
    for key, source, data in (
        ("dan", "dashboard", CustomerCreate(firstName="Dan", email="dan@example.net")),
        ("eve", "whatsapp", CustomerCreate(firstName="Eve", phoneNumber="+6281311112222")),
    ):

        def insert(tx: Tx, data: CustomerCreate = data, source: str = source) -> Any:
            return customers.insert(platform, tx, tenant, data, source)

        customer = await platform.run(insert)
        fetched = await get_json(client, f"{CUSTOMERS}/{customer.id}", account.headers)
        made[key] = fetched["data"]
        clock.advance(60_000)
    return made


def names(body: dict[str, Any]) -> list[str]:
    return [item["firstName"] for item in body["data"]]


async def test_customer_list_filters_sort_and_pages(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    made = await seed_customers(client, account, platform, clock)
    assert [made[k]["source"] for k in ("zoe", "bob", "cat", "dan", "eve")] == [
        "api",
        "api",
        "api",
        "dashboard",
        "whatsapp",
    ]
    h = account.headers

    everything = await get_json(client, CUSTOMERS, h)
    assert names(everything) == ["Eve", "Dan", "Cat", "Bob", "Zoë"]  # updatedAt:desc
    assert everything["meta"] == {"page": 1, "limit": 20, "total": 5, "hasNextPage": False}

    # search: name, email or phone, case-insensitive
    assert names(await get_json(client, CUSTOMERS, h, search="ZOË")) == ["Zoë"]
    assert names(await get_json(client, CUSTOMERS, h, search="ånSTRÖM")) == ["Zoë"]
    assert names(await get_json(client, CUSTOMERS, h, search="bob.builder@EXAMPLE")) == ["Bob"]
    assert names(await get_json(client, CUSTOMERS, h, search="example.org")) == ["Bob"]
    assert names(await get_json(client, CUSTOMERS, h, search="6281122")) == ["Cat"]
    assert names(await get_json(client, CUSTOMERS, h, search="+62813")) == ["Eve"]
    assert names(await get_json(client, CUSTOMERS, h, search="100%_")) == []
    found = await get_json(
        client, CUSTOMERS, h, search="e"
    )  # zoë@shop.example, bob.., Eve, dan@example.net
    assert set(names(found)) == {"Zoë", "Bob", "Dan", "Eve"}

    # source: comma list
    assert names(await get_json(client, CUSTOMERS, h, source="dashboard")) == ["Dan"]
    assert names(await get_json(client, CUSTOMERS, h, source="whatsapp,dashboard")) == [
        "Eve",
        "Dan",
    ]
    assert names(await get_json(client, CUSTOMERS, h, source="order")) == []
    assert_validation_error(
        await client.get(CUSTOMERS, params={"source": "api,fax"}, headers=h), "source"
    )

    # tags: any match
    assert names(await get_json(client, CUSTOMERS, h, tags="vip")) == ["Bob"]
    assert names(await get_json(client, CUSTOMERS, h, tags="gold,vip")) == ["Cat", "Bob"]
    assert names(await get_json(client, CUSTOMERS, h, tags="nobody")) == []

    # combined filters are ANDed
    assert names(await get_json(client, CUSTOMERS, h, tags="gold,vip", search="bob")) == ["Bob"]

    # sort
    assert names(await get_json(client, CUSTOMERS, h, sort="firstName:asc")) == [
        "Bob",
        "Cat",
        "Dan",
        "Eve",
        "Zoë",
    ]
    assert names(await get_json(client, CUSTOMERS, h, sort="firstName:desc"))[0] == "Zoë"
    assert names(await get_json(client, CUSTOMERS, h, sort="createdAt:asc"))[0] == "Zoë"
    assert_validation_error(
        await client.get(CUSTOMERS, params={"sort": "phoneNumber:asc"}, headers=h), "sort"
    )
    assert_validation_error(
        await client.get(CUSTOMERS, params={"sort": "firstName:up"}, headers=h), "sort"
    )

    # an update moves a customer to the front of the default order
    clock.advance(60_000)
    touched = await client.put(
        f"{CUSTOMERS}/{made['zoe']['id']}", json={"tags": ["vip"]}, headers=h
    )
    assert touched.status_code == 200, touched.text
    assert names(await get_json(client, CUSTOMERS, h)) == ["Zoë", "Eve", "Dan", "Cat", "Bob"]
    assert names(await get_json(client, CUSTOMERS, h, tags="vip")) == ["Zoë", "Bob"]

    # pages
    first = await get_json(client, CUSTOMERS, h, limit=2)
    assert names(first) == ["Zoë", "Eve"]
    assert first["meta"] == {"page": 1, "limit": 2, "total": 5, "hasNextPage": True}
    second = await get_json(client, CUSTOMERS, h, limit=2, page=2)
    assert names(second) == ["Dan", "Cat"]
    assert second["meta"]["hasNextPage"] is True
    last = await get_json(client, CUSTOMERS, h, limit=2, page=3)
    assert names(last) == ["Bob"]
    assert last["meta"] == {"page": 3, "limit": 2, "total": 5, "hasNextPage": False}
    beyond = await get_json(client, CUSTOMERS, h, limit=2, page=4)
    assert beyond["data"] == []
    assert beyond["meta"]["total"] == 5
    filtered = await get_json(client, CUSTOMERS, h, source="api", limit=1)
    assert filtered["meta"] == {"page": 1, "limit": 1, "total": 3, "hasNextPage": True}
    for params in ({"limit": 0}, {"limit": 101}, {"page": 0}):
        response = await client.get(CUSTOMERS, params=params, headers=h)
        assert response.status_code == 400, (params, response.text)

    # the list shows the same resource as GET /customers/{id}
    one = await get_json(client, f"{CUSTOMERS}/{made['bob']['id']}", h)
    assert one["data"] in (await get_json(client, CUSTOMERS, h))["data"]


async def test_phone_numbers_use_the_company_country(
    client: httpx.AsyncClient, account: Account, platform: Platform
) -> None:
    us = await make_account(platform, "Initech", "US")
    international = await post(client, CUSTOMERS, {"phoneNumber": "+1 650-253-0000"}, us.headers)
    assert international["phoneNumber"] == "+16502530000"
    local = await post(client, CUSTOMERS, {"phoneNumber": "(650) 253-0001"}, us.headers)
    assert local["phoneNumber"] == "+16502530001"
    same = await client.post(CUSTOMERS, json={"phoneNumber": "650-253-0000"}, headers=us.headers)
    assert same.status_code == 409, same.text  # the same number, written locally
    assert same.json()["error"]["code"] == "CONFLICT"

    indonesian = await post(client, CUSTOMERS, {"phoneNumber": "0812-3456-7890"}, account.headers)
    assert indonesian["phoneNumber"] == "+6281234567890"
    # local digits are read in the company's country: an Indonesian mobile is no US number
    other = await client.post(CUSTOMERS, json={"phoneNumber": "0812-3456-7890"}, headers=us.headers)
    assert_validation_error(other, "phoneNumber")

    for raw in ("12345", "not a phone", "+1 000-000-0000"):
        refused = await client.post(CUSTOMERS, json={"phoneNumber": raw}, headers=account.headers)
        assert_validation_error(refused, "phoneNumber")
    address = await client.post(
        CUSTOMERS,
        json={"email": "a@example.com", "addresses": [{"address1": "x", "phone": "12345"}]},
        headers=account.headers,
    )
    assert_validation_error(address, "addresses[0].phone")
    put = await client.put(
        f"{CUSTOMERS}/{indonesian['id']}", json={"phoneNumber": "999"}, headers=account.headers
    )
    assert_validation_error(put, "phoneNumber")
    moved = await client.put(
        f"{CUSTOMERS}/{indonesian['id']}",
        json={"phoneNumber": "+62 813-1111-2222"},
        headers=account.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["data"]["phoneNumber"] == "+6281311112222"


async def test_customer_create_needs_email_or_phone(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(CUSTOMERS, json={"firstName": "Nobody"}, headers=account.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    bad_email = await client.post(CUSTOMERS, json={"email": "nope"}, headers=account.headers)
    assert_validation_error(bad_email, "email")
    no_address1 = await client.post(
        CUSTOMERS,
        json={"email": "a@example.com", "addresses": [{"city": "Jakarta"}]},
        headers=account.headers,
    )
    assert_validation_error(no_address1, "addresses[0].address1")


async def test_customer_partial_update(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    clock.now = T0
    created = await post(
        client,
        CUSTOMERS,
        {
            "email": "jo@example.com",
            "phoneNumber": "081234567890",
            "firstName": "Jo",
            "lastName": "Doe",
            "imageUrl": "https://img.example.com/jo.png",
            "tags": ["a", "b"],
        },
        account.headers,
    )
    url = f"{CUSTOMERS}/{created['id']}"
    clock.advance(1000)
    renamed = await client.put(url, json={"firstName": "Joanna"}, headers=account.headers)
    assert renamed.status_code == 200, renamed.text
    data = renamed.json()["data"]
    assert data == {
        **created,
        "firstName": "Joanna",
        "updatedAt": "2024-01-15T10:30:01.000Z",
    }

    cleared = await client.put(url, json={"imageUrl": None}, headers=account.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["data"]["imageUrl"] is None
    assert cleared.json()["data"]["lastName"] == "Doe"
    assert cleared.json()["data"]["tags"] == ["a", "b"]

    no_email = await client.put(url, json={"email": None}, headers=account.headers)
    assert no_email.status_code == 200, no_email.text
    assert no_email.json()["data"]["email"] is None
    assert no_email.json()["data"]["phoneNumber"] == "+6281234567890"

    unreachable = await client.put(url, json={"phoneNumber": None}, headers=account.headers)
    assert_validation_error(unreachable, "email")
    both = await client.put(url, json={"email": None, "phoneNumber": None}, headers=account.headers)
    assert_validation_error(both, "email")
    unchanged = await get_json(client, url, account.headers)
    assert unchanged["data"] == no_email.json()["data"]

    unknown = await client.put(url, json={"nickname": "J"}, headers=account.headers)
    assert unknown.status_code == 400, unknown.text
    missing = await client.put(
        f"{CUSTOMERS}/cust_missing", json={"firstName": "X"}, headers=account.headers
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_customer_addresses_are_replaced_keeping_sent_ids(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await post(
        client,
        CUSTOMERS,
        {
            "email": "addr@example.com",
            "addresses": [
                {"address1": "First 1", "city": "Jakarta", "mainAddress": True},
                {"address1": "Second 2"},
            ],
        },
        account.headers,
    )
    first, second = created["addresses"]
    assert first["id"].startswith("addr_")
    assert second["id"].startswith("addr_")
    assert first["id"] != second["id"]
    assert first == {
        "id": first["id"],
        "firstName": None,
        "lastName": None,
        "phone": None,
        "address1": "First 1",
        "address2": None,
        "city": "Jakarta",
        "province": None,
        "country": None,
        "zip": None,
        "mainAddress": True,
    }
    other = await post(
        client,
        CUSTOMERS,
        {"email": "other@example.com", "addresses": [{"address1": "Elsewhere"}]},
        account.headers,
    )
    foreign_id = other["addresses"][0]["id"]

    url = f"{CUSTOMERS}/{created['id']}"
    response = await client.put(
        url,
        json={
            "addresses": [
                {"id": second["id"], "address1": "Second 2, moved", "zip": "10110"},
                {"address1": "Third 3"},
                {"id": foreign_id, "address1": "Not yours"},
            ]
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    kept, added, stolen = response.json()["data"]["addresses"]
    assert kept["id"] == second["id"]
    assert kept["address1"] == "Second 2, moved"
    assert kept["zip"] == "10110"
    assert added["id"].startswith("addr_")
    assert stolen["id"].startswith("addr_")
    assert len({kept["id"], added["id"], stolen["id"], first["id"], foreign_id}) == 5

    emptied = await client.put(url, json={"addresses": []}, headers=account.headers)
    assert emptied.json()["data"]["addresses"] == []
    assert emptied.json()["data"]["email"] == "addr@example.com"


async def test_duplicate_email_or_phone_is_a_conflict(
    client: httpx.AsyncClient, account: Account
) -> None:
    jo = await post(
        client,
        CUSTOMERS,
        {"email": "Jo.Doe@Example.com", "phoneNumber": "081234567890"},
        account.headers,
    )
    assert jo["email"] == "Jo.Doe@Example.com"  # stored as given
    for body in (
        {"email": "jo.doe@example.COM"},
        {"phoneNumber": "+6281234567890"},
        {"email": "fresh@example.com", "phoneNumber": "0812 3456 7890"},
    ):
        response = await client.post(CUSTOMERS, json=body, headers=account.headers)
        assert response.status_code == 409, (body, response.text)
        assert response.json()["error"]["code"] == "CONFLICT"
    other = await post(client, CUSTOMERS, {"email": "other@example.com"}, account.headers)
    clash = await client.put(
        f"{CUSTOMERS}/{other['id']}", json={"email": "JO.DOE@example.com"}, headers=account.headers
    )
    assert clash.status_code == 409, clash.text
    # a customer may keep (or re-case) its own email
    own = await client.put(
        f"{CUSTOMERS}/{jo['id']}", json={"email": "jo.doe@example.com"}, headers=account.headers
    )
    assert own.status_code == 200, own.text
    # test mode is separate data
    await post(client, CUSTOMERS, {"email": "jo.doe@example.com"}, account.test_headers)
    listed = await get_json(client, CUSTOMERS, account.headers)
    assert listed["meta"]["total"] == 2


async def test_customer_delete(client: httpx.AsyncClient, account: Account) -> None:
    created = await post(client, CUSTOMERS, {"email": "bye@example.com"}, account.headers)
    url = f"{CUSTOMERS}/{created['id']}"
    deleted = await client.delete(url, headers=account.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"data": {"id": created["id"]}}
    assert (await client.get(url, headers=account.headers)).status_code == 404
    assert (await client.delete(url, headers=account.headers)).status_code == 404
    again = await client.post(CUSTOMERS, json={"email": "bye@example.com"}, headers=account.headers)
    assert again.status_code == 201, again.text


# -- products ----------------------------------------------------------------------------------


def product_body(name: str = "Tee", **extra: Any) -> dict[str, Any]:
    return {"name": name, "variants": [{"title": "Default", "price": 75000}], **extra}


async def test_product_ids_count_per_company_and_mode(
    client: httpx.AsyncClient, account: Account, platform: Platform, clock: FakeClock
) -> None:
    first = await post(client, PRODUCTS, product_body("One"), account.headers)
    clock.advance(1000)
    second = await post(client, PRODUCTS, product_body("Two"), account.headers)
    clock.advance(1000)
    assert (first["productId"], second["productId"]) == ("PROD-001", "PROD-002")
    in_test = await post(client, PRODUCTS, product_body("Test"), account.test_headers)
    assert in_test["productId"] == "PROD-001"
    other = await make_account(platform, "Globex")
    elsewhere = await post(client, PRODUCTS, product_body("Else"), other.headers)
    assert elsewhere["productId"] == "PROD-001"
    third = await post(client, PRODUCTS, product_body("Three"), account.headers)
    assert third["productId"] == "PROD-003"
    # a deleted product's number is not reused
    await client.delete(f"{PRODUCTS}/{third['id']}", headers=account.headers)
    clock.advance(1000)
    fourth = await post(client, PRODUCTS, product_body("Four"), account.headers)
    assert fourth["productId"] == "PROD-004"
    listed = await get_json(client, PRODUCTS, account.headers)
    assert [p["productId"] for p in listed["data"]] == ["PROD-004", "PROD-002", "PROD-001"]
    assert (await get_json(client, PRODUCTS, account.test_headers))["meta"]["total"] == 1


async def test_product_shape_and_exact_prices(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    clock.now = T0
    response = await client.post(
        PRODUCTS,
        json={
            "name": "Premium T-Shirt",
            "description": "High-quality cotton t-shirt",
            "tags": ["apparel"],
            "types": ["shirt"],
            "media": [{"url": "https://img.example.com/t.png"}],
            "status": "active",
            "variants": [
                {"title": "Default", "price": 75000, "sku": "TSH-001"},
                {"title": "Small", "price": 19.99, "compareAtPrice": 25, "sku": "TSH-S"},
                {"title": "Tiny", "price": 0.3, "compareAtPrice": 1234567.89},
                {"title": "Free", "price": 0},
            ],
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    assert b'"price":19.99,' in response.content
    assert b'"price":0.3,' in response.content
    assert b'"compareAtPrice":1234567.89,' in response.content
    assert b'"price":75000,' in response.content
    data = response.json()["data"]
    variants = data["variants"]
    assert [v["id"][:4] for v in variants] == ["var_"] * 4
    assert data == {
        "id": data["id"],
        "productId": "PROD-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": [{"url": "https://img.example.com/t.png"}],
        "status": "active",
        "variants": [
            {
                "id": variants[0]["id"],
                "key": "Default",
                "price": 75000,
                "compareAtPrice": None,
                "inventorySku": "TSH-001",
                "media": None,
            },
            {
                "id": variants[1]["id"],
                "key": "Small",
                "price": 19.99,
                "compareAtPrice": 25,
                "inventorySku": "TSH-S",
                "media": None,
            },
            {
                "id": variants[2]["id"],
                "key": "Tiny",
                "price": 0.3,
                "compareAtPrice": 1234567.89,
                "inventorySku": None,
                "media": None,
            },
            {
                "id": variants[3]["id"],
                "key": "Free",
                "price": 0,
                "compareAtPrice": None,
                "inventorySku": None,
                "media": None,
            },
        ],
        "options": [],
        "tags": ["apparel"],
        "types": ["shirt"],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    }
    fetched = await client.get(f"{PRODUCTS}/{data['id']}", headers=account.headers)
    assert fetched.content == response.content

    for bad in (
        {"name": "X", "variants": [{"title": "A", "price": 1.999}]},
        {"name": "X", "variants": [{"title": "A", "price": -1}]},
        {"name": "X", "variants": [{"title": "A", "price": "19.99"}]},
        {"name": "X", "variants": []},
        {"name": "", "variants": [{"title": "A", "price": 1}]},
    ):
        refused = await client.post(PRODUCTS, json=bad, headers=account.headers)
        assert refused.status_code == 400, (bad, refused.text)


async def test_product_put_replaces_variants_and_delete(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await post(
        client,
        PRODUCTS,
        {
            "name": "Mug",
            "description": "Ceramic",
            "tags": ["kitchen"],
            "variants": [{"title": "Red", "price": 10}, {"title": "Blue", "price": 11}],
        },
        account.headers,
    )
    url = f"{PRODUCTS}/{created['id']}"
    renamed = await client.put(url, json={"name": "Big Mug"}, headers=account.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["data"]["variants"] == created["variants"]
    assert renamed.json()["data"]["description"] == "Ceramic"
    assert renamed.json()["data"]["tags"] == ["kitchen"]

    replaced = await client.put(
        url,
        json={"variants": [{"title": "Green", "price": 12.5, "sku": "MUG-G"}]},
        headers=account.headers,
    )
    assert replaced.status_code == 200, replaced.text
    variants = replaced.json()["data"]["variants"]
    assert [(v["key"], v["price"], v["inventorySku"]) for v in variants] == [
        ("Green", 12.5, "MUG-G")
    ]
    assert variants[0]["id"] not in {v["id"] for v in created["variants"]}
    fetched = await get_json(client, url, account.headers)
    assert fetched["data"] == replaced.json()["data"]
    assert fetched["data"]["name"] == "Big Mug"

    assert_validation_error(
        await client.put(url, json={"status": "sold"}, headers=account.headers), "status"
    )
    missing = await client.put(
        f"{PRODUCTS}/prod_missing", json={"name": "X"}, headers=account.headers
    )
    assert missing.status_code == 404

    deleted = await client.delete(url, headers=account.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"data": {"id": created["id"]}}
    gone = await client.get(url, headers=account.headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NOT_FOUND"
    assert (await client.delete(url, headers=account.headers)).status_code == 404
    assert (await get_json(client, PRODUCTS, account.headers))["data"] == []


async def test_product_list_search_and_tags(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    await post(client, PRODUCTS, product_body("Blue Shirt", tags=["apparel"]), account.headers)
    clock.advance(1000)
    await post(client, PRODUCTS, product_body("Coffee Mug", tags=["kitchen"]), account.headers)
    clock.advance(1000)
    await post(client, PRODUCTS, product_body("Red shirt"), account.headers)
    h = account.headers

    def product_names(body: dict[str, Any]) -> list[str]:
        return [p["name"] for p in body["data"]]

    assert product_names(await get_json(client, PRODUCTS, h, search="SHIRT")) == [
        "Red shirt",
        "Blue Shirt",
    ]
    assert product_names(await get_json(client, PRODUCTS, h, search="prod-002")) == ["Coffee Mug"]
    assert product_names(await get_json(client, PRODUCTS, h, tags="kitchen,apparel")) == [
        "Coffee Mug",
        "Blue Shirt",
    ]
    assert product_names(await get_json(client, PRODUCTS, h, sort="name:asc")) == [
        "Blue Shirt",
        "Coffee Mug",
        "Red shirt",
    ]
    page = await get_json(client, PRODUCTS, h, limit=2)
    assert page["meta"] == {"page": 1, "limit": 2, "total": 3, "hasNextPage": True}


# -- orders ------------------------------------------------------------------------------------

SHIPPING = {
    "firstName": "John",
    "lastName": "Doe",
    "phone": "081234567890",
    "address1": "Jl. Sudirman No. 1",
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "zip": "10110",
}


async def make_catalogue(
    client: httpx.AsyncClient, account: Account
) -> tuple[dict[str, Any], dict[str, Any]]:
    shirt = await post(
        client,
        PRODUCTS,
        {
            "name": "Premium T-Shirt",
            "variants": [
                {"title": "Default", "price": 75000},
                {"title": "XL", "price": 19.99},
            ],
        },
        account.headers,
    )
    john = await post(
        client,
        CUSTOMERS,
        {"firstName": "John", "lastName": "Doe", "email": "john@example.com"},
        account.headers,
    )
    return shirt, john


def line(product: dict[str, Any], index: int, quantity: int) -> dict[str, Any]:
    return {"productVariantId": product["variants"][index]["id"], "quantity": quantity}


async def test_order_pricing_numbering_and_titles(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    clock.now = T0
    shirt, john = await make_catalogue(client, account)
    response = await client.post(
        ORDERS,
        json={
            "lineItems": [line(shirt, 1, 3), line(shirt, 0, 2)],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
            "notes": "ring twice",
            "tags": ["web"],
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    assert b'"total":150059.97,' in response.content
    first = response.json()["data"]
    items = first["lineItems"]
    assert first == {
        "id": first["id"],
        "orderId": "ORD-001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 150059.97,
        "currency": None,
        "customer": {
            "id": john["id"],
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phoneNumber": None,
        },
        "lineItems": [
            {
                "id": items[0]["id"],
                "quantity": 3,
                "price": 19.99,
                "title": "Premium T-Shirt - XL",
                "productVariantId": shirt["variants"][1]["id"],
                "productVariant": shirt["variants"][1],
            },
            {
                "id": items[1]["id"],
                "quantity": 2,
                "price": 75000,
                "title": "Premium T-Shirt",
                "productVariantId": shirt["variants"][0]["id"],
                "productVariant": shirt["variants"][0],
            },
        ],
        "shippingAddress": {
            "firstName": "John",
            "lastName": "Doe",
            "phone": "+6281234567890",
            "address1": "Jl. Sudirman No. 1",
            "address2": None,
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10110",
        },
        "tags": ["web"],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
        "notes": "ring twice",
    }
    assert first["id"].startswith("order_")
    assert items[0]["id"].startswith("li_")

    decimals = await post(
        client,
        ORDERS,
        {"lineItems": [line(shirt, 1, 3)], "shippingAddress": SHIPPING, "customerId": john["id"]},
        account.headers,
    )
    assert (decimals["orderId"], decimals["orderNumber"]) == ("ORD-002", "1002")
    assert decimals["total"] == 59.97
    fetched = await client.get(f"{ORDERS}/{decimals['id']}", headers=account.headers)
    assert b'"total":59.97,' in fetched.content
    assert fetched.json()["data"] == decimals

    in_test_mode = await client.post(
        PRODUCTS,
        json={"name": "T", "variants": [{"title": "Default", "price": 1}]},
        headers=account.test_headers,
    )
    test_variant = in_test_mode.json()["data"]["variants"][0]["id"]
    test_order = await post(
        client,
        ORDERS,
        {
            "lineItems": [{"productVariantId": test_variant, "quantity": 1}],
            "shippingAddress": SHIPPING,
            "customer": {"email": "t@example.com"},
        },
        account.test_headers,
    )
    assert (test_order["orderId"], test_order["orderNumber"]) == ("ORD-001", "1001")
    # a live order cannot use a test-mode variant
    crossed = await client.post(
        ORDERS,
        json={
            "lineItems": [{"productVariantId": test_variant, "quantity": 1}],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
        },
        headers=account.headers,
    )
    assert_validation_error(crossed, "lineItems[0].productVariantId")


async def test_order_keeps_price_and_lines_after_product_changes(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    shirt, john = await make_catalogue(client, account)
    order = await post(
        client,
        ORDERS,
        {
            "lineItems": [line(shirt, 0, 1), line(shirt, 1, 2)],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
        },
        account.headers,
    )
    url = f"{ORDERS}/{order['id']}"
    clock.advance(1000)
    repriced = await client.put(
        f"{PRODUCTS}/{shirt['id']}",
        json={"name": "Cheap Shirt", "variants": [{"title": "Default", "price": 1}]},
        headers=account.headers,
    )
    assert repriced.status_code == 200, repriced.text
    after_price = await get_json(client, url, account.headers)
    assert after_price["data"] == order
    assert [item["price"] for item in order["lineItems"]] == [75000, 19.99]
    assert order["total"] == 75039.98

    fresh = await post(
        client,
        ORDERS,
        {
            "lineItems": [
                {"productVariantId": repriced.json()["data"]["variants"][0]["id"], "quantity": 2}
            ],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
        },
        account.headers,
    )
    assert fresh["lineItems"][0]["price"] == 1
    assert fresh["lineItems"][0]["title"] == "Cheap Shirt"
    assert fresh["total"] == 2

    deleted = await client.delete(f"{PRODUCTS}/{shirt['id']}", headers=account.headers)
    assert deleted.status_code == 200, deleted.text
    after_delete = await get_json(client, url, account.headers)
    assert after_delete["data"] == order
    listed = await get_json(client, ORDERS, account.headers)
    assert [o["lineItems"] for o in listed["data"]] == [fresh["lineItems"], order["lineItems"]]
    # the replaced variants can no longer be ordered
    stale = await client.post(
        ORDERS,
        json={
            "lineItems": [line(shirt, 0, 1)],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
        },
        headers=account.headers,
    )
    assert_validation_error(stale, "lineItems[0].productVariantId")


async def test_order_status_updates_and_filters(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    clock.now = T0
    shirt, john = await make_catalogue(client, account)
    first = await post(
        client,
        ORDERS,
        {"lineItems": [line(shirt, 0, 1)], "shippingAddress": SHIPPING, "customerId": john["id"]},
        account.headers,
    )
    clock.advance(1000)
    second = await post(
        client,
        ORDERS,
        {
            "lineItems": [line(shirt, 0, 1)],
            "shippingAddress": SHIPPING,
            "customer": {"firstName": "Zoë", "lastName": "Ånström", "phone": "0813-1111-2222"},
        },
        account.headers,
    )
    clock.advance(1000)
    updated = await client.put(
        f"{ORDERS}/{second['id']}",
        json={"status": "cancelled", "fulfillmentStatus": "fulfilled"},
        headers=account.headers,
    )
    assert updated.status_code == 200, updated.text
    data = updated.json()["data"]
    assert (data["status"], data["fulfillmentStatus"], data["financialStatus"]) == (
        "cancelled",
        "fulfilled",
        "pending",
    )
    assert data["updatedAt"] == "2024-01-15T10:30:02.000Z"
    assert data["createdAt"] == second["createdAt"]
    assert {k: v for k, v in data.items() if k not in {"status", "fulfillmentStatus"}} == {
        **{k: v for k, v in second.items() if k not in {"status", "fulfillmentStatus"}},
        "updatedAt": "2024-01-15T10:30:02.000Z",
    }
    paid = await client.put(
        f"{ORDERS}/{second['id']}",
        json={"financialStatus": "paid", "notes": "paid by card"},
        headers=account.headers,
    )
    assert paid.json()["data"]["status"] == "cancelled"
    assert paid.json()["data"]["financialStatus"] == "paid"
    assert paid.json()["data"]["notes"] == "paid by card"

    h = account.headers

    def order_ids(body: dict[str, Any]) -> list[str]:
        return [o["orderId"] for o in body["data"]]

    assert order_ids(await get_json(client, ORDERS, h)) == ["ORD-002", "ORD-001"]
    assert order_ids(await get_json(client, ORDERS, h, status="cancelled")) == ["ORD-002"]
    assert order_ids(await get_json(client, ORDERS, h, status="active")) == ["ORD-001"]
    assert order_ids(await get_json(client, ORDERS, h, status="active,cancelled")) == [
        "ORD-002",
        "ORD-001",
    ]
    assert order_ids(await get_json(client, ORDERS, h, fulfillmentStatus="unfulfilled")) == [
        "ORD-001"
    ]
    assert order_ids(await get_json(client, ORDERS, h, fulfillmentStatus="fulfilled")) == [
        "ORD-002"
    ]
    assert order_ids(await get_json(client, ORDERS, h, search="ord-001")) == ["ORD-001"]
    assert order_ids(await get_json(client, ORDERS, h, search="ZOË")) == ["ORD-002"]
    assert order_ids(await get_json(client, ORDERS, h, search="ånström")) == ["ORD-002"]
    assert order_ids(await get_json(client, ORDERS, h, search="john doe")) == ["ORD-001"]
    assert order_ids(await get_json(client, ORDERS, h, search="nobody")) == []
    assert_validation_error(
        await client.get(ORDERS, params={"status": "shipped"}, headers=h), "status"
    )
    assert_validation_error(
        await client.get(ORDERS, params={"fulfillmentStatus": "partial"}, headers=h),
        "fulfillmentStatus",
    )
    paged = await get_json(client, ORDERS, h, limit=1, page=2)
    assert order_ids(paged) == ["ORD-001"]
    assert paged["meta"] == {"page": 2, "limit": 1, "total": 2, "hasNextPage": False}

    for body, field in (
        ({"status": "shipped"}, "status"),
        ({"fulfillmentStatus": "partial"}, "fulfillmentStatus"),
        ({"financialStatus": "free"}, "financialStatus"),
        ({"status": None}, "status"),
    ):
        refused = await client.put(f"{ORDERS}/{first['id']}", json=body, headers=h)
        assert_validation_error(refused, field)
    assert (await get_json(client, f"{ORDERS}/{first['id']}", h))["data"] == first
    missing = await client.put(f"{ORDERS}/order_missing", json={"status": "archived"}, headers=h)
    assert missing.status_code == 404
    assert (await client.delete(f"{ORDERS}/{first['id']}", headers=h)).status_code == 405


async def test_order_customer_is_found_or_created(
    client: httpx.AsyncClient, account: Account
) -> None:
    shirt, john = await make_catalogue(client, account)
    base = {"lineItems": [line(shirt, 0, 1)], "shippingAddress": SHIPPING}
    by_email = await post(
        client,
        ORDERS,
        {**base, "customer": {"firstName": "Johnny", "email": "JOHN@example.com"}},
        account.headers,
    )
    assert by_email["customer"]["id"] == john["id"]
    assert by_email["customer"]["firstName"] == "John"
    created = await post(
        client,
        ORDERS,
        {**base, "customer": {"firstName": "Ann", "phone": "0811-2222-3333"}},
        account.headers,
    )
    ann = created["customer"]
    assert ann["id"].startswith("cust_")
    assert ann["phoneNumber"] == "+6281122223333"
    by_phone = await post(
        client,
        ORDERS,
        {**base, "customer": {"phone": "+62 811 2222 3333", "email": "ann@example.com"}},
        account.headers,
    )
    assert by_phone["customer"]["id"] == ann["id"]
    listed = await get_json(client, CUSTOMERS, account.headers, source="order")
    assert [c["id"] for c in listed["data"]] == [ann["id"]]
    assert listed["data"][0]["email"] is None


async def test_order_validation(client: httpx.AsyncClient, account: Account) -> None:
    shirt, john = await make_catalogue(client, account)
    h = account.headers
    base = {"lineItems": [line(shirt, 0, 1)], "shippingAddress": SHIPPING}

    unknown_variant = await client.post(
        ORDERS,
        json={
            **base,
            "customerId": john["id"],
            "lineItems": [line(shirt, 0, 1), {"productVariantId": "var_nope", "quantity": 1}],
        },
        headers=h,
    )
    assert_validation_error(unknown_variant, "lineItems[1].productVariantId")
    assert [d["field"] for d in unknown_variant.json()["error"]["details"]] == [
        "lineItems[1].productVariantId"
    ]
    unknown_customer = await client.post(
        ORDERS, json={**base, "customerId": "cust_nope"}, headers=h
    )
    assert_validation_error(unknown_customer, "customerId")
    both = await client.post(
        ORDERS,
        json={**base, "customerId": john["id"], "customer": {"email": "x@example.com"}},
        headers=h,
    )
    assert both.status_code == 400, both.text
    assert both.json()["error"]["code"] == "VALIDATION_ERROR"
    neither = await client.post(ORDERS, json=base, headers=h)
    assert neither.status_code == 400, neither.text
    for bad_lines, field in (
        ([], "lineItems"),
        ([{**line(shirt, 0, 1), "quantity": 0}], "lineItems[0].quantity"),
        ([{**line(shirt, 0, 1), "quantity": 1.5}], "lineItems[0].quantity"),
    ):
        refused = await client.post(
            ORDERS, json={**base, "customerId": john["id"], "lineItems": bad_lines}, headers=h
        )
        assert_validation_error(refused, field)
    no_zip = {k: v for k, v in SHIPPING.items() if k != "zip"}
    refused = await client.post(
        ORDERS, json={**base, "customerId": john["id"], "shippingAddress": no_zip}, headers=h
    )
    assert_validation_error(refused, "shippingAddress.zip")
    assert (await get_json(client, ORDERS, h))["meta"]["total"] == 0
    # nothing was numbered by the refused requests
    ok = await post(client, ORDERS, {**base, "customerId": john["id"]}, h)
    assert ok["orderId"] == "ORD-001"


async def test_order_total_stays_an_exact_number(
    client: httpx.AsyncClient, account: Account
) -> None:
    gold = await post(
        client,
        PRODUCTS,
        {
            "name": "Gold",
            "variants": [
                {"title": "Bar", "price": 1_000_000_000_000},
                {"title": "Coin", "price": 999_999_999_999.99},
            ],
        },
        account.headers,
    )
    _, john = await make_catalogue(client, account)
    base = {"shippingAddress": SHIPPING, "customerId": john["id"]}
    largest = await client.post(
        ORDERS, json={**base, "lineItems": [line(gold, 0, 1)]}, headers=account.headers
    )
    assert largest.status_code == 201, largest.text
    assert b'"total":1000000000000,' in largest.content
    cents = await client.post(
        ORDERS, json={**base, "lineItems": [line(gold, 1, 1)]}, headers=account.headers
    )
    assert cents.status_code == 201, cents.text
    assert b'"total":999999999999.99,' in cents.content
    for lines in ([line(gold, 0, 10_000)], [line(gold, 1, 1), line(gold, 1, 1)]):
        too_much = await client.post(
            ORDERS, json={**base, "lineItems": lines}, headers=account.headers
        )
        assert_validation_error(too_much, "lineItems")
    assert (await get_json(client, ORDERS, account.headers))["meta"]["total"] == 2


async def test_order_keeps_its_customer_summary_after_the_customer_is_deleted(
    client: httpx.AsyncClient, account: Account
) -> None:
    shirt, john = await make_catalogue(client, account)
    order = await post(
        client,
        ORDERS,
        {"lineItems": [line(shirt, 0, 1)], "shippingAddress": SHIPPING, "customerId": john["id"]},
        account.headers,
    )
    deleted = await client.delete(f"{CUSTOMERS}/{john['id']}", headers=account.headers)
    assert deleted.status_code == 200, deleted.text
    fetched = await get_json(client, f"{ORDERS}/{order['id']}", account.headers)
    assert fetched["data"] == order
    updated = await client.put(
        f"{ORDERS}/{order['id']}", json={"status": "archived"}, headers=account.headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["customer"] == order["customer"]


@pytest.mark.parametrize("field", ["name", "variants"])
async def test_product_update_refuses_null_for_what_a_product_must_keep(
    client: httpx.AsyncClient, account: Account, field: str
) -> None:
    created = await client.post(
        PRODUCTS,
        json={"name": "Mug", "variants": [{"title": "Default", "price": 5}]},
        headers=account.headers,
    )
    product = created.json()["data"]
    response = await client.put(
        f"{PRODUCTS}/{product['id']}", json={field: None}, headers=account.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["message"]
    unchanged = await client.get(f"{PRODUCTS}/{product['id']}", headers=account.headers)
    assert unchanged.json()["data"] == product


async def test_an_order_customer_with_names_alone_is_reached_at_the_shipping_phone(
    client: httpx.AsyncClient, account: Account
) -> None:
    """The public reference requires the buyer's names, not a contact: names alone are taken,
    and the buyer is found or created by the shipping address's phone."""
    shirt, _ = await make_catalogue(client, account)
    base = {"lineItems": [line(shirt, 0, 1)], "shippingAddress": SHIPPING}
    first = await post(
        client,
        ORDERS,
        {**base, "customer": {"firstName": "Rina", "lastName": "W"}},
        account.headers,
    )
    buyer = first["customer"]
    assert (buyer["firstName"], buyer["lastName"], buyer["email"]) == ("Rina", "W", None)
    assert buyer["phoneNumber"] == normalised_shipping_phone()
    again = await post(
        client,
        ORDERS,
        {**base, "customer": {"firstName": "Rina", "lastName": "W"}},
        account.headers,
    )
    assert again["customer"]["id"] == buyer["id"]  # found by that phone, not created twice


def normalised_shipping_phone() -> str:
    digits = "".join(ch for ch in SHIPPING["phone"] if ch.isdigit())
    return "+62" + digits.removeprefix("0").removeprefix("62")


async def test_order_lines_nest_their_variant_as_sold(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    """Each line of an order in the API carries ``productVariant {id, key, price,
    compareAtPrice, inventorySku, media}`` as the variant was when the order was made; the
    events keep their SPEC shape (``{id, quantity, price, title}``)."""
    shirt, john = await make_catalogue(client, account)
    order = await post(
        client,
        ORDERS,
        {
            "lineItems": [line(shirt, 0, 1), line(shirt, 1, 2)],
            "shippingAddress": SHIPPING,
            "customerId": john["id"],
        },
        account.headers,
    )
    sold = [shirt["variants"][0], shirt["variants"][1]]
    assert [item["productVariant"] for item in order["lineItems"]] == sold
    assert [item["productVariantId"] for item in order["lineItems"]] == [v["id"] for v in sold]
    assert set(sold[0]) == {"id", "key", "price", "compareAtPrice", "inventorySku", "media"}
    clock.advance(1000)
    repriced = await client.put(
        f"{PRODUCTS}/{shirt['id']}",
        json={"variants": [{"title": "Default", "price": 1}]},
        headers=account.headers,
    )
    assert repriced.status_code == 200, repriced.text
    fetched = await get_json(client, f"{ORDERS}/{order['id']}", account.headers)
    assert [item["productVariant"] for item in fetched["data"]["lineItems"]] == sold
    listed = await get_json(client, ORDERS, account.headers)
    assert listed["data"][0]["lineItems"] == order["lineItems"]


async def test_products_take_medias_as_the_public_reference_sends_them(
    client: httpx.AsyncClient, account: Account
) -> None:
    medias = [
        {"url": "https://cdn.example.com/a.jpg", "alt": "front"},
        "https://cdn.example.com/b.jpg",
    ]
    body = {"name": "Mug", "variants": [{"title": "Default", "price": 5}], "medias": medias}
    created = await post(client, PRODUCTS, body, account.headers)
    assert created["media"] == medias
    assert "medias" not in created
    url = f"{PRODUCTS}/{created['id']}"
    updated = await client.put(url, json={"medias": []}, headers=account.headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["media"] == []
    both = await client.post(
        PRODUCTS, json={**body, "media": "https://cdn.example.com/c.jpg"}, headers=account.headers
    )
    assert_validation_error(both, "body")
    assert "give media or medias, not both" in both.text
    not_a_list = await client.post(PRODUCTS, json={**body, "medias": "x"}, headers=account.headers)
    assert_validation_error(not_a_list, "medias")
