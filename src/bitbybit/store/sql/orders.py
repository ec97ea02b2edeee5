"""Orders."""

from __future__ import annotations

import orjson

from bitbybit.models import ListQuery, Order, Page, Tenant
from bitbybit.store.sql.driver import ListsSql, Row, _dumps, _fold, _loads, _Where


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


class OrdersSql(ListsSql):
    """Implements ``store.base.OrdersTx`` over a ``Driver`` (composed into ``SqlTx``)."""

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
        customer_ids = query.filters.get("customer_id")
        if customer_ids:
            where.add(f"customer_id IN ({', '.join(where.param(v) for v in customer_ids)})")
        rows, total = await self._page("orders", self._ORDER_COLUMNS, where, query)
        return Page([_order(row) for row in rows], total, query.page, query.limit)
