"""SPEC §2 error rules of the Open API, each proven over both dialects.

Every error is exactly ``{"error": {"code", "message"[, "details"]}}``; validation errors name the
field; bodies over 1 MiB are 413, non-JSON 415; unknown routes 404 and wrong methods 405 in the
envelope; NUL and lone surrogates are 400, never 500; a 500 never shows a stack trace; a database
that cannot be reached is 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bitbybit.api import errors as api_errors
from bitbybit.errors import StorageError, StorageUnavailable
from bitbybit.models import ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import customers, orders, products
from tests.conftest import CUSTOMERS, ORDERS, PRODUCTS, Account

ALIAS = "/customer/api/open/v1"
MIB = 1024 * 1024
JSON_HEADERS = {"content-type": "application/json"}
SHIPPING = {
    "firstName": "Jo",
    "lastName": "Doe",
    "phone": "081234567890",
    "address1": "Jl. Sudirman 1",
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "zip": "10210",
}
INTERNAL = {
    "error": {
        "code": "INTERNAL_ERROR",
        "message": "an internal error occurred; it has been logged",
    }
}


class Recorder:
    """Stands in for the API's logger: keeps each call instead of rendering a traceback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.calls.append((level, event, fields))

        return record


@pytest.fixture(autouse=True)
def logged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(api_errors, "log", recorder)
    return recorder


