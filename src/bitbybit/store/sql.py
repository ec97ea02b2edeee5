"""The domain methods of the storage port, written once over a small driver interface.

Statements use ``$n`` placeholders; the SQLite driver rewrites them to ``?n``. JSON-shaped columns
hold compact JSON text; times are integer milliseconds; money is integer hundredths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from bitbybit.ids import new_id
from bitbybit.models import (
    ApiKey,
    Attempt,
    AttemptResult,
    Company,
    Customer,
    Delivery,
    Endpoint,
    Event,
    Job,
    ListQuery,
    Mode,
    Order,
    Page,
    Product,
    QueueStats,
    Recorded,
    SealedSecrets,
    StoredResponse,
    Tenant,
    Variant,
)

Row = Mapping[str, Any]


class Driver(Protocol):
    """What the shared SQL needs from a connection inside a transaction."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it touched."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def any_of_json_array(self, column: str, placeholder: str) -> str:
        """SQL that is true when the JSON array in ``column`` shares an element with the param."""
        ...

    def text_array(self, values: Sequence[str]) -> Any:
        """The parameter value that ``any_of_json_array`` expects."""
        ...

    key_share: str
    """A locking clause that keeps the selected rows from being deleted until the transaction
    ends (PostgreSQL ``FOR KEY SHARE``; empty on SQLite, whose writers are serialised)."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _fold(*parts: str | None) -> str:
    """The lower-cased text that ``search`` matches against."""
    return " ".join(part.casefold() for part in parts if part)


def like_pattern(text: str) -> str:
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- row mappers -------------------------------------------------------------------------------


KEY_COLUMNS = (
    "id, company_id, mode, prefix, scopes, ip_allowlist, name, created_at, expires_at, revoked_at"
)


def api_key_from_row(row: Row) -> ApiKey:
    mode: Mode = row["mode"]
    return ApiKey(
        id=row["id"],
        company_id=row["company_id"],
        mode=mode,
        prefix=row["prefix"],
        scopes=frozenset(s for s in row["scopes"].split(",") if s),
        ip_allowlist=tuple(orjson.loads(row["ip_allowlist"])),
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _customer(row: Row) -> Customer:
    return Customer(
        id=row["id"],
        email=row["email"],
        phone_number=row["phone_number"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        image_url=row["image_url"],
        tags=orjson.loads(row["tags"]),
        addresses=orjson.loads(row["addresses"]),
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _variant(row: Row) -> Variant:
    return Variant(
        id=row["id"],
        key=row["key"],
        price_cents=row["price_cents"],
        compare_at_price_cents=row["compare_at_price_cents"],
        inventory_sku=row["inventory_sku"],
        media=_loads(row["media"]),
    )


def _product(row: Row, variants: list[Variant]) -> Product:
    return Product(
        id=row["id"],
        product_id=row["product_id"],
        name=row["name"],
        description=row["description"],
        media=_loads(row["media"]),
        status=row["status"],
        variants=variants,
        options=orjson.loads(row["options"]),
        tags=orjson.loads(row["tags"]),
        types=orjson.loads(row["types"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _order(row: Row) -> Order:
    return Order(
        id=row["id"],
        order_id=row["order_id"],
        order_number=row["order_number"],
        status=row["status"],
        fulfillment_status=row["fulfillment_status"],
        financial_status=row["financial_status"],
        total_cents=row["total_cents"],
        currency=row["currency"],
        customer_id=row["customer_id"],
        customer=_loads(row["customer"]),
        line_items=orjson.loads(row["line_items"]),
        shipping_address=_loads(row["shipping_address"]),
        notes=row["notes"],
        tags=orjson.loads(row["tags"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _event(row: Row) -> Event:
    return Event(
        id=row["id"], type=row["type"], payload=bytes(row["payload"]), created_at=row["created_at"]
    )


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        events=orjson.loads(row["events"]),
        status=row["status"],
        secret=row["secret"],
        next_secret=row["next_secret"],
        next_secret_at=row["next_secret_at"],
        multi_signature=bool(row["multi_signature"]),
        exhausted_in_row=row["exhausted_in_row"],
        status_reason=row["status_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _sealed(row: Row) -> SealedSecrets:
    return SealedSecrets(
        endpoint_id=row["id"],
        tenant=Tenant(row["company_id"], row["mode"]),
        secret=row["secret"],
        next_secret=row["next_secret"],
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["type"],
        endpoint_id=row["endpoint_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def job_from_row(row: Row) -> Job:
    return Job(
        delivery_id=row["id"],
        event_id=row["event_id"],
        event_type=row["type"],
        payload=bytes(row["payload"]),
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        secret=row["secret"],
        next_secret=row["next_secret"],
        next_secret_at=row["next_secret_at"],
        multi_signature=bool(row["multi_signature"]),
        attempts=row["attempts"],
    )


def succeeded_endpoints(results: Sequence[AttemptResult]) -> list[str]:
    """Endpoints with a success among ``results``, in a stable order (lock order)."""
    return sorted({r.endpoint_id for r in results if r.status == "succeeded"})


def _in(first: int, count: int) -> str:
    """``$first, …`` placeholders for an IN list."""
    return ", ".join(f"${i}" for i in range(first, first + count))


# -- list queries ------------------------------------------------------------------------------

_SORTABLE = frozenset({"created_at", "updated_at", "first_name", "last_name", "email", "name"})
_NULLABLE_SORTS = frozenset({"first_name", "last_name", "email"})
"""Rows without a value sort last either way (SQLite and PostgreSQL disagree by default)."""


class _Where:
    """Collects conditions and their ``$n`` parameters."""

    def __init__(self, tenant: Tenant) -> None:
        self.args: list[Any] = [tenant.company_id, tenant.mode]
        self.conditions = ["company_id = $1", "mode = $2"]

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    def sql(self) -> str:
        return " AND ".join(self.conditions)


# -- the shared transaction --------------------------------------------------------------------


class SqlTx:
    """Implements ``store.base.Tx`` over a ``Driver``."""

    def __init__(self, driver: Driver) -> None:
        self.db = driver
        self.endpoints_changed = set()

    # companies and keys ------------------------------------------------------------------------

    async def insert_company(self, company: Company) -> None:
        await self.db.execute(
            "INSERT INTO companies (id, name, country, created_at) VALUES ($1, $2, $3, $4)",
            company.id,
            company.name,
            company.country,
            company.created_at,
        )

    async def get_company(self, company_id: str) -> Company | None:
        row = await self.db.fetchrow(
            "SELECT id, name, country, created_at FROM companies WHERE id = $1", company_id
        )
        if row is None:
            return None
        return Company(row["id"], row["name"], row["country"], row["created_at"])

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys (id, company_id, mode, key_hash, prefix, scopes, ip_allowlist,"
            " name, created_at, expires_at, revoked_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            key.id,
            key.company_id,
            key.mode,
            key_hash,
            key.prefix,
            ",".join(sorted(key.scopes)),
            _dumps(list(key.ip_allowlist)),
            key.name,
            key.created_at,
            key.expires_at,
            key.revoked_at,
        )

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        row = await self.db.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
        )
        return None if row is None else api_key_from_row(row)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = await self.db.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return None if row is None else api_key_from_row(row)

    async def list_api_keys(self, company_id: str) -> list[ApiKey]:
        rows = await self.db.fetch(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE company_id = $1 ORDER BY created_at, id",
            company_id,
        )
        return [api_key_from_row(row) for row in rows]

    async def expire_api_key(self, key_id: str, expires_at: int) -> None:
        await self.db.execute(
            "UPDATE api_keys SET expires_at = $2 WHERE id = $1 AND"
            " (expires_at IS NULL OR expires_at > $2)",
            key_id,
            expires_at,
        )

    async def revoke_api_key(self, key_id: str, revoked_at: int) -> None:
        await self.db.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            key_id,
            revoked_at,
        )

    async def count_request(self, key_id: str, window_start: int) -> int:
        row = await self.db.fetchrow(
            "INSERT INTO rate_limits (key_id, window_start, count) VALUES ($1, $2, 1)"
            " ON CONFLICT (key_id, window_start) DO UPDATE SET count = rate_limits.count + 1"
            " RETURNING count",
            key_id,
            window_start,
        )
        assert row is not None  # an upsert with RETURNING always returns its row
        count: int = row["count"]
        if count == 1:  # first request of a window: forget the windows before it
            await self.db.execute(
                "DELETE FROM rate_limits WHERE key_id = $1 AND window_start < $2",
                key_id,
                window_start,
            )
        return count

    async def next_counter(self, tenant: Tenant, name: str) -> int:
        row = await self.db.fetchrow(
            "INSERT INTO counters (company_id, mode, name, value) VALUES ($1, $2, $3, 1)"
            " ON CONFLICT (company_id, mode, name) DO UPDATE SET value = counters.value + 1"
            " RETURNING value",
            tenant.company_id,
            tenant.mode,
            name,
        )
        assert row is not None  # an upsert with RETURNING always returns its row
        value: int = row["value"]
        return value

    # idempotency -------------------------------------------------------------------------------

    async def get_stored_response(self, tenant: Tenant, key: str) -> StoredResponse | None:
        row = await self.db.fetchrow(
            "SELECT request_hash, status_code, body, created_at FROM idempotency_keys"
            " WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
        )
        if row is None:
            return None
        return StoredResponse(
            row["request_hash"], row["status_code"], bytes(row["body"]), row["created_at"]
        )

    async def store_response(self, tenant: Tenant, key: str, response: StoredResponse) -> None:
        await self.db.execute(
            "INSERT INTO idempotency_keys"
            " (company_id, mode, key, request_hash, status_code, body, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tenant.company_id,
            tenant.mode,
            key,
            response.request_hash,
            response.status_code,
            response.body,
            response.created_at,
        )

    async def finish_stored_response(
        self, tenant: Tenant, key: str, status_code: int, body: bytes
    ) -> None:
        await self.db.execute(
            "UPDATE idempotency_keys SET status_code = $4, body = $5"
            " WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
            status_code,
            body,
        )

    async def delete_stored_response(self, tenant: Tenant, key: str) -> None:
        await self.db.execute(
            "DELETE FROM idempotency_keys WHERE company_id = $1 AND mode = $2 AND key = $3",
            tenant.company_id,
            tenant.mode,
            key,
        )

    async def prune_stored_responses(self, created_before: int, limit: int) -> int:
        # The batch is chosen through the created_at index, oldest first; the outer condition is
        # checked again because on PostgreSQL a row can be replaced (same key, new request)
        # between the choice and the delete, and the replacement is not expired.
        return await self.db.execute(
            "DELETE FROM idempotency_keys WHERE (company_id, mode, key) IN ("
            " SELECT company_id, mode, key FROM idempotency_keys WHERE created_at < $1"
            " ORDER BY created_at LIMIT $2) AND created_at < $1",
            created_before,
            limit,
        )

    # customers ---------------------------------------------------------------------------------

    _CUSTOMER_COLUMNS = (
        "id, email, phone_number, first_name, last_name, image_url, tags, addresses, source,"
        " created_at, updated_at"
    )

    def _customer_values(self, customer: Customer) -> tuple[Any, ...]:
        return (
            customer.email,
            customer.email.casefold() if customer.email else None,
            customer.phone_number,
            customer.first_name,
            customer.last_name,
            customer.image_url,
            _dumps(customer.tags),
            _dumps(customer.addresses),
            _fold(customer.first_name, customer.last_name, customer.email, customer.phone_number),
            customer.updated_at,
        )

    async def insert_customer(self, tenant: Tenant, customer: Customer) -> None:
        await self.db.execute(
            "INSERT INTO customers (company_id, mode, id, source, created_at, email, email_key,"
            " phone_number, first_name, last_name, image_url, tags, addresses, search_text,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15)",
            tenant.company_id,
            tenant.mode,
            customer.id,
            customer.source,
            customer.created_at,
            *self._customer_values(customer),
        )

    async def update_customer(self, tenant: Tenant, customer: Customer) -> None:
        await self.db.execute(
            "UPDATE customers SET email = $4, email_key = $5, phone_number = $6,"
            " first_name = $7, last_name = $8, image_url = $9, tags = $10, addresses = $11,"
            " search_text = $12, updated_at = $13"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            customer.id,
            *self._customer_values(customer),
        )

    async def get_customer(self, tenant: Tenant, customer_id: str) -> Customer | None:
        row = await self.db.fetchrow(
            f"SELECT {self._CUSTOMER_COLUMNS} FROM customers"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            customer_id,
        )
        return None if row is None else _customer(row)

    async def find_customer(
        self, tenant: Tenant, *, email: str | None = None, phone_number: str | None = None
    ) -> Customer | None:
        if phone_number is not None:
            column, value = "phone_number", phone_number
        elif email is not None:
            column, value = "email_key", email.casefold()
        else:
            return None
        row = await self.db.fetchrow(
            f"SELECT {self._CUSTOMER_COLUMNS} FROM customers"
            f" WHERE company_id = $1 AND mode = $2 AND {column} = $3",
            tenant.company_id,
            tenant.mode,
            value,
        )
        return None if row is None else _customer(row)

    async def delete_customer(self, tenant: Tenant, customer_id: str) -> bool:
        deleted = await self.db.execute(
            "DELETE FROM customers WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            customer_id,
        )
        return deleted > 0

    async def _page(
        self, table: str, columns: str, where: _Where, query: ListQuery
    ) -> tuple[list[Row], int]:
        if query.sort_field not in _SORTABLE:
            raise ValueError(f"cannot sort by {query.sort_field}")
        count_row = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM {table} WHERE {where.sql()}", *where.args
        )
        total = int(count_row["n"]) if count_row is not None else 0
        direction = "DESC" if query.sort_desc else "ASC"
        nulls = " NULLS LAST" if query.sort_field in _NULLABLE_SORTS else ""
        limit = where.param(query.limit)
        offset = where.param((query.page - 1) * query.limit)
        rows = await self.db.fetch(
            f"SELECT {columns} FROM {table} WHERE {where.sql()}"
            f" ORDER BY {query.sort_field} {direction}{nulls}, id {direction}"
            f" LIMIT {limit} OFFSET {offset}",
            *where.args,
        )
        return rows, total

    def _common_filters(self, where: _Where, query: ListQuery) -> None:
        if query.search:
            where.add(f"search_text LIKE {where.param(like_pattern(query.search))} ESCAPE '\\'")
        tags = query.filters.get("tags")
        if tags:
            where.add(self.db.any_of_json_array("tags", where.param(self.db.text_array(tags))))
        for column in ("source", "status", "fulfillment_status", "financial_status", "type"):
            values = query.filters.get(column)
            if values:
                where.add(f"{column} IN ({', '.join(where.param(v) for v in values)})")
        since = query.filters.get("since")
        if since:
            where.add(f"created_at >= {where.param(int(since[0]))}")
        until = query.filters.get("until")
        if until:
            where.add(f"created_at <= {where.param(int(until[0]))}")

    async def list_customers(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        rows, total = await self._page("customers", self._CUSTOMER_COLUMNS, where, query)
        return Page([_customer(row) for row in rows], total, query.page, query.limit)

    # products ----------------------------------------------------------------------------------

    _PRODUCT_COLUMNS = (
        "id, product_id, name, description, media, status, options, tags, types, created_at,"
        " updated_at"
    )
    _VARIANT_COLUMNS = "id, key, price_cents, compare_at_price_cents, inventory_sku, media"

    async def _insert_variants(self, tenant: Tenant, product: Product) -> None:
        for position, variant in enumerate(product.variants):
            await self.db.execute(
                "INSERT INTO variants (id, product_id, company_id, mode, position, key,"
                " price_cents, compare_at_price_cents, inventory_sku, media)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                variant.id,
                product.id,
                tenant.company_id,
                tenant.mode,
                position,
                variant.key,
                variant.price_cents,
                variant.compare_at_price_cents,
                variant.inventory_sku,
                None if variant.media is None else _dumps(variant.media),
            )

    def _product_values(self, product: Product) -> tuple[Any, ...]:
        return (
            product.name,
            product.description,
            None if product.media is None else _dumps(product.media),
            product.status,
            _dumps(product.options),
            _dumps(product.tags),
            _dumps(product.types),
            _fold(product.name, product.product_id, product.description),
            product.updated_at,
        )

    async def insert_product(self, tenant: Tenant, product: Product) -> None:
        await self.db.execute(
            "INSERT INTO products (company_id, mode, id, product_id, created_at, name,"
            " description, media, status, options, tags, types, search_text, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            tenant.company_id,
            tenant.mode,
            product.id,
            product.product_id,
            product.created_at,
            *self._product_values(product),
        )
        await self._insert_variants(tenant, product)

    async def update_product(self, tenant: Tenant, product: Product) -> None:
        updated = await self.db.execute(
            "UPDATE products SET name = $4, description = $5, media = $6, status = $7,"
            " options = $8, tags = $9, types = $10, search_text = $11, updated_at = $12"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            product.id,
            *self._product_values(product),
        )
        if not updated:  # not this tenant's product: leave its variants alone
            return
        await self.db.execute("DELETE FROM variants WHERE product_id = $1", product.id)
        await self._insert_variants(tenant, product)

    async def _variants_of(self, product_ids: list[str]) -> dict[str, list[Variant]]:
        found: dict[str, list[Variant]] = {pid: [] for pid in product_ids}
        if not product_ids:
            return found
        params = ", ".join(f"${i}" for i in range(1, len(product_ids) + 1))
        rows = await self.db.fetch(
            f"SELECT product_id, {self._VARIANT_COLUMNS} FROM variants"
            f" WHERE product_id IN ({params}) ORDER BY product_id, position",
            *product_ids,
        )
        for row in rows:
            found[row["product_id"]].append(_variant(row))
        return found

    async def get_product(self, tenant: Tenant, product_id: str) -> Product | None:
        row = await self.db.fetchrow(
            f"SELECT {self._PRODUCT_COLUMNS} FROM products"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            product_id,
        )
        if row is None:
            return None
        variants = await self._variants_of([product_id])
        return _product(row, variants[product_id])

    async def delete_product(self, tenant: Tenant, product_id: str) -> bool:
        deleted = await self.db.execute(
            "DELETE FROM products WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            product_id,
        )
        return deleted > 0

    async def list_products(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        rows, total = await self._page("products", self._PRODUCT_COLUMNS, where, query)
        variants = await self._variants_of([row["id"] for row in rows])
        products = [_product(row, variants[row["id"]]) for row in rows]
        return Page(products, total, query.page, query.limit)

    async def get_variants(
        self, tenant: Tenant, variant_ids: Sequence[str]
    ) -> dict[str, tuple[Variant, str]]:
        if not variant_ids:
            return {}
        params = ", ".join(f"${i}" for i in range(3, len(variant_ids) + 3))
        rows = await self.db.fetch(
            "SELECT v.id, v.key, v.price_cents, v.compare_at_price_cents, v.inventory_sku,"
            " v.media, p.name AS product_name FROM variants v JOIN products p"
            " ON p.id = v.product_id"
            f" WHERE v.company_id = $1 AND v.mode = $2 AND v.id IN ({params})",
            tenant.company_id,
            tenant.mode,
            *variant_ids,
        )
        return {row["id"]: (_variant(row), row["product_name"]) for row in rows}

    # orders ------------------------------------------------------------------------------------

    _ORDER_COLUMNS = (
        "id, order_id, order_number, status, fulfillment_status, financial_status, total_cents,"
        " currency, customer_id, customer, line_items, shipping_address, notes, tags,"
        " created_at, updated_at"
    )

    def _order_search(self, order: Order) -> str:
        customer = order.customer or {}
        return _fold(order.order_id, customer.get("firstName"), customer.get("lastName"))

    async def insert_order(self, tenant: Tenant, order: Order) -> None:
        await self.db.execute(
            "INSERT INTO orders (company_id, mode, id, order_id, order_number, status,"
            " fulfillment_status, financial_status, total_cents, currency, customer_id,"
            " customer, line_items, shipping_address, notes, tags, search_text, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15, $16, $17, $18, $19)",
            tenant.company_id,
            tenant.mode,
            order.id,
            order.order_id,
            order.order_number,
            order.status,
            order.fulfillment_status,
            order.financial_status,
            order.total_cents,
            order.currency,
            order.customer_id,
            None if order.customer is None else _dumps(order.customer),
            _dumps(order.line_items),
            None if order.shipping_address is None else _dumps(order.shipping_address),
            order.notes,
            _dumps(order.tags),
            self._order_search(order),
            order.created_at,
            order.updated_at,
        )

    async def update_order(self, tenant: Tenant, order: Order) -> None:
        await self.db.execute(
            "UPDATE orders SET status = $4, fulfillment_status = $5, financial_status = $6,"
            " notes = $7, updated_at = $8 WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            order.id,
            order.status,
            order.fulfillment_status,
            order.financial_status,
            order.notes,
            order.updated_at,
        )

    async def get_order(self, tenant: Tenant, order_id: str) -> Order | None:
        row = await self.db.fetchrow(
            f"SELECT {self._ORDER_COLUMNS} FROM orders"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            order_id,
        )
        return None if row is None else _order(row)

    async def list_orders(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        rows, total = await self._page("orders", self._ORDER_COLUMNS, where, query)
        return Page([_order(row) for row in rows], total, query.page, query.limit)

    # events ------------------------------------------------------------------------------------

    async def insert_event(self, tenant: Tenant, event: Event) -> None:
        await self.db.execute(
            "INSERT INTO events (id, company_id, mode, type, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            event.id,
            tenant.company_id,
            tenant.mode,
            event.type,
            event.payload,
            event.created_at,
        )

    async def get_event(self, tenant: Tenant, event_id: str) -> Event | None:
        row = await self.db.fetchrow(
            "SELECT id, type, payload, created_at FROM events"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            event_id,
        )
        return None if row is None else _event(row)

    async def list_events(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        sorted_query = ListQuery(query.page, query.limit, sort_field="created_at", sort_desc=True)
        count_row = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM events WHERE {where.sql()}", *where.args
        )
        total = int(count_row["n"]) if count_row is not None else 0
        limit = where.param(sorted_query.limit)
        offset = where.param((sorted_query.page - 1) * sorted_query.limit)
        rows = await self.db.fetch(
            f"SELECT id, type, payload, created_at FROM events WHERE {where.sql()}"
            f" ORDER BY seq DESC LIMIT {limit} OFFSET {offset}",
            *where.args,
        )
        return Page([_event(row) for row in rows], total, query.page, query.limit)

    # webhook endpoints -------------------------------------------------------------------------

    _ENDPOINT_COLUMNS = (
        "id, url, description, events, status, secret, next_secret, next_secret_at,"
        " multi_signature, exhausted_in_row, status_reason, created_at, updated_at"
    )

    async def insert_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None:
        await self.db.execute(
            "INSERT INTO webhook_endpoints (company_id, mode, id, url, description, events,"
            " status, secret, next_secret, next_secret_at, multi_signature, exhausted_in_row,"
            " status_reason, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            tenant.company_id,
            tenant.mode,
            endpoint.id,
            *self._endpoint_values(endpoint),
            endpoint.created_at,
            endpoint.updated_at,
        )

    def _endpoint_values(self, endpoint: Endpoint) -> tuple[Any, ...]:
        return (
            endpoint.url,
            endpoint.description,
            _dumps(endpoint.events),
            endpoint.status,
            endpoint.secret,
            endpoint.next_secret,
            endpoint.next_secret_at,
            1 if endpoint.multi_signature else 0,
            endpoint.exhausted_in_row,
            endpoint.status_reason,
        )

    async def update_endpoint(self, tenant: Tenant, endpoint: Endpoint) -> None:
        self.endpoints_changed.add(endpoint.id)
        await self.db.execute(
            "UPDATE webhook_endpoints SET url = $4, description = $5, events = $6, status = $7,"
            " secret = $8, next_secret = $9, next_secret_at = $10, multi_signature = $11,"
            " exhausted_in_row = $12, status_reason = $13, updated_at = $14"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            endpoint.id,
            *self._endpoint_values(endpoint),
            endpoint.updated_at,
        )

    async def get_endpoint(self, tenant: Tenant, endpoint_id: str) -> Endpoint | None:
        row = await self.db.fetchrow(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            endpoint_id,
        )
        return None if row is None else _endpoint(row)

    async def list_endpoints(self, tenant: Tenant) -> list[Endpoint]:
        rows = await self.db.fetch(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 ORDER BY created_at, id",
            tenant.company_id,
            tenant.mode,
        )
        return [_endpoint(row) for row in rows]

    async def fan_out_targets(self, tenant: Tenant) -> list[Endpoint]:
        rows = await self.db.fetch(
            f"SELECT {self._ENDPOINT_COLUMNS} FROM webhook_endpoints"
            " WHERE company_id = $1 AND mode = $2 ORDER BY created_at, id" + self.db.key_share,
            tenant.company_id,
            tenant.mode,
        )
        return [_endpoint(row) for row in rows]

    async def count_endpoints(self, company_id: str) -> int:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n FROM webhook_endpoints WHERE company_id = $1", company_id
        )
        return int(row["n"]) if row is not None else 0

    _SEALED_COLUMNS = "id, company_id, mode, secret, next_secret"

    async def sample_sealed_secrets(self, limit: int) -> list[SealedSecrets]:
        rows = await self.db.fetch(
            f"SELECT {self._SEALED_COLUMNS} FROM (SELECT {self._SEALED_COLUMNS}"
            " FROM webhook_endpoints ORDER BY updated_at DESC, id LIMIT $1) AS changed_last"
            f" UNION SELECT {self._SEALED_COLUMNS} FROM (SELECT {self._SEALED_COLUMNS}"
            " FROM webhook_endpoints ORDER BY created_at, id LIMIT $1) AS created_first",
            limit,
        )
        return [_sealed(row) for row in rows]

    async def page_sealed_secrets(self, after: str, limit: int) -> list[SealedSecrets]:
        rows = await self.db.fetch(
            f"SELECT {self._SEALED_COLUMNS} FROM webhook_endpoints WHERE id > $1"
            " ORDER BY id LIMIT $2",
            after,
            limit,
        )
        return [_sealed(row) for row in rows]

    async def reseal_secret(self, endpoint_id: str, old: str, new: str) -> bool:
        replaced = await self.db.execute(
            "UPDATE webhook_endpoints SET"
            " secret = CASE WHEN secret = $2 THEN $3 ELSE secret END,"
            " next_secret = CASE WHEN next_secret = $2 THEN $3 ELSE next_secret END"
            " WHERE id = $1 AND (secret = $2 OR next_secret = $2)",
            endpoint_id,
            old,
            new,
        )
        return replaced > 0

    async def delete_endpoint(self, tenant: Tenant, endpoint_id: str) -> bool:
        self.endpoints_changed.add(endpoint_id)
        deleted = await self.db.execute(
            "DELETE FROM webhook_endpoints WHERE company_id = $1 AND mode = $2 AND id = $3",
            tenant.company_id,
            tenant.mode,
            endpoint_id,
        )
        return deleted > 0

    async def hold_pending(self, endpoint_id: str, now: int) -> int:
        """Hold the endpoint's pending deliveries (it was suspended or disabled)."""
        self.endpoints_changed.add(endpoint_id)
        held = await self.db.execute(
            "UPDATE deliveries SET status = 'held', updated_at = $2 WHERE id IN"
            " (SELECT delivery_id FROM delivery_queue WHERE endpoint_id = $1)",
            endpoint_id,
            now,
        )
        await self.db.execute("DELETE FROM delivery_queue WHERE endpoint_id = $1", endpoint_id)
        return held

    # deliveries --------------------------------------------------------------------------------
    #
    # A delivery is pending exactly while it has a row in ``delivery_queue``, which holds when it
    # is due and who leases it. The worker's frequent writes go to that narrow table; a delivery's
    # own row changes once per attempt, and none of its indexed columns ever do.

    deliveries_created = False
    """Set when this transaction made deliveries pending, so the store wakes workers on commit."""
    endpoints_changed: set[str]
    """Endpoints this transaction changed, suspended or deleted: on commit, workers drop the
    deliveries of theirs they hold in memory, claimed and not started (claimed with the old URL
    or secret, or for an endpoint that is gone)."""
    woken: frozenset[str] | None = frozenset()
    """The endpoints those deliveries are for (``None``: not known), so a woken worker can claim
    for them at once instead of first asking which endpoints have work."""

    def _made_pending(self, endpoint_ids: frozenset[str] | None) -> None:
        self.deliveries_created = True
        self.woken = (
            None if endpoint_ids is None or self.woken is None else self.woken | endpoint_ids
        )

    async def queue_deliveries(
        self, tenant: Tenant, event: Event, endpoints: list[Endpoint], now: int
    ) -> list[str]:
        """One delivery of ``event`` per endpoint: pending, or held if the endpoint is suspended."""
        rows = [
            (
                new_id("dlv"),
                event.id,
                endpoint.id,
                tenant.company_id,
                tenant.mode,
                "pending" if endpoint.status == "active" else "held",
                now,
            )
            for endpoint in endpoints
        ]
        if not rows:
            return []
        await self._insert_deliveries(rows, now)
        pending = frozenset(row[2] for row in rows if row[5] == "pending")
        if pending:
            self._made_pending(pending)
        return [row[0] for row in rows]

    _DELIVERY_INSERT = (
        "INSERT INTO deliveries (id, event_id, endpoint_id, company_id, mode, status,"
        " attempts, next_attempt_at, created_at, updated_at)"
    )

    async def _insert_deliveries(self, rows: Sequence[tuple[Any, ...]], now: int) -> None:
        """The delivery rows, and a queue row for each pending one."""
        await self.db.executemany(
            self._DELIVERY_INSERT + " VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $7)", rows
        )
        await self.db.executemany(
            "INSERT INTO delivery_queue (delivery_id, endpoint_id, due_at) VALUES ($1, $2, $3)",
            [(row[0], row[2], now) for row in rows if row[5] == "pending"],
        )

    _DELIVERY_COLUMNS = (
        "d.id, d.event_id, ev.type, d.endpoint_id, d.status, d.attempts, d.next_attempt_at,"
        " d.last_status_code, d.last_error, d.created_at, d.updated_at"
    )

    async def get_delivery(self, tenant: Tenant, delivery_id: str) -> Delivery | None:
        row = await self.db.fetchrow(
            f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d JOIN events ev"
            " ON ev.id = d.event_id WHERE d.company_id = $1 AND d.mode = $2 AND d.id = $3",
            tenant.company_id,
            tenant.mode,
            delivery_id,
        )
        return None if row is None else _delivery(row)

    async def list_deliveries(
        self,
        tenant: Tenant,
        *,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        statuses: tuple[str, ...] = (),
        page: int = 1,
        limit: int = 100,
    ) -> Page:
        where = _Where(tenant)
        where.conditions = ["d.company_id = $1", "d.mode = $2"]
        if endpoint_id is not None:
            where.add(f"d.endpoint_id = {where.param(endpoint_id)}")
        if event_id is not None:
            where.add(f"d.event_id = {where.param(event_id)}")
        if statuses:
            where.add(f"d.status IN ({', '.join(where.param(s) for s in statuses)})")
        count_row = await self.db.fetchrow(
            f"SELECT COUNT(*) AS n FROM deliveries d WHERE {where.sql()}", *where.args
        )
        total = int(count_row["n"]) if count_row is not None else 0
        limit_param = where.param(limit)
        offset_param = where.param((page - 1) * limit)
        rows = await self.db.fetch(
            f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d JOIN events ev"
            f" ON ev.id = d.event_id WHERE {where.sql()}"
            f" ORDER BY d.created_at DESC, d.id DESC LIMIT {limit_param} OFFSET {offset_param}",
            *where.args,
        )
        return Page([_delivery(row) for row in rows], total, page, limit)

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self.db.fetch(
            "SELECT number, started_at, latency_ms, status_code, error, response_body"
            " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY number, seq",
            delivery_id,
        )
        return [
            Attempt(
                row["number"],
                row["started_at"],
                row["latency_ms"],
                row["status_code"],
                row["error"],
                None if row["response_body"] is None else bytes(row["response_body"]),
            )
            for row in rows
        ]

    async def requeue(self, delivery_ids: Sequence[str], now: int) -> int:
        """Make deliveries pending and due now (manual retry, recovery)."""
        if not delivery_ids:
            return 0
        touched = await self.db.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1"
            f" WHERE id IN ({_in(2, len(delivery_ids))})",
            now,
            *delivery_ids,
        )
        await self.db.execute(
            "INSERT INTO delivery_queue (delivery_id, endpoint_id, due_at)"
            f" SELECT id, endpoint_id, $1 FROM deliveries WHERE id IN ({_in(2, len(delivery_ids))})"
            " ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at,"
            " lease_owner = NULL, lease_expires_at = NULL",
            now,
            *delivery_ids,
        )
        if touched:
            self._made_pending(None)
        return touched

    async def recoverable(self, endpoint_id: str, since: int | None) -> list[str]:
        """Deliveries reactivation re-queues: every held one, and failed ones since ``since``."""
        if since is None:
            rows = await self.db.fetch(
                "SELECT id FROM deliveries WHERE endpoint_id = $1 AND status = 'held'",
                endpoint_id,
            )
        else:
            rows = await self.db.fetch(
                "SELECT id FROM deliveries WHERE endpoint_id = $1 AND (status = 'held'"
                " OR (status = 'failed' AND updated_at >= $2))",
                endpoint_id,
                since,
            )
        return [row["id"] for row in rows]

    # the worker's side -------------------------------------------------------------------------

    async def due_endpoints(self, now: int) -> list[str]:
        """Active endpoints with at least one delivery due and not leased (a lease that ran out,
        say of a worker that died, no longer counts)."""
        rows = await self.db.fetch(
            "SELECT e.id FROM webhook_endpoints e WHERE e.status = 'active' AND EXISTS ("
            "SELECT 1 FROM delivery_queue q WHERE q.endpoint_id = e.id AND q.due_at <= $1"
            " AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $1))",
            now,
        )
        return [row["id"] for row in rows]

    async def _lease(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[str]:
        """Lease up to ``slots[endpoint]`` due deliveries per endpoint; the dialect's claim."""
        raise NotImplementedError

    _JOB_COLUMNS = (
        "d.id, d.event_id, ev.type, ev.payload, d.endpoint_id, e.url, e.secret, e.next_secret,"
        " e.next_secret_at, e.multi_signature, d.attempts"
    )

    async def claim_due(
        self, owner: str, now: int, lease_until: int, slots: dict[str, int]
    ) -> list[Job]:
        """Lease due deliveries (``slots[e]`` at most for endpoint ``e``) with their content."""
        ids = await self._lease(owner, now, lease_until, slots)
        if not ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {self._JOB_COLUMNS} FROM delivery_queue q"
            " JOIN deliveries d ON d.id = q.delivery_id JOIN events ev ON ev.id = d.event_id"
            " JOIN webhook_endpoints e ON e.id = d.endpoint_id"
            f" WHERE q.delivery_id IN ({_in(1, len(ids))}) ORDER BY q.due_at",
            *ids,
        )
        return [job_from_row(row) for row in rows]

    async def release(self, owner: str, delivery_ids: Sequence[str], now: int) -> None:
        """Give leases back unattempted (graceful shutdown): claimable again at once."""
        if delivery_ids:
            await self.db.execute(
                "UPDATE delivery_queue SET lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE lease_owner = $1 AND delivery_id IN ({_in(2, len(delivery_ids))})",
                owner,
                *delivery_ids,
            )

    async def record_attempts(
        self, owner: str, results: Sequence[AttemptResult], now: int, suspend_after: int
    ) -> Recorded:
        """Record attempts and their outcomes, and suspend endpoints the rule says to."""
        if not results:
            return Recorded([], [])
        kept = set(await self._write_results(owner, results, now))
        suspended: list[str] = []
        for result in results:
            if result.delivery_id not in kept:
                continue
            reason = None
            if result.gone:
                reason = "the endpoint answered 410 Gone"
            elif result.status == "failed" and not result.ours:
                row = await self.db.fetchrow(
                    "UPDATE webhook_endpoints SET exhausted_in_row = exhausted_in_row + 1"
                    " WHERE id = $1 RETURNING exhausted_in_row, status",
                    result.endpoint_id,
                )
                if row is not None and row["exhausted_in_row"] >= suspend_after:
                    reason = f"{row['exhausted_in_row']} events in a row exhausted every retry"
            if reason is not None and result.endpoint_id not in suspended:
                touched = await self.db.execute(
                    "UPDATE webhook_endpoints SET status = 'suspended', status_reason = $2,"
                    " updated_at = $3 WHERE id = $1 AND status = 'active'",
                    result.endpoint_id,
                    reason,
                    now,
                )
                if touched:
                    await self.hold_pending(result.endpoint_id, now)
                    suspended.append(result.endpoint_id)
        vanished = [r.delivery_id for r in results if r.delivery_id not in kept]
        return Recorded(suspended, vanished)

    async def count_deliveries(self, status: str) -> int:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n FROM deliveries WHERE status = $1", status
        )
        return int(row["n"]) if row is not None else 0

    _ATTEMPT_INSERT = (
        "INSERT INTO delivery_attempts (delivery_id, number, started_at, latency_ms,"
        " status_code, error, response_body, worker)"
    )

    async def _write_results(
        self, owner: str, results: Sequence[AttemptResult], now: int
    ) -> list[str]:
        """Attempt rows, the deliveries' new state and their queue rows; a success also ends
        its endpoint's run of exhausted events. Returns the deliveries recorded: a delivery
        deleted meanwhile (with its endpoint) is skipped.

        An outcome counts only while this worker still holds the lease: if the lease ran out and
        another worker claimed the delivery, that worker's attempt decides (this one is still
        recorded as an attempt).
        """
        # Writers are serialised (BEGIN IMMEDIATE), so what exists now still exists at commit.
        found = await self.db.fetch(
            f"SELECT id FROM deliveries WHERE id IN ({_in(1, len(results))})",
            *(r.delivery_id for r in results),
        )
        existing = {row["id"] for row in found}
        results = [r for r in results if r.delivery_id in existing]
        await self.db.executemany(
            self._ATTEMPT_INSERT + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (
                    r.delivery_id,
                    r.number,
                    r.started_at,
                    r.latency_ms,
                    r.status_code,
                    r.error,
                    r.response_body,
                    owner,
                )
                for r in results
            ],
        )
        await self.db.executemany(
            "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4,"
            " last_status_code = $5, last_error = $6, updated_at = $7 WHERE id = $1"
            " AND EXISTS (SELECT 1 FROM delivery_queue"
            " WHERE delivery_id = $1 AND lease_owner = $8)",
            [
                (
                    r.delivery_id,
                    r.status,
                    r.number,
                    r.next_attempt_at,
                    r.status_code,
                    r.error,
                    now,
                    owner,
                )
                for r in results
            ],
        )
        await self.db.executemany(
            "UPDATE delivery_queue SET due_at = $2, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE delivery_id = $1 AND lease_owner = $3",
            [(r.delivery_id, r.next_attempt_at, owner) for r in results if r.status == "pending"],
        )
        await self.db.executemany(
            "DELETE FROM delivery_queue WHERE delivery_id = $1 AND lease_owner = $2",
            [(r.delivery_id, owner) for r in results if r.status != "pending"],
        )
        await self.db.executemany(
            "UPDATE webhook_endpoints SET exhausted_in_row = 0"
            " WHERE id = $1 AND exhausted_in_row <> 0",
            [(endpoint_id,) for endpoint_id in succeeded_endpoints(results)],
        )
        return [r.delivery_id for r in results]

    async def queue_stats(self, now: int) -> QueueStats:
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS pending,"
            " SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END) AS due,"
            " MIN(CASE WHEN due_at <= $1 THEN due_at END) AS oldest FROM delivery_queue",
            now,
        )
        if row is None:
            return QueueStats(0, 0, None)
        return QueueStats(int(row["pending"]), int(row["due"] or 0), row["oldest"])
