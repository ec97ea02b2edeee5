"""``/orders``: SPEC §3 Orders (no delete: orders are kept)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from bitbybit.api import schemas as out
from bitbybit.api.deps import (
    IdempotencyKey,
    Limit,
    OrdersRead,
    OrdersWrite,
    PageNumber,
    PlatformDep,
    Search,
    create_once,
    list_query,
    many,
    one,
)
from bitbybit.api.routes import (
    WRITE,
    Route,
    by_id,
    comma_list_query,
    errors,
    links,
    sort_query,
)
from bitbybit.errors import ValidationFailed
from bitbybit.schemas import OrderCreate, OrderUpdate
from bitbybit.services import orders, payloads

router = APIRouter(tags=["orders"], route_class=Route)
SORTABLE = frozenset({"createdAt", "updatedAt"})
STATUSES = {"active", "archived", "cancelled", "refunded"}
FULFILLMENT = {"unfulfilled", "fulfilled"}


@router.get("/orders", response_model=out.OrderList, responses=errors(), operation_id="listOrders")
async def list_orders(
    platform: PlatformDep,
    who: OrdersRead,
    page: PageNumber = 1,
    limit: Limit = 20,
    search: Search = None,
    status: Annotated[str | None, comma_list_query(STATUSES)] = None,
    fulfillmentStatus: Annotated[str | None, comma_list_query(FULFILLMENT)] = None,
    sort: Annotated[str | None, sort_query(SORTABLE)] = None,
) -> Response:
    query = list_query(
        page, limit, search, sort, SORTABLE, status=status, fulfillment_status=fulfillmentStatus
    )
    for field, allowed, values in (
        ("status", STATUSES, query.filters.get("status", ())),
        ("fulfillmentStatus", FULFILLMENT, query.filters.get("fulfillment_status", ())),
    ):
        for value in values:
            if value not in allowed:
                raise ValidationFailed.field(
                    field, f"unknown value {value!r}; use one of {', '.join(sorted(allowed))}"
                )
    return many(await orders.search(platform, who.tenant, query), payloads.order_resource)


@router.post(
    "/orders",
    status_code=201,
    response_model=out.OrderEnvelope,
    responses={
        **errors(*WRITE),
        **links(201, by_id("/data/id", "order_id", "getOrder", "updateOrder")),
    },
    operation_id="createOrder",
)
async def create_order(
    body: OrderCreate,
    request: Request,
    platform: PlatformDep,
    who: OrdersWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: orders.insert(platform, tx, who.tenant, body),
        payloads.order_resource,
    )


@router.get(
    "/orders/{order_id}",
    response_model=out.OrderEnvelope,
    responses=errors(404),
    operation_id="getOrder",
)
async def get_order(order_id: str, platform: PlatformDep, who: OrdersRead) -> Response:
    return one(payloads.order_resource(await orders.get(platform, who.tenant, order_id)))


@router.put(
    "/orders/{order_id}",
    response_model=out.OrderEnvelope,
    responses=errors(404, *WRITE),
    operation_id="updateOrder",
)
async def update_order(
    order_id: str, body: OrderUpdate, platform: PlatformDep, who: OrdersWrite
) -> Response:
    order = await platform.run(lambda tx: orders.update(platform, tx, who.tenant, order_id, body))
    return one(payloads.order_resource(order))
