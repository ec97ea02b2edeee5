"""``api/direct.py``: the API's routes taken straight to their endpoints answer as FastAPI does.

Every request below is sent twice over one database: through the application as ``serve`` builds
it, and through the same application without the ``Direct`` layer (FastAPI's path alone). The two
answers must be the same: status, headers, body (ids and times aside for creates). A spy on the
layer's inner application shows which requests it answered itself and which it handed on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from bitbybit.api.app import CUSTOMER_PREFIXES, WHATSAPP_PREFIXES, create_app
from bitbybit.api.direct import Direct, families
from bitbybit.runtime import Platform
from bitbybit.services import access
from tests.conftest import CUSTOMERS, Account

JSON = {"content-type": "application/json"}
REQUEST_ID = {"x-request-id": "req_same"}
VARYING = {"date", "ratelimit-remaining", "ratelimit-reset"}
"""Headers that differ between two requests in a row whatever path answers them."""
CREATED = re.compile(rb'"(id|createdAt|updatedAt|email|customerId)":"[^"]*"')


@dataclass
class Spy:
    """Counts the requests the ``Direct`` layer handed on to FastAPI."""

    inner: ASGIApp
    handed_on: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.handed_on.append(f"{scope['method']} {scope['path']}")
        await self.inner(scope, receive, send)


def transport(app: FastAPI) -> httpx.AsyncClient:
    asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=asgi, base_url="http://testserver")


def without_direct(platform: Platform) -> FastAPI:
    app = create_app(platform=platform)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not Direct]
    return app


def direct_layer(app: FastAPI) -> Direct:
    layer: Any = app.middleware_stack
    while not isinstance(layer, Direct):
        layer = layer.app
    return layer


@dataclass
class Pair:
    direct: httpx.AsyncClient
    plain: httpx.AsyncClient
    spy: Spy

    async def both(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        sent = {**REQUEST_ID, **(headers or {})}
        first = await self.direct.request(method, path, headers=sent, **kwargs)
        second = await self.plain.request(method, path, headers=sent, **kwargs)
        return first, second


@pytest.fixture
async def pair(platform: Platform) -> AsyncIterator[Pair]:
    app = create_app(platform=platform)
    async with transport(app) as direct, transport(without_direct(platform)) as plain:
        await direct.get("/healthz")  # builds the middleware stack
        layer = direct_layer(app)
        spy = Spy(layer.app)
        layer.app = spy
        yield Pair(direct, plain, spy)


def alike(first: httpx.Response, second: httpx.Response, mask: bool = False) -> None:
    assert first.status_code == second.status_code, (first.text, second.text)
    heads = [
        {
            k: v
            for k, v in r.headers.items()
            if k not in VARYING and not (mask and k == "content-length")
        }
        for r in (first, second)
    ]
    assert heads[0] == heads[1]
    if mask:
        assert CREATED.sub(rb'"\1":""', first.content) == CREATED.sub(rb'"\1":""', second.content)
    else:
        assert first.content == second.content


def test_every_route_of_the_api_families_is_taken_directly(platform: Platform) -> None:
    app = create_app(platform=platform)
    taken = families(app)
    assert [f.prefix for f in taken] == [*CUSTOMER_PREFIXES, *WHATSAPP_PREFIXES]
    for family in taken:
        mount = next(
            r for r in app.router.routes if isinstance(r, Mount) and r.path == family.prefix
        )
        routes = [
            r
            for r in iter_route_contexts(mount.app.routes)
            if isinstance(r.original_route, APIRoute)
        ]
        assert len(family.patterns) == len(routes)
        unplanned = [
            r.path
            for r, (_, _, _, plan) in zip(routes, family.patterns, strict=True)
            if plan is None
        ]
        assert unplanned == [], f"routes FastAPI alone answers: {unplanned} (see api/direct.py)"


async def test_a_well_formed_write_and_read_never_reach_fastapi(
    pair: Pair, account: Account
) -> None:
    created = await pair.direct.post(
        CUSTOMERS, json={"email": "direct@example.com", "firstName": "Di"}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"].startswith("req_")
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(created.headers)
    customer_id = created.json()["data"]["id"]
    found = await pair.direct.get(f"{CUSTOMERS}/{customer_id}", headers=account.headers)
    assert found.json()["data"] == created.json()["data"]
    listed = await pair.direct.get(
        CUSTOMERS, params={"limit": 5, "sort": "email:asc"}, headers=account.headers
    )
    assert listed.json()["meta"]["total"] == 1
    assert pair.spy.handed_on == []


async def test_a_refused_request_is_handed_on_before_authentication_and_counted_once(
    pair: Pair, account: Account
) -> None:
    before = await pair.direct.get(CUSTOMERS, headers=account.headers)
    refused = await pair.direct.post(CUSTOMERS, json={"email": "nope"}, headers=account.headers)
    after = await pair.direct.get(CUSTOMERS, headers=account.headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    assert pair.spy.handed_on == [f"POST {CUSTOMERS}"]
    remaining = [int(r.headers["ratelimit-remaining"]) for r in (before, refused, after)]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]


DEEP = b'{"tags":' + b"[" * 70 + b"]" * 70 + b"}"
ERRORS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", CUSTOMERS, {"json": {"email": "not-an-email"}}),
    ("POST", CUSTOMERS, {"json": {}}),
    ("POST", CUSTOMERS, {"json": [1, 2]}),
    ("POST", CUSTOMERS, {"json": None}),
    ("POST", CUSTOMERS, {"content": b'{"email": ', "headers": JSON}),
    ("POST", CUSTOMERS, {"content": b"", "headers": JSON}),
    ("POST", CUSTOMERS, {"content": DEEP, "headers": JSON}),
    (
        "POST",
        CUSTOMERS,
        {"content": b'{"firstName": 123456789012345678901234567890}', "headers": JSON},
    ),
    (
        "POST",
        CUSTOMERS,
        {"content": b'{"email": "a@b.co", "firstName": "\\ud800"}', "headers": JSON},
    ),
    ("POST", CUSTOMERS, {"content": b'{"email": "a@b.co", "firstName": NaN}', "headers": JSON}),
    ("POST", CUSTOMERS, {"content": '{"email": "nope"}'.encode("utf-16"), "headers": JSON}),
    ("POST", CUSTOMERS, {"content": b'{"email": "a@b.co"}', "headers": {"content-type": ""}}),
    ("POST", CUSTOMERS, {"json": {"email": "a@b.co"}, "headers": {"idempotency-key": "k" * 256}}),
    ("POST", CUSTOMERS, {"json": {"email": "a@b.co"}, "headers": {"idempotency-key": ""}}),
    ("POST", f"{CUSTOMERS}/cus_x", {"json": {"email": "a@b.co"}}),
    ("PUT", f"{CUSTOMERS}/cus_missing", {"json": {"firstName": "X"}}),
    ("PUT", f"{CUSTOMERS}/cus_missing", {"json": {"email": 5}}),
    ("DELETE", f"{CUSTOMERS}/cus_missing", {}),
    ("GET", f"{CUSTOMERS}/cus_missing", {}),
    ("GET", f"{CUSTOMERS}/cus%00x", {}),
    ("HEAD", CUSTOMERS, {}),
    ("GET", CUSTOMERS, {"params": {"limit": 0}}),
    ("GET", CUSTOMERS, {"params": {"limit": "many"}}),
    ("GET", CUSTOMERS, {"params": {"sort": "bogus"}}),
    ("GET", CUSTOMERS, {"params": {"search": "a\x00b"}}),
    ("GET", CUSTOMERS, {"params": {"page": 2, "limit": 5, "source": "api"}}),
    ("GET", "/customer/api/open/v1/customers", {}),
    ("GET", "/customer/open/v1/nothing", {}),
    ("GET", "/customer/open/v1/", {}),
    ("GET", "/customer/open/v1/events", {"params": {"type": "customer.created", "limit": 3}}),
    ("GET", "/customer/open/v1/webhooks/whk_missing/deliveries", {}),
    ("POST", "/customer/open/v1/webhooks", {"json": {"url": "ftp://x", "events": ["nope"]}}),
    ("POST", "/customer/open/v1/orders", {"json": {"lineItems": []}}),
    ("POST", "/whatsapp/open/v1/messages/send", {"json": {"to": ""}}),
    ("GET", "/whatsapp/api/open/v1/messages", {"params": {"limit": 101}}),
    ("GET", "/whatsapp/open/v1/templates/none", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ERRORS)
async def test_both_paths_answer_alike(
    pair: Pair, account: Account, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    headers = {**account.headers, **kwargs.get("headers", {})}
    rest = {name: value for name, value in kwargs.items() if name != "headers"}
    first, second = await pair.both(method, path, headers=headers, **rest)
    alike(first, second)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "bbb_live_" + "0" * 40},
        {"x-api-key": "not a key"},
    ],
)
async def test_both_paths_refuse_a_caller_alike(
    pair: Pair, account: Account, headers: dict[str, str]
) -> None:
    for method, path, kwargs in (
        ("POST", CUSTOMERS, {"json": {"email": "a@b.co"}}),
        ("POST", CUSTOMERS, {"json": {"email": "nope"}}),
        ("GET", CUSTOMERS, {"params": {"limit": 0}}),
    ):
        first, second = await pair.both(method, path, headers=headers, **kwargs)
        alike(first, second)


async def test_both_paths_refuse_a_scope_alike(
    pair: Pair, account: Account, platform: Platform
) -> None:
    _, reader = await access.create_api_key(platform, account.company.id, scopes=["customers:read"])
    first, second = await pair.both(
        "POST", CUSTOMERS, headers={"x-api-key": reader}, json={"email": "a@b.co"}
    )
    assert first.status_code == 403
    alike(first, second)


async def test_both_paths_create_alike(pair: Pair, account: Account) -> None:
    """A create, its duplicate (409) and an idempotent replay, each through both paths."""
    sent: Callable[[str], dict[str, Any]] = lambda email: {  # noqa: E731
        "json": {"email": email, "firstName": "Twin", "tags": ["a"]},
        "headers": {**account.headers, **REQUEST_ID},
    }
    first = await pair.direct.post(CUSTOMERS, **sent("one@example.com"))
    second = await pair.plain.post(CUSTOMERS, **sent("two@example.com"))
    alike(first, second, mask=True)
    first = await pair.direct.post(CUSTOMERS, **sent("two@example.com"))
    second = await pair.plain.post(CUSTOMERS, **sent("two@example.com"))
    assert first.status_code == 409
    alike(first, second)
    keyed = {"idempotency-key": "same-key"}
    body = {"json": {"email": "three@example.com"}, "headers": {**account.headers, **keyed}}
    created = await pair.direct.post(CUSTOMERS, **body)
    replayed = await pair.plain.post(CUSTOMERS, **body)
    again = await pair.direct.post(CUSTOMERS, **body)
    assert (created.status_code, replayed.status_code, again.status_code) == (201, 201, 201)
    assert replayed.headers["idempotent-replayed"] == again.headers["idempotent-replayed"] == "true"
    assert created.content == replayed.content == again.content
    assert pair.spy.handed_on == []


def test_unsent_parameters_take_the_values_fastapi_gives_them(platform: Platform) -> None:
    """A request that sends no query string, or none of a route's headers, gets the values
    FastAPI worked out for an empty set, without asking it again; the header names it looks for
    include each parameter's alias."""
    customers = families(create_app(platform=platform))[0]
    create = customers.literal[("POST", "/customers")]
    listing = customers.literal[("GET", "/customers")]
    assert create is not None
    assert listing is not None
    assert create.headers.unsent == {"idempotency_key": None}
    assert {"idempotency-key", "idempotency_key"} <= create.headers.names
    assert listing.query.unsent == {
        "page": 1,
        "limit": 20,
        "search": None,
        "source": None,
        "tags": None,
        "sort": None,
    }
