"""Dependencies of the handlers: the platform, the authenticated caller, list parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Header, Query, Request, Response
from fastapi.security import APIKeyHeader

from bitbybit.errors import ValidationFailed
from bitbybit.models import ListQuery, Page
from bitbybit.runtime import Platform
from bitbybit.services.access import Caller, FailedAuthLimiter, admit, authenticate
from bitbybit.services.idempotency import request_hash, run_once
from bitbybit.store import Tx

T = TypeVar("T")


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


class Scoped(APIKeyHeader):
    """The dependency of a route that requires ``scope``: it authenticates the request.

    It is FastAPI's ``x-api-key`` header scheme itself (the document names it as before), not a
    dependency on it: FastAPI resolves it with none of its own beneath, which is a level of
    dependency resolution less on every request of the API.
    """

    def __init__(self, scope: str) -> None:
        super().__init__(
            name="x-api-key",
            scheme_name="APIKeyHeader",
            auto_error=False,
            description=(
                "Your API key (`bbb_live_…` or `bbb_test_…`); `x-bitbybit-key` also works."
            ),
        )
        self.scope = scope

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        state = request.app.state
        headers = request.headers
        raw = headers.get("x-api-key") or headers.get("x-bitbybit-key")
        client_ip = request.client.host if request.client else None
        failures: FailedAuthLimiter = state.auth_failures
        caller = await authenticate(state.platform, raw, client_ip, failures)
        request.state.rate = caller.rate
        admit(caller, client_ip, self.scope)
        refuse_nul(request)
        return caller


def scoped(scope: str) -> Scoped:
    """A dependency that authenticates the request and requires ``scope``."""
    return Scoped(scope)


async def check_access(request: Request) -> None:
    """Run the route's access checks for a request FastAPI refused before its dependencies.

    FastAPI parses a JSON body before it resolves dependencies: without this, a body that is not
    JSON would answer 400 to a caller without a key, uncounted and without ``RateLimit-*``.
    """
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for sub in getattr(dependant, "dependencies", ()):
        if isinstance(sub.call, Scoped):
            await sub.call(request)
            return


def refuse_nul(request: Request) -> None:
    """Ids and query values reach the database, whose text cannot hold NUL: 400, never 500."""
    query = request.query_params.multi_items() if request.scope["query_string"] else ()
    for name, value in (*request.path_params.items(), *query):
        if isinstance(value, str) and "\x00" in value:
            raise ValidationFailed.field(name, "must not contain NUL characters")


CustomersRead = Annotated[Caller, Depends(scoped("customers:read"))]
CustomersWrite = Annotated[Caller, Depends(scoped("customers:write"))]
CustomersDelete = Annotated[Caller, Depends(scoped("customers:delete"))]
OrdersRead = Annotated[Caller, Depends(scoped("orders:read"))]
OrdersWrite = Annotated[Caller, Depends(scoped("orders:write"))]
ProductsRead = Annotated[Caller, Depends(scoped("products:read"))]
ProductsWrite = Annotated[Caller, Depends(scoped("products:write"))]
ProductsDelete = Annotated[Caller, Depends(scoped("products:delete"))]
WebhooksRead = Annotated[Caller, Depends(scoped("webhooks:read"))]
WebhooksWrite = Annotated[Caller, Depends(scoped("webhooks:write"))]
MessagesRead = Annotated[Caller, Depends(scoped("messages:read"))]
MessagesWrite = Annotated[Caller, Depends(scoped("messages:write"))]


SORT_FIELDS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "firstName": "first_name",
    "lastName": "last_name",
    "email": "email",
    "name": "name",
}


def split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def list_query(
    page: int,
    limit: int,
    search: str | None = None,
    sort: str | None = None,
    sortable: frozenset[str] = frozenset({"createdAt", "updatedAt"}),
    **filters: str | None,
) -> ListQuery:
    sort_field, sort_desc = "updated_at", True
    if sort:
        name, _, direction = sort.partition(":")
        if name not in sortable or direction not in {"", "asc", "desc"}:
            raise ValidationFailed.field(
                "sort", f"use field:asc|desc with field one of {', '.join(sorted(sortable))}"
            )
        sort_field, sort_desc = SORT_FIELDS[name], direction != "asc"
    return ListQuery(
        page=page,
        limit=limit,
        search=search or None,
        filters={name: split(value) for name, value in filters.items() if value},
        sort_field=sort_field,
        sort_desc=sort_desc,
    )


PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page, 1–100")]
Search = Annotated[str | None, Query(max_length=200)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and body within 24 h replays the first response",
    ),
]

JSON_TYPE = "application/json"


def one(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps({"data": data}), status_code, media_type=JSON_TYPE)


def many(page: Page, render: Callable[[Any], Any]) -> Response:
    body = {
        "data": [render(item) for item in page.items],
        "meta": {
            "page": page.page,
            "limit": page.limit,
            "total": page.total,
            "hasNextPage": page.has_next_page,
        },
    }
    return Response(orjson.dumps(body), media_type=JSON_TYPE)


async def create_once(
    request: Request,
    platform: Platform,
    who: Caller,
    idempotency_key: str | None,
    operation: Callable[[Tx], Awaitable[T]],
    present: Callable[[T], Any],
    status_code: int = 201,
) -> Response:
    """Run a create at most once per ``Idempotency-Key``; answer ``status_code`` (201) with
    its resource. The request's fingerprint is only worked out when there is a key to keep it
    under."""
    fingerprint = ""
    if idempotency_key is not None:
        fingerprint = request_hash(request.method, canonical_path(request), await request.body())

    def render(result: T) -> tuple[int, bytes]:
        return status_code, orjson.dumps({"data": present(result)})

    outcome = await run_once(platform, who.tenant, idempotency_key, fingerprint, operation, render)
    response = Response(outcome.body, outcome.status_code, media_type=JSON_TYPE)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


ALIASES = {
    "/customer/api/open/v1": "/customer/open/v1",
    "/whatsapp/api/open/v1": "/whatsapp/open/v1",
}
"""Each alias prefix and the prefix it stands for (SPEC §2)."""


def canonical_path(request: Request) -> str:
    path = request.url.path
    for alias, canonical in ALIASES.items():
        if path.startswith(alias):
            return canonical + path.removeprefix(alias)
    return path
