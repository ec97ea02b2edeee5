"""The dashboard's read-only customers, orders and products: lists with search and pages, each
record's page, and nothing of another company's."""

from __future__ import annotations

import pytest

from bitbybit.dashboard.commerce import money
from bitbybit.models import Customer, Order, Product, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import (
    AddressIn,
    CustomerCreate,
    LineItemIn,
    OrderCreate,
    ProductCreate,
    ShippingAddressIn,
    VariantIn,
)
from bitbybit.services import customers, messages, orders, products
from bitbybit.store import Tx
from tests.conftest import Account, FakeClock
from tests.dashboard.support import Browser
from tests.dashboard.test_messages import check_page

SITI = "+6281234567890"


def live(account: Account) -> Tenant:
    return Tenant(account.company.id, "live")


async def customer(
    platform: Platform, tenant: Tenant, first: str, last: str, **fields: object
) -> Customer:
    fields.setdefault("email", f"{first}.{last}@example.com".lower())
    data = CustomerCreate(firstName=first, lastName=last, **fields)  # type: ignore[arg-type]
    return await platform.run(lambda tx: customers.insert(platform, tx, tenant, data))


async def product(platform: Platform, tenant: Tenant, name: str, *prices: float) -> Product:
    variants = [
        VariantIn(title=f"Size {n}", price=price, sku=f"SKU-{n}", compareAtPrice=None)
        for n, price in enumerate(prices or (10.0,), start=1)
    ]
    data = ProductCreate(name=name, variants=variants, description=f"About {name}")
    return await platform.run(lambda tx: products.insert(platform, tx, tenant, data))


SHIPPING = ShippingAddressIn(
    firstName="Siti",
    lastName="Rahma",
    phone=SITI,
    address1="Jl. Merdeka 17",
    city="Bandung",
    province="Jawa Barat",
    zip="40111",
)


async def order(
    platform: Platform, tenant: Tenant, buyer: Customer, item: Product, quantity: int = 1
) -> Order:
    data = OrderCreate(
        lineItems=[LineItemIn(productVariantId=item.variants[0].id, quantity=quantity)],
        shippingAddress=SHIPPING,
        customerId=buyer.id,
        notes="Leave at the door",
    )
    return await platform.run(lambda tx: orders.insert(platform, tx, tenant, data))


def test_amounts_in_hundredths_read_as_money() -> None:
    assert money(1999) == "19.99"
    assert money(15_000_000) == "150,000.00"
    assert money(5, "IDR") == "0.05 IDR"
    assert money(-250) == "-2.50"
    assert money(None) == "—"


# -- customers ---------------------------------------------------------------------------------