def with_request_id(body: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
    """``body`` as the response carries it: its error names the request's id."""
    return {"error": {**body["error"], "requestId": response.headers["x-request-id"]}}


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
    if "details" in error:
        assert isinstance(error["details"], list)
        assert error["details"]
        for detail in error["details"]:
            assert set(detail) == {"field", "message"}, detail
            assert isinstance(detail["field"], str)
            assert detail["field"]
            assert isinstance(detail["message"], str)
            assert detail["message"]
    return error


def fields_of(error: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in error.get("details", [])]


def alias(path: str) -> str:
    return path.replace("/customer/open/v1", ALIAS, 1)


def product_body(**variant: Any) -> dict[str, Any]:
    return {"name": "Tee", "variants": [{"title": "Default", "price": 10, **variant}]}


def order_body(**changes: Any) -> dict[str, Any]:
    body = {
        "lineItems": [{"productVariantId": "var_x", "quantity": 1}],
        "shippingAddress": SHIPPING,
        "customer": {"firstName": "Jo", "phone": "081234567890"},
    }
    body.update(changes)
    return body


async def customer_count(platform: Platform, account: Account) -> int:
    async with platform.store.read() as tx:
        page = await tx.list_customers(Tenant(account.company.id, "live"), ListQuery())
    return page.total


# validation: 400 with the field named -----------------------------------------------------------

INVALID = [
    ("bad-email", "POST", CUSTOMERS, {"email": "not-an-email"}, "email"),
    ("email-type", "POST", CUSTOMERS, {"email": 42}, "email"),
    (
        "address1-missing",
        "POST",
        CUSTOMERS,
        {"email": "a@example.com", "addresses": [{"city": "Jakarta"}]},
        "addresses[0].address1",
    ),
    ("tags-string", "POST", CUSTOMERS, {"email": "a@example.com", "tags": "vip"}, "tags"),
    ("unknown-field", "POST", CUSTOMERS, {"email": "a@example.com", "nickname": "x"}, "nickname"),
    ("image-url", "POST", CUSTOMERS, {"email": "a@example.com", "imageUrl": "ftp://x"}, "imageUrl"),
    ("put-bad-email", "PUT", f"{CUSTOMERS}/cust_x", {"email": "nope"}, "email"),
    ("put-unknown", "PUT", f"{CUSTOMERS}/cust_x", {"colour": "red"}, "colour"),
    ("line-items-empty", "POST", ORDERS, order_body(lineItems=[]), "lineItems"),
    (
        "quantity-string",
        "POST",
        ORDERS,
        order_body(lineItems=[{"productVariantId": "var_x", "quantity": "2"}]),
        "lineItems[0].quantity",
    ),
    (
        "quantity-zero",
        "POST",
        ORDERS,
        order_body(lineItems=[{"productVariantId": "var_x", "quantity": 0}]),
        "lineItems[0].quantity",
    ),
    (
        "shipping-zip",
        "POST",
        ORDERS,
        order_body(shippingAddress={k: v for k, v in SHIPPING.items() if k != "zip"}),
        "shippingAddress.zip",
    ),
    ("order-status", "PUT", f"{ORDERS}/order_x", {"status": "shipped"}, "status"),
    ("price-3-decimals", "POST", PRODUCTS, product_body(price=10.125), "variants[0].price"),
    ("price-negative", "POST", PRODUCTS, product_body(price=-1), "variants[0].price"),
    ("price-string", "POST", PRODUCTS, product_body(price="10"), "variants[0].price"),
    (
        "price-missing",
        "POST",
        PRODUCTS,
        {"name": "Tee", "variants": [{"title": "D"}]},
        "variants[0].price",
    ),
    ("variants-empty", "POST", PRODUCTS, {"name": "Tee", "variants": []}, "variants"),
    ("name-missing", "POST", PRODUCTS, {"variants": [{"title": "D", "price": 1}]}, "name"),
    (
        "compare-at",
        "POST",
        PRODUCTS,
        product_body(compareAtPrice=1.001),
        "variants[0].compareAtPrice",
    ),
    ("page-0", "GET", f"{CUSTOMERS}?page=0", None, "page"),
    ("page-text", "GET", f"{PRODUCTS}?page=two", None, "page"),
    ("limit-0", "GET", f"{ORDERS}?limit=0", None, "limit"),
    ("limit-101", "GET", f"{CUSTOMERS}?limit=101", None, "limit"),
    ("sort-field", "GET", f"{CUSTOMERS}?sort=password:asc", None, "sort"),
    ("sort-direction", "GET", f"{PRODUCTS}?sort=name:sideways", None, "sort"),
    ("source", "GET", f"{CUSTOMERS}?source=carrier-pigeon", None, "source"),
    ("status-filter", "GET", f"{ORDERS}?status=lost", None, "status"),
    ("fulfillment-filter", "GET", f"{ORDERS}?fulfillmentStatus=maybe", None, "fulfillmentStatus"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient,
    account: Account,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    for url in (path, alias(path)):
        response = await client.request(method, url, json=body, headers=account.headers)
        error = error_of(response, 400, "VALIDATION_ERROR")
        assert field in fields_of(error), error
        assert field in error["message"], error


async def test_missing_email_and_phone_is_400(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    for body in ({}, {"firstName": "Jo"}, {"email": None, "phoneNumber": None}):
        response = await client.post(CUSTOMERS, json=body, headers=account.headers)
        error = error_of(response, 400, "VALIDATION_ERROR")
        [detail] = error["details"]
        said = f"{detail['field']} {detail['message']}"
        assert "email" in said, error
        assert "phoneNumber" in said, error
    assert await customer_count(platform, account) == 0


async def test_order_needs_exactly_one_customer(
    client: httpx.AsyncClient, account: Account
) -> None:
    neither = order_body()
    del neither["customer"]
    both = order_body(customerId="cust_x")
    for body in (neither, both):
        error = error_of(
            await client.post(ORDERS, json=body, headers=account.headers), 400, "VALIDATION_ERROR"
        )
        assert "customer" in " ".join(d["message"] for d in error["details"])


async def test_several_errors_are_all_reported(client: httpx.AsyncClient, account: Account) -> None:
    body = {"email": "bad", "imageUrl": "nope", "addresses": [{}], "extra": 1}
    response = await client.post(CUSTOMERS, json=body, headers=account.headers)
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert {"email", "imageUrl", "addresses[0].address1", "extra"} <= set(fields_of(error))


# bodies that are not JSON objects ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"email": ', b"{'email': 'a@b.co'}", b"\xff\xfe{}", b'{"email": "a@b.co",}', b"nul"],
    ids=["truncated", "single-quotes", "not-utf8", "trailing-comma", "bare-word"],
)
async def test_invalid_json_is_400_with_a_clear_message(
    client: httpx.AsyncClient, platform: Platform, account: Account, raw: bytes
) -> None:
    headers = {**account.headers, **JSON_HEADERS}
    for method, path in (("POST", CUSTOMERS), ("PUT", f"{CUSTOMERS}/cust_x"), ("POST", ORDERS)):
        response = await client.request(method, path, content=raw, headers=headers)
        error = error_of(response, 400, "VALIDATION_ERROR")
        assert "not valid JSON" in error["message"]
        assert error["details"] == [
            {"field": "body", "message": "the request body is not valid JSON"}
        ]
    assert await customer_count(platform, account) == 0


@pytest.mark.parametrize("raw", [b"[]", b'"a@b.co"', b"null", b"42", b""])
async def test_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, account: Account, raw: bytes
) -> None:
    headers = {**account.headers, **JSON_HEADERS}
    response = await client.post(CUSTOMERS, content=raw, headers=headers)
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert fields_of(error) == ["body"]


# size and type ----------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid customer body of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    core = b'{"email": "big@example.com"}'
    return core + b" " * (size - len(core))


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_body_over_1_mib_is_413(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    assert platform.settings.max_body_bytes == MIB
    headers = {**account.headers, **JSON_HEADERS}
    for method, path in (("POST", CUSTOMERS), ("PUT", f"{CUSTOMERS}/cust_x"), ("POST", ORDERS)):
        response = await client.request(method, path, content=padded(MIB + 1), headers=headers)
        assert "content-length" in {k.lower() for k in response.request.headers}
        error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
        assert str(MIB) in error["message"]
    assert await customer_count(platform, account) == 0
    # exactly 1 MiB is allowed
    at_limit = await client.post(CUSTOMERS, content=padded(MIB), headers=headers)
    assert at_limit.status_code == 201, at_limit.text
    assert await customer_count(platform, account) == 1


async def test_chunked_body_over_1_mib_is_413(
    client: httpx.AsyncClient, platform: Platform, account: Account
) -> None:
    headers = {**account.headers, **JSON_HEADERS}
    response = await client.post(CUSTOMERS, content=chunks(padded(MIB + 1)), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert await customer_count(platform, account) == 0
    # a chunked body within the limit is read whole
    fine = await client.post(CUSTOMERS, content=chunks(padded(MIB)), headers=headers)
    assert fine.status_code == 201, fine.text
    assert fine.json()["data"]["email"] == "big@example.com"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ],
)
async def test_non_json_content_type_is_415(
    client: httpx.AsyncClient, platform: Platform, account: Account, content_type: str
) -> None:
    headers = {**account.headers, "content-type": content_type}
    for method, path in (
        ("POST", CUSTOMERS),
        ("PUT", f"{CUSTOMERS}/cust_x"),
        ("POST", alias(ORDERS)),
    ):
        response = await client.request(
            method, path, content=b'{"email": "a@example.com"}', headers=headers
        )
        error = error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert "application/json" in error["message"]
    assert await customer_count(platform, account) == 0


async def test_json_with_a_charset_is_accepted(client: httpx.AsyncClient, account: Account) -> None:
    headers = {**account.headers, "content-type": "Application/JSON; charset=utf-8"}
    response = await client.post(CUSTOMERS, content=b'{"email": "cs@example.com"}', headers=headers)
    assert response.status_code == 201, response.text


# routes and methods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/customer/open/v1/widgets",
        f"{ALIAS}/widgets",
        "/customer/open/v2/customers",
        "/nothing/here",
        f"{CUSTOMERS}/cust_x/addresses",
    ],
)
async def test_unknown_route_is_404_in_the_envelope(
    client: httpx.AsyncClient, account: Account, path: str
) -> None:
    for headers in ({}, account.headers):
        error = error_of(await client.get(path, headers=headers), 404, "NOT_FOUND")
        assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", CUSTOMERS, "GET, POST"),
        ("PUT", CUSTOMERS, "GET, POST"),
        ("DELETE", PRODUCTS, "GET, POST"),
        ("POST", f"{CUSTOMERS}/cust_x", "DELETE, GET, PUT"),
        ("PATCH", f"{PRODUCTS}/prod_x", "DELETE, GET, PUT"),
        ("DELETE", f"{ORDERS}/order_x", "GET, PUT"),
        ("DELETE", alias(f"{ORDERS}/order_x"), "GET, PUT"),
        ("DELETE", "/whatsapp/open/v1/messages/send-template", "POST"),  # not a message id
    ],
)
async def test_wrong_method_is_405_in_the_envelope_naming_every_allowed_method(
    client: httpx.AsyncClient, account: Account, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, json={}, headers=account.headers)
    error = error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allowed
    assert error["message"] == f"{method} is not allowed here; use {allowed}"


