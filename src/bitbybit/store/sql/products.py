"""Products and their variants."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from bitbybit.models import ListQuery, Page, Product, Tenant, Variant
from bitbybit.store.sql.driver import ListsSql, Row, _dumps, _fold, _loads, _Where


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


class ProductsSql(ListsSql):
    """Implements ``store.base.ProductsTx`` over a ``Driver`` (composed into ``SqlTx``)."""

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
