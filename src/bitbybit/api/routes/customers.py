"""``/customers``: SPEC §3 Customers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from bitbybit.api import schemas as out
from bitbybit.api.deps import (
    CustomersDelete,
    CustomersRead,
    CustomersWrite,
    IdempotencyKey,
    Limit,
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
    in_body,
    links,
    sort_query,
)
from bitbybit.runtime import Platform
from bitbybit.schemas import CustomerCreate, CustomerUpdate
from bitbybit.services import customers, payloads

router = APIRouter(tags=["customers"], route_class=Route)
SORTABLE = frozenset({"createdAt", "updatedAt", "firstName", "lastName", "email"})


@router.get(
    "/customers", response_model=out.CustomerList, responses=errors(), operation_id="listCustomers"
)
async def list_customers(
    platform: PlatformDep,
    who: CustomersRead,
    page: PageNumber = 1,
    limit: Limit = 20,
    search: Search = None,
    source: Annotated[str | None, comma_list_query(customers.SOURCES)] = None,
    tags: Annotated[str | None, Query(description="Comma list; any match")] = None,
    sort: Annotated[str | None, sort_query(SORTABLE)] = None,
) -> Response:
    query = list_query(page, limit, search, sort, SORTABLE, source=source, tags=tags)
    found = await customers.search(platform, who.tenant, query)
    return many(found, payloads.customer_resource)


@router.post(
    "/customers",
    status_code=201,
    response_model=out.CustomerEnvelope,
    responses={
        **errors(*WRITE),
        **links(
            201,
            by_id("/data/id", "customer_id", "getCustomer", "updateCustomer", "deleteCustomer"),
            by_id("/data/id", "customerId", "listMessages", "listTickets"),
            in_body("/data/id", "customerId", "openTicket"),
        ),
    },
    operation_id="createCustomer",
)
async def create_customer(
    body: CustomerCreate,
    request: Request,
    who: CustomersWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The platform from the application, not ``PlatformDep``: a dependency fewer for FastAPI
    # to resolve on the API's busiest write.
    platform: Platform = request.app.state.platform
    return await create_once(
        request,
        platform,
        who,
        idempotency_key,
        lambda tx: customers.insert(platform, tx, who.tenant, body),
        payloads.customer_resource,
    )


@router.get(
    "/customers/{customer_id}",
    response_model=out.CustomerEnvelope,
    responses=errors(404),
    operation_id="getCustomer",
)
async def get_customer(customer_id: str, platform: PlatformDep, who: CustomersRead) -> Response:
    return one(payloads.customer_resource(await customers.get(platform, who.tenant, customer_id)))


@router.put(
    "/customers/{customer_id}",
    response_model=out.CustomerEnvelope,
    responses=errors(404, *WRITE),
    operation_id="updateCustomer",
)
async def update_customer(
    customer_id: str, body: CustomerUpdate, platform: PlatformDep, who: CustomersWrite
) -> Response:
    customer = await platform.run(
        lambda tx: customers.update(platform, tx, who.tenant, customer_id, body)
    )
    return one(payloads.customer_resource(customer))


@router.delete(
    "/customers/{customer_id}",
    response_model=out.DeletedEnvelope,
    responses=errors(404),
    operation_id="deleteCustomer",
)
async def delete_customer(
    customer_id: str, platform: PlatformDep, who: CustomersDelete
) -> Response:
    deleted = await platform.run(lambda tx: customers.delete(platform, tx, who.tenant, customer_id))
    return one(payloads.deleted(deleted))
