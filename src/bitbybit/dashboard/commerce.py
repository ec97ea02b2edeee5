"""``/dashboard/customers``, ``/dashboard/orders``, ``/dashboard/products``: the tenant's
records, read-only, with the API's search (``q``, the fields ``search_text`` holds) and pages.

Each list pages by number (``?page=``, 25 a page); each row opens the record's page. Amounts
are kept in hundredths and shown with two decimals (and the order's currency). A record of
another company is not found (404), as it is through the API.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from starlette.responses import Response

from bitbybit.dashboard.messages import conversation_url
from bitbybit.dashboard.web import DashboardRoute, Signed, page_number, render
from bitbybit.models import JSON, ListQuery, Page
from bitbybit.services import conversations, customers, orders, products

router = APIRouter(route_class=DashboardRoute)

PAGE_SIZE = 25
SEARCH_LIMIT = 200
"""The API's limit on ``search``: longer text is cut there."""

Text = Annotated[str | None, Query()]


def money(cents: int | None, currency: str | None = None) -> str:
    """``1234550`` → ``12,345.50`` (``12,345.50 IDR`` with a currency); ``—`` for none."""
    if cents is None:
        return "—"
    whole, rest = divmod(abs(cents), 100)
    text = f"{'-' if cents < 0 else ''}{whole:,}.{rest:02d}"
    return f"{text} {currency}" if currency else text


def price_range(product: Any) -> str:
    prices = [variant.price_cents for variant in product.variants]
    if not prices:
        return "—"
    low, high = min(prices), max(prices)
    return money(low) if low == high else f"{money(low)} – {money(high)}"


def person(record: JSON | None) -> str:
    """A name from an address or an order's customer (``firstName`` and ``lastName``)."""
    if not record:
        return ""
    return " ".join(str(part) for part in (record.get("firstName"), record.get("lastName")) if part)


def _query(q: str | None, page: int, sort: str, **filters: tuple[str, ...]) -> ListQuery:
    search = (q or "").strip()[:SEARCH_LIMIT] or None
    return ListQuery(
        page=page,
        limit=PAGE_SIZE,
        search=search,
        filters={name: values for name, values in filters.items() if values},
        sort_field=sort,
        sort_desc=True,
    )


def _list(
    viewer: Signed,
    kind: str,
    found: Page,
    q: str | None,
    **values: Any,
) -> Response:
    search = (q or "").strip()
    extra = {name: value for name, value in values.pop("keep", {}).items() if value}
    query = urlencode({**({"q": search} if search else {}), **extra})
    fragment = viewer.htmx and viewer.request.headers.get("hx-target") == "results"
    return render(
        viewer,
        f"commerce/_{kind}.html" if fragment else f"commerce/{kind}.html",
        found=found,
        q=search,
        query=query,
        base=f"/dashboard/{kind}",
        money=money,
        price_range=price_range,
        person=person,
        **values,
    )


# -- customers ---------------------------------------------------------------------------------


@router.get("/customers")
async def customer_list(viewer: Signed, q: Text = None, page: Text = None) -> Response:
    query = _query(q, page_number(page), "updated_at")
    found = await customers.search(viewer.platform, viewer.tenant, query)
    return _list(viewer, "customers", found, q, title="Customers")


@router.get("/customers/{customer_id}")
async def customer_page(viewer: Signed, customer_id: str) -> Response:
    customer = await customers.get(viewer.platform, viewer.tenant, customer_id)
    phone = customer.phone_number
    talked = await conversations.has_messages(viewer.platform, viewer.tenant, phone)
    return render(
        viewer,
        "commerce/customer.html",
        customer=customer,
        name=conversations.display_name(customer),
        conversation=conversation_url(phone) if phone is not None and talked else None,
        person=person,
        title=conversations.display_name(customer) or customer.id,
    )


# -- orders ------------------------------------------------------------------------------------


@router.get("/orders")
async def order_list(
    viewer: Signed, q: Text = None, page: Text = None, customer: Text = None
) -> Response:
    """Orders, newest first; ``customer``: one customer's (which must be the tenant's)."""
    whose = None
    if customer:
        whose = await customers.get(viewer.platform, viewer.tenant, customer)
    query = _query(q, page_number(page), "created_at", customer_id=(whose.id,) if whose else ())
    found = await orders.search(viewer.platform, viewer.tenant, query)
    return _list(
        viewer,
        "orders",
        found,
        q,
        whose=whose,
        whose_name=conversations.display_name(whose) if whose else None,
        keep={"customer": whose.id if whose else None},
        title="Orders",
    )


@router.get("/orders/{order_id}")
async def order_page(viewer: Signed, order_id: str) -> Response:
    order = await orders.get(viewer.platform, viewer.tenant, order_id)
    return render(
        viewer,
        "commerce/order.html",
        order=order,
        money=money,
        person=person,
        title=f"Order {order.order_number}",
    )


# -- products ----------------------------------------------------------------------------------


@router.get("/products")
async def product_list(viewer: Signed, q: Text = None, page: Text = None) -> Response:
    query = _query(q, page_number(page), "updated_at")
    found = await products.search(viewer.platform, viewer.tenant, query)
    return _list(viewer, "products", found, q, title="Products")


@router.get("/products/{product_id}")
async def product_page(viewer: Signed, product_id: str) -> Response:
    product = await products.get(viewer.platform, viewer.tenant, product_id)
    return render(
        viewer,
        "commerce/product.html",
        product=product,
        money=money,
        title=product.name,
    )