# NUL and lone surrogates: 400, never 500 --------------------------------------------------------

# raw JSON text, so the escapes reach the server exactly as written
BAD_TEXT = [
    (
        "nul-name",
        "POST",
        CUSTOMERS,
        rb'{"email": "a@example.com", "firstName": "a\u0000b"}',
        "firstName",
    ),
    ("nul-email", "POST", CUSTOMERS, rb'{"email": "a\u0000@example.com"}', "email"),
    ("nul-tag", "POST", CUSTOMERS, rb'{"email": "a@example.com", "tags": ["\u0000"]}', "tags[0]"),
    (
        "nul-address",
        "POST",
        CUSTOMERS,
        rb'{"email": "a@example.com", "addresses": [{"address1": "x\u0000"}]}',
        "addresses[0].address1",
    ),
    ("nul-key", "POST", CUSTOMERS, rb'{"email": "a@example.com", "a\u0000": 1}', None),
    (
        "surrogate-name",
        "POST",
        CUSTOMERS,
        rb'{"email": "a@example.com", "firstName": "\ud800"}',
        "firstName",
    ),
    (
        "surrogate-low",
        "POST",
        CUSTOMERS,
        rb'{"email": "a@example.com", "lastName": "x\udfffy"}',
        "lastName",
    ),
    ("surrogate-key", "POST", CUSTOMERS, rb'{"email": "a@example.com", "\ud800": 1}', None),
    ("surrogate-put", "PUT", f"{CUSTOMERS}/cust_x", rb'{"firstName": "\udc00"}', "firstName"),
    (
        "surrogate-product",
        "POST",
        PRODUCTS,
        rb'{"name": "\ud83d", "variants": [{"title": "D", "price": 1}]}',
        "name",
    ),
    (
        "nul-sku",
        "POST",
        PRODUCTS,
        rb'{"name": "T", "variants": [{"title": "D", "price": 1, "sku": "\u0000"}]}',
        "variants[0].sku",
    ),
    ("nul-description", "PUT", f"{PRODUCTS}/prod_x", rb'{"description": "\u0000"}', "description"),
    ("nul-notes", "PUT", f"{ORDERS}/order_x", rb'{"notes": "\u0000"}', "notes"),
    (
        "surrogate-variant-id",
        "POST",
        ORDERS,
        rb'{"lineItems": [{"productVariantId": "\ud800", "quantity": 1}],'
        rb' "shippingAddress": {"firstName": "a", "lastName": "b", "phone": "0812345678",'
        rb' "address1": "c", "city": "d", "province": "e", "zip": "f"},'
        rb' "customer": {"phone": "0812345678"}}',
        "lineItems[0].productVariantId",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [case[1:] for case in BAD_TEXT],
    ids=[case[0] for case in BAD_TEXT],
)
async def test_nul_and_lone_surrogates_in_bodies_are_400(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    method: str,
    path: str,
    raw: bytes,
    field: str | None,
) -> None:
    headers = {**account.headers, **JSON_HEADERS}
    response = await client.request(method, path, content=raw, headers=headers)
    error = error_of(response, 400, "VALIDATION_ERROR")
    if field is not None:
        assert field in fields_of(error), error
    assert await customer_count(platform, account) == 0


# ids and query values reach the database too (PostgreSQL text cannot hold NUL)
RAW_PATHS = [
    ("GET", f"{CUSTOMERS}/cust%00x", "customer_id"),
    ("PUT", f"{CUSTOMERS}/cust%00x", "customer_id"),
    ("DELETE", f"{CUSTOMERS}/cust%00x", "customer_id"),
    ("GET", f"{PRODUCTS}/prod%00x", "product_id"),
    ("PUT", f"{PRODUCTS}/prod%00x", "product_id"),
    ("DELETE", f"{PRODUCTS}/prod%00x", "product_id"),
    ("GET", f"{ORDERS}/order%00x", "order_id"),
    ("PUT", f"{ORDERS}/order%00x", "order_id"),
    ("GET", f"{CUSTOMERS}?search=a%00b", "search"),
    ("GET", f"{CUSTOMERS}?tags=a%00b", "tags"),
    ("GET", f"{PRODUCTS}?search=%00", "search"),
    ("GET", f"{PRODUCTS}?tags=x,%00", "tags"),
    ("GET", f"{ORDERS}?search=ORD%00", "search"),
]


@pytest.mark.parametrize(("method", "path", "field"), RAW_PATHS)
async def test_nul_in_ids_and_query_values_is_400(
    client: httpx.AsyncClient, account: Account, method: str, path: str, field: str
) -> None:
    body = {"notes": "x"} if method == "PUT" and ORDERS in path else {} if method == "PUT" else None
    response = await client.request(method, path, json=body, headers=account.headers)
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert fields_of(error) == [field]


@pytest.mark.parametrize(
    "path",
    [
        f"{CUSTOMERS}/%ED%A0%80",
        f"{CUSTOMERS}?search=%ED%A0%80",
        f"{ORDERS}?search=%F0%9F",
        f"{PRODUCTS}/%FF",
    ],
)
async def test_broken_utf8_in_urls_is_never_500(
    client: httpx.AsyncClient, account: Account, path: str
) -> None:
    response = await client.get(path, headers=account.headers)
    assert response.status_code in {200, 400, 404}, response.text
    if response.status_code != 200:
        error_of(response, response.status_code, response.json()["error"]["code"])


@pytest.mark.parametrize(
    "media",
    [
        pytest.param(rb'{"a": "\ud800"}', id="surrogate"),
        pytest.param(rb'{"\udfff": 1}', id="surrogate-key"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"1e400", id="infinite"),
        pytest.param(b"123456789012345678901234567890", id="huge-int"),
        pytest.param(rb'["\u0000"]', id="nul"),
        pytest.param(rb'{"a\u0000": 1}', id="nul-key"),
    ],
)
async def test_bad_values_in_free_form_media_are_400(
    client: httpx.AsyncClient, account: Account, media: bytes
) -> None:
    raw = b'{"name": "T", "variants": [{"title": "D", "price": 1}], "media": ' + media + b"}"
    headers = {**account.headers, **JSON_HEADERS}
    for method, path in (("POST", PRODUCTS), ("PUT", f"{PRODUCTS}/prod_x")):
        response = await client.request(method, path, content=raw, headers=headers)
        error = error_of(response, 400, "VALIDATION_ERROR")
        assert "media" in fields_of(error), error


# 500 and 503 ------------------------------------------------------------------------------------


async def test_500_is_the_bare_envelope_without_a_trace(
    client: httpx.AsyncClient,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    logged: Recorder,
) -> None:
    secret = "secret-detail-/srv/app/db.py-line-42"

    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(secret)

    monkeypatch.setattr(customers, "search", explode)
    monkeypatch.setattr(customers, "insert", explode)
    monkeypatch.setattr(products, "get", explode)
    monkeypatch.setattr(orders, "update", explode)
    for method, path, body in (
        ("GET", CUSTOMERS, None),
        ("GET", alias(CUSTOMERS), None),
        ("POST", CUSTOMERS, {"email": "a@example.com"}),
        ("GET", f"{PRODUCTS}/prod_x", None),
        ("PUT", f"{ORDERS}/order_x", {"notes": "x"}),
    ):
        response = await client.request(method, path, json=body, headers=account.headers)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == with_request_id(INTERNAL, response)
        for leak in (secret, "Traceback", "RuntimeError", 'File "', ".py"):
            assert leak not in response.text
    # the trace goes to the log instead, once per failure
    assert [(level, event) for level, event, _ in logged.calls] == [
        ("exception", "internal_error")
    ] * 5
    assert all(str(fields["exc_info"]) == secret for _, _, fields in logged.calls)


async def test_a_database_error_is_500_without_its_text(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise StorageError('PostgreSQL failed: relation "customers" does not exist')

    monkeypatch.setattr(customers, "get", fail)
    response = await client.get(f"{CUSTOMERS}/cust_x", headers=account.headers)
    assert response.status_code == 500
    assert response.json() == with_request_id(INTERNAL, response)
    assert "relation" not in response.text


async def test_storage_unavailable_is_503(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("PostgreSQL is unreachable: connect to 10.9.8.7:5432 refused")

    monkeypatch.setattr(customers, "get", down)
    monkeypatch.setattr(products, "insert", down)
    for method, path, body in (
        ("GET", f"{CUSTOMERS}/cust_x", None),
        ("POST", alias(PRODUCTS), {"name": "T", "variants": [{"title": "D", "price": 1}]}),
    ):
        response = await client.request(method, path, json=body, headers=account.headers)
        error = error_of(response, 503, "SERVICE_UNAVAILABLE")
        assert "10.9.8.7" not in response.text
        assert set(error) == {"code", "message"}


async def test_storage_unavailable_during_authentication_is_503(
    client: httpx.AsyncClient,
    platform: Platform,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("the database is busy: database is locked")

    monkeypatch.setattr(platform.store, "write", down)
    monkeypatch.setattr(platform.store, "read", down)
    response = await client.get(CUSTOMERS, headers=account.headers)
    error_of(response, 503, "SERVICE_UNAVAILABLE")
    assert "locked" not in response.text
    monkeypatch.undo()
    assert (await client.get(CUSTOMERS, headers=account.headers)).status_code == 200


# the envelope of every other error --------------------------------------------------------------


async def test_auth_and_not_found_errors_are_bare_envelopes(
    client: httpx.AsyncClient, account: Account
) -> None:
    """No ``details`` where there is nothing per-field, and nothing but ``error``."""
    for response, status, code in (
        (await client.get(CUSTOMERS), 401, "MISSING_API_KEY"),
        (
            await client.get(CUSTOMERS, headers={"x-api-key": "bbb_live_nope"}),
            401,
            "INVALID_API_KEY",
        ),
        (await client.get(f"{CUSTOMERS}/cust_x", headers=account.headers), 404, "NOT_FOUND"),
        (await client.get(f"{ORDERS}/order_x", headers=account.headers), 404, "NOT_FOUND"),
        (await client.delete(f"{PRODUCTS}/prod_x", headers=account.headers), 404, "NOT_FOUND"),
    ):
        error = error_of(response, status, code)
        assert set(error) == {"code", "message"}
