"""The storage port's contract: every test runs against SQLite and PostgreSQL (``store`` fixture).

Tests speak in domain terms (records in, records out) and never look at SQL. Tenants:
``LIVE_A`` is the data under test; ``TEST_A`` (same company, test mode) and ``LIVE_B`` (another
company) must never see it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from bitbybit.errors import IntegrityViolation, StorageError
from bitbybit.models import (
    ApiKey,
    Company,
    Customer,
    Event,
    ListQuery,
    Mode,
    Order,
    Page,
    Product,
    StoredResponse,
    Tenant,
    Variant,
)
from bitbybit.store import Store

T0 = 1_700_000_000_000  # a fixed instant (ms); tests never read the wall clock
COMPANY_A = "co_a"
COMPANY_B = "co_b"
LIVE_A = Tenant(COMPANY_A, "live")
TEST_A = Tenant(COMPANY_A, "test")
LIVE_B = Tenant(COMPANY_B, "live")

_serial = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}_{next(_serial):06d}"


# -- builders ----------------------------------------------------------------------------------


def make_company(company_id: str = COMPANY_A, name: str = "Acme") -> Company:
    return Company(id=company_id, name=name, country="ID", created_at=T0)


def make_key(company_id: str = COMPANY_A, mode: Mode = "live", **changes: Any) -> ApiKey:
    key = ApiKey(
        id=uid("key"),
        company_id=company_id,
        mode=mode,
        prefix="bb_live_abc",
        scopes=frozenset({"customers:read", "orders:write"}),
        ip_allowlist=("10.0.0.0/8", "192.0.2.7"),
        name="server",
        created_at=T0,
        expires_at=None,
        revoked_at=None,
    )
    return replace(key, **changes)


def make_customer(**changes: Any) -> Customer:
    customer = Customer(
        id=uid("cust"),
        email=None,
        phone_number=None,
        first_name=None,
        last_name=None,
        image_url=None,
        tags=[],
        addresses=[],
        source="api",
        created_at=T0,
        updated_at=T0,
    )
    return replace(customer, **changes)


def make_variant(key: str = "default", price_cents: int = 10_000, **changes: Any) -> Variant:
    variant = Variant(
        id=uid("var"),
        key=key,
        price_cents=price_cents,
        compare_at_price_cents=None,
        inventory_sku=None,
    )
    return replace(variant, **changes)


def make_product(name: str = "Kopi", **changes: Any) -> Product:
    product = Product(
        id=uid("prod"),
        product_id=uid("ext"),
        name=name,
        description=None,
        media=None,
        status="active",
        variants=[make_variant()],
        options=[],
        tags=[],
        types=[],
        created_at=T0,
        updated_at=T0,
    )
    return replace(product, **changes)


def make_order(order_number: int, **changes: Any) -> Order:
    order = Order(
        id=uid("ord"),
        order_id=f"ORD-{order_number}",
        order_number=order_number,
        status="active",
        fulfillment_status="unfulfilled",
        financial_status="paid",
        total_cents=25_000,
        currency="IDR",
        customer_id=None,
        customer=None,
        line_items=[],
        shipping_address=None,
        notes=None,
        tags=[],
        created_at=T0,
        updated_at=T0,
    )
    return replace(order, **changes)


def make_event(type: str = "customer.created", created_at: int = T0, **changes: Any) -> Event:
    return Event(
        id=changes.pop("id", uid("evt")),
        type=type,
        payload=changes.pop("payload", b'{"id":"x"}'),
        created_at=created_at,
    )


def ids(page: Page) -> list[str]:
    return [item.id for item in page.items]


@pytest.fixture
async def companies(store: Store) -> Store:
    """The store with companies A and B."""
    async with store.write() as tx:
        await tx.insert_company(make_company(COMPANY_A, "Acme"))
        await tx.insert_company(make_company(COMPANY_B, "Globex"))
    return store


async def add_customers(store: Store, *customers: Customer, tenant: Tenant = LIVE_A) -> None:
    async with store.write() as tx:
        for customer in customers:
            await tx.insert_customer(tenant, customer)


async def list_customers(store: Store, tenant: Tenant = LIVE_A, **query: Any) -> Page:
    async with store.read() as tx:
        return await tx.list_customers(tenant, ListQuery(**query))


async def add_products(store: Store, *products: Product, tenant: Tenant = LIVE_A) -> None:
    async with store.write() as tx:
        for product in products:
            await tx.insert_product(tenant, product)


async def add_orders(store: Store, *orders: Order, tenant: Tenant = LIVE_A) -> None:
    async with store.write() as tx:
        for order in orders:
            await tx.insert_order(tenant, order)


async def list_orders(store: Store, **query: Any) -> Page:
    async with store.read() as tx:
        return await tx.list_orders(LIVE_A, ListQuery(**query))


async def add_events(store: Store, *events: Event, tenant: Tenant = LIVE_A) -> None:
    async with store.write() as tx:
        for event in events:
            await tx.insert_event(tenant, event)


async def list_events(store: Store, tenant: Tenant = LIVE_A, **query: Any) -> Page:
    async with store.read() as tx:
        return await tx.list_events(tenant, ListQuery(**query))


async def get_variants(store: Store, tenant: Tenant, variant_ids: Sequence[str]) -> Any:
    async with store.read() as tx:
        return await tx.get_variants(tenant, variant_ids)


# -- companies ---------------------------------------------------------------------------------


async def test_a_company_reads_back_as_inserted(store: Store) -> None:
    company = make_company("co_x", "Warung Kopi")
    async with store.write() as tx:
        await tx.insert_company(company)
    async with store.read() as tx:
        assert await tx.get_company("co_x") == company
        assert await tx.get_company("co_missing") is None


async def test_a_company_id_is_unique(companies: Store) -> None:
    with pytest.raises(IntegrityViolation):
        async with companies.write() as tx:
            await tx.insert_company(make_company(COMPANY_A, "Other"))
    async with companies.read() as tx:
        assert await tx.get_company(COMPANY_A) == make_company(COMPANY_A, "Acme")


# -- api keys ----------------------------------------------------------------------------------


async def test_an_api_key_is_found_by_hash_and_by_id(companies: Store) -> None:
    key = make_key()
    bare = make_key(mode="test", scopes=frozenset(), ip_allowlist=(), name=None)
    async with companies.write() as tx:
        await tx.insert_api_key(key, "hash-1")
        await tx.insert_api_key(bare, "hash-2")
    async with companies.read() as tx:
        assert await tx.find_api_key("hash-1") == key
        assert await tx.find_api_key("hash-2") == bare
        assert await tx.get_api_key(key.id) == key
        assert await tx.get_api_key(bare.id) == bare
        assert await tx.find_api_key("hash-unknown") is None
        assert await tx.get_api_key("key_unknown") is None


async def test_api_keys_are_listed_per_company_oldest_first(companies: Store) -> None:
    newer = make_key(created_at=T0 + 10)
    older_test = make_key(mode="test", created_at=T0)
    other = make_key(COMPANY_B)
    async with companies.write() as tx:
        await tx.insert_api_key(newer, "h-newer")
        await tx.insert_api_key(older_test, "h-older")
        await tx.insert_api_key(other, "h-other")
    async with companies.read() as tx:
        assert await tx.list_api_keys(COMPANY_A) == [older_test, newer]
        assert await tx.list_api_keys(COMPANY_B) == [other]
        assert await tx.list_api_keys("co_nobody") == []


async def test_a_key_hash_is_unique(companies: Store) -> None:
    async with companies.write() as tx:
        await tx.insert_api_key(make_key(), "same-hash")
    with pytest.raises(IntegrityViolation):
        async with companies.write() as tx:
            await tx.insert_api_key(make_key(COMPANY_B), "same-hash")


async def test_a_key_of_an_unknown_company_is_refused(store: Store) -> None:
    with pytest.raises(StorageError) as raised:
        async with store.write() as tx:
            await tx.insert_api_key(make_key("co_nobody"), "h")
    # not a uniqueness clash: the services would report it as a duplicate otherwise
    assert not isinstance(raised.value, IntegrityViolation)


async def test_expiring_a_key_only_ever_shortens_its_life(companies: Store) -> None:
    key = make_key()
    async with companies.write() as tx:
        await tx.insert_api_key(key, "h")

    async def expire(at: int) -> int | None:
        async with companies.write() as tx:
            await tx.expire_api_key(key.id, at)
        async with companies.read() as tx:
            found = await tx.get_api_key(key.id)
        assert found is not None
        return found.expires_at

    assert await expire(T0 + 1_000) == T0 + 1_000  # no expiry yet: set
    assert await expire(T0 + 5_000) == T0 + 1_000  # later: ignored
    assert await expire(T0 + 1_000) == T0 + 1_000
    assert await expire(T0 + 500) == T0 + 500  # sooner: applied


async def test_revoking_a_key_keeps_the_first_revocation_time(companies: Store) -> None:
    key, untouched = make_key(), make_key()
    async with companies.write() as tx:
        await tx.insert_api_key(key, "h1")
        await tx.insert_api_key(untouched, "h2")
        await tx.revoke_api_key(key.id, T0 + 100)
    async with companies.write() as tx:
        await tx.revoke_api_key(key.id, T0 + 200)
    async with companies.read() as tx:
        assert await tx.get_api_key(key.id) == replace(key, revoked_at=T0 + 100)
        assert await tx.find_api_key("h1") == replace(key, revoked_at=T0 + 100)
        assert await tx.get_api_key(untouched.id) == untouched


# -- rate-limit windows and counters -----------------------------------------------------------


async def test_requests_are_counted_per_key_and_window(store: Store) -> None:
    async def count(key_id: str, window: int) -> int:
        async with store.write() as tx:
            return await tx.count_request(key_id, window)

    w1, w2 = T0, T0 + 60_000
    assert [await count("k1", w1) for _ in range(3)] == [1, 2, 3]
    assert await count("k2", w1) == 1  # another key has its own count
    assert await count("k1", w2) == 1  # a new window starts at 1
    assert await count("k1", w2) == 2
    assert await count("k1", w1) == 1  # the old window of k1 was forgotten
    assert await count("k2", w1) == 2  # … but not k2's


async def test_a_request_is_counted_against_the_key_found_by_hash(companies: Store) -> None:
    key, other = make_key(), make_key(revoked_at=T0 + 5)
    async with companies.write() as tx:
        await tx.insert_api_key(key, "hash-counted")
        await tx.insert_api_key(other, "hash-revoked")

    w1, w2 = T0, T0 + 60_000
    assert await companies.count_key_request("hash-counted", w1) == (key, 1)
    assert await companies.count_key_request("hash-counted", w1) == (key, 2)
    # a revoked key is still found and counted: the caller decides what it may do
    assert await companies.count_key_request("hash-revoked", w1) == (other, 1)
    assert await companies.count_key_request("hash-unknown", w1) is None
    assert await companies.count_key_request("hash-counted", w2) == (key, 1)
    async with companies.write() as tx:  # the key's earlier window was forgotten, not the other's
        assert await tx.count_request(key.id, w1) == 1
        assert await tx.count_request(other.id, w1) == 2


async def test_counters_count_per_company_mode_and_name(store: Store) -> None:
    async def next_value(tenant: Tenant, name: str) -> int:
        async with store.write() as tx:
            return await tx.next_counter(tenant, name)

    assert [await next_value(LIVE_A, "order") for _ in range(3)] == [1, 2, 3]
    assert await next_value(TEST_A, "order") == 1
    assert await next_value(LIVE_B, "order") == 1
    assert await next_value(LIVE_A, "invoice") == 1
    assert await next_value(LIVE_A, "order") == 4
    assert await next_value(TEST_A, "order") == 2


# -- idempotency -------------------------------------------------------------------------------


async def test_a_stored_response_is_kept_finished_and_deleted(store: Store) -> None:
    pending = StoredResponse("req-hash", 0, b"", T0)
    async with store.write() as tx:
        assert await tx.get_stored_response(LIVE_A, "idem-1") is None
        await tx.store_response(LIVE_A, "idem-1", pending)
    async with store.read() as tx:
        assert await tx.get_stored_response(LIVE_A, "idem-1") == pending
        assert await tx.get_stored_response(TEST_A, "idem-1") is None
        assert await tx.get_stored_response(LIVE_B, "idem-1") is None

    async with store.write() as tx:
        await tx.finish_stored_response(LIVE_A, "idem-1", 201, b'{"id":"cust_1"}')
    async with store.read() as tx:
        finished = await tx.get_stored_response(LIVE_A, "idem-1")
    assert finished == StoredResponse("req-hash", 201, b'{"id":"cust_1"}', T0)

    async with store.write() as tx:
        await tx.delete_stored_response(LIVE_A, "idem-1")
    async with store.read() as tx:
        assert await tx.get_stored_response(LIVE_A, "idem-1") is None


async def test_an_idempotency_key_is_stored_once_per_tenant(store: Store) -> None:
    first = StoredResponse("hash-1", 201, b"first", T0)
    async with store.write() as tx:
        await tx.store_response(LIVE_A, "idem", first)
        # the same key in another mode or company is another key
        await tx.store_response(TEST_A, "idem", StoredResponse("hash-t", 200, b"test", T0))
        await tx.store_response(LIVE_B, "idem", StoredResponse("hash-b", 200, b"b", T0))
    with pytest.raises(IntegrityViolation):
        async with store.write() as tx:
            await tx.store_response(LIVE_A, "idem", StoredResponse("hash-2", 0, b"", T0 + 1))
    async with store.read() as tx:
        assert await tx.get_stored_response(LIVE_A, "idem") == first
        test_response = await tx.get_stored_response(TEST_A, "idem")
        assert test_response is not None
        assert test_response.body == b"test"


async def test_finishing_or_deleting_touches_only_its_own_tenant(store: Store) -> None:
    async with store.write() as tx:
        await tx.store_response(LIVE_A, "idem", StoredResponse("h", 0, b"", T0))
        await tx.store_response(TEST_A, "idem", StoredResponse("h", 0, b"", T0))
        await tx.finish_stored_response(TEST_A, "idem", 500, b"boom")
        await tx.delete_stored_response(LIVE_B, "idem")
    async with store.read() as tx:
        assert await tx.get_stored_response(LIVE_A, "idem") == StoredResponse("h", 0, b"", T0)
        assert await tx.get_stored_response(TEST_A, "idem") == StoredResponse("h", 500, b"boom", T0)


# -- customers ---------------------------------------------------------------------------------


async def test_a_customer_reads_back_as_inserted(companies: Store) -> None:
    customer = make_customer(
        email="Siti@Example.com",
        phone_number="+6281234567890",
        first_name="Siti",
        last_name="Rahma",
        image_url="https://img.example.com/siti.png",
        tags=["vip", "jakarta"],
        addresses=[{"city": "Jakarta", "postalCode": "10110", "lines": ["Jl. Sudirman 1"]}],
        source="import",
        created_at=T0,
        updated_at=T0 + 5,
    )
    await add_customers(companies, customer)
    async with companies.read() as tx:
        assert await tx.get_customer(LIVE_A, customer.id) == customer
        assert await tx.get_customer(LIVE_A, "cust_missing") is None


async def test_a_customer_is_found_by_email_whatever_its_case(companies: Store) -> None:
    customer = make_customer(email="Siti.Rahma@Example.COM", phone_number="+628111")
    await add_customers(companies, customer)
    async with companies.read() as tx:
        assert await tx.find_customer(LIVE_A, email="siti.rahma@example.com") == customer
        assert await tx.find_customer(LIVE_A, email="SITI.RAHMA@EXAMPLE.COM") == customer
        assert await tx.find_customer(LIVE_A, email="siti@example.com") is None


async def test_a_customer_is_found_by_phone_number(companies: Store) -> None:
    customer = make_customer(phone_number="+628111")
    await add_customers(companies, customer, make_customer(phone_number="+628222"))
    async with companies.read() as tx:
        assert await tx.find_customer(LIVE_A, phone_number="+628111") == customer
        assert await tx.find_customer(LIVE_A, phone_number="+628333") is None
        assert await tx.find_customer(LIVE_A) is None


async def test_an_updated_customer_reads_back_updated(companies: Store) -> None:
    customer = make_customer(email="old@example.com", first_name="Old", tags=["a"])
    await add_customers(companies, customer)
    changed = replace(
        customer,
        email="New@Example.com",
        phone_number="+628999",
        first_name="Newname",
        last_name="Person",
        image_url="https://img.example.com/n.png",
        tags=["b", "c"],
        addresses=[{"city": "Bandung"}],
        updated_at=T0 + 100,
    )
    async with companies.write() as tx:
        await tx.update_customer(LIVE_A, changed)
    async with companies.read() as tx:
        assert await tx.get_customer(LIVE_A, customer.id) == changed
        assert await tx.find_customer(LIVE_A, email="new@example.com") == changed
        assert await tx.find_customer(LIVE_A, email="old@example.com") is None
        assert await tx.find_customer(LIVE_A, phone_number="+628999") == changed
    # the search text follows the update
    assert ids(await list_customers(companies, search="newname")) == [customer.id]
    assert ids(await list_customers(companies, search="old")) == []


async def test_a_deleted_customer_is_gone(companies: Store) -> None:
    customer, kept = make_customer(email="a@example.com"), make_customer(email="b@example.com")
    await add_customers(companies, customer, kept)
    async with companies.write() as tx:
        assert await tx.delete_customer(LIVE_A, customer.id) is True
    async with companies.write() as tx:
        assert await tx.delete_customer(LIVE_A, customer.id) is False
        assert await tx.get_customer(LIVE_A, customer.id) is None
        assert await tx.find_customer(LIVE_A, email="a@example.com") is None
        assert await tx.get_customer(LIVE_A, kept.id) == kept
    # the email is free again
    await add_customers(companies, make_customer(email="a@example.com"))


async def test_emails_are_unique_per_tenant_whatever_their_case(companies: Store) -> None:
    await add_customers(companies, make_customer(email="ann@example.com"))
    with pytest.raises(IntegrityViolation):
        await add_customers(companies, make_customer(email="ANN@example.COM"))
    # another mode, another company: fine
    await add_customers(companies, make_customer(email="ann@example.com"), tenant=TEST_A)
    await add_customers(companies, make_customer(email="Ann@Example.com"), tenant=LIVE_B)
    assert (await list_customers(companies)).total == 1


async def test_phone_numbers_are_unique_per_tenant(companies: Store) -> None:
    await add_customers(companies, make_customer(phone_number="+628111"))
    with pytest.raises(IntegrityViolation):
        await add_customers(companies, make_customer(phone_number="+628111"))
    await add_customers(companies, make_customer(phone_number="+628111"), tenant=TEST_A)
    await add_customers(companies, make_customer(phone_number="+628111"), tenant=LIVE_B)
    assert (await list_customers(companies)).total == 1


async def test_many_customers_may_lack_an_email_or_a_phone(companies: Store) -> None:
    await add_customers(
        companies,
        make_customer(email="a@example.com"),
        make_customer(email="b@example.com"),
        make_customer(phone_number="+628111"),
        make_customer(phone_number="+628222"),
    )
    assert (await list_customers(companies)).total == 4


async def test_an_update_cannot_take_another_customers_email_or_phone(companies: Store) -> None:
    ann = make_customer(email="ann@example.com", phone_number="+628111")
    bob = make_customer(email="bob@example.com", phone_number="+628222")
    await add_customers(companies, ann, bob)
    for clash in (
        replace(bob, email="ANN@example.com", updated_at=T0 + 1),
        replace(bob, phone_number="+628111", updated_at=T0 + 1),
    ):
        with pytest.raises(IntegrityViolation):
            async with companies.write() as tx:
                await tx.update_customer(LIVE_A, clash)
    async with companies.read() as tx:
        assert await tx.get_customer(LIVE_A, bob.id) == bob


async def test_customer_search_matches_names_email_and_phone_in_any_case(
    companies: Store,
) -> None:
    siti = make_customer(
        first_name="Siti", last_name="Rahma", email="sr@mail.example", phone_number="+628111"
    )
    budi = make_customer(
        first_name="Budi", last_name="Santoso", email="BUDI@Work.Example", phone_number="+628222"
    )
    await add_customers(companies, siti, budi)

    async def found(search: str) -> set[str]:
        page = await list_customers(companies, search=search)
        assert page.total == len(page.items)
        return set(ids(page))

    assert await found("SITI") == {siti.id}  # first name
    assert await found("rahMA") == {siti.id}  # last name
    assert await found("budi@work") == {budi.id}  # email, stored in upper case
    assert await found("628222") == {budi.id}  # phone
    assert await found(".example") == {siti.id, budi.id}
    assert await found("nobody") == set()


async def test_customer_search_takes_like_wildcards_literally(companies: Store) -> None:
    percent = make_customer(first_name="Diskon 100%")
    hundreds = make_customer(first_name="Diskon 1000")
    underscore = make_customer(email="a_b@example.com")
    any_char = make_customer(email="axb@example.com")
    backslash = make_customer(last_name="back\\slash")
    await add_customers(companies, percent, hundreds, underscore, any_char, backslash)
    assert ids(await list_customers(companies, search="100%")) == [percent.id]
    assert ids(await list_customers(companies, search="a_b")) == [underscore.id]
    assert ids(await list_customers(companies, search="k\\s")) == [backslash.id]
    assert ids(await list_customers(companies, search="%")) == [percent.id]
    assert ids(await list_customers(companies, search="_")) == [underscore.id]


async def test_customers_are_filtered_by_any_of_the_tags(companies: Store) -> None:
    vip = make_customer(tags=["vip", "new"])
    wholesale = make_customer(tags=["wholesale"])
    untagged = make_customer()
    await add_customers(companies, vip, wholesale, untagged)

    async def tagged(*tags: str) -> set[str]:
        page = await list_customers(companies, filters={"tags": tags})
        assert page.total == len(page.items)
        return set(ids(page))

    assert await tagged("vip", "wholesale") == {vip.id, wholesale.id}
    assert await tagged("new") == {vip.id}
    assert await tagged("VIP") == set()  # tags match exactly
    assert await tagged("unknown") == set()
    assert set(ids(await list_customers(companies))) == {vip.id, wholesale.id, untagged.id}


async def test_customers_are_filtered_by_source(companies: Store) -> None:
    api = make_customer(source="api")
    imported = make_customer(source="import")
    dashboard = make_customer(source="dashboard")
    await add_customers(companies, api, imported, dashboard)
    page = await list_customers(companies, filters={"source": ("api", "import")})
    assert set(ids(page)) == {api.id, imported.id}
    assert page.total == 2
    assert ids(await list_customers(companies, filters={"source": ("dashboard",)})) == [
        dashboard.id
    ]


async def test_search_and_filters_combine(companies: Store) -> None:
    match = make_customer(first_name="Ayu", tags=["vip"], source="api")
    wrong_tag = make_customer(first_name="Ayu", tags=["new"], source="api")
    wrong_source = make_customer(first_name="Ayu", tags=["vip"], source="import")
    wrong_name = make_customer(first_name="Dewi", tags=["vip"], source="api")
    await add_customers(companies, match, wrong_tag, wrong_source, wrong_name)
    page = await list_customers(
        companies, search="ayu", filters={"tags": ("vip",), "source": ("api",)}
    )
    assert (ids(page), page.total) == ([match.id], 1)


SORT_CASES = {
    # field: the customers' values in insertion order (a, b, c); each field orders them apart
    "created_at": (T0 + 2, T0 + 1, T0 + 3),
    "updated_at": (T0 + 30, T0 + 10, T0 + 20),
    "first_name": ("Citra", "Agus", "Bayu"),
    "last_name": ("Abdi", "Cahya", "Bakti"),
    "email": ("b@example.com", "c@example.com", "a@example.com"),
}


@pytest.mark.parametrize("field", sorted(SORT_CASES))
async def test_customers_sort_by_each_sortable_field(companies: Store, field: str) -> None:
    customers = [make_customer(**{field: value}) for value in SORT_CASES[field]]
    await add_customers(companies, *customers)
    ascending = [c.id for _, c in sorted(zip(SORT_CASES[field], customers, strict=True))]
    up = await list_customers(companies, sort_field=field, sort_desc=False)
    down = await list_customers(companies, sort_field=field, sort_desc=True)
    assert ids(up) == ascending
    assert ids(down) == ascending[::-1]


@pytest.mark.parametrize("field", ["first_name", "last_name", "email"])
async def test_customers_without_the_sort_value_come_last(companies: Store, field: str) -> None:
    values = {"first_name": "Agus", "last_name": "Abdi", "email": "a@example.com"}
    named = make_customer(**{field: values[field]})
    unnamed = make_customer()
    await add_customers(companies, unnamed, named)
    for desc in (False, True):
        page = await list_customers(companies, sort_field=field, sort_desc=desc)
        assert ids(page) == [named.id, unnamed.id], f"sort_desc={desc}"


async def test_the_default_order_is_most_recently_updated_first(companies: Store) -> None:
    old = make_customer(updated_at=T0)
    new = make_customer(updated_at=T0 + 1)
    await add_customers(companies, old, new)
    assert ids(await list_customers(companies)) == [new.id, old.id]


async def test_customers_sort_only_by_known_fields(companies: Store) -> None:
    with pytest.raises(ValueError, match="cannot sort"):
        await list_customers(companies, sort_field="id; DROP TABLE customers")


async def test_customer_pages_split_the_list_and_count_it_all(companies: Store) -> None:
    customers = [make_customer(updated_at=T0 + n) for n in range(5)]
    await add_customers(companies, *customers)
    newest_first = [c.id for c in reversed(customers)]

    pages = [await list_customers(companies, page=n, limit=2) for n in (1, 2, 3, 4)]
    assert [ids(page) for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:],
        [],
    ]
    assert [page.total for page in pages] == [5, 5, 5, 5]
    assert [page.has_next_page for page in pages] == [True, True, False, False]
    assert (pages[1].page, pages[1].limit) == (2, 2)

    exact = await list_customers(companies, page=1, limit=5)
    assert (len(exact.items), exact.has_next_page) == (5, False)
    filtered = await list_customers(companies, search="nobody", page=1, limit=2)
    assert (filtered.items, filtered.total, filtered.has_next_page) == ([], 0, False)


# -- products ----------------------------------------------------------------------------------


async def test_a_product_reads_back_with_its_variants_in_order(companies: Store) -> None:
    variants = [
        make_variant("size-l", 30_000, id="var_c", compare_at_price_cents=35_000),
        make_variant("size-s", 10_000, id="var_a", inventory_sku="SKU-S", media={"url": "s"}),
        make_variant("size-m", 20_000, id="var_b"),
    ]
    product = make_product(
        "Kaos Polos",
        description="Cotton tee",
        media=[{"url": "https://img.example.com/tee.png"}],
        status="draft",
        variants=variants,
        options=[{"name": "Size", "values": ["L", "S", "M"]}],
        tags=["apparel"],
        types=["physical"],
        updated_at=T0 + 1,
    )
    await add_products(companies, product)
    async with companies.read() as tx:
        found = await tx.get_product(LIVE_A, product.id)
        assert await tx.get_product(LIVE_A, "prod_missing") is None
    assert found == product
    assert found is not None
    assert [v.key for v in found.variants] == ["size-l", "size-s", "size-m"]


async def test_updating_a_product_replaces_its_variants(companies: Store) -> None:
    kept, dropped = make_variant("a", 100), make_variant("b", 200)
    product = make_product(variants=[kept, dropped])
    await add_products(companies, product)
    added = make_variant("c", 300)
    changed = replace(
        product,
        name="Kopi Susu",
        description="With milk",
        status="archived",
        tags=["drink"],
        variants=[added, replace(kept, price_cents=150)],
        updated_at=T0 + 10,
    )
    async with companies.write() as tx:
        await tx.update_product(LIVE_A, changed)
    async with companies.read() as tx:
        assert await tx.get_product(LIVE_A, product.id) == changed
    found = await get_variants(companies, LIVE_A, [kept.id, dropped.id, added.id])
    assert found == {
        kept.id: (replace(kept, price_cents=150), "Kopi Susu"),
        added.id: (added, "Kopi Susu"),
    }


async def test_deleting_a_product_deletes_its_variants(companies: Store) -> None:
    product, other = make_product(), make_product("Teh")
    await add_products(companies, product, other)
    async with companies.write() as tx:
        assert await tx.delete_product(LIVE_A, product.id) is True
    async with companies.write() as tx:
        assert await tx.delete_product(LIVE_A, product.id) is False
        assert await tx.get_product(LIVE_A, product.id) is None
    variant_ids = [product.variants[0].id, other.variants[0].id]
    assert await get_variants(companies, LIVE_A, variant_ids) == {
        other.variants[0].id: (other.variants[0], "Teh")
    }


async def test_variants_are_found_with_their_product_name(companies: Store) -> None:
    kopi = make_product("Kopi", variants=[make_variant("hot"), make_variant("iced", 12_000)])
    teh = make_product("Teh")
    foreign = make_product("Foreign")
    await add_products(companies, kopi, teh)
    await add_products(companies, foreign, tenant=TEST_A)
    wanted = [kopi.variants[1].id, teh.variants[0].id, foreign.variants[0].id, "var_missing"]
    assert await get_variants(companies, LIVE_A, wanted) == {
        kopi.variants[1].id: (kopi.variants[1], "Kopi"),
        teh.variants[0].id: (teh.variants[0], "Teh"),
    }
    assert await get_variants(companies, TEST_A, wanted) == {
        foreign.variants[0].id: (foreign.variants[0], "Foreign")
    }
    assert await get_variants(companies, LIVE_A, []) == {}


async def test_products_list_with_search_tags_and_name_sort(companies: Store) -> None:
    kopi = make_product("Kopi Gayo", tags=["coffee"], variants=[make_variant("a")])
    teh = make_product("Teh Tarik", tags=["tea"], description="Sweet milk tea")
    bandrek = make_product("Bandrek", tags=["spice", "tea"], variants=[])
    await add_products(companies, kopi, teh, bandrek)

    async def listed(**query: Any) -> Page:
        async with companies.read() as tx:
            return await tx.list_products(LIVE_A, ListQuery(**query))

    by_name = await listed(sort_field="name", sort_desc=False)
    assert by_name.items == [bandrek, kopi, teh]  # variants come along
    assert ids(await listed(sort_field="name", sort_desc=True)) == [teh.id, kopi.id, bandrek.id]
    assert ids(await listed(search="GAYO")) == [kopi.id]
    assert ids(await listed(search="milk")) == [teh.id]  # description
    assert ids(await listed(search=kopi.product_id)) == [kopi.id]
    tea = await listed(filters={"tags": ("tea",)}, sort_field="name", sort_desc=False)
    assert (ids(tea), tea.total) == ([bandrek.id, teh.id], 2)
    second = await listed(sort_field="name", sort_desc=False, page=2, limit=2)
    assert (ids(second), second.total, second.has_next_page) == ([teh.id], 3, False)


# -- orders ------------------------------------------------------------------------------------


async def test_an_order_reads_back_as_inserted(companies: Store) -> None:
    order = make_order(
        1001,
        customer_id="cust_1",
        customer={"id": "cust_1", "firstName": "Siti", "lastName": "Rahma"},
        line_items=[{"variantId": "var_1", "quantity": 2, "priceCents": 12_500}],
        shipping_address={"city": "Jakarta"},
        notes="Leave at the door",
        tags=["gift"],
        updated_at=T0 + 3,
    )
    await add_orders(companies, order)
    async with companies.read() as tx:
        assert await tx.get_order(LIVE_A, order.id) == order
        assert await tx.get_order(LIVE_A, "ord_missing") is None


async def test_an_updated_order_reads_back_updated(companies: Store) -> None:
    order = make_order(1)
    await add_orders(companies, order)
    changed = replace(
        order,
        status="cancelled",
        fulfillment_status="fulfilled",
        financial_status="refunded",
        notes="Customer asked",
        updated_at=T0 + 50,
    )
    async with companies.write() as tx:
        await tx.update_order(LIVE_A, changed)
    async with companies.read() as tx:
        assert await tx.get_order(LIVE_A, order.id) == changed


async def test_order_numbers_are_unique_per_tenant(companies: Store) -> None:
    await add_orders(companies, make_order(7))
    with pytest.raises(IntegrityViolation):
        await add_orders(companies, make_order(7))
    await add_orders(companies, make_order(7), tenant=TEST_A)
    await add_orders(companies, make_order(7), tenant=LIVE_B)


async def test_orders_are_filtered_by_status_and_fulfillment(companies: Store) -> None:
    active = make_order(1, status="active", fulfillment_status="unfulfilled")
    shipped = make_order(2, status="active", fulfillment_status="fulfilled")
    archived = make_order(3, status="archived", fulfillment_status="fulfilled")
    cancelled = make_order(4, status="cancelled", fulfillment_status="unfulfilled")
    await add_orders(companies, active, shipped, archived, cancelled)

    async def found(**filters: tuple[str, ...]) -> set[str]:
        page = await list_orders(companies, filters=filters)
        assert page.total == len(page.items)
        return set(ids(page))

    assert await found(status=("active",)) == {active.id, shipped.id}
    assert await found(status=("archived", "cancelled")) == {archived.id, cancelled.id}
    assert await found(fulfillment_status=("fulfilled",)) == {shipped.id, archived.id}
    assert await found(status=("active",), fulfillment_status=("fulfilled",)) == {shipped.id}
    assert await found(status=("refunded",)) == set()
    assert await found() == {active.id, shipped.id, archived.id, cancelled.id}


async def test_orders_are_searched_by_order_id_and_customer_name(companies: Store) -> None:
    siti = make_order(
        1001, order_id="INV-1001", customer={"firstName": "Siti", "lastName": "Rahma"}
    )
    budi = make_order(
        1002, order_id="INV-1002", customer={"firstName": "Budi", "lastName": "Santoso"}
    )
    guest = make_order(1003, order_id="WEB-77", customer=None)
    await add_orders(companies, siti, budi, guest)

    async def found(search: str) -> set[str]:
        return set(ids(await list_orders(companies, search=search)))

    assert await found("inv-1002") == {budi.id}
    assert await found("INV-100") == {siti.id, budi.id}
    assert await found("web-77") == {guest.id}
    assert await found("SITI") == {siti.id}
    assert await found("santoso") == {budi.id}
    assert await found("nobody") == set()


async def test_orders_sort_and_page(companies: Store) -> None:
    orders = [make_order(n, created_at=T0 + 10 - n, updated_at=T0 + n) for n in range(1, 4)]
    await add_orders(companies, *orders)
    first, second, third = (order.id for order in orders)
    assert ids(await list_orders(companies)) == [third, second, first]
    assert ids(await list_orders(companies, sort_field="created_at", sort_desc=False)) == [
        third,
        second,
        first,
    ]
    page = await list_orders(companies, page=1, limit=2)
    assert (ids(page), page.total, page.has_next_page) == ([third, second], 3, True)


# -- events ------------------------------------------------------------------------------------


async def test_an_event_reads_back_as_inserted(store: Store) -> None:
    event = make_event("order.created", T0, payload=b'{"id":"ord_1","total":12}')
    await add_events(store, event)
    async with store.read() as tx:
        assert await tx.get_event(LIVE_A, event.id) == event
        assert await tx.get_event(LIVE_A, "evt_missing") is None


async def test_event_ids_are_unique(store: Store) -> None:
    await add_events(store, make_event(id="evt_same"))
    with pytest.raises(IntegrityViolation):
        await add_events(store, make_event(id="evt_same"), tenant=LIVE_B)


async def test_events_list_newest_first_with_type_and_time_filters(store: Store) -> None:
    created = make_event("customer.created", T0)
    updated = make_event("customer.updated", T0 + 10)
    ordered = make_event("order.created", T0 + 20)
    deleted = make_event("customer.deleted", T0 + 30)
    await add_events(store, created, updated, ordered, deleted)

    everything = await list_events(store)
    assert ids(everything) == [deleted.id, ordered.id, updated.id, created.id]
    assert everything.total == 4
    assert everything.items[0] == deleted

    typed = await list_events(store, filters={"type": ("customer.created", "customer.deleted")})
    assert (ids(typed), typed.total) == ([deleted.id, created.id], 2)

    since = await list_events(store, filters={"since": (str(T0 + 10),)})
    assert ids(since) == [deleted.id, ordered.id, updated.id]  # inclusive
    until = await list_events(store, filters={"until": (str(T0 + 10),)})
    assert ids(until) == [updated.id, created.id]  # inclusive
    window = await list_events(
        store,
        filters={"since": (str(T0 + 5),), "until": (str(T0 + 25),), "type": ("order.created",)},
    )
    assert (ids(window), window.total) == ([ordered.id], 1)

    page = await list_events(store, page=2, limit=3)
    assert (ids(page), page.total, page.has_next_page) == ([created.id], 4, False)
    first = await list_events(store, page=1, limit=3)
    assert first.has_next_page is True


# -- transactions ------------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_a_failing_write_rolls_back_everything_it_did(companies: Store) -> None:
    customer = make_customer(email="gone@example.com")
    changed = replace(customer, first_name="Changed", updated_at=T0 + 1)
    await add_customers(companies, customer)
    product, order, event = make_product(), make_order(1), make_event()

    async def write_everything_then_fail() -> None:
        async with companies.write() as tx:
            await tx.insert_company(make_company("co_new"))
            await tx.insert_api_key(make_key(), "h-rolled-back")
            await tx.update_customer(LIVE_A, changed)
            await tx.insert_customer(LIVE_A, make_customer(email="new@example.com"))
            await tx.insert_product(LIVE_A, product)
            await tx.insert_order(LIVE_A, order)
            await tx.insert_event(LIVE_A, event)
            await tx.store_response(LIVE_A, "idem", StoredResponse("h", 0, b"", T0))
            assert await tx.count_request("k", T0) == 1
            assert await tx.next_counter(LIVE_A, "order") == 1
            # the transaction sees its own writes until it fails
            assert await tx.get_customer(LIVE_A, customer.id) == changed
            raise Boom

    with pytest.raises(Boom):
        await write_everything_then_fail()
    async with companies.write() as tx:
        assert await tx.get_company("co_new") is None
        assert await tx.find_api_key("h-rolled-back") is None
        assert await tx.get_customer(LIVE_A, customer.id) == customer
        assert await tx.find_customer(LIVE_A, email="new@example.com") is None
        assert await tx.get_product(LIVE_A, product.id) is None
        assert await tx.get_variants(LIVE_A, [product.variants[0].id]) == {}
        assert await tx.get_order(LIVE_A, order.id) is None
        assert await tx.get_event(LIVE_A, event.id) is None
        assert await tx.get_stored_response(LIVE_A, "idem") is None
        assert await tx.count_request("k", T0) == 1
        assert await tx.next_counter(LIVE_A, "order") == 1


async def test_a_write_failing_on_a_constraint_keeps_none_of_its_writes(
    companies: Store,
) -> None:
    await add_customers(companies, make_customer(email="taken@example.com"))
    event = make_event()

    async def write_then_clash() -> None:
        async with companies.write() as tx:
            await tx.insert_event(LIVE_A, event)
            await tx.insert_customer(LIVE_A, make_customer(email="TAKEN@example.com"))

    with pytest.raises(IntegrityViolation):
        await write_then_clash()
    async with companies.read() as tx:
        assert await tx.get_event(LIVE_A, event.id) is None
    assert (await list_customers(companies)).total == 1
    # and the store is usable afterwards
    await add_events(companies, event)
    async with companies.read() as tx:
        assert await tx.get_event(LIVE_A, event.id) == event


async def test_a_successful_write_is_visible_to_the_next_transaction(companies: Store) -> None:
    customer = make_customer()
    await add_customers(companies, customer)
    async with companies.read() as tx:
        assert await tx.get_customer(LIVE_A, customer.id) == customer


# -- tenant isolation --------------------------------------------------------------------------


async def test_nothing_of_one_tenant_is_visible_to_another(companies: Store) -> None:
    customer = make_customer(
        email="ann@example.com", phone_number="+628111", first_name="Ann", tags=["vip"]
    )
    product = make_product("Kopi", tags=["vip"])
    order = make_order(1, customer={"firstName": "Ann"})
    event = make_event()
    async with companies.write() as tx:
        await tx.insert_customer(LIVE_A, customer)
        await tx.insert_product(LIVE_A, product)
        await tx.insert_order(LIVE_A, order)
        await tx.insert_event(LIVE_A, event)
        await tx.store_response(LIVE_A, "idem", StoredResponse("h", 201, b"x", T0))
        assert await tx.next_counter(LIVE_A, "order") == 1

    everything = ListQuery(search="ann")
    for other in (TEST_A, LIVE_B):
        async with companies.write() as tx:
            assert await tx.get_customer(other, customer.id) is None
            assert await tx.find_customer(other, email="ann@example.com") is None
            assert await tx.find_customer(other, phone_number="+628111") is None
            assert (await tx.list_customers(other, ListQuery())).total == 0
            assert (await tx.list_customers(other, everything)).items == []
            assert await tx.get_product(other, product.id) is None
            assert (await tx.list_products(other, ListQuery())).total == 0
            assert await tx.get_variants(other, [product.variants[0].id]) == {}
            assert await tx.get_order(other, order.id) is None
            assert (await tx.list_orders(other, ListQuery())).total == 0
            assert await tx.get_event(other, event.id) is None
            assert (await tx.list_events(other, ListQuery())).total == 0
            assert await tx.get_stored_response(other, "idem") is None
            assert await tx.next_counter(other, "order") == 1
            # writes through the wrong tenant touch nothing
            assert await tx.delete_customer(other, customer.id) is False
            assert await tx.delete_product(other, product.id) is False
            await tx.update_customer(other, replace(customer, first_name="Hijacked"))
            await tx.update_product(other, replace(product, name="Hijacked", variants=[]))
            await tx.update_order(other, replace(order, status="cancelled"))
            await tx.finish_stored_response(other, "idem", 500, b"hijacked")
            await tx.delete_stored_response(other, "idem")

    async with companies.read() as tx:
        assert await tx.get_customer(LIVE_A, customer.id) == customer
        assert await tx.get_product(LIVE_A, product.id) == product
        assert await tx.get_order(LIVE_A, order.id) == order
        assert await tx.get_event(LIVE_A, event.id) == event
        assert await tx.get_stored_response(LIVE_A, "idem") == StoredResponse("h", 201, b"x", T0)
        variants = await tx.get_variants(LIVE_A, [product.variants[0].id])
        assert variants == {product.variants[0].id: (product.variants[0], "Kopi")}
        assert (await tx.list_customers(LIVE_A, everything)).items == [customer]
