"""Customers."""

from __future__ import annotations

from typing import Any

import orjson

from bitbybit.errors import IntegrityViolation
from bitbybit.models import Customer, ListQuery, Page, Tenant
from bitbybit.store.sql.driver import ListsSql, Row, _dumps, _fold, _Where


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


class CustomersSql(ListsSql):
    """Implements ``store.base.CustomersTx`` over a ``Driver`` (composed into ``SqlTx``)."""

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
        # ON CONFLICT DO NOTHING: a taken email or phone number inserts nothing, and that is
        # raised here, so the caller needs no lookup before it and a PostgreSQL transaction is
        # not aborted by the refusal (the caller may still look up what clashed).
        inserted = await self.db.execute(
            "INSERT INTO customers (company_id, mode, id, source, created_at, email, email_key,"
            " phone_number, first_name, last_name, image_url, tags, addresses, search_text,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15) ON CONFLICT DO NOTHING",
            tenant.company_id,
            tenant.mode,
            customer.id,
            customer.source,
            customer.created_at,
            *self._customer_values(customer),
        )
        if not inserted:
            raise IntegrityViolation(f"customer {customer.id}: its email or phone number is taken")

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

    async def list_customers(self, tenant: Tenant, query: ListQuery) -> Page:
        where = _Where(tenant)
        self._common_filters(where, query)
        rows, total = await self._page("customers", self._CUSTOMER_COLUMNS, where, query)
        return Page([_customer(row) for row in rows], total, query.page, query.limit)
