"""SPEC §2 access rules of the Open API, each proven over both dialects.

Auth ladder (401/403), rotation and revocation, IP allowlists, company and mode isolation (404),
the shared per-key rate limit (429) and ``Idempotency-Key`` replay (409 on a clash).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from bitbybit.errors import ValidationFailed
from bitbybit.models import ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import access
from bitbybit.services.idempotency import TTL_MS
from bitbybit.store import Store
from bitbybit.store.postgres import PostgresStore
from bitbybit.store.sqlite import SQLiteStore
from tests.conftest import (
    CUSTOMERS,
    ORDERS,
    PRODUCTS,
    Account,
    FakeClock,
    client_for,
    with_settings,
)

ALIAS = "/customer/api/open/v1"
DAY_MS = 24 * 60 * 60 * 1000
MINUTE_MS = 60_000
SHIPPING = {
    "firstName": "Jo",
    "lastName": "Doe",
    "phone": "081234567890",
    "address1": "Jl. Sudirman 1",
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "zip": "10210",
}


# helpers ----------------------------------------------------------------------------------------


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error object, after checking the status and that the body is exactly the envelope."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error.pop("requestId") == response.headers["x-request-id"], error
    assert set(error) in ({"code", "message"}, {"code", "message", "details"}), error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def alias(path: str) -> str:
    return path.replace("/customer/open/v1", ALIAS, 1)


def key_headers(raw: str) -> dict[str, str]:
    return {"x-api-key": raw}


def product_body(name: str = "Tee", price: float = 10.5) -> dict[str, Any]:
    return {"name": name, "variants": [{"title": "Default", "price": price, "sku": "TEE-1"}]}


def order_body(variant_id: str, phone: str = "081234567890") -> dict[str, Any]:
    return {
        "lineItems": [{"productVariantId": variant_id, "quantity": 2}],
        "shippingAddress": SHIPPING,
        "customer": {"firstName": "Jo", "lastName": "Doe", "phone": phone},
        "notes": "leave at the door",
    }


async def create(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def new_variant(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    product = await create(client, PRODUCTS, product_body(), headers)
    variant_id: str = product["variants"][0]["id"]
    return variant_id


async def count(platform: Platform, tenant: Tenant, what: str, event_type: str = "") -> int:
    """Rows in the store: customers, products, orders, or events (of one type if given)."""
    async with platform.store.read() as tx:
        if what == "customers":
            page = await tx.list_customers(tenant, ListQuery())
        elif what == "products":
            page = await tx.list_products(tenant, ListQuery())
        elif what == "orders":
            page = await tx.list_orders(tenant, ListQuery())
        else:
            filters = {"type": (event_type,)} if event_type else {}
            page = await tx.list_events(tenant, ListQuery(filters=filters))
    return page.total


def live(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


# the auth ladder --------------------------------------------------------------------------------


async def test_missing_key_is_401_missing_api_key(client: httpx.AsyncClient) -> None:
    for path in (CUSTOMERS, ORDERS, PRODUCTS, alias(CUSTOMERS), f"{CUSTOMERS}/cust_x"):
        error_of(await client.get(path), 401, "MISSING_API_KEY")
    error_of(await client.post(CUSTOMERS, json={"email": "a@b.co"}), 401, "MISSING_API_KEY")
    error_of(await client.get(CUSTOMERS, headers={"x-api-key": ""}), 401, "MISSING_API_KEY")


async def test_missing_key_beats_bad_query(client: httpx.AsyncClient) -> None:
    """Authentication comes first: an unauthenticated caller learns nothing about its input."""
    error_of(await client.get(f"{CUSTOMERS}?page=0&limit=1000"), 401, "MISSING_API_KEY")
    error_of(await client.post(CUSTOMERS, json={"nope": 1}), 401, "MISSING_API_KEY")


async def test_auth_comes_before_parsing_the_body(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    """A body that is not JSON is judged only once the caller may send it."""
    broken = b'{"email": '
    json_type = {"content-type": "application/json"}
    _, reader = await access.create_api_key(platform, account.company.id, scopes="customers:read")
    for method, path in (
        ("POST", CUSTOMERS),
        ("PUT", f"{ORDERS}/order_x"),
        ("POST", alias(PRODUCTS)),
    ):
        response = await client.request(method, path, content=broken, headers=json_type)
        error_of(response, 401, "MISSING_API_KEY")
        for raw, status, code in (
            ("bbb_live_" + "w" * 40, 401, "INVALID_API_KEY"),
            (reader, 403, "INSUFFICIENT_SCOPE"),
            (account.raw, 400, "VALIDATION_ERROR"),
        ):
            headers = {**json_type, "x-api-key": raw}
            response = await client.request(method, path, content=broken, headers=headers)
            error_of(response, status, code)
            if status != 401:
                assert "RateLimit-Remaining" in response.headers
    _, fenced = await access.create_api_key(
        platform, account.company.id, ip_allowlist=["10.1.0.0/16"]
    )
    async with client_for(platform, client_ip="192.0.2.7") as outside:
        headers = {**json_type, "x-api-key": fenced}
        response = await outside.post(CUSTOMERS, content=broken, headers=headers)
        error_of(response, 403, "IP_NOT_ALLOWED")


@pytest.mark.parametrize(
    "raw",
    [
        "bbb_live_" + "x" * 40,
        "bbb_test_" + "0" * 40,
        "not-a-key",
        "bbb_live_\u00e9\u00e9",
    ],
)
async def test_wrong_key_is_401_invalid_api_key(
    client: httpx.AsyncClient, account: Account, raw: str
) -> None:
    headers = {"x-api-key": raw.encode("latin-1")}
    error_of(await client.get(CUSTOMERS, headers=headers), 401, "INVALID_API_KEY")
    # a near miss of a real key is still invalid
    near = account.raw[:-1] + ("A" if account.raw[-1] != "A" else "B")
    error_of(await client.get(CUSTOMERS, headers=key_headers(near)), 401, "INVALID_API_KEY")


async def test_valid_key_is_200(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(CUSTOMERS, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": [],
        "meta": {"page": 1, "limit": 20, "total": 0, "hasNextPage": False},
    }


async def test_x_bitbybit_key_header_works(client: httpx.AsyncClient, account: Account) -> None:
    headers = {"x-bitbybit-key": account.raw}
    created = await create(client, CUSTOMERS, {"email": "alt@example.com"}, headers)
    response = await client.get(f"{CUSTOMERS}/{created['id']}", headers=headers)
    assert response.status_code == 200, response.text
    error_of(
        await client.get(CUSTOMERS, headers={"x-bitbybit-key": "bbb_live_" + "q" * 40}),
        401,
        "INVALID_API_KEY",
    )


async def test_revoked_key_is_401(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    assert (await client.get(CUSTOMERS, headers=account.headers)).status_code == 200
    await access.revoke_api_key(platform, account.key.id)
    error_of(await client.get(CUSTOMERS, headers=account.headers), 401, "INVALID_API_KEY")
    error_of(
        await client.get(CUSTOMERS, headers={"x-bitbybit-key": account.raw}),
        401,
        "INVALID_API_KEY",
    )
    # only that key: the company's other key still works
    assert (await client.get(CUSTOMERS, headers=account.test_headers)).status_code == 200


async def test_rotation_keeps_the_old_key_for_exactly_24_hours(
    client: httpx.AsyncClient, platform: Platform, account: Account, clock: FakeClock
) -> None:
    new_key, new_raw = await access.rotate_api_key(platform, account.key.id)
    assert new_raw != account.raw
    assert new_key.company_id == account.company.id
    assert new_key.mode == "live"
    # the new key works at once and sees the same data
    created = await create(client, CUSTOMERS, {"email": "rot@example.com"}, key_headers(new_raw))
    seen = await client.get(f"{CUSTOMERS}/{created['id']}", headers=account.headers)
    assert seen.status_code == 200, seen.text

    clock.advance(DAY_MS - MINUTE_MS)  # 23 h 59 m
    assert (await client.get(CUSTOMERS, headers=account.headers)).status_code == 200
    clock.advance(MINUTE_MS - 1)  # 1 ms before 24 h
    assert (await client.get(CUSTOMERS, headers=account.headers)).status_code == 200
    clock.advance(1)  # 24 h
    error_of(await client.get(CUSTOMERS, headers=account.headers), 401, "INVALID_API_KEY")
    assert (await client.get(CUSTOMERS, headers=key_headers(new_raw))).status_code == 200

    clock.advance(30 * DAY_MS)
    error_of(await client.get(CUSTOMERS, headers=account.headers), 401, "INVALID_API_KEY")
    assert (await client.get(CUSTOMERS, headers=key_headers(new_raw))).status_code == 200


async def test_rotation_keeps_scopes_and_allowlist(platform: Platform, account: Account) -> None:
    old, _ = await access.create_api_key(
        platform,
        account.company.id,
        mode="test",
        scopes="customers:read",
        ip_allowlist=["10.1.0.0/16"],
    )
    new, raw = await access.rotate_api_key(platform, old.id)
    assert new.scopes == frozenset({"customers:read"})
    assert new.ip_allowlist == ("10.1.0.0/16",)
    assert new.mode == "test"
    async with client_for(platform, client_ip="10.1.0.9") as inside:
        assert (await inside.get(CUSTOMERS, headers=key_headers(raw))).status_code == 200
        error_of(
            await inside.post(CUSTOMERS, json={"email": "a@b.co"}, headers=key_headers(raw)),
            403,
            "INSUFFICIENT_SCOPE",
        )
    async with client_for(platform, client_ip="192.0.2.7") as outside:
        error_of(await outside.get(CUSTOMERS, headers=key_headers(raw)), 403, "IP_NOT_ALLOWED")


# scopes -----------------------------------------------------------------------------------------

SCOPED_ROUTES = [
    ("GET", CUSTOMERS, "customers:read"),
    ("GET", f"{CUSTOMERS}/cust_missing", "customers:read"),
    ("POST", CUSTOMERS, "customers:write"),
    ("PUT", f"{CUSTOMERS}/cust_missing", "customers:write"),
    ("DELETE", f"{CUSTOMERS}/cust_missing", "customers:delete"),
    ("GET", ORDERS, "orders:read"),
    ("GET", f"{ORDERS}/order_missing", "orders:read"),
    ("POST", ORDERS, "orders:write"),
    ("PUT", f"{ORDERS}/order_missing", "orders:write"),
    ("GET", PRODUCTS, "products:read"),
    ("GET", f"{PRODUCTS}/prod_missing", "products:read"),
    ("POST", PRODUCTS, "products:write"),
    ("PUT", f"{PRODUCTS}/prod_missing", "products:write"),
    ("DELETE", f"{PRODUCTS}/prod_missing", "products:delete"),
]


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    SCOPED_ROUTES,
    ids=[f"{m}-{p.rsplit('/v1/', 1)[1]}" for m, p, _ in SCOPED_ROUTES],
)
async def test_each_method_needs_its_scope(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    method: str,
    path: str,
    scope: str,
) -> None:
    body = {} if method in {"POST", "PUT"} else None
    _, without = await access.create_api_key(
        platform, account.company.id, scopes=access.SCOPES - {scope}
    )
    _, only = await access.create_api_key(platform, account.company.id, scopes=[scope])
    for prefix_path in (path, alias(path)):
        refused = await client.request(method, prefix_path, json=body, headers=key_headers(without))
        error = error_of(refused, 403, "INSUFFICIENT_SCOPE")
        assert scope in error["message"]
        # the scope alone is enough: the request gets past access control (400/404/200, not 403)
        allowed = await client.request(method, prefix_path, json=body, headers=key_headers(only))
        assert allowed.status_code not in {401, 403}, allowed.text
        assert allowed.status_code < 500, allowed.text


async def test_write_scope_does_not_allow_delete(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    customer = await create(client, CUSTOMERS, {"email": "keep@example.com"}, account.headers)
    _, writer = await access.create_api_key(
        platform, account.company.id, scopes="customers:read,customers:write"
    )
    url = f"{CUSTOMERS}/{customer['id']}"
    error_of(await client.delete(url, headers=key_headers(writer)), 403, "INSUFFICIENT_SCOPE")
    assert (await client.get(url, headers=account.headers)).status_code == 200
    _, reader = await access.create_api_key(platform, account.company.id, scopes="customers:read")
    error_of(
        await client.put(url, json={"firstName": "X"}, headers=key_headers(reader)),
        403,
        "INSUFFICIENT_SCOPE",
    )
    unchanged = await client.get(url, headers=account.headers)
    assert unchanged.json()["data"]["firstName"] is None


# IP allowlist -----------------------------------------------------------------------------------


async def test_ip_allowlist(platform: Platform, account: Account) -> None:
    _, raw = await access.create_api_key(platform, account.company.id, ip_allowlist=["10.1.0.0/16"])
    async with client_for(platform, client_ip="192.0.2.7") as outside:
        error = error_of(
            await outside.get(CUSTOMERS, headers=key_headers(raw)), 403, "IP_NOT_ALLOWED"
        )
        assert "192.0.2.7" in error["message"]
        error_of(
            await outside.post(CUSTOMERS, json={"email": "a@b.co"}, headers=key_headers(raw)),
            403,
            "IP_NOT_ALLOWED",
        )
        # authentication comes first: a bad or missing key from outside is 401, not 403
        error_of(
            await outside.get(CUSTOMERS, headers=key_headers("bbb_live_" + "z" * 40)),
            401,
            "INVALID_API_KEY",
        )
        error_of(await outside.get(CUSTOMERS), 401, "MISSING_API_KEY")
        # the allowlist belongs to the key: the company's unrestricted key works from anywhere
        assert (await outside.get(CUSTOMERS, headers=account.headers)).status_code == 200
    for inside_ip in ("10.1.0.1", "10.1.255.254"):
        async with client_for(platform, client_ip=inside_ip) as inside:
            response = await inside.get(CUSTOMERS, headers=key_headers(raw))
            assert response.status_code == 200, response.text
    async with client_for(platform, client_ip="10.2.0.1") as neighbour:
        error_of(await neighbour.get(CUSTOMERS, headers=key_headers(raw)), 403, "IP_NOT_ALLOWED")


async def test_ip_allowlist_ipv6_and_single_addresses(platform: Platform, account: Account) -> None:
    _, raw = await access.create_api_key(
        platform, account.company.id, ip_allowlist=["2001:db8:1::/48", "198.51.100.4"]
    )
    for ip, status in (
        ("2001:db8:1:2::5", 200),
        ("198.51.100.4", 200),
        ("2001:db8:2::1", 403),
        ("198.51.100.5", 403),
    ):
        async with client_for(platform, client_ip=ip) as http:
            response = await http.get(CUSTOMERS, headers=key_headers(raw))
            assert response.status_code == status, (ip, response.text)
            if status == 403:
                error_of(response, 403, "IP_NOT_ALLOWED")


@pytest.mark.parametrize(
    "entries",
    [
        [f"10.0.0.{n}" for n in range(21)],
        ["10.0.0.0/8"],
        ["0.0.0.0/0"],
        ["2001:db8::/32"],
        ["::/0"],
        ["garbage"],
        ["10.0.0.300"],
        ["10.0.0.0/33"],
        [""],
        ["10.0.0.1", "not an address"],
    ],
    ids=[
        "21-entries",
        "v4-slash8",
        "v4-any",
        "v6-slash32",
        "v6-any",
        "garbage",
        "bad-octet",
        "bad-prefix",
        "empty",
        "one-bad",
    ],
)
async def test_allowlist_validation_refuses(
    platform: Platform, account: Account, entries: list[str]
) -> None:
    async with platform.store.read() as tx:
        before = len(await tx.list_api_keys(account.company.id))
    with pytest.raises(ValidationFailed) as raised:
        await access.create_api_key(platform, account.company.id, ip_allowlist=entries)
    assert [detail.field for detail in raised.value.details] == ["ipAllowlist"]
    async with platform.store.read() as tx:
        assert len(await tx.list_api_keys(account.company.id)) == before


async def test_allowlist_validation_accepts_the_limits(
    platform: Platform, account: Account
) -> None:
    twenty = [f"10.0.0.{n}" for n in range(20)]
    key, _ = await access.create_api_key(platform, account.company.id, ip_allowlist=twenty)
    assert len(key.ip_allowlist) == 20
    widest, _ = await access.create_api_key(
        platform, account.company.id, ip_allowlist=["10.0.0.0/9", "2001:db8::/33"]
    )
    assert widest.ip_allowlist == ("10.0.0.0/9", "2001:db8::/33")


# isolation --------------------------------------------------------------------------------------


@pytest.fixture
async def owned(client: httpx.AsyncClient, account: Account) -> dict[str, dict[str, Any]]:
    """One customer, product and order of company A (live), by resource path."""
    product = await create(client, PRODUCTS, product_body(), account.headers)
    order = await create(client, ORDERS, order_body(product["variants"][0]["id"]), account.headers)
    customer = await create(
        client, CUSTOMERS, {"email": "own@example.com", "firstName": "Own"}, account.headers
    )
    return {CUSTOMERS: customer, PRODUCTS: product, ORDERS: order}


ID_ROUTES = [
    ("GET", CUSTOMERS, None, "cust"),
    ("PUT", CUSTOMERS, {"firstName": "Mallory"}, "cust"),
    ("DELETE", CUSTOMERS, None, "cust"),
    ("GET", PRODUCTS, None, "prod"),
    ("PUT", PRODUCTS, {"name": "Stolen"}, "prod"),
    ("DELETE", PRODUCTS, None, "prod"),
    ("GET", ORDERS, None, "order"),
    ("PUT", ORDERS, {"status": "cancelled"}, "order"),
]


@pytest.mark.parametrize(
    ("method", "collection", "body", "prefix"),
    ID_ROUTES,
    ids=[f"{m}-{c.rsplit('/', 1)[1]}" for m, c, _, _ in ID_ROUTES],
)
async def test_other_company_and_test_mode_get_404_like_a_missing_id(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    owned: dict[str, dict[str, Any]],
    method: str,
    collection: str,
    body: dict[str, Any] | None,
    prefix: str,
) -> None:
    target = owned[collection]["id"]
    missing = f"{prefix}_{'Z' * 20}"
    for headers in (other_account.headers, account.test_headers):
        for base in (collection, alias(collection)):
            foreign = await client.request(method, f"{base}/{target}", json=body, headers=headers)
            absent = await client.request(method, f"{base}/{missing}", json=body, headers=headers)
            error_of(foreign, 404, "NOT_FOUND")
            error_of(absent, 404, "NOT_FOUND")
            # indistinguishable: the same body but for the id the caller sent (and the request's)
            assert foreign.text.replace(target, "ID").replace(
                foreign.headers["x-request-id"], "REQUEST"
            ) == absent.text.replace(missing, "ID").replace(
                absent.headers["x-request-id"], "REQUEST"
            )
            assert foreign.headers["content-type"] == absent.headers["content-type"]
    # and A's object is untouched
    after = await client.get(f"{collection}/{target}", headers=account.headers)
    assert after.status_code == 200, after.text
    assert after.json()["data"] == owned[collection]


async def test_lists_and_searches_never_show_another_tenant(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    other_account: Account,
    owned: dict[str, dict[str, Any]],
) -> None:
    mine = await create(client, CUSTOMERS, {"email": "b@example.com"}, other_account.headers)
    for collection, record in owned.items():
        a_sees = await client.get(collection, headers=account.headers)
        assert record["id"] in [item["id"] for item in a_sees.json()["data"]]
        for headers, is_b in ((other_account.headers, True), (account.test_headers, False)):
            listed = await client.get(collection, headers=headers)
            assert listed.status_code == 200, listed.text
            ids = [item["id"] for item in listed.json()["data"]]
            assert record["id"] not in ids
            if collection == CUSTOMERS and is_b:
                assert ids == [mine["id"]]
                assert listed.json()["meta"]["total"] == 1
            else:
                assert ids == []
                assert listed.json()["meta"]["total"] == 0
    for search in ("own@example.com", "Own", "Tee", owned[ORDERS]["orderId"], "Jo"):
        for collection in (CUSTOMERS, PRODUCTS, ORDERS):
            found = await client.get(
                collection, params={"search": search}, headers=other_account.headers
            )
            assert owned[collection]["id"] not in [item["id"] for item in found.json()["data"]]
    # an order cannot reach another company's variant or customer either
    stolen = await client.post(
        ORDERS,
        json=order_body(owned[PRODUCTS]["variants"][0]["id"]),
        headers=other_account.headers,
    )
    error_of(stolen, 400, "VALIDATION_ERROR")
    own_variant = await new_variant(client, other_account.headers)
    by_id = {
        "lineItems": [{"productVariantId": own_variant, "quantity": 1}],
        "shippingAddress": SHIPPING,
        "customerId": owned[CUSTOMERS]["id"],
    }
    error = error_of(
        await client.post(ORDERS, json=by_id, headers=other_account.headers),
        400,
        "VALIDATION_ERROR",
    )
    assert [d["field"] for d in error["details"]] == ["customerId"]
    assert await count(platform, live(other_account), "orders") == 0


async def test_same_email_in_each_company_and_mode(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    body = {"email": "same@example.com", "phoneNumber": "081200000001"}
    ids = set()
    for headers in (account.headers, account.test_headers, other_account.headers):
        ids.add((await create(client, CUSTOMERS, body, headers))["id"])
    assert len(ids) == 3
    # uniqueness still holds inside one company and mode
    for headers in (account.headers, account.test_headers, other_account.headers):
        error_of(await client.post(CUSTOMERS, json=body, headers=headers), 409, "CONFLICT")


# rate limit -------------------------------------------------------------------------------------


@pytest.fixture
def limited(platform: Platform, clock: FakeClock) -> Platform:
    """A platform with 3 requests a minute, its clock 15.5 s into a window (45 s to reset)."""
    clock.now = clock.now - clock.now % MINUTE_MS + 15_500
    return with_settings(platform, rate_limit=3)


def rate_of(response: httpx.Response) -> tuple[str, str, str]:
    headers = response.headers
    return (headers["RateLimit-Limit"], headers["RateLimit-Remaining"], headers["RateLimit-Reset"])


async def test_rate_limit_headers_count_down_then_429(
    limited: Platform, account: Account, clock: FakeClock
) -> None:
    async with client_for(limited) as client:
        seen = []
        for _ in range(3):
            response = await client.get(CUSTOMERS, headers=account.headers)
            assert response.status_code == 200, response.text
            seen.append(rate_of(response))
        assert seen == [("3", "2", "45"), ("3", "1", "45"), ("3", "0", "45")]

        over = await client.get(CUSTOMERS, headers=account.headers)
        error = error_of(over, 429, "RATE_LIMIT_EXCEEDED")
        assert "3" in error["message"]
        assert over.headers["Retry-After"] == "45"
        assert rate_of(over) == ("3", "0", "45")

        clock.advance(10_000)
        over = await client.post(CUSTOMERS, json={"email": "x@y.co"}, headers=account.headers)
        error_of(over, 429, "RATE_LIMIT_EXCEEDED")
        assert over.headers["Retry-After"] == "35"
        assert rate_of(over) == ("3", "0", "35")

        clock.advance(MINUTE_MS)  # a new minute
        fresh = await client.get(CUSTOMERS, headers=account.headers)
        assert fresh.status_code == 200, fresh.text
        assert rate_of(fresh) == ("3", "2", "35")


async def test_rate_limit_is_per_key(limited: Platform, account: Account) -> None:
    async with client_for(limited) as client:
        for _ in range(3):
            assert (await client.get(CUSTOMERS, headers=account.headers)).status_code == 200
        error_of(await client.get(CUSTOMERS, headers=account.headers), 429, "RATE_LIMIT_EXCEEDED")
        other = await client.get(CUSTOMERS, headers=account.test_headers)
        assert other.status_code == 200, other.text
        assert rate_of(other)[1] == "2"


async def test_refused_and_failed_requests_carry_rate_headers(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    """Every authenticated response carries the headers, errors included, and counts."""
    _, reader = await access.create_api_key(platform, account.company.id, scopes="customers:read")
    await create(client, CUSTOMERS, {"email": "dup@example.com"}, account.headers)  # 1
    responses = [
        await client.get(f"{CUSTOMERS}/cust_missing", headers=account.headers),  # 404
        await client.post(CUSTOMERS, json={"email": "bad"}, headers=account.headers),  # 400
        await client.get(f"{CUSTOMERS}?page=0", headers=account.headers),  # 400
        await client.post(CUSTOMERS, json={"email": "dup@example.com"}, headers=account.headers),
        await client.get(ORDERS, headers=account.headers),  # 200
        await client.post(
            CUSTOMERS,
            content=b"{not json",
            headers={**account.headers, "content-type": "application/json"},
        ),  # 400, refused before FastAPI resolves any dependency
    ]
    assert [r.status_code for r in responses] == [404, 400, 400, 409, 200, 400]
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in responses]
    assert remaining == [998, 997, 996, 995, 994, 993]
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "1000"
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    refused = await client.post(CUSTOMERS, json={"email": "a@b.co"}, headers=key_headers(reader))
    error_of(refused, 403, "INSUFFICIENT_SCOPE")
    assert rate_of(refused)[:2] == ("1000", "999")


async def open_twin(store: Store) -> Store:
    """A second store on the same database, as another process would open it."""
    twin: Store
    if isinstance(store, SQLiteStore):
        twin = SQLiteStore(f"sqlite:///{store.path}")
    else:
        assert isinstance(store, PostgresStore)
        twin = PostgresStore(store.url, schema=store.schema, pool_size=2)
    await twin.open()
    return twin


@pytest.fixture
async def twin_platform(limited: Platform) -> AsyncIterator[Platform]:
    twin = await open_twin(limited.store)
    try:
        yield Platform(twin, limited.settings)
    finally:
        await twin.close()


async def test_rate_limit_is_shared_by_processes_on_one_database(
    limited: Platform, twin_platform: Platform, account: Account, clock: FakeClock
) -> None:
    assert twin_platform.store is not limited.store
    async with client_for(limited) as first, client_for(twin_platform) as second:
        remaining = []
        for client in (first, second, first):
            response = await client.get(CUSTOMERS, headers=account.headers)
            assert response.status_code == 200, response.text
            remaining.append(response.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        for client in (second, first):
            over = await client.get(CUSTOMERS, headers=account.headers)
            error_of(over, 429, "RATE_LIMIT_EXCEEDED")
            assert over.headers["Retry-After"] == "45"
        clock.advance(MINUTE_MS)
        assert (await second.get(CUSTOMERS, headers=account.headers)).status_code == 200
        again = await first.get(CUSTOMERS, headers=account.headers)
        assert again.status_code == 200
        assert again.headers["RateLimit-Remaining"] == "1"


# Idempotency-Key --------------------------------------------------------------------------------

Body = Callable[[int], dict[str, Any]]
CREATED = {CUSTOMERS: "customer.created", PRODUCTS: "product.created", ORDERS: "order.created"}
TABLE = {CUSTOMERS: "customers", PRODUCTS: "products", ORDERS: "orders"}


@pytest.fixture
async def bodies(client: httpx.AsyncClient, account: Account) -> dict[str, Body]:
    """A valid create body per collection; ``n`` makes bodies that differ."""
    variant = await new_variant(client, account.headers)
    return {
        CUSTOMERS: lambda n: {"email": f"idem{n}@example.com", "firstName": "Idem"},
        PRODUCTS: lambda n: product_body(f"Idem {n}", 5 + n),
        ORDERS: lambda n: order_body(variant, f"0812000000{n:02d}"),
    }


COLLECTIONS = [CUSTOMERS, PRODUCTS, ORDERS]
COLLECTION_IDS = ["customers", "products", "orders"]


async def counts(platform: Platform, tenant: Tenant, collection: str) -> tuple[int, int]:
    return (
        await count(platform, tenant, TABLE[collection]),
        await count(platform, tenant, "events", CREATED[collection]),
    )


@pytest.mark.parametrize("collection", COLLECTIONS, ids=COLLECTION_IDS)
async def test_same_key_same_body_replays(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    bodies: dict[str, Body],
    collection: str,
) -> None:
    before = await counts(platform, live(account), collection)
    headers = {**account.headers, "Idempotency-Key": "idem-1"}
    first = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    for path in (collection, alias(collection)):
        again = await client.post(path, json=bodies[collection](1), headers=headers)
        assert again.status_code == 201, again.text
        assert again.content == first.content
        assert again.headers["Idempotent-Replayed"] == "true"
    objects, created_events = await counts(platform, live(account), collection)
    assert (objects, created_events) == (before[0] + 1, before[1] + 1)
    if collection == ORDERS:  # the order's new customer was created once too
        assert await count(platform, live(account), "customers") == 1
        assert await count(platform, live(account), "events", "customer.created") == 1
    # without a key, the same body is simply a new request
    plain = await client.post(collection, json=bodies[collection](1), headers=account.headers)
    assert "Idempotent-Replayed" not in plain.headers
    assert plain.content != first.content


@pytest.mark.parametrize("collection", COLLECTIONS, ids=COLLECTION_IDS)
async def test_same_key_different_body_is_409(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    bodies: dict[str, Body],
    collection: str,
) -> None:
    headers = {**account.headers, "Idempotency-Key": "idem-2"}
    first = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert first.status_code == 201, first.text
    after_first = await counts(platform, live(account), collection)
    clash = await client.post(collection, json=bodies[collection](2), headers=headers)
    error_of(clash, 409, "CONFLICT")
    assert "Idempotent-Replayed" not in clash.headers
    assert await counts(platform, live(account), collection) == after_first
    # the original still replays afterwards
    again = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert again.content == first.content


@pytest.mark.parametrize("collection", COLLECTIONS, ids=COLLECTION_IDS)
async def test_same_key_on_another_path_is_409(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    bodies: dict[str, Body],
    collection: str,
) -> None:
    other = COLLECTIONS[(COLLECTIONS.index(collection) + 1) % len(COLLECTIONS)]
    headers = {**account.headers, "Idempotency-Key": "idem-3"}
    first = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert first.status_code == 201, first.text
    before = await counts(platform, live(account), other)
    error_of(await client.post(other, json=bodies[other](1), headers=headers), 409, "CONFLICT")
    assert await counts(platform, live(account), other) == before


@pytest.mark.parametrize("collection", [PRODUCTS, ORDERS], ids=["products", "orders"])
async def test_keys_expire_after_24_hours(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    bodies: dict[str, Body],
    clock: FakeClock,
    collection: str,
) -> None:
    headers = {**account.headers, "Idempotency-Key": "idem-4"}
    first = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert first.status_code == 201, first.text
    objects = await count(platform, live(account), TABLE[collection])
    clock.advance(TTL_MS - 1)
    replay = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == first.content
    clock.advance(1)  # 24 h: the key is forgotten and the request runs again
    rerun = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert rerun.status_code == 201, rerun.text
    assert "Idempotent-Replayed" not in rerun.headers
    assert rerun.json()["data"]["id"] != first.json()["data"]["id"]
    assert await count(platform, live(account), TABLE[collection]) == objects + 1
    # and the new response is the one replayed from now on
    again = await client.post(collection, json=bodies[collection](1), headers=headers)
    assert again.content == rerun.content
    assert TTL_MS == DAY_MS


async def test_expired_key_reruns_a_customer_create(
    client: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    """After 24 h a customer create runs again, and meets its own email: 409, not a replay."""
    headers = {**account.headers, "Idempotency-Key": "idem-5"}
    body = {"email": "once@example.com"}
    assert (await client.post(CUSTOMERS, json=body, headers=headers)).status_code == 201
    clock.advance(DAY_MS)
    error_of(await client.post(CUSTOMERS, json=body, headers=headers), 409, "CONFLICT")


async def test_keys_belong_to_one_company_and_mode(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    other_account: Account,
) -> None:
    body = product_body("Shared key")
    results = []
    for headers in (account.headers, account.test_headers, other_account.headers):
        response = await client.post(
            PRODUCTS, json=body, headers={**headers, "Idempotency-Key": "shared"}
        )
        assert response.status_code == 201, response.text
        assert "Idempotent-Replayed" not in response.headers
        results.append(response.json()["data"]["id"])
    assert len(set(results)) == 3
    assert await count(platform, live(other_account), "products") == 1


async def test_a_refused_request_does_not_keep_its_key(
    client: httpx.AsyncClient, account: Account, bodies: dict[str, Body]
) -> None:
    """Only successes are kept: a request refused by the service can be fixed and retried."""
    headers = {**account.headers, "Idempotency-Key": "idem-6"}
    refused = await client.post(ORDERS, json=order_body("var_nope"), headers=headers)
    error_of(refused, 400, "VALIDATION_ERROR")
    fixed = await client.post(ORDERS, json=bodies[ORDERS](1), headers=headers)
    assert fixed.status_code == 201, fixed.text
    assert "Idempotent-Replayed" not in fixed.headers


@pytest.mark.parametrize(
    "key", ["x" * 256, "caf\u00e9", "tab\there"], ids=["long", "latin1", "tab"]
)
async def test_idempotency_key_must_be_printable_ascii(
    client: httpx.AsyncClient, platform: Platform, account: Account, key: str
) -> None:
    headers: dict[str, str | bytes] = {
        **account.headers,
        "Idempotency-Key": key.encode("latin-1"),
    }
    response = await client.post(CUSTOMERS, json={"email": "k@example.com"}, headers=headers)
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["Idempotency-Key"]
    assert await count(platform, live(account), "customers") == 0


@pytest.mark.parametrize("collection", COLLECTIONS, ids=COLLECTION_IDS)
async def test_concurrent_duplicates_create_one_object(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    bodies: dict[str, Body],
    collection: str,
) -> None:
    before = await counts(platform, live(account), collection)
    headers = {**account.headers, "Idempotency-Key": "idem-race"}
    body = json.dumps(bodies[collection](7)).encode()
    send: Callable[[], Awaitable[httpx.Response]] = lambda: client.post(  # noqa: E731
        collection, content=body, headers={**headers, "content-type": "application/json"}
    )
    responses = await asyncio.gather(*(send() for _ in range(10)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert len({r.content for r in created}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in created) <= 1
    for response in responses:
        if response.status_code == 409:
            error_of(response, 409, "CONFLICT")
    after = await counts(platform, live(account), collection)
    assert after == (before[0] + 1, before[1] + 1)
    # once settled, the key replays the one object
    settled = await send()
    assert settled.status_code == 201
    assert settled.content == created[0].content


async def test_the_scope_is_checked_before_the_address(
    platform: Platform, account: Account
) -> None:
    """SPEC §2 and the public reference: a key lacking the scope is told so (403
    ``INSUFFICIENT_SCOPE``) wherever it calls from; only a key with the scope is then told that
    its address is not allowed (403 ``IP_NOT_ALLOWED``)."""
    _, reader = await access.create_api_key(
        platform, account.company.id, scopes=["customers:read"], ip_allowlist=["10.1.0.0/16"]
    )
    async with client_for(platform, client_ip="192.0.2.7") as outside:
        lacking = await outside.post(
            CUSTOMERS, json={"email": "a@b.co"}, headers=key_headers(reader)
        )
        error_of(lacking, 403, "INSUFFICIENT_SCOPE")
        error_of(await outside.get(CUSTOMERS, headers=key_headers(reader)), 403, "IP_NOT_ALLOWED")
