"""``/products``: SPEC §3 Products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from bitbybit.api import schemas as out
from bitbybit.api.deps import (
    IdempotencyKey,
    Limit,
    PageNumber,
    PlatformDep,
    ProductsDelete,
    ProductsRead,
    ProductsWrite,
    Search,
    create_once,
    list_query,
    many,
    one,
)
from bitbybit.api.routes import WRITE, Route, by_id, errors, links, sort_query
from bitbybit.schemas import ProductCreate, ProductUpdate
from bitbybit.services import payloads, products

router = APIRouter(tags=["products"], route_class=Route)
SORTABLE = frozenset({"createdAt", "updatedAt", "name"})
ORDER_OF_FIRST_VARIANT = {
    "lineItems": [{"productVariantId": "$response.body#/data/variants/0/id", "quantity": 1}],
    "customer": {"firstName": "Ada", "lastName": "Lovelace", "phone": "+14155552671"},
    "shippingAddress": {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "phone": "+14155552671",
        "address1": "1 Main Street",
        "city": "Springfield",
        "province": "IL",
        "zip": "62701",
    },
}
"""An order of the product just created: a link a stateful client follows to reach orders."""


@router.get(
    "/products", response_model=out.ProductList, responses=errors(), operation_id="listProducts"
)
async def list_products(
    platform: PlatformDep,
    who: ProductsRead,
    page: PageNumber = 1,
    limit: Limit = 20,
    search: Search = None,
    tags: Annotated[str | None, Query(description="Comma list; any match")] = None,
    sort: Annotated[str | None, sort_query(SORTABLE)] = None,
) -> Response:
    query = list_query(page, limit, search, sort, SORTABLE, tags=tags)
    return many(await products.search(platform, who.tenant, query), payloads.product)


@router.post(
    "/products",
    status_code=201,
    response_model=out.ProductEnvelope,
    responses={
        **errors(*WRITE),
        **links(
            201,
            by_id("/data/id", "product_id", "getProduct", "updateProduct", "deleteProduct"),
            {"createOrder": {"requestBody": ORDER_OF_FIRST_VARIANT}},
        ),
    },
    operation_id="createProduct",
)
async def create_product(
    body: ProductCreate,
    request: Request,
    platform: PlatformDep,
    who: ProductsWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: products.insert(platform, tx, who.tenant, body),
        payloads.product,
    )


@router.get(
    "/products/{product_id}",
    response_model=out.ProductEnvelope,
    responses=errors(404),
    operation_id="getProduct",
)
async def get_product(product_id: str, platform: PlatformDep, who: ProductsRead) -> Response:
    return one(payloads.product(await products.get(platform, who.tenant, product_id)))


@router.put(
    "/products/{product_id}",
    response_model=out.ProductEnvelope,
    responses=errors(404, *WRITE),
    operation_id="updateProduct",
)
async def update_product(
    product_id: str, body: ProductUpdate, platform: PlatformDep, who: ProductsWrite
) -> Response:
    product = await platform.run(
        lambda tx: products.update(platform, tx, who.tenant, product_id, body)
    )
    return one(payloads.product(product))


@router.delete(
    "/products/{product_id}",
    response_model=out.DeletedEnvelope,
    responses=errors(404),
    operation_id="deleteProduct",
)
async def delete_product(product_id: str, platform: PlatformDep, who: ProductsDelete) -> Response:
    deleted = await platform.run(lambda tx: products.delete(platform, tx, who.tenant, product_id))
    return one(payloads.deleted(deleted))
