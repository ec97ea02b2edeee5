"""Products and their variants; ``productId`` (``PROD-001``) counts up per company and mode."""

from __future__ import annotations

from dataclasses import replace

from bitbybit.errors import NotFound
from bitbybit.ids import new_id
from bitbybit.models import ListQuery, Page, Product, Tenant, Variant
from bitbybit.runtime import Platform
from bitbybit.schemas import ProductCreate, ProductUpdate, VariantIn
from bitbybit.services import events, payloads
from bitbybit.store import Tx


def cents(amount: float) -> int:
    return round(amount * 100)


def _variants(items: list[VariantIn]) -> list[Variant]:
    return [
        Variant(
            id=new_id("var"),
            key=item.title,
            price_cents=cents(item.price),
            compare_at_price_cents=(
                None if item.compareAtPrice is None else cents(item.compareAtPrice)
            ),
            inventory_sku=item.sku,
            media=item.media,
        )
        for item in items
    ]


async def insert(platform: Platform, tx: Tx, tenant: Tenant, data: ProductCreate) -> Product:
    """Create a product inside the caller's transaction and record ``product.created``."""
    now = platform.now()
    number = await tx.next_counter(tenant, "product")
    product = Product(
        id=new_id("prod"),
        product_id=f"PROD-{number:03d}",
        name=data.name,
        description=data.description,
        media=data.media,
        status=data.status,
        variants=_variants(data.variants),
        options=[],
        tags=list(data.tags),
        types=list(data.types),
        created_at=now,
        updated_at=now,
    )
    await tx.insert_product(tenant, product)
    await events.record(tx, tenant, "product.created", payloads.product(product), now)
    return product


async def update(
    platform: Platform, tx: Tx, tenant: Tenant, product_id: str, data: ProductUpdate
) -> Product:
    """Change the fields ``data`` sent, in the caller's transaction; ``product.updated``."""
    product = await tx.get_product(tenant, product_id)
    if product is None:
        raise NotFound(f"no product {product_id}")
    before = replace(product)
    sent = data.model_fields_set
    if "name" in sent and data.name is not None:
        product.name = data.name
    if "description" in sent:
        product.description = data.description
    if "tags" in sent:
        product.tags = list(data.tags or [])
    if "types" in sent:
        product.types = list(data.types or [])
    if "status" in sent:
        product.status = data.status
    if "media" in sent:
        product.media = data.media
    if "variants" in sent and data.variants is not None:
        product.variants = _variants(data.variants)
    if product == before:  # nothing changed: nothing written, no event
        return product
    product.updated_at = max(platform.now(), product.updated_at + 1)
    await tx.update_product(tenant, product)
    await events.record(
        tx, tenant, "product.updated", payloads.product(product), product.updated_at
    )
    return product


async def delete(platform: Platform, tx: Tx, tenant: Tenant, product_id: str) -> str:
    """Delete the product in the caller's transaction and record ``product.deleted``."""
    if not await tx.delete_product(tenant, product_id):
        raise NotFound(f"no product {product_id}")
    await events.record(tx, tenant, "product.deleted", payloads.deleted(product_id), platform.now())
    return product_id


async def get(platform: Platform, tenant: Tenant, product_id: str) -> Product:
    async with platform.store.read() as tx:
        product = await tx.get_product(tenant, product_id)
    if product is None:
        raise NotFound(f"no product {product_id}")
    return product


async def search(platform: Platform, tenant: Tenant, query: ListQuery) -> Page:
    async with platform.store.read(snapshot=True) as tx:
        return await tx.list_products(tenant, query)
