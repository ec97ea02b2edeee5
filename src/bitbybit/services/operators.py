"""What an operator lists from the command line beyond what the API shows a company's key: every
company on the database, and a company's deliveries across its endpoints, narrowed by endpoint,
event and status (the API lists deliveries one endpoint at a time)."""

from __future__ import annotations

from typing import Final

from bitbybit.errors import NotFound, ValidationFailed
from bitbybit.models import Company, Page, Tenant
from bitbybit.runtime import Platform

DELIVERY_STATUSES: Final = ("pending", "succeeded", "failed", "held")


async def list_companies(platform: Platform) -> list[Company]:
    """Every company, oldest first."""
    async with platform.store.read() as tx:
        return await tx.list_companies()


async def list_deliveries(
    platform: Platform,
    tenant: Tenant,
    *,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    statuses: tuple[str, ...] = (),
    page: int = 1,
    limit: int = 20,
) -> Page:
    """The tenant's deliveries, newest first; an endpoint or event named but not found is an
    error rather than an empty page, so a mistyped id is never mistaken for "nothing sent"."""
    for status in statuses:
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed.field(
                "status", f"unknown status {status!r}; use {', '.join(DELIVERY_STATUSES)}"
            )
    async with platform.store.read() as tx:
        if await tx.get_company(tenant.company_id) is None:
            raise NotFound(f"no company {tenant.company_id}")
        if endpoint_id is not None and await tx.get_endpoint(tenant, endpoint_id) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        if event_id is not None and await tx.get_event(tenant, event_id) is None:
            raise NotFound(f"no event {event_id}")
        return await tx.list_deliveries(
            tenant,
            endpoint_id=endpoint_id,
            event_id=event_id,
            statuses=statuses,
            page=page,
            limit=limit,
        )