async def test_customers_are_listed_searched_and_shown(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    siti = await customer(
        platform,
        tenant,
        "Siti",
        "Rahma",
        email="siti@example.com",
        phoneNumber=SITI,
        tags=["vip"],
        addresses=[
            AddressIn(address1="Jl. Merdeka 17", city="Bandung", zip="40111", mainAddress=True)
        ],
    )
    clock.advance(1000)
    budi = await customer(platform, tenant, "Budi", "Santoso", email="budi@example.com")

    page = await admin.get("/dashboard/customers")
    check_page(page.text)
    assert page.status_code == 200, page.text
    assert page.text.index("Budi Santoso") < page.text.index("Siti Rahma")  # latest first
    assert f'href="/dashboard/customers/{siti.id}"' in page.text
    assert "vip" in page.text
    assert 'id="q"' in page.text
    assert '<label for="q">' in page.text

    for q in ("rahma", "SITI@example", "81234567"):
        found = await admin.get("/dashboard/customers", params={"q": q})
        assert "Siti Rahma" in found.text, q
        assert "Budi Santoso" not in found.text, q
    none = await admin.get("/dashboard/customers", params={"q": "zzz_%"})
    assert "Nothing matches" in none.text
    assert "Siti Rahma" not in none.text
    fragment = await admin.get(
        "/dashboard/customers",
        params={"q": "budi"},
        headers={"hx-request": "true", "hx-target": "results"},
    )
    assert fragment.text.lstrip().startswith('<div id="results">')
    assert "<html" not in fragment.text
    assert "Budi Santoso" in fragment.text

    record = await admin.get(f"/dashboard/customers/{siti.id}")
    check_page(record.text)
    assert record.status_code == 200
    text = record.text
    assert "<h1>Siti Rahma</h1>" in text
    assert "siti@example.com" in text
    assert SITI in text
    assert "Jl. Merdeka 17" in text
    assert "Bandung" in text
    assert "Main address" in text
    assert f'href="/dashboard/orders?customer={siti.id}"' in text
    assert "No WhatsApp conversation" in text  # no messages yet

    async def write(tx: Tx) -> None:
        await messages.receive(platform, tx, tenant, messages.Inbound(sender=SITI, body="hi"))

    await platform.run(write)
    record = await admin.get(f"/dashboard/customers/{siti.id}")
    assert 'href="/dashboard/messages/c/%2B6281234567890"' in record.text
    assert (await admin.get(f"/dashboard/customers/{budi.id}")).status_code == 200


async def test_customer_pages_page_and_bad_page_numbers_are_harmless(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    for number in range(27):
        await customer(platform, tenant, f"Person{number:02d}", "Tester")
        clock.advance(10)
    first = await admin.get("/dashboard/customers")
    assert "Person26" in first.text
    assert "Person02" in first.text
    assert "Person01" not in first.text
    assert "27 in all" in first.text
    assert 'href="/dashboard/customers?page=2"' in first.text
    second = await admin.get("/dashboard/customers?page=2")
    assert "Person01" in second.text
    assert "Person00" in second.text
    assert "Person26" not in second.text
    searched = await admin.get("/dashboard/customers", params={"q": "tester", "page": "2"})
    assert "Person00" in searched.text
    assert 'href="/dashboard/customers?q=tester&amp;page=1"' in searched.text
    for bad in ("0", "-1", "abc", "2.5", "99999999999", ""):
        assert (await admin.get(f"/dashboard/customers?page={bad}")).status_code == 200, bad
    beyond = await admin.get("/dashboard/customers?page=40")
    assert beyond.status_code == 200
    assert "nothing on this page" in beyond.text
    long = await admin.get("/dashboard/customers", params={"q": "x" * 5000})
    assert long.status_code == 200


# -- orders ------------------------------------------------------------------------------------


async def test_orders_are_listed_searched_and_shown_with_money(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    siti = await customer(platform, tenant, "Siti", "Rahma", phoneNumber=SITI)
    budi = await customer(platform, tenant, "Budi", "Santoso")
    shirt = await product(platform, tenant, "Premium T-Shirt", 75000.0)
    mug = await product(platform, tenant, "Mug", 19.99)
    first = await order(platform, tenant, siti, shirt, quantity=2)
    clock.advance(1000)
    second = await order(platform, tenant, budi, mug, quantity=3)

    page = await admin.get("/dashboard/orders")
    check_page(page.text)
    assert page.status_code == 200, page.text
    text = page.text
    assert text.index(f"#{second.order_number}") < text.index(f"#{first.order_number}")
    assert "150,000.00" in text
    assert "59.97" in text
    assert f'href="/dashboard/orders/{first.id}"' in text
    assert "Siti Rahma" in text

    by_name = await admin.get("/dashboard/orders", params={"q": "santoso"})
    assert f"#{second.order_number}" in by_name.text
    assert f"#{first.order_number}<" not in by_name.text
    by_id = await admin.get("/dashboard/orders", params={"q": first.order_id})
    assert f'href="/dashboard/orders/{first.id}"' in by_id.text
    assert f'href="/dashboard/orders/{second.id}"' not in by_id.text

    record = await admin.get(f"/dashboard/orders/{first.id}")
    check_page(record.text)
    assert record.status_code == 200
    text = record.text
    assert f"<h1>Order #{first.order_number}</h1>" in text
    assert "Premium T-Shirt" in text
    assert "75,000.00" in text
    assert "150,000.00" in text
    assert "Size 1" in text
    assert "SKU-1" in text
    assert "Jl. Merdeka 17" in text
    assert "Bandung" in text
    assert "Leave at the door" in text
    assert f'href="/dashboard/customers/{siti.id}"' in text

    mine = await admin.get("/dashboard/orders", params={"customer": siti.id})
    assert mine.status_code == 200
    assert "Orders of Siti Rahma" in mine.text
    assert f'href="/dashboard/orders/{first.id}"' in mine.text
    assert f'href="/dashboard/orders/{second.id}"' not in mine.text
    assert f'name="customer" value="{siti.id}"' in mine.text  # kept by the search form
    for bad in ("0", "x", "77777777777"):
        assert (await admin.get(f"/dashboard/orders?page={bad}")).status_code == 200


# -- products ----------------------------------------------------------------------------------


async def test_products_are_listed_searched_and_shown_with_variants(
    platform: Platform, account: Account, admin: Browser, clock: FakeClock
) -> None:
    tenant = live(account)
    shirt = await product(platform, tenant, "Premium T-Shirt", 75000.0, 80000.5)
    clock.advance(1000)
    mug = await product(platform, tenant, "Coffee Mug", 19.99)

    page = await admin.get("/dashboard/products")
    check_page(page.text)
    assert page.status_code == 200, page.text
    text = page.text
    assert text.index("Coffee Mug") < text.index("Premium T-Shirt")
    assert "75,000.00 – 80,000.50" in text
    assert "19.99" in text
    assert f'href="/dashboard/products/{shirt.id}"' in text

    found = await admin.get("/dashboard/products", params={"q": "coffee"})
    assert "Coffee Mug" in found.text
    assert "Premium T-Shirt" not in found.text
    by_product_id = await admin.get("/dashboard/products", params={"q": shirt.product_id})
    assert "Premium T-Shirt" in by_product_id.text
    assert "Coffee Mug" not in by_product_id.text

    record = await admin.get(f"/dashboard/products/{shirt.id}")
    check_page(record.text)
    assert record.status_code == 200
    text = record.text
    assert "<h1>Premium T-Shirt</h1>" in text
    assert "About Premium T-Shirt" in text
    assert "Size 1" in text
    assert "Size 2" in text
    assert "SKU-2" in text
    assert "75,000.00" in text
    assert "80,000.50" in text
    assert shirt.variants[0].id in text
    assert (await admin.get(f"/dashboard/products/{mug.id}")).status_code == 200
    for bad in ("0", "y", "-5"):
        assert (await admin.get(f"/dashboard/products?page={bad}")).status_code == 200


# -- who sees what -----------------------------------------------------------------------------


async def test_a_viewer_reads_everything_and_finds_no_change_controls(
    platform: Platform, account: Account, viewer: Browser
) -> None:
    tenant = live(account)
    buyer = await customer(platform, tenant, "Siti", "Rahma")
    item = await product(platform, tenant, "Mug", 19.99)
    bought = await order(platform, tenant, buyer, item)
    for path in (
        "/dashboard/customers",
        f"/dashboard/customers/{buyer.id}",
        "/dashboard/orders",
        f"/dashboard/orders/{bought.id}",
        "/dashboard/products",
        f"/dashboard/products/{item.id}",
    ):
        page = await viewer.get(path)
        check_page(page.text)
        assert page.status_code == 200, path
        main = page.text[page.text.index("<main") :]
        assert 'method="post"' not in main, path  # read-only: no form changes anything
    for path in ("/dashboard/customers", f"/dashboard/orders/{bought.id}"):
        assert (await viewer.post(path, {})).status_code in (403, 404, 405)


@pytest.mark.parametrize("kind", ["customers", "orders", "products"])
async def test_another_companys_records_are_not_found(
    platform: Platform, account: Account, other_account: Account, admin: Browser, kind: str
) -> None:
    theirs = live(other_account)
    buyer = await customer(platform, theirs, "Secret", "Buyer", email="secret@example.com")
    item = await product(platform, theirs, "Secret Product", 19.99)
    bought = await order(platform, theirs, buyer, item)
    ids = {"customers": buyer.id, "orders": bought.id, "products": item.id}
    answer = await admin.get(f"/dashboard/{kind}/{ids[kind]}")
    assert answer.status_code == 404
    assert "Secret" not in answer.text
    listing = await admin.get(f"/dashboard/{kind}", params={"q": "secret"})
    assert listing.status_code == 200
    assert "Secret" not in listing.text
    whose = await admin.get("/dashboard/orders", params={"customer": buyer.id})
    assert whose.status_code == 404
    assert "Secret" not in whose.text
    # and the test mode of one's own company is another tenant too
    own = await customer(platform, Tenant(account.company.id, "test"), "Test", "Only")
    assert (await admin.get(f"/dashboard/customers/{own.id}")).status_code == 404
    assert (await admin.get("/dashboard/customers/nope")).status_code == 404
